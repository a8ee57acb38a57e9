// The client end of the control protocol: a Unix-socket connection to the
// bus's heraldd, used synchronously by API calls (no background thread).
// Starting the daemon when none answers (autostart) lives here too.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "herald/result.hpp"
#include "runtime/src/control.hpp"

namespace herald::detail {

class DaemonClient {
 public:
  // Connects and says hello: kDaemonUnavailable if nothing listens on the
  // socket (no daemon: start one), kTimeout if a daemon accepts the
  // connection but does not answer the hello within kHelloTimeoutMs (it is
  // stopped with SIGSTOP, or stuck: starting another would not help).
  static Result<std::unique_ptr<DaemonClient>> connect(const std::string& socket_path);
  static constexpr int kHelloTimeoutMs = 5'000;
  ~DaemonClient();
  DaemonClient(const DaemonClient&) = delete;
  DaemonClient& operator=(const DaemonClient&) = delete;

  // Sends a request (v and id are filled in) and waits for its response;
  // an "ok": false response becomes the Error it carries.
  Result<nlohmann::json> call(nlohmann::json request, int timeout_ms = 10'000);
  [[nodiscard]] bool broken() const noexcept { return broken_; }
  [[nodiscard]] std::uint64_t epoch() const noexcept { return epoch_; }
  [[nodiscard]] long daemon_pid() const noexcept { return daemon_pid_; }

 private:
  DaemonClient() = default;
  int fd_ = -1;
  std::uint64_t next_id_ = 1;
  std::uint64_t epoch_ = 0;
  long daemon_pid_ = 0;
  bool broken_ = false;
  control::FrameReader reader_;
  std::mutex mu_;
};

// Connects to the bus's daemon: in *run_dir first, then (unless
// HERALD_RUN_DIR chooses one directory for everyone) in the other default
// run directory, /run/herald or /tmp/herald. Which one a user gets depends
// on whether it may write /run/herald, so root and other users of one bus
// would otherwise each look only in their own and start a daemon each.
// *run_dir becomes the directory of the daemon that answered (or the
// error's, for a silent daemon or an impostor); kDaemonUnavailable when
// none listens in either.
Result<std::unique_ptr<DaemonClient>> connect_bus(std::string* run_dir, const std::string& bus);

// The heraldd to start: $HERALD_DAEMON, else next to this executable, else
// the build tree's, else the installed one, else "heraldd" on PATH.
std::string daemon_binary();

// Starts heraldd detached (it forks and setsid()s; stdio goes to the bus's
// log file) and waits up to timeout_ms for it to answer.
Result<std::unique_ptr<DaemonClient>> start_daemon(const std::string& bus, const std::string& run_dir,
                                                   int timeout_ms = 5'000);

// The error for a daemon that accepts connections but does not answer
// (`why`, a kTimeout from connect): names its pid (from the lock file it
// holds) and its process state from /proc ("stopped" after SIGSTOP), and
// says what to do. Keeps the code kTimeout.
Error silent_daemon_error(const std::string& run_dir, const std::string& bus, const Error& why);

// The pid written into the bus's daemon lock file by the heraldd that holds
// it, or 0.
long daemon_lock_holder(const std::string& run_dir, const std::string& bus);

// heraldd's start error when the bus's daemon lock is held (it writes it to
// its log and exits), and the test start_daemon applies to a start error in
// that log: the client whose heraldd lost the lock to another client's
// waits for that one instead of failing. One wording, kept here for both.
std::string lock_held_error(const std::string& bus, const std::string& holder, const std::string& lock_path);
bool is_lock_held_error(std::string_view start_error);

// The first "heraldd: error: ..." line written to the daemon log at or
// after byte `from` (what a daemon that could not start says before it
// exits: its lock, its socket, another live daemon), without the prefix;
// empty if there is none.
std::string start_error_in_log(const std::string& log, std::uint64_t from);

// True unless HERALD_NO_AUTOSTART is set to something other than "0".
bool autostart_enabled();

}  // namespace herald::detail
