// One producer thread -> one consumer thread, both busy-spinning, in one
// process: events/s through the whole path (publish, commit, read, handle,
// consumer commit, backpressure). The benchmark thread produces; a consumer
// thread drains. Time runs from the first publish until the consumer has
// handled the last event (manual time), so neither side's buffering hides
// the other's cost.
//
//   spsc_1p1c/ring/<size>             baseline ring, indices published every
//                                     32 records / once per poll (the limit)
//   spsc_1p1c/ring_each/<size>        baseline ring, tail published per record
//   spsc_1p1c/herald_publish/<size>   Producer::publish -> lossless group poll
//   spsc_1p1c/herald_batch32/<size>   publish_batch(32) -> lossless group poll
//   spsc_1p1c/herald_claim/<size>     claim/commit      -> lossless group poll
//
// --pin=P,C pins the producer (benchmark) and consumer threads.
#include <benchmark/benchmark.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "bench/baseline_spsc_ring.hpp"
#include "bench/support/bench_env.hpp"
#include "bench/support/rigs.hpp"
#include "herald/herald.hpp"

namespace herald::bench {
namespace {

constexpr std::size_t kChunk = 1024;  // events per benchmark iteration

// The consumer thread's shared state: its progress and verdict.
struct ConsumerSide {
  alignas(128) std::atomic<std::uint64_t> received{0};
  alignas(128) std::atomic<bool> ready{false};
  std::atomic<bool> stop{false};
  std::atomic<bool> failed{false};  // the consumer hit an error and gave up (error says why)
  std::string error;                // written before failed is set
  std::atomic<std::uint64_t> bad{0};
  std::atomic<std::uint64_t> polls{0};  // polls that returned events (batch size = received / polls)
};

using Clock = std::chrono::steady_clock;

// Runs the timed loop: produce_chunk(first_seq) publishes kChunk events;
// the consumer thread (already started) counts them in `side`.
template <class ProduceChunk>
void run_producer(benchmark::State& state, ConsumerSide& side, ProduceChunk&& produce_chunk) {
  while (!side.ready.load(std::memory_order_acquire)) std::this_thread::yield();
  const std::uint64_t total = static_cast<std::uint64_t>(state.max_iterations) * kChunk;
  std::uint64_t seq = 0;
  auto prev = Clock::now();
  for (auto _ : state) {
    if (!produce_chunk(seq)) break;
    seq += kChunk;
    if (seq == total) {
      // The last chunk: the clock stops when the consumer has it all.
      while (side.received.load(std::memory_order_acquire) < total &&
             !side.failed.load(std::memory_order_acquire)) {
      }
    }
    const auto now = Clock::now();
    state.SetIterationTime(std::chrono::duration<double>(now - prev).count());
    prev = now;
  }
  side.stop.store(true, std::memory_order_release);
}

void finish(benchmark::State& state, ConsumerSide& side, std::thread& t, std::size_t size) {
  side.stop.store(true, std::memory_order_release);
  t.join();
  // A producer error (SkipWithError in the loop) may come from a consumer
  // that gave up first: say so.
  if (side.failed.load() && state.error_occurred()) {
    std::fprintf(stderr, "spsc_1p1c: the consumer's poll failed: %s\n", side.error.c_str());
    return;
  }
  if (side.failed.load()) state.SkipWithError(("the consumer's poll failed: " + side.error).c_str());
  else if (side.bad.load() != 0) state.SkipWithError("the consumer saw events out of sequence");
  report_throughput(state, side.received.load(), size);
  if (side.polls.load() != 0)
    state.counters["events_per_poll"] =
        static_cast<double>(side.received.load()) / static_cast<double>(side.polls.load());
}

void ring_impl(benchmark::State& state, std::uint32_t publish_every) {
  const auto size = static_cast<std::size_t>(state.range(0));
  RingRig rig(state);
  if (!rig.ok()) return;
  ConsumerSide side;
  std::thread consumer([&] {
    pin_this_thread(consumer_cpu());
    SpscRingReader r(rig.layout, rig.data);
    std::uint64_t expect = 0, bad = 0, polls = 0;
    side.ready.store(true, std::memory_order_release);
    while (!side.stop.load(std::memory_order_acquire)) {
      const std::size_t n = r.poll([&](const std::byte* p, std::uint64_t) { bad += read_stamp(p) != expect++; },
                                   kPollMax);
      if (n != 0) {
        ++polls;
        side.received.store(expect, std::memory_order_release);
      }
    }
    side.bad.store(bad);
    side.polls.store(polls);
  });
  SpscRingWriter w(rig.layout, rig.data, publish_every);
  std::vector<std::byte> payload = make_payload(size);
  run_producer(state, side, [&](std::uint64_t seq) {
    for (std::size_t i = 0; i < kChunk; ++i) {
      stamp(payload.data(), seq + i);
      while (!w.try_write(payload.data(), size)) {
      }
    }
    w.publish();  // end of a chunk: nothing stays unpublished while the producer checks the clock
    return true;
  });
  finish(state, side, consumer, size);
}

void ring(benchmark::State& state) { ring_impl(state, 32); }
void ring_each(benchmark::State& state) { ring_impl(state, 1); }

// Starts a consumer thread on a lossless group of the rig's topic.
std::thread start_herald_consumer(benchmark::State& state, HeraldRig& rig, ConsumerSide& side) {
  auto c = rig.bb.bus()->consumer("t", {.group = "g", .start = Offset::latest(), .wait = Wait::kBusySpin});
  if (!c) {
    state.SkipWithError(c.error().message().c_str());
    side.ready.store(true);
    return std::thread([] {});
  }
  return std::thread([&side, consumer = std::move(c).value()]() mutable {
    pin_this_thread(consumer_cpu());
    std::uint64_t expect = 0, bad = 0, polls = 0;
    side.ready.store(true, std::memory_order_release);
    while (!side.stop.load(std::memory_order_acquire)) {
      auto n = consumer.poll([&](const EventView& e) { bad += read_stamp(e.payload().data()) != expect++; },
                             kPollMax);
      if (!n) {
        side.error = n.error().message();
        side.failed.store(true, std::memory_order_release);
        break;
      }
      if (*n != 0) {
        ++polls;
        side.received.store(expect, std::memory_order_release);
      }
    }
    side.bad.store(bad);
    side.polls.store(polls);
  });
}

void herald_publish(benchmark::State& state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  HeraldRig rig(state, "spsc-publish");
  if (!rig.ok() || !rig.warm_up(size)) return;
  ConsumerSide side;
  std::thread consumer = start_herald_consumer(state, rig, side);
  std::vector<std::byte> payload = make_payload(size);
  const Message m{.payload = Bytes(payload.data(), size)};
  run_producer(state, side, [&](std::uint64_t seq) {
    for (std::size_t i = 0; i < kChunk; ++i) {
      stamp(payload.data(), seq + i);
      if (auto r = rig.producer->publish(m); !r) {
        state.SkipWithError(r.error().message().c_str());
        return false;
      }
    }
    return true;
  });
  finish(state, side, consumer, size);
}

void herald_batch32(benchmark::State& state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  HeraldRig rig(state, "spsc-batch");
  if (!rig.ok() || !rig.warm_up(size)) return;
  ConsumerSide side;
  std::thread consumer = start_herald_consumer(state, rig, side);
  std::vector<std::vector<std::byte>> payloads(kBatch, make_payload(size));
  std::array<Message, kBatch> batch;
  for (std::size_t i = 0; i < kBatch; ++i) batch[i].payload = Bytes(payloads[i].data(), size);
  static_assert(kChunk % kBatch == 0);
  run_producer(state, side, [&](std::uint64_t seq) {
    for (std::size_t i = 0; i < kChunk; i += kBatch) {
      for (std::size_t j = 0; j < kBatch; ++j) stamp(payloads[j].data(), seq + i + j);
      auto r = rig.producer->publish_batch(batch);
      if (!r || r->published != kBatch) {
        state.SkipWithError(r ? "publish_batch published part of the batch" : r.error().message().c_str());
        return false;
      }
    }
    return true;
  });
  finish(state, side, consumer, size);
}

void herald_claim(benchmark::State& state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  HeraldRig rig(state, "spsc-claim");
  if (!rig.ok() || !rig.warm_up(size)) return;
  ConsumerSide side;
  std::thread consumer = start_herald_consumer(state, rig, side);
  std::vector<std::byte> payload = make_payload(size);
  run_producer(state, side, [&](std::uint64_t seq) {
    for (std::size_t i = 0; i < kChunk; ++i) {
      auto c = rig.producer->claim(size);
      if (!c) {
        state.SkipWithError(c.error().message().c_str());
        return false;
      }
      std::byte* dst = c->payload().data();
      std::memcpy(dst, payload.data(), size);
      stamp(dst, seq + i);
      if (auto r = c->commit(); !r) {
        state.SkipWithError(r.error().message().c_str());
        return false;
      }
    }
    return true;
  });
  finish(state, side, consumer, size);
}

BENCHMARK(ring)->Name("spsc_1p1c/ring")->Arg(64)->Arg(1024)->UseManualTime();
BENCHMARK(ring_each)->Name("spsc_1p1c/ring_each")->Arg(64)->Arg(1024)->UseManualTime();
BENCHMARK(herald_publish)->Name("spsc_1p1c/herald_publish")->Arg(64)->Arg(1024)->UseManualTime();
BENCHMARK(herald_batch32)->Name("spsc_1p1c/herald_batch32")->Arg(64)->Arg(1024)->UseManualTime();
BENCHMARK(herald_claim)->Name("spsc_1p1c/herald_claim")->Arg(64)->Arg(1024)->UseManualTime();

}  // namespace
}  // namespace herald::bench
