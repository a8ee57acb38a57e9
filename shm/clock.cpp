#include "shm/clock.hpp"

#include <fcntl.h>
#if defined(__x86_64__)
#include <cpuid.h>
#endif
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>

namespace herald::shm {

namespace {

// Reads /proc/<pid>/stat; returns field 22 (starttime) and the state letter.
bool read_stat(pid_t pid, std::uint64_t* start, char* state) noexcept {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[1024];
  ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return false;
  buf[n] = '\0';
  // The command name (field 2) is in parentheses and may hold spaces or ')':
  // fields after it start past the LAST ')'.
  char* p = std::strrchr(buf, ')');
  if (p == nullptr || p[1] == '\0') return false;
  p += 2;  // now at field 3 (state)
  *state = *p;
  for (int field = 3; field < 22; ++field) {
    p = std::strchr(p, ' ');
    if (p == nullptr) return false;
    ++p;
  }
  char* end = nullptr;
  errno = 0;
  unsigned long long v = std::strtoull(p, &end, 10);
  if (errno != 0 || end == p) return false;
  *start = v;
  return true;
}

#if defined(__x86_64__)
// CPUID 0x80000007 EDX bit 8: the TSC is invariant (constant rate in every
// P-, C- and T-state). A hypervisor passes it on only when the host's is.
bool invariant_tsc() noexcept {
  unsigned a = 0, b = 0, c = 0, d = 0;
  return __get_cpuid(0x80000007u, &a, &b, &c, &d) != 0 && (d & (1u << 8)) != 0;
}
#endif

// Whether this process may scale the TSC for event times (checked once):
// - clocksource "tsc": the kernel reads it itself, so it is invariant and
//   synchronised across cores, or the kernel would have switched away;
// - clocksource "kvm-clock" on a CPU with an invariant TSC: kvm-clock is the
//   guest TSC scaled by the host's parameters, and the kernel's own vDSO
//   reads it that way (local rdtsc against vCPU 0's parameters) whenever the
//   host says the TSC is stable; otherwise every clock_gettime would be a
//   system call. VMs that may be snapshotted or moved to another host boot
//   with `tsc=unstable clocksource=kvm-clock` (Firecracker does) and there
//   the TSC can jump: a jump forward past one anchor period or any jump back
//   re-anchors on the next read, and a smaller one is caught by the next
//   anchor's 20 us check (EventClock::anchor), so an event time is off by
//   at most the jump, for at most one anchor period (under 1 ms), and only
//   across a jump. Reading clock_gettime per event cost such a VM ~25 ns of
//   a ~60 ns single publish (bench/RESULTS.md, "seventh session").
// HERALD_EVENT_CLOCK=vdso turns it off (every read is clock_gettime).
bool tsc_usable() noexcept {
#if defined(__x86_64__)
  static const bool usable = [] {
    if (const char* e = std::getenv("HERALD_EVENT_CLOCK"); e != nullptr && std::strcmp(e, "vdso") == 0) return false;
    int fd = ::open("/sys/devices/system/clocksource/clocksource0/current_clocksource", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    char buf[32] = {};
    const ssize_t n = ::read(fd, buf, sizeof buf - 1);
    ::close(fd);
    if (n <= 0) return false;
    const std::string_view source(buf, static_cast<std::size_t>(n) - (buf[n - 1] == '\n' ? 1 : 0));
    return source == "tsc" || (source == "kvm-clock" && invariant_tsc());
  }();
  return usable;
#else
  return false;
#endif
}

// The rate the process's clocks measured last (ns per tick << 32), so a new
// clock starts calibrated. Relaxed: any recent value is as good as another.
std::atomic<std::uint64_t> g_mult{0};

constexpr std::uint64_t kAnchorTicks = std::uint64_t{1} << 21;
// A sample's ticks bracket at most this (~400 ns at 2.6 GHz; a vDSO read
// takes ~20 ns): its midpoint is then within ~200 ns of the clock read, and
// a rate over the 4 ms first baseline within 1e-4, ~80 ns over one anchor
// period, falling as the baseline grows.
constexpr std::uint64_t kMaxSampleTicks = std::uint64_t{1} << 10;
constexpr std::uint64_t kMinBaselineNs = 4'000'000;       // first rate after 4 ms
constexpr std::uint64_t kMaxBaselineNs = 8'000'000'000;   // restart the baseline after ~8 s (follows NTP slewing)
constexpr std::uint64_t kMaxErrorNs = 20'000;             // an anchor this far off the ticks: recalibrate
constexpr std::uint64_t kMinMult = std::uint64_t{1} << 24;  // 256 GHz: implausibly fast
constexpr std::uint64_t kMaxMult = std::uint64_t{1} << 36;  // 62.5 MHz: implausibly slow

}  // namespace

EventClock::EventClock() noexcept : tsc_(tsc_usable()) {
  if (!tsc_) return;
  const std::uint64_t m = g_mult.load(std::memory_order_relaxed);
  if (m != 0) {
    mult_ = m;
    period_ = kAnchorTicks;
  }
  // The first now() anchors (period_ starts with tsc0_ = 0: d is huge).
}

std::uint64_t EventClock::anchor() noexcept {
#if defined(__x86_64__)
  if (!tsc_) return realtime_ns();
  // The ticks on both sides of the clock read: a pair taken across a
  // preemption (or a slow read) would skew the anchor and the rate, so such
  // a sample only answers this call (the next one anchors again).
  const std::uint64_t before = __builtin_ia32_rdtsc();
  const std::uint64_t ns = realtime_ns();
  const std::uint64_t after = __builtin_ia32_rdtsc();
  if (after - before > kMaxSampleTicks) return ns;
  const std::uint64_t tsc = before + (after - before) / 2;
  if (period_ != 0) {
    // Where the old anchor put this instant: far off means the wall clock
    // stepped, or the TSC is not what we took it for. Start over.
    // d < 2^27 keeps d * mult_ (mult_ < 2^36) inside 64 bits; a longer gap
    // (the first anchor of a clock that took the process's rate) has no
    // prediction to check.
    const std::uint64_t d = tsc - tsc0_;
    const std::uint64_t predicted = d < (std::uint64_t{1} << 27) ? ns0_ + ((d * mult_) >> 32) : ns;
    const std::uint64_t err = predicted > ns ? predicted - ns : ns - predicted;
    if (err > kMaxErrorNs) {
      base_tsc_ = base_ns_ = 0;
      period_ = 0;
    }
  }
  if (base_ns_ == 0 || ns <= base_ns_ || tsc <= base_tsc_ || ns - base_ns_ > kMaxBaselineNs) {
    base_tsc_ = tsc;
    base_ns_ = ns;
  } else if (ns - base_ns_ >= kMinBaselineNs) {
    __extension__ using U128 = unsigned __int128;  // ns << 32 overflows 64 bits after 4 s
    const auto m = static_cast<std::uint64_t>((static_cast<U128>(ns - base_ns_) << 32) / (tsc - base_tsc_));
    if (m >= kMinMult && m <= kMaxMult) {
      mult_ = m;
      period_ = kAnchorTicks;
      g_mult.store(m, std::memory_order_relaxed);
    }
  }
  tsc0_ = tsc;
  ns0_ = ns;
  return ns;
#else
  return realtime_ns();
#endif
}

std::optional<std::uint64_t> process_start_time(pid_t pid) noexcept {
  std::uint64_t start = 0;
  char state = 0;
  if (!read_stat(pid, &start, &state)) return std::nullopt;
  return start;
}

char process_state(pid_t pid) noexcept {
  std::uint64_t start = 0;
  char state = 0;
  if (pid <= 0 || !read_stat(pid, &start, &state)) return 0;
  return state;
}

std::uint64_t self_start_time() noexcept {
  static std::atomic<std::uint64_t> cached_pid{0};
  static std::atomic<std::uint64_t> cached_start{0};
  const auto me = static_cast<std::uint64_t>(::getpid());
  if (cached_pid.load(std::memory_order_acquire) == me) return cached_start.load(std::memory_order_relaxed);
  const std::uint64_t start = process_start_time(::getpid()).value_or(0);
  cached_start.store(start, std::memory_order_relaxed);
  cached_pid.store(me, std::memory_order_release);
  return start;
}

bool process_alive(pid_t pid, std::uint64_t start_time) noexcept {
  if (pid <= 0) return false;
  std::uint64_t start = 0;
  char state = 0;
  if (!read_stat(pid, &start, &state)) {
    // No readable /proc entry: ask the kernel whether the pid exists at all
    // (EPERM: it exists but is not ours). Without /proc we cannot check the
    // start time, so an existing pid counts as alive: the safe answer.
    if (::kill(pid, 0) == 0) return true;
    return errno == EPERM;
  }
  if (state == 'Z' || state == 'X') return false;
  return start_time == 0 || start == start_time;
}

}  // namespace herald::shm
