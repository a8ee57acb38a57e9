// Drives the `herald` binary as a subprocess: each test gets its own bus and
// run directory (BusGuard), starts heraldd with `herald daemon start`, and in
// TearDown stops that daemon by pid and destroys the bus.
#pragma once

#include <gtest/gtest.h>
#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/support/test_env.hpp"

namespace herald::test {

struct CliRun {
  int status = -1;  // exit status (128 + signal if killed; -1 if it timed out)
  std::string out, err;
  [[nodiscard]] std::string describe() const;  // for failure messages
  // stdout parsed as one JSON document / as JSON lines (fails the test if not JSON).
  [[nodiscard]] nlohmann::json json() const;
  [[nodiscard]] std::vector<nlohmann::json> json_lines() const;
};

// Runs `herald ARGS` with `input` on stdin, waiting at most timeout_s.
CliRun herald(const std::vector<std::string>& args, const std::string& input = "", double timeout_s = 60);
std::string herald_path();
// The same as another user (uid and gid `uid`, no supplementary groups),
// through setpriv(1); the caller must be root.
CliRun herald_as(unsigned uid, const std::vector<std::string>& args, double timeout_s = 60);
std::string heraldd_path();

// A child `herald ...` left running (consume, tail --follow): stopped by pid.
struct Background {
  pid_t pid = -1;
  int out_fd = -1, err_fd = -1;
  std::string out, err;
  // Reads what it wrote so far (non-blocking).
  void drain();
  // SIGTERM, then waits (SIGKILL after timeout_s); returns the exit status.
  int stop(double timeout_s = 10);
  // Waits up to timeout_s for it to exit by itself: its exit status, or -1
  // if it still runs (then left running for stop()).
  int wait_exit(double timeout_s);
  ~Background();
};
Background herald_background(const std::vector<std::string>& args);

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;
  // `herald --bus <bus> ARGS`
  CliRun h(std::vector<std::string> args, const std::string& input = "", double timeout_s = 60);
  Background hb(std::vector<std::string> args);
  // The daemon's pid as the registry records it (0 if none is running).
  long daemon_pid();
  void stop_daemon();  // by pid: SIGTERM, bounded wait
  const std::string& bus() const { return guard_->bus(); }
  std::unique_ptr<BusGuard> guard_;
};

}  // namespace herald::test
