// Shared set-up of the benches. HeraldRig: a bus of its own, one topic of one
// partition with herald's default ring (16 MiB; --ring_bytes=N changes it
// for herald and the baseline alike), a producer that busy-spins
// under backpressure, and a warm-up lap so no page fault lands in a timed
// loop. RingRig: the baseline ring over the same amount of shared memory,
// pre-faulted.
#pragma once

#include <benchmark/benchmark.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <new>
#include <optional>
#include <string>
#include <vector>

#include "bench/baseline_spsc_ring.hpp"
#include "bench/support/bench_env.hpp"
#include "herald/herald.hpp"

namespace herald::bench {

inline constexpr std::size_t kBatch = 32;                 // events per publish_batch
inline constexpr std::size_t kPollMax = 256;              // events per poll (herald's default max)

struct HeraldRig {
  BenchBus bb;
  std::uint64_t ring;
  std::optional<Producer> producer;

  HeraldRig(benchmark::State& state, const std::string& tag, Policy policy = Policy::kLossless,
            bool single_producer = false, std::uint64_t ring_bytes = ring_bytes_option())
      : bb(tag), ring(ring_bytes) {
    if (bb.bus() == nullptr) {
      state.SkipWithError(bb.error().c_str());
      return;
    }
    const std::uint64_t max_event = std::min<std::uint64_t>(1ull << 20, ring_bytes / 4);
    auto t = bb.bus()->create_topic("t", {.partitions = 1,
                                          .ring_bytes = ring_bytes,
                                          .max_event = max_event,
                                          .default_policy = policy,
                                          .single_producer = single_producer});
    if (!t) {
      state.SkipWithError(t.error().message().c_str());
      return;
    }
    auto p = bb.bus()->producer("t", {.wait = Wait::kBusySpin});
    if (!p) {
      state.SkipWithError(p.error().message().c_str());
      return;
    }
    producer.emplace(std::move(p).value());
  }
  bool ok() const { return producer.has_value(); }

  // Publishes a little over one ring's worth of events (call it before any
  // gating group exists) so every page of the ring is mapped and warm.
  bool warm_up(std::size_t payload) {
    std::vector<std::byte> buf(payload);
    const Message m{.payload = Bytes(buf.data(), buf.size())};
    for (;;) {
      auto r = producer->publish(m);
      if (!r) return false;
      if (r->position > ring + ring / 8) return true;
    }
  }
};

struct RingRig {
  static constexpr std::size_t kDataOffset = 4096;  // the data starts on a page, as herald's rings do
  void* base = nullptr;
  std::size_t bytes = 0;
  SpscRingLayout* layout = nullptr;
  std::byte* data = nullptr;

  explicit RingRig(benchmark::State& state, std::uint64_t capacity = ring_bytes_option()) {
    bytes = kDataOffset + capacity;
    base = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) {
      base = nullptr;
      state.SkipWithError("mmap of the baseline ring failed");
      return;
    }
    std::memset(base, 0, bytes);  // pre-fault every page
    layout = new (base) SpscRingLayout;
    ring_init(layout, capacity);
    data = static_cast<std::byte*>(base) + kDataOffset;
  }
  ~RingRig() {
    if (base != nullptr) ::munmap(base, bytes);
  }
  RingRig(const RingRig&) = delete;
  RingRig& operator=(const RingRig&) = delete;
  bool ok() const { return base != nullptr; }
};

inline void stamp(std::byte* payload, std::uint64_t seq) noexcept { std::memcpy(payload, &seq, sizeof seq); }
inline std::uint64_t read_stamp(const std::byte* p) noexcept {
  std::uint64_t s = 0;
  std::memcpy(&s, p, sizeof s);
  return s;
}

}  // namespace herald::bench
