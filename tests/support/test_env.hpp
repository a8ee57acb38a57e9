// Test support shared by every herald test: unique bus names, seeds, scale,
// bounded waits that print state, and cleanup of every shared-memory object
// and file a test created — even when it fails.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace herald::test {

// A bus name unique to this process and test: "t<pid>-<counter>-<tag>",
// cut to the 64-char limit. Tag defaults to the current gtest name.
std::string unique_bus(const std::string& tag = "");

// The seed for this test: HERALD_SEED if set, else random. Printed (once per
// call) so a failure can be replayed with HERALD_SEED=<seed>.
std::uint64_t seed(const char* what = nullptr);

// HERALD_STRESS_SCALE (default 1.0; the tools/test script lowers it under
// sanitizers). count(n) = max(1, n * scale).
double stress_scale();
std::uint64_t scaled(std::uint64_t n);

// True when built with ThreadSanitizer or AddressSanitizer.
bool under_tsan();
bool under_asan();

// Resident kB of this process's mapping that starts at addr, as
// /proc/self/smaps counts it (the pages its page tables map), or -1 when no
// mapping starts there.
long rss_kb(const void* addr);

// Removes every /dev/shm object of the bus and its run-directory files.
void remove_bus_objects(const std::string& bus);

// RAII guard: sets HERALD_NO_AUTOSTART=1 and a private HERALD_RUN_DIR for
// the test, and on destruction removes every object of `bus` (and the run
// dir). Use one per test.
class BusGuard {
 public:
  explicit BusGuard(std::string bus = unique_bus());
  ~BusGuard();
  BusGuard(const BusGuard&) = delete;
  BusGuard& operator=(const BusGuard&) = delete;
  const std::string& bus() const { return bus_; }
  const std::string& run_dir() const { return run_dir_; }

 private:
  std::string bus_;
  std::string run_dir_;
};

// Waits until pred() is true or `seconds` pass (no timing assertion: the
// bound only turns a hang into a failure). On timeout prints describe() and
// returns false.
bool wait_until(const std::function<bool()>& pred, double seconds,
                const std::function<std::string()>& describe = {});

}  // namespace herald::test
