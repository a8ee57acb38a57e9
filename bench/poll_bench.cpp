// The consumer side alone, one thread: draining a pre-filled ring. Each
// iteration publishes kFill events with the timer paused, then drains them
// timed (the bytes are warm in cache, as they are when a consumer keeps up).
//
//   poll/ring_read/<size>             baseline: SpscRingReader::poll, 256 a call
//   poll/herald_lossless/<size>       a lossless group's member: zero-copy
//                                     views, cursor committed after each poll
//   poll/herald_lossy_copy/<size>     a group-less reader: every event copied
//                                     out and validated against tail
//
// The handler reads the sequence number in the payload and checks it.
#include <benchmark/benchmark.h>

#include <cstring>
#include <vector>

#include "bench/baseline_spsc_ring.hpp"
#include "bench/support/bench_env.hpp"
#include "bench/support/rigs.hpp"
#include "herald/herald.hpp"

namespace herald::bench {
namespace {

constexpr std::size_t kFill = 8192;  // events per iteration (8.9 MB at 1 KiB: fits the 16 MiB ring)

void ring_read(benchmark::State& state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  RingRig rig(state);
  if (!rig.ok()) return;
  SpscRingWriter w(rig.layout, rig.data);
  SpscRingReader r(rig.layout, rig.data);
  std::vector<std::byte> payload = make_payload(size);
  std::uint64_t seq = 0, expect = 0, bad = 0, bytes = 0;
  for (auto _ : state) {
    state.PauseTiming();
    for (std::size_t i = 0; i < kFill; ++i) {
      stamp(payload.data(), seq++);
      if (!w.try_write(payload.data(), size)) {
        state.SkipWithError("baseline ring full while filling");
        return;
      }
    }
    w.publish();
    state.ResumeTiming();
    std::size_t got = 0;
    while (got < kFill) {
      got += r.poll(
          [&](const std::byte* p, std::uint64_t len) {
            bad += read_stamp(p) != expect++;
            bytes += len;
          },
          kPollMax);
    }
  }
  if (bad != 0) state.SkipWithError("baseline ring delivered out of sequence");
  benchmark::DoNotOptimize(bytes);
  report_throughput(state, expect, size);
}

// Drains kFill events per iteration from `consumer`.
template <class Setup>
void herald_drain(benchmark::State& state, const char* tag, Policy policy, Setup make_consumer) {
  const auto size = static_cast<std::size_t>(state.range(0));
  HeraldRig rig(state, tag, policy);
  if (!rig.ok() || !rig.warm_up(size)) return;
  auto consumer = make_consumer(*rig.bb.bus());
  if (!consumer) {
    state.SkipWithError(consumer.error().message().c_str());
    return;
  }
  std::vector<std::byte> payload = make_payload(size);
  const Message m{.payload = Bytes(payload.data(), size)};
  std::uint64_t seq = 0, expect = 0, bad = 0, bytes = 0;
  for (auto _ : state) {
    state.PauseTiming();
    for (std::size_t i = 0; i < kFill; ++i) {
      stamp(payload.data(), seq++);
      if (auto p = rig.producer->publish(m); !p) {
        state.SkipWithError(p.error().message().c_str());
        return;
      }
    }
    state.ResumeTiming();
    std::size_t got = 0;
    while (got < kFill) {
      auto n = consumer->poll(
          [&](const EventView& e) {
            const auto p = e.payload();
            bad += read_stamp(p.data()) != expect++;
            bytes += p.size();
          },
          kPollMax);
      if (!n) {
        state.SkipWithError(n.error().message().c_str());
        return;
      }
      got += *n;
    }
  }
  if (bad != 0) state.SkipWithError("herald delivered out of sequence");
  benchmark::DoNotOptimize(bytes);
  report_throughput(state, expect, size);
}

void herald_lossless(benchmark::State& state) {
  herald_drain(state, "poll-lossless", Policy::kLossless, [](Bus& bus) {
    return bus.consumer("t", {.group = "g", .start = Offset::latest(), .wait = Wait::kBusySpin});
  });
}

void herald_lossy_copy(benchmark::State& state) {
  herald_drain(state, "poll-lossy", Policy::kLossless, [](Bus& bus) {
    return bus.consumer("t", {.start = Offset::latest(), .wait = Wait::kBusySpin});
  });
}

BENCHMARK(ring_read)->Name("poll/ring_read")->Arg(64)->Arg(1024);
BENCHMARK(herald_lossless)->Name("poll/herald_lossless")->Arg(64)->Arg(1024);
BENCHMARK(herald_lossy_copy)->Name("poll/herald_lossy_copy")->Arg(64)->Arg(1024);

}  // namespace
}  // namespace herald::bench
