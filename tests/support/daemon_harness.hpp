// Support for the heraldd tests (tests/daemon, tests/crash, tests/fuzz):
// child processes started with posix_spawn and always stopped by pid, a
// heraldd child process, and read-only views of a topic's shared memory that
// describe its state when a bounded wait fails.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "shm/topic_map.hpp"

namespace herald::test {

// The binaries under test (paths compiled in by CMake).
std::string heraldd_path();
std::string crash_peer_path();

struct SpawnOptions {
  std::vector<std::string> argv;                            // argv[0] is the binary
  std::vector<std::pair<std::string, std::string>> set_env; // added to (or replacing in) our environment
  std::vector<std::string> unset_env;
  std::string stdout_path;  // empty: /dev/null
  std::string stderr_path;  // empty: inherit ours (the test's output)
};

// A child process we started. Stopped BY PID: the destructor sends SIGKILL
// to a child still running and reaps it, so a failing test leaves nothing.
class Child {
 public:
  Child() = default;
  static Child spawn(const SpawnOptions& o);  // pid() == -1 on failure (printed)
  Child(Child&& o) noexcept { *this = std::move(o); }
  Child& operator=(Child&& o) noexcept;
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  ~Child();

  [[nodiscard]] pid_t pid() const noexcept { return pid_; }
  [[nodiscard]] bool valid() const noexcept { return pid_ > 0; }
  // Reaps it if it exited (never blocks); true while it runs.
  bool running();
  // Waits (bounded) for it to exit; the wait status, or nullopt on timeout.
  std::optional<int> wait(double seconds);
  void signal(int sig) const;
  // SIGKILL and reap.
  void kill_now();
  // SIGSTOP, and wait (bounded) until it is stopped: while it is, nothing it
  // would do to shared memory can happen. False if it did not stop in time.
  bool freeze(double seconds = 20);
  [[nodiscard]] std::optional<int> status() const noexcept { return status_; }
  // Its process start time (captured at spawn), for shm::process_alive.
  [[nodiscard]] std::uint64_t start_time() const noexcept { return start_time_; }

 private:
  pid_t pid_ = -1;
  std::uint64_t start_time_ = 0;
  std::optional<int> status_;
};

// "exited 0", "killed by signal 9", ...
std::string describe_status(int status);
bool exited_with(const std::optional<int>& status, int code);
bool killed_by(const std::optional<int>& status, int sig);

std::string read_file(const std::string& path);
// The last `lines` lines of a file (daemon logs in failure messages).
std::string tail_of(const std::string& path, std::size_t lines = 40);

// heraldd running as a child: --foreground, stderr to a log file in the run
// directory. Killed by pid (SIGKILL) if a test leaves it running.
class Heraldd {
 public:
  // Starts it; extra_env is added to its environment (e.g. HERALD_CRASH_AT).
  static std::unique_ptr<Heraldd> start(const std::string& bus, const std::string& run_dir,
                                        std::vector<std::string> extra_args = {},
                                        std::vector<std::pair<std::string, std::string>> extra_env = {});
  // Waits until this process answers on the bus socket (hello names its pid).
  bool wait_ready(double seconds);
  [[nodiscard]] pid_t pid() const noexcept { return child_.pid(); }
  Child& child() noexcept { return child_; }
  [[nodiscard]] const std::string& log_path() const noexcept { return log_; }
  [[nodiscard]] std::string log() const { return read_file(log_); }
  // SIGTERM, then a bounded wait: the exit status (nullopt: still running, killed).
  std::optional<int> stop(double seconds = 10);

 private:
  Child child_;
  std::string bus_, run_dir_, log_;
};

// A topic's segments mapped for inspection (heraldd-style: both RW, so the
// test can also forge states; tests that only look never write).
std::shared_ptr<shm::TopicMap> attach_topic(const std::string& bus, const std::string& topic);

// One line per partition: tail, claim slots in use (slot, state, position,
// size, committed_to), producer slot owners, repair and stall statistics.
std::string describe_partitions(const shm::TopicMap& m);
// Groups and readers: cursors (generation, position), owners, assignments,
// waiter bits.
std::string describe_groups(const shm::TopicMap& m);

// True when no producer slot belongs to `pid` (or is being reclaimed) and
// no claim slot is in use by such a slot: a dead producer was repaired.
bool producer_repaired(const shm::TopicMap& m, pid_t pid);

// The positions of the aborted records and their total bytes in [from, to)
// of partition p, walking commit words (only valid while the range is still
// in the ring). Returns false (and says why in *why) if the walk meets an
// uncommitted record or a bad size before `to`.
struct LogWalk {
  std::uint64_t records = 0;
  std::uint64_t aborted_records = 0;
  std::uint64_t aborted_bytes = 0;
  std::uint64_t end = 0;
};
bool walk_log(const shm::TopicMap& m, std::uint32_t p, std::uint64_t from, std::uint64_t to, LogWalk* out,
              std::string* why);

// The environment variable as a number, or `fallback`.
std::uint64_t env_u64(const char* name, std::uint64_t fallback);

}  // namespace herald::test
