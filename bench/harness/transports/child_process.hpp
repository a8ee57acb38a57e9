// A daemon a peer's Host starts and owns (iox-roudi, redis-server): spawned
// with posix_spawn (the coordinator is single threaded, but the rule is
// posix_spawn for helpers), its stdout/stderr in a log file in the row's
// workdir, stopped by pid (SIGTERM, a bounded wait, then SIGKILL).
//
// Only the process that spawned it stops it: a forked child of the
// coordinator that runs a copy of the Host's destructor leaves it alone.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench/harness/transport.hpp"

extern char** environ;

namespace herald::bench {

class ChildProcess {
 public:
  ChildProcess() = default;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  ~ChildProcess() { stop(); }

  // Starts argv[0] (looked up in PATH) with stdin from /dev/null and
  // stdout+stderr appended to `log_path`.
  void start(const std::vector<std::string>& argv, const std::string& log_path) {
    log_path_ = log_path;
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    // No core file from a daemon that aborts (it inherits RLIMIT_CORE = 0).
    rlimit core{};
    const bool have_core = getrlimit(RLIMIT_CORE, &core) == 0;
    if (have_core) {
      const rlimit none{0, core.rlim_max};
      setrlimit(RLIMIT_CORE, &none);
    }
    pid_t pid = -1;
    const int rc = posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), environ);
    if (have_core) setrlimit(RLIMIT_CORE, &core);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) throw BenchError("cannot start " + argv[0] + ": " + std::strerror(rc));
    pid_ = pid;
    owner_ = getpid();
  }

  pid_t pid() const noexcept { return pid_; }
  // True in the process that started the daemon, while it has not been stopped.
  bool owned() const noexcept { return pid_ > 0 && owner_ == getpid(); }

  // True while the daemon runs; false (and reaped) once it has exited.
  bool alive() {
    if (pid_ <= 0 || owner_ != getpid()) return false;
    int status = 0;
    const pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == 0) return true;
    pid_ = -1;
    return false;
  }

  // The last lines of the daemon's log, for error messages.
  std::string log_tail(std::size_t max_chars = 600) const {
    std::ifstream in(log_path_);
    std::stringstream ss;
    ss << in.rdbuf();
    std::string s = ss.str();
    if (s.size() > max_chars) s = "..." + s.substr(s.size() - max_chars);
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
    return s;
  }

  // SIGTERM, up to `grace` for it to exit, then SIGKILL. Idempotent.
  // True when it exited normally on SIGTERM (or was not running here);
  // false when it died of a signal or had to be killed, so whatever it
  // cleans up on exit may be left behind.
  bool stop(std::chrono::milliseconds grace = std::chrono::milliseconds(5000)) noexcept {
    if (pid_ <= 0 || owner_ != getpid()) return true;
    kill(pid_, SIGTERM);
    const auto deadline = std::chrono::steady_clock::now() + grace;
    bool clean = true;
    int status = 0;
    for (;;) {
      const pid_t r = waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        clean = WIFEXITED(status);
        break;
      }
      if (r < 0 && errno != EINTR) break;
      if (std::chrono::steady_clock::now() >= deadline) {
        kill(pid_, SIGKILL);
        waitpid(pid_, &status, 0);
        clean = false;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    pid_ = -1;
    return clean;
  }

 private:
  pid_t pid_ = -1;
  pid_t owner_ = -1;
  std::string log_path_;
};

// True when `exe` is an executable file in one of PATH's folders.
inline bool in_path(const std::string& exe) {
  const char* path = std::getenv("PATH");
  std::string dirs = path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin";
  std::size_t at = 0;
  while (at <= dirs.size()) {
    const std::size_t end = std::min(dirs.find(':', at), dirs.size());
    const std::string dir = end > at ? dirs.substr(at, end - at) : ".";
    if (::access((dir + "/" + exe).c_str(), X_OK) == 0) return true;
    at = end + 1;
  }
  return false;
}

// Polls `ready()` every few ms until it is true, the daemon dies, or
// `timeout` passes; throws a BenchError naming `what` otherwise.
template <class Ready>
void wait_until_ready(ChildProcess& child, const std::string& what, std::chrono::milliseconds timeout,
                      Ready&& ready) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (ready()) return;
    if (!child.alive())
      throw BenchError(what + " exited during start-up; its log: " + child.log_tail());
    if (std::chrono::steady_clock::now() >= deadline)
      throw BenchError(what + " not ready after " + std::to_string(timeout.count()) + " ms; its log: " +
                       child.log_tail());
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

}  // namespace herald::bench
