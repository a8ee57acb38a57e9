#include "runtime/src/daemon_client.hpp"

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <vector>

#include "runtime/src/run_dir.hpp"
#include "shm/clock.hpp"
#include "shm/names.hpp"

extern char** environ;

namespace herald::detail {

namespace {

std::uint64_t now_ms() { return shm::monotonic_ns() / 1'000'000; }

bool executable(const std::string& p) { return !p.empty() && ::access(p.c_str(), X_OK) == 0; }

}  // namespace

Result<std::unique_ptr<DaemonClient>> DaemonClient::connect(const std::string& socket_path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof addr.sun_path)
    return fail(Errc::kInvalidArgument, "socket path " + socket_path + " is too long");
  std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return fail(Errc::kIo, std::string("socket: ") + std::strerror(errno));
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    const int e = errno;
    ::close(fd);
    return fail(Errc::kDaemonUnavailable, "no heraldd answers on " + socket_path + " (" + std::strerror(e) + ")");
  }
  // Who listens: the run directory may be a shared /tmp/herald, where
  // another user can bind a socket under the bus's name before its daemon
  // does (or after removing its socket) and answer in its place. A real
  // heraldd runs as root, as us, or as the bus's owner (the user who made
  // its registry).
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    const int e = errno;
    ::close(fd);
    return fail(Errc::kIo, "SO_PEERCRED on " + socket_path + ": " + std::strerror(e));
  }
  if (cred.uid != 0 && cred.uid != ::geteuid()) {
    const std::string base = socket_path.substr(socket_path.rfind('/') + 1);
    const std::string bus = base.size() > 5 ? base.substr(0, base.size() - 5) : base;  // <bus>.sock
    struct stat st{};
    const bool owner = ::stat(("/dev/shm/" + shm::registry_segment_name(bus)).c_str(), &st) == 0 && st.st_uid == cred.uid;
    if (!owner) {
      ::close(fd);
      return fail(Errc::kPermissionDenied,
                  "the process listening on " + socket_path + " (pid " + std::to_string(cred.pid) + ", uid " +
                      std::to_string(cred.uid) + ") is not a heraldd of bus '" + bus +
                      "': it runs as neither root, this user, nor the bus's owner; remove the socket, or set "
                      "HERALD_RUN_DIR to a directory of your own");
    }
  }
  std::unique_ptr<DaemonClient> c(new DaemonClient());
  c->fd_ = fd;
  auto hello = c->call({{"op", "hello"}, {"pid", ::getpid()}, {"client", "herald-runtime 0.1"}}, kHelloTimeoutMs);
  if (!hello) {
    if (hello.error().code == Errc::kTimeout)
      return fail(Errc::kTimeout, "heraldd accepts connections on " + socket_path + " but did not answer within " +
                                      std::to_string(kHelloTimeoutMs) + " ms");
    return fail(std::move(hello).error().with_context("hello to heraldd"));
  }
  c->epoch_ = control::get_u64_or(*hello, "epoch", 0);
  c->daemon_pid_ = static_cast<long>(control::get_u64_or(*hello, "daemon_pid", 0));
  return c;
}

DaemonClient::~DaemonClient() {
  if (fd_ >= 0) ::close(fd_);
}

Result<nlohmann::json> DaemonClient::call(nlohmann::json request, int timeout_ms) {
  std::lock_guard lock(mu_);
  if (broken_) return fail(Errc::kDaemonUnavailable, "the connection to heraldd was lost");
  const std::uint64_t id = next_id_++;
  request["v"] = control::kVersion;
  request["id"] = id;
  const std::string frame = control::encode(request);
  if (frame.size() - 4 > control::kMaxFrame) return fail(Errc::kInvalidArgument, "request too large for the control protocol");
  std::size_t sent = 0;
  while (sent < frame.size()) {
    const ssize_t n = ::send(fd_, frame.data() + sent, frame.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      broken_ = true;
      return fail(Errc::kDaemonUnavailable, std::string("heraldd went away: ") + std::strerror(errno));
    }
    sent += static_cast<std::size_t>(n);
  }
  const std::uint64_t deadline = now_ms() + static_cast<std::uint64_t>(timeout_ms);
  for (;;) {
    while (auto body = reader_.next()) {
      auto j = control::parse(*body);
      if (!j) {
        broken_ = true;
        return fail(Errc::kProtocol, "malformed response from heraldd: " + j.error().detail);
      }
      if (control::get_u64_or(*j, "id", 0) != id) continue;  // a stale response
      if (!control::get_bool_or(*j, "ok", false)) return fail(control::response_error(*j));
      return std::move(j).value();
    }
    if (!reader_.error().empty()) {
      broken_ = true;
      return fail(Errc::kProtocol, "heraldd sent a bad frame: " + reader_.error());
    }
    const std::uint64_t now = now_ms();
    if (now >= deadline) return fail(Errc::kTimeout, "heraldd did not answer within " + std::to_string(timeout_ms) + " ms");
    pollfd pfd{fd_, POLLIN, 0};
    const int pr = ::poll(&pfd, 1, static_cast<int>(deadline - now));
    if (pr < 0 && errno == EINTR) continue;
    if (pr <= 0) continue;
    char buf[16384];
    const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      broken_ = true;
      return fail(Errc::kDaemonUnavailable, "heraldd closed the connection");
    }
    reader_.feed(buf, static_cast<std::size_t>(n));
  }
}

Result<std::unique_ptr<DaemonClient>> connect_bus(std::string* run_dir, const std::string& bus) {
  auto c = DaemonClient::connect(socket_path(*run_dir, bus));
  if (c || c.error().code != Errc::kDaemonUnavailable) return c;
  if (const char* env = std::getenv("HERALD_RUN_DIR"); env != nullptr && *env != '\0') return c;
  for (const char* other : {"/run/herald", "/tmp/herald"}) {
    if (*run_dir == other) continue;
    const std::string sock = socket_path(other, bus);
    if (::access(sock.c_str(), F_OK) != 0) continue;
    auto o = DaemonClient::connect(sock);
    if (o || o.error().code != Errc::kDaemonUnavailable) {
      *run_dir = other;
      return o;
    }
  }
  return c;
}

namespace {
constexpr std::string_view kLockHeld = "' already has a running heraldd holding its lock (";
}  // namespace

std::string lock_held_error(const std::string& bus, const std::string& holder, const std::string& lock_path) {
  return "bus '" + bus + std::string(kLockHeld) + holder + ", " + lock_path + ")";
}
bool is_lock_held_error(std::string_view start_error) { return start_error.find(kLockHeld) != std::string_view::npos; }

long daemon_lock_holder(const std::string& run_dir, const std::string& bus) {
  const int fd = ::open(daemon_lock_path(run_dir, bus).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char buf[32] = {};
  const ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
  ::close(fd);
  if (n <= 0) return 0;
  char* end = nullptr;
  const long pid = std::strtol(buf, &end, 10);
  return pid > 0 && end != buf ? pid : 0;
}

namespace {

// A process's state (shm::process_state), in words.
std::string process_state(long pid) {
  const char state = shm::process_state(static_cast<pid_t>(pid));
  switch (state) {
    case 0: return "gone";
    case 'T': return "stopped";
    case 't': return "stopped by a debugger";
    case 'D': return "in uninterruptible sleep";
    case 'Z': return "a zombie";
    case 'R': return "running";
    case 'S': return "sleeping";
    default: return std::string("state ") + state;
  }
}

}  // namespace

Error silent_daemon_error(const std::string& run_dir, const std::string& bus, const Error& why) {
  const long pid = daemon_lock_holder(run_dir, bus);
  if (pid <= 0)
    return Error{Errc::kTimeout, why.detail + " (bus '" + bus + "'; no pid in " + daemon_lock_path(run_dir, bus) +
                                     "): new producers and consumers need its answer"};
  const std::string p = std::to_string(pid);
  const std::string state = process_state(pid);
  std::string what = shm::process_stopped(static_cast<pid_t>(pid))
                         ? "'kill -CONT " + p + "' to resume it, or 'kill -9 " + p + "' and 'herald daemon start'"
                         : "'kill " + p + "' and 'herald daemon start' if it stays silent";
  return Error{Errc::kTimeout, "heraldd for bus '" + bus + "' (pid " + p + ", " + state + ") " +
                                   (why.detail.rfind("heraldd ", 0) == 0 ? why.detail.substr(8) : why.detail) +
                                   ": new producers and consumers need its answer; " + what};
}

std::string start_error_in_log(const std::string& log, std::uint64_t from) {
  std::ifstream in(log);
  if (!in) return {};
  in.seekg(static_cast<std::streamoff>(from));
  const std::string tag = "heraldd: error: ";
  for (std::string line; std::getline(in, line);)
    if (const auto at = line.find(tag); at != std::string::npos) return line.substr(at + tag.size());
  return {};
}

bool autostart_enabled() {
  const char* v = std::getenv("HERALD_NO_AUTOSTART");
  return v == nullptr || *v == '\0' || std::strcmp(v, "0") == 0;
}

std::string daemon_binary() {
  if (const char* env = std::getenv("HERALD_DAEMON"); env != nullptr && *env != '\0') return env;
  char self[PATH_MAX];
  const ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  if (n > 0) {
    std::string dir(self, static_cast<std::size_t>(n));
    dir = dir.substr(0, dir.rfind('/'));
    if (executable(dir + "/heraldd")) return dir + "/heraldd";
  }
#ifdef HERALD_BUILD_DAEMON_PATH
  if (executable(HERALD_BUILD_DAEMON_PATH)) return HERALD_BUILD_DAEMON_PATH;
#endif
#ifdef HERALD_INSTALL_DAEMON_PATH
  if (executable(HERALD_INSTALL_DAEMON_PATH)) return HERALD_INSTALL_DAEMON_PATH;
#endif
  return "heraldd";
}

Result<std::unique_ptr<DaemonClient>> start_daemon(const std::string& bus, const std::string& run_dir, int timeout_ms) {
  const std::string bin = daemon_binary();
  const std::string log = daemon_log_path(run_dir, bus);
  // Where this start's lines begin: a daemon that cannot start says why
  // there and exits, which is reported at once, not after the wait below.
  struct stat log_st{};
  const std::uint64_t log_from = ::stat(log.c_str(), &log_st) == 0 ? static_cast<std::uint64_t>(log_st.st_size) : 0;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  posix_spawn_file_actions_addclosefrom_np(&fa, 3);  // the daemon inherits none of our descriptors
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID);
  std::vector<std::string> args = {bin, "--daemonize", "--bus", bus, "--run-dir", run_dir};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  const int r = ::posix_spawnp(&pid, bin.c_str(), &fa, &attr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (r != 0)
    return fail(Errc::kDaemonUnavailable, "could not start heraldd (" + bin + "): " + std::strerror(r) +
                                              "; set HERALD_DAEMON to its path, or HERALD_NO_AUTOSTART=1 to run without it");
  // --daemonize: this child forks the daemon and exits at once; reap it so
  // no zombie is left (init adopts the daemon).
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  const std::string sock = socket_path(run_dir, bus);
  const std::uint64_t deadline = now_ms() + static_cast<std::uint64_t>(timeout_ms);
  Error last{Errc::kDaemonUnavailable, "heraldd did not start"};
  std::string lost_race;
  while (now_ms() < deadline) {
    auto c = DaemonClient::connect(sock);
    if (c) return c;
    // Another heraldd holds the bus (ours exits on its lock) but is silent.
    if (c.error().code == Errc::kTimeout) return fail(silent_daemon_error(run_dir, bus, c.error()));
    if (c.error().code == Errc::kPermissionDenied) return fail(std::move(c).error());  // an impostor listens
    last = std::move(c).error();
    if (const std::string why = start_error_in_log(log, log_from); !why.empty()) {
      // Ours lost the lock to another client's heraldd, started a moment
      // before: that one answers as soon as it listens, so wait for it
      // (failing here failed ~3 % of attaches racing after a daemon died).
      // Any other reason is final.
      if (!is_lock_held_error(why))
        return fail(Errc::kDaemonUnavailable, "heraldd could not start: " + why + " (see " + log + ")");
      lost_race = why;
    }
    ::usleep(5'000);  // polling for the daemon's socket to appear, bounded by the deadline
  }
  if (!lost_race.empty())
    return fail(Errc::kDaemonUnavailable, "heraldd could not start: " + lost_race + ", and that one did not answer on " +
                                              sock + " within " + std::to_string(timeout_ms) + " ms (see " + log + ")");
  return fail(Errc::kDaemonUnavailable, "started heraldd (" + bin + ") but it did not answer on " + sock + " within " +
                                            std::to_string(timeout_ms) + " ms; see " + log + " (" + last.detail + ")");
}

}  // namespace herald::detail
