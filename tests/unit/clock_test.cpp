// shm/clock.hpp: EventClock, the TSC-scaled CLOCK_REALTIME of event times.
// No timing assertions: every reading must lie between two clock_gettime
// readings taken around it (with a tolerance far above the clock's error,
// so a loaded machine cannot fail it), and the rate it measured must be a
// plausible TSC frequency.
#include <gtest/gtest.h>

#include <cstdint>

#include "shm/clock.hpp"

namespace herald::shm {
namespace {

constexpr std::uint64_t kToleranceNs = 1'000'000;  // the clock's own error is nanoseconds to ~100 ns

// Reads the clock until `span_ns` of CLOCK_REALTIME passed, checking each
// reading against the realtime readings around it.
void follow(EventClock& clock, std::uint64_t span_ns) {
  const std::uint64_t start = realtime_ns();
  std::uint64_t reads = 0;
  for (std::uint64_t before = start; before - start < span_ns; ++reads) {
    before = realtime_ns();
    const std::uint64_t t = clock.now();
    const std::uint64_t after = realtime_ns();
    ASSERT_GE(t + kToleranceNs, before) << "read " << reads << ": " << (before - t) << " ns early; mult=" << clock.mult();
    ASSERT_LE(t, after + kToleranceNs) << "read " << reads << ": " << (t - after) << " ns late; mult=" << clock.mult();
  }
}

TEST(EventClockTest, FollowsRealtimeWhileItCalibrates) {
  EventClock clock;
  follow(clock, 30'000'000);  // 30 ms: calibration (4 ms), then ~30 anchor periods
  if (!clock.uses_tsc()) GTEST_SKIP() << "clocksource is neither tsc nor kvm-clock with an invariant TSC (or HERALD_EVENT_CLOCK=vdso): clock_gettime only";
  // A calibrated rate is a TSC between 62.5 MHz and 256 GHz (ns/tick << 32).
  ASSERT_NE(clock.mult(), 0u) << "not calibrated after 30 ms";
  const double ghz = 4294967296.0 / static_cast<double>(clock.mult());
  EXPECT_GT(ghz, 0.0625);
  EXPECT_LT(ghz, 256.0);
}

TEST(EventClockTest, ALaterClockStartsWithTheProcessRate) {
  EventClock first;
  follow(first, 10'000'000);
  EventClock second;  // takes the rate the first one measured; anchors on its first read
  if (!second.uses_tsc()) GTEST_SKIP() << "the TSC is not used here: clock_gettime only";
  EXPECT_NE(second.mult(), 0u);
  follow(second, 5'000'000);
}

}  // namespace
}  // namespace herald::shm
