// The producer side alone, one thread, no consumer: what one event costs the
// publishing thread. No group exists, so nothing gates the producer and the
// ring wraps freely (a warm-up lap first, so no page fault is timed).
//
//   publish/ring_write/<size>      baseline: SpscRingWriter::try_write; the
//                                  bench frees the ring when it is full
//                                  (an instant consumer, once per lap)
//   publish/herald_publish/<size>  Producer::publish (copy), one event
//   publish/herald_batch32/<size>  Producer::publish_batch of 32 events
//   publish/herald_claim/<size>    Producer::claim -> fill in place -> commit
//
// Each event is a <size>-byte payload (first 8 bytes a sequence number) with
// the envelope fields the runtime fills itself (id, time): no key, no type.
#include <benchmark/benchmark.h>

#include <array>
#include <cstring>
#include <vector>

#include "bench/baseline_spsc_ring.hpp"
#include "bench/support/bench_env.hpp"
#include "bench/support/rigs.hpp"
#include "herald/herald.hpp"

namespace herald::bench {
namespace {

void ring_write(benchmark::State& state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  RingRig rig(state);
  if (!rig.ok()) return;
  SpscRingWriter w(rig.layout, rig.data);
  std::vector<std::byte> payload = make_payload(size);
  std::uint64_t seq = 0;
  for (auto _ : state) {
    stamp(payload.data(), seq++);
    while (!w.try_write(payload.data(), size)) {
      // Full: the instant consumer reads everything published.
      rig.layout->head.store(rig.layout->tail.load(std::memory_order_acquire), std::memory_order_release);
    }
  }
  w.publish();
  report_throughput(state, seq, size);
}

void herald_publish(benchmark::State& state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  HeraldRig rig(state, "publish");
  if (!rig.ok() || !rig.warm_up(size)) return;
  std::vector<std::byte> payload = make_payload(size);
  const Message m{.payload = Bytes(payload.data(), size)};
  std::uint64_t seq = 0;
  for (auto _ : state) {
    stamp(payload.data(), seq++);
    auto r = rig.producer->publish(m);
    if (!r) {
      state.SkipWithError(r.error().message().c_str());
      break;
    }
  }
  report_throughput(state, seq, size);
}

void herald_batch32(benchmark::State& state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  HeraldRig rig(state, "batch");
  if (!rig.ok() || !rig.warm_up(size)) return;
  std::vector<std::vector<std::byte>> payloads(kBatch, make_payload(size));
  std::array<Message, kBatch> batch;
  for (std::size_t i = 0; i < kBatch; ++i) batch[i].payload = Bytes(payloads[i].data(), size);
  std::uint64_t seq = 0;
  for (auto _ : state) {
    for (auto& p : payloads) stamp(p.data(), seq++);
    auto r = rig.producer->publish_batch(batch);
    if (!r || r->published != kBatch) {
      state.SkipWithError(r ? "publish_batch published part of the batch" : r.error().message().c_str());
      break;
    }
  }
  report_throughput(state, seq, size);
}

void herald_claim(benchmark::State& state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  HeraldRig rig(state, "claim");
  if (!rig.ok() || !rig.warm_up(size)) return;
  std::vector<std::byte> payload = make_payload(size);
  std::uint64_t seq = 0;
  for (auto _ : state) {
    auto c = rig.producer->claim(size);
    if (!c) {
      state.SkipWithError(c.error().message().c_str());
      break;
    }
    std::byte* dst = c->payload().data();
    std::memcpy(dst, payload.data(), size);  // the same bytes a publish copies
    stamp(dst, seq++);
    auto r = c->commit();
    if (!r) {
      state.SkipWithError(r.error().message().c_str());
      break;
    }
  }
  report_throughput(state, seq, size);
}

BENCHMARK(ring_write)->Name("publish/ring_write")->Arg(64)->Arg(1024);
BENCHMARK(herald_publish)->Name("publish/herald_publish")->Arg(64)->Arg(1024);
BENCHMARK(herald_batch32)->Name("publish/herald_batch32")->Arg(64)->Arg(1024);
BENCHMARK(herald_claim)->Name("publish/herald_claim")->Arg(64)->Arg(1024);

}  // namespace
}  // namespace herald::bench
