// Clocks and process identity.
//
// The clocks go through clock_gettime, which glibc serves from the vDSO: no
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
inline std::uint64_t clock_ns(clockid_t id) noexcept {
  timespec ts{};
  clock_gettime(id, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<std::uint64_t>(ts.tv_nsec);
}
inline std::uint64_t realtime_ns() noexcept { return clock_ns(CLOCK_REALTIME); }    // event times
inline std::uint64_t monotonic_ns() noexcept { return clock_ns(CLOCK_MONOTONIC); }  // deadlines, stalls, liveness
// CLOCK_MONOTONIC_COARSE: the last timer tick's time (1-4 ms resolution,
// never ahead of CLOCK_MONOTONIC), ~3 ns through the vDSO against ~21 ns.
// For liveness stamps compared against intervals of seconds (a consumer's
// last poll), stored on every poll.
inline std::uint64_t coarse_monotonic_ns() noexcept { return clock_ns(CLOCK_MONOTONIC_COARSE); }

// CLOCK_REALTIME for event times, cheap enough to read once per published
// event. clock_gettime costs ~21 ns through the vDSO on the VMs herald is
// measured on: half of a single publish (bench/RESULTS.md). Where the kernel
// itself reads the TSC for its clock (x86-64, clocksource "tsc": invariant
// and synchronised across cores; or "kvm-clock" on a CPU with an invariant
// TSC, the guest TSC scaled by the host: clock.cpp, tsc_usable, says what a
// jumping TSC can do there), this reads it too and scales the ticks
// from an anchor, a (tsc, CLOCK_REALTIME) pair refreshed by clock_gettime
// every 2^21 ticks (under a millisecond at 2 GHz and up). The scale is
// measured, not assumed: the ticks and nanoseconds between this clock's
// calibration base and the newest anchor (a baseline that grows to ~8 s, so
// the rate's error falls to parts per billion), shared with the process's
// later clocks. Until the first baseline of 4 ms is in, and on every other
// machine, now() is clock_gettime itself.
//
// Accuracy: the value follows CLOCK_REALTIME (and its steps: an anchor that
// disagrees with the ticks by more than 20 us recalibrates from scratch) to
// within the rate's error over one anchor period: at most ~80 ns while the
// first baselines are short, nanoseconds after that (mean error 3 ns here).
// Like CLOCK_REALTIME it may step back across an anchor, by that much; event
// ids stay ordered regardless (event_id.hpp).
//
// One owner (a Producer) at a time: no synchronisation inside. Set
// HERALD_EVENT_CLOCK=vdso to read clock_gettime on every call instead.
class EventClock {
 public:
  EventClock() noexcept;

  std::uint64_t now() noexcept {
#if defined(__x86_64__)
    // d < period_ <= 2^21 and mult_ < 2^36 (at least 62.5 MHz): the product
    // fits in 64 bits. rdtsc is not ordered with the surrounding loads and
    // stores, which an event time does not need.
    const std::uint64_t d = __builtin_ia32_rdtsc() - tsc0_;
    if (d < period_) [[likely]] return ns0_ + ((d * mult_) >> 32);
#endif
    return anchor();
  }

  // Nanoseconds per tick times 2^32 (0: not calibrated, or no usable TSC).
  [[nodiscard]] std::uint64_t mult() const noexcept { return mult_; }
  // Whether this clock reads the TSC (else every now() is clock_gettime).
  [[nodiscard]] bool uses_tsc() const noexcept { return tsc_; }

 private:
  // Reads clock_gettime and the TSC, refreshes the anchor (and the rate);
  // returns the realtime reading.
  [[gnu::noinline]] std::uint64_t anchor() noexcept;

  std::uint64_t tsc0_ = 0;    // anchor: ticks ...
  std::uint64_t ns0_ = 0;     // ... and CLOCK_REALTIME at them
  std::uint64_t period_ = 0;  // ticks the anchor serves; 0 (every call anchors) until a rate is measured
  std::uint64_t mult_ = 0;    // ns per tick << 32
  std::uint64_t base_tsc_ = 0, base_ns_ = 0;  // calibration base (0: none)
  bool tsc_ = false;          // the TSC is usable here
};

// Start time of a process in clock ticks since boot (/proc/<pid>/stat field
// 22), or nullopt when there is no such process.
std::optional<std::uint64_t> process_start_time(pid_t pid) noexcept;
// Its scheduler state (/proc/<pid>/stat field 3: 'R', 'S', 'D', 'T' stopped
// by a signal, 't' stopped by a debugger, 'Z', ...), or 0 when unreadable.
char process_state(pid_t pid) noexcept;
// Stopped by SIGSTOP/SIGTSTP or a debugger: alive, but running nothing
// until continued.
inline bool process_stopped(pid_t pid) noexcept {
  const char s = process_state(pid);
  return s == 'T' || s == 't';
}

// This process's start time (cached after the first call; fork-safe: the
// cache is keyed on the pid).
std::uint64_t self_start_time() noexcept;

// True while the process (pid, start_time) exists. A zombie (exited, not yet
// reaped) counts as dead. start_time == 0 means "unknown": the pid alone decides.
bool process_alive(pid_t pid, std::uint64_t start_time) noexcept;

}  // namespace herald::shm
