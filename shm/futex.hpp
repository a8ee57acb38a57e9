// Raw shared futexes. Never C++20 atomic::wait: libstdc++ 12 implements it
// with process-private futexes, which do not wake across processes.
// FUTEX_WAIT works on a read-only shared mapping (consumers wait on words in
// the log segment, which they map read-only).
#pragma once

#include <atomic>
#include <cstdint>

namespace herald::shm {

// One step of a spin-wait: tells the core (and an SMT sibling) that this
// thread is waiting (x86 pause: ~23 ns on the EPYC of bench/RESULTS.md).
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

enum class FutexWait { kWoken, kTimedOut, kValueChanged, kInterrupted };

// Sleeps while *word == expected, at most timeout_ns. Spurious wake-ups are
// possible: callers re-check their condition.
FutexWait futex_wait(const std::atomic<std::uint32_t>* word, std::uint32_t expected,
                     std::uint64_t timeout_ns) noexcept;

// Wakes up to `count` waiters on word; returns how many were woken.
int futex_wake(const std::atomic<std::uint32_t>* word, int count) noexcept;

// The asymmetric fence (membarrier GLOBAL_EXPEDITED). Producers call
// register_fast_path() once per process; if it succeeds they may publish
// with only a compiler barrier between the commit-word store and the waiter
// check, and a consumer about to park calls heavy_fence(), which makes every
// registered thread pass a full barrier. See ring_log.cpp "Parking".
bool membarrier_register() noexcept;   // true when this process may skip the per-publish fence
bool membarrier_heavy_fence() noexcept;  // false if the kernel refused (callers then park briefly)
bool membarrier_usable() noexcept;     // the kernel supports GLOBAL_EXPEDITED

}  // namespace herald::shm
