#include "bench/support/round_trip.hpp"

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

namespace herald::bench {

namespace {
void pin(int cpu) noexcept {
  if (cpu < 0) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(static_cast<unsigned>(cpu), &set);
  (void)::pthread_setaffinity_np(::pthread_self(), sizeof set, &set);  // best effort: unpinned still measures
}
}  // namespace

double cache_line_round_trip_ns(int self_cpu, int echo_cpu) {
  // One line each way, 128-byte aligned (the adjacent-line prefetcher pairs
  // 64-byte lines). Acquire/release: the spin sees the other side's store.
  struct alignas(128) Line {
    std::atomic<std::uint64_t> v{0};
  };
  Line ping, pong;
  constexpr std::uint64_t kBatch = 1000, kBatches = 100;
  std::thread echo([&] {
    pin(echo_cpu);
    for (std::uint64_t i = 1; i <= kBatch * kBatches; ++i) {
      while (ping.v.load(std::memory_order_acquire) != i) {
      }
      pong.v.store(i, std::memory_order_release);
    }
  });
  pin(self_cpu);
  std::vector<double> per_batch;
  std::uint64_t i = 0;
  for (std::uint64_t b = 0; b < kBatches; ++b) {
    const auto t0 = std::chrono::steady_clock::now();
    for (std::uint64_t k = 0; k < kBatch; ++k) {
      ping.v.store(++i, std::memory_order_release);
      while (pong.v.load(std::memory_order_acquire) != i) {
      }
    }
    per_batch.push_back(std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count() /
                        static_cast<double>(kBatch));
  }
  echo.join();
  std::sort(per_batch.begin(), per_batch.end());
  return per_batch[per_batch.size() / 2];
}

}  // namespace herald::bench
