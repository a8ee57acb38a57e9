// Clocks and process identity.
//
// Both clocks go through clock_gettime, which glibc serves from the vDSO: no
// system call on the hot path. Owners of shared slots are identified by
// (pid, process start time) so a recycled pid is never taken for the process
// that died.
#pragma once

#include <cstdint>
#include <optional>
#include <sys/types.h>
#include <time.h>

namespace herald::shm {

// Inline: the publish path reads the realtime clock once per event, and an
// out-of-line wrapper around the vDSO call is one more call per event.
inline std::uint64_t realtime_ns() noexcept {  // CLOCK_REALTIME: event times
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<std::uint64_t>(ts.tv_nsec);
}
inline std::uint64_t monotonic_ns() noexcept {  // CLOCK_MONOTONIC: deadlines, stalls, liveness
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<std::uint64_t>(ts.tv_nsec);
}

// Start time of a process in clock ticks since boot (/proc/<pid>/stat field
// 22), or nullopt when there is no such process.
std::optional<std::uint64_t> process_start_time(pid_t pid) noexcept;

// This process's start time (cached after the first call; fork-safe: the
// cache is keyed on the pid).
std::uint64_t self_start_time() noexcept;

// True while the process (pid, start_time) exists. A zombie (exited, not yet
// reaped) counts as dead. start_time == 0 means "unknown": the pid alone decides.
bool process_alive(pid_t pid, std::uint64_t start_time) noexcept;

}  // namespace herald::shm
