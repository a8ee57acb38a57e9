// The client end of the control protocol: a Unix-socket connection to the
// bus's heraldd, used synchronously by API calls (no background thread).
// Starting the daemon when none answers (autostart) lives here too.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include <nlohmann/json.hpp>

#include "herald/result.hpp"
#include "runtime/src/control.hpp"

namespace herald::detail {

class DaemonClient {
 public:
  // Connects and says hello; kDaemonUnavailable if nothing answers.
  static Result<std::unique_ptr<DaemonClient>> connect(const std::string& socket_path);
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

// The heraldd to start: $HERALD_DAEMON, else next to this executable, else
// the build tree's, else the installed one, else "heraldd" on PATH.
std::string daemon_binary();

// Starts heraldd detached (it forks and setsid()s; stdio goes to the bus's
// log file) and waits up to timeout_ms for it to answer.
Result<std::unique_ptr<DaemonClient>> start_daemon(const std::string& bus, const std::string& run_dir,
                                                   int timeout_ms = 5'000);

// True unless HERALD_NO_AUTOSTART is set to something other than "0".
bool autostart_enabled();

}  // namespace herald::detail
