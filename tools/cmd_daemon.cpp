// herald daemon start|stop|status, herald bus destroy
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "runtime/src/daemon_client.hpp"
#include "runtime/src/run_dir.hpp"
#include "shm/mapping.hpp"
#include "shm/names.hpp"
#include "tools/cli.hpp"

extern char** environ;

namespace herald::tools {

namespace {

std::uint64_t mono_ms() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000ull + static_cast<std::uint64_t>(ts.tv_nsec) / 1'000'000ull;
}

void sleep_ms(long ms) {
  timespec ts{ms / 1000, (ms % 1000) * 1'000'000L};
  nanosleep(&ts, nullptr);
}

// The last "metrics on http://..." line heraldd (pid) wrote to its log.
std::string metrics_url_from_log(const std::string& log, long pid) {
  std::ifstream in(log);
  std::string line, found;
  const std::string tag = "heraldd[" + std::to_string(pid) + "]: metrics on ";
  while (std::getline(in, line)) {
    const auto at = line.find(tag);
    if (at != std::string::npos) found = line.substr(at + tag.size());
  }
  return found;
}

// Alive and not a zombie: a daemon that exited stays a zombie until
// whatever adopted it reaps it, which can take a while in containers.
bool running(long pid) {
  if (::kill(static_cast<pid_t>(pid), 0) != 0) return false;
  std::ifstream st("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(st, line);
  const auto rp = line.rfind(')');
  return rp == std::string::npos || rp + 2 >= line.size() || (line[rp + 2] != 'Z' && line[rp + 2] != 'X');
}

struct StartArgs {
  std::string metrics;
  bool foreground = false;
};

int daemon_start(const Context& ctx, const StartArgs& a) {
  const std::string bus = ctx.bus();
  auto dir = detail::run_dir();
  if (!dir) return runtime_error(dir.error());
  const std::string sock = detail::socket_path(*dir, bus), log = detail::daemon_log_path(*dir, bus);
  std::string found = *dir;  // a daemon in the other default run directory counts too
  if (auto c = detail::connect_bus(&found, bus)) {
    const long pid = (*c)->daemon_pid();
    // --metrics applies when heraldd starts: asked of a running one that
    // serves none (most often one a client autostarted), say so rather
    // than report success with no metrics served.
    const std::string url = metrics_url_from_log(detail::daemon_log_path(found, bus), pid);
    if (!a.metrics.empty() && url.empty())
      return runtime_error("heraldd is already running for bus '" + bus + "' (pid " + std::to_string(pid) +
                           ") without --metrics, which applies when it starts; 'herald daemon stop' it first");
    if (ctx.json) {
      nlohmann::json j = {{"bus", bus}, {"running", true}, {"started", false}, {"pid", pid}};
      if (!url.empty()) j["metrics"] = url;
      print_json_line(j);
    } else {
      std::printf("heraldd is already running for bus '%s' (pid %ld)%s\n", bus.c_str(), pid,
                  url.empty() ? "" : ("; metrics on " + url).c_str());
    }
    return 0;
  } else if (c.error().code == Errc::kTimeout) {
    // One is running but silent: a second would only fail on its lock.
    return runtime_error(detail::silent_daemon_error(found, bus, c.error()), "");
  } else if (c.error().code != Errc::kDaemonUnavailable) {
    return runtime_error(c.error());
  }
  const std::string bin = detail::daemon_binary();
  // Where this start's lines begin in the log: a start that fails (a
  // --metrics address it cannot listen on) is reported from them at once
  // rather than after the 5 s wait for the socket.
  struct stat log_st{};
  const std::uint64_t log_from = ::stat(log.c_str(), &log_st) == 0 ? static_cast<std::uint64_t>(log_st.st_size) : 0;
  std::vector<std::string> args = {bin, a.foreground ? "--foreground" : "--daemonize", "--bus", bus, "--run-dir", *dir};
  if (!a.metrics.empty()) {
    args.emplace_back("--metrics");
    args.push_back(a.metrics);
  }
  std::vector<char*> argv;
  for (std::string& s : args) argv.push_back(s.data());
  argv.push_back(nullptr);
  if (a.foreground) {
    ::execvp(bin.c_str(), argv.data());
    return runtime_error("could not run " + bin + ": " + std::strerror(errno) + "; set HERALD_DAEMON to heraldd's path");
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  posix_spawn_file_actions_addclosefrom_np(&fa, 3);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID);
  pid_t pid = -1;
  const int rc = ::posix_spawnp(&pid, bin.c_str(), &fa, &attr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) return runtime_error("could not start " + bin + ": " + std::strerror(rc) + "; set HERALD_DAEMON to heraldd's path");
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return runtime_error("heraldd failed to start (status " + std::to_string(status) + "); see " + log);
  const std::uint64_t deadline = mono_ms() + 5000;
  for (;;) {
    auto c = detail::DaemonClient::connect(sock);
    if (c) {
      const long dpid = (*c)->daemon_pid();
      std::string url;
      if (!a.metrics.empty())
        for (int i = 0; i < 100 && (url = metrics_url_from_log(log, dpid)).empty(); ++i) sleep_ms(10);
      if (ctx.json) {
        nlohmann::json j = {{"bus", bus}, {"running", true}, {"started", true}, {"pid", dpid}, {"log", log}};
        if (!url.empty()) j["metrics"] = url;
        print_json_line(j);
      } else {
        std::printf("started heraldd for bus '%s' (pid %ld, log %s)\n", bus.c_str(), dpid, log.c_str());
        if (!url.empty()) std::printf("metrics on %s\n", url.c_str());
      }
      return 0;
    }
    if (const std::string why = detail::start_error_in_log(log, log_from); !why.empty())
      return runtime_error("heraldd failed to start: " + why + " (see " + log + ")");
    if (mono_ms() > deadline)
      return runtime_error("heraldd did not answer on " + sock + " within 5s: " + c.error().detail + "; see " + log);
    sleep_ms(5);  // polling for the socket to appear, bounded by the deadline
  }
}

int daemon_stop(const Context& ctx) {
  const std::string bus = ctx.bus();
  auto dir = detail::run_dir();
  if (!dir) return runtime_error(dir.error());
  std::string found = *dir;
  auto c = detail::connect_bus(&found, bus);
  if (!c && c.error().code == Errc::kTimeout)
    return runtime_error(detail::silent_daemon_error(found, bus, c.error()), "");
  if (!c && c.error().code != Errc::kDaemonUnavailable) return runtime_error(c.error());
  if (!c) {
    if (ctx.json) print_json_line({{"bus", bus}, {"running", false}, {"stopped", false}});
    else std::printf("heraldd is not running for bus '%s'\n", bus.c_str());
    return 0;
  }
  const long pid = (*c)->daemon_pid();
  auto r = (*c)->call({{"op", "shutdown"}});
  if (!r && r.error().code != Errc::kDaemonUnavailable) return runtime_error(r.error(), "stop heraldd");
  const std::uint64_t deadline = mono_ms() + 10'000;
  while (pid > 0 && running(pid)) {
    if (mono_ms() > deadline)
      return runtime_error("heraldd (pid " + std::to_string(pid) + ") did not exit within 10s; kill it with 'kill " +
                           std::to_string(pid) + "'");
    sleep_ms(5);  // polling for the daemon's exit, bounded
  }
  if (ctx.json) print_json_line({{"bus", bus}, {"running", false}, {"stopped", true}, {"pid", pid}});
  else std::printf("stopped heraldd for bus '%s' (pid %ld); the bus stays in shared memory\n", bus.c_str(), pid);
  return 0;
}

int daemon_status(const Context& ctx) {
  const std::string bus = ctx.bus();
  auto dir = detail::run_dir();
  if (!dir) return runtime_error(dir.error());
  std::string found = *dir;
  auto c = detail::connect_bus(&found, bus);
  const std::string sock = detail::socket_path(found, bus), log = detail::daemon_log_path(found, bus);
  if (!c && c.error().code != Errc::kDaemonUnavailable && c.error().code != Errc::kTimeout)
    return runtime_error(c.error());
  // Running but silent (stopped with SIGSTOP, stuck): not "not running".
  const bool silent = !c && c.error().code == Errc::kTimeout;
  if (ctx.json) {
    nlohmann::json j = {{"bus", bus}, {"running", static_cast<bool>(c) || silent}, {"socket", sock}, {"log", log}};
    if (c) {
      j["pid"] = (*c)->daemon_pid();
      j["epoch"] = (*c)->epoch();
      j["answers"] = true;
    } else if (silent) {
      j["pid"] = detail::daemon_lock_holder(found, bus);
      j["answers"] = false;
      j["error"] = detail::silent_daemon_error(found, bus, c.error()).detail;
    }
    print_json_line(j);
  } else if (c) {
    std::printf("heraldd is running for bus '%s': pid %ld, epoch %llu\n  socket %s\n  log    %s\n", bus.c_str(),
                (*c)->daemon_pid(), static_cast<unsigned long long>((*c)->epoch()), sock.c_str(), log.c_str());
  }
  if (silent) return runtime_error(detail::silent_daemon_error(found, bus, c.error()), "");
  if (!c)
    return runtime_error("heraldd is not running for bus '" + bus + "'; start it with 'herald daemon start' (producers "
                         "and consumers work without it; joins, rebalances and repairs wait)");
  return 0;
}

int bus_destroy(const Context& ctx) {
  const std::string bus = ctx.bus();
  // Idempotent either way; the message says whether there was a bus.
  auto dir = detail::run_dir();
  const bool existed = !shm::Segment::list(shm::bus_segment_prefix(bus)).empty() ||
                       (dir && (::access(detail::socket_path(*dir, bus).c_str(), F_OK) == 0 ||
                                ::access(detail::daemon_log_path(*dir, bus).c_str(), F_OK) == 0));
  auto r = Bus::destroy(bus);
  if (!r) return runtime_error(r.error(), "destroy bus '" + bus + "'");
  if (ctx.json) print_json_line({{"bus", bus}, {"destroyed", true}, {"existed", existed}});
  else if (!existed) std::printf("bus '%s' does not exist: nothing to destroy\n", bus.c_str());
  else std::printf("destroyed bus '%s': its daemon, topics, segments and files are gone\n", bus.c_str());
  return 0;
}

}  // namespace

void add_daemon_commands(CLI::App& app, Context& ctx) {
  auto* daemon = app.add_subcommand("daemon", "start, stop and check heraldd, the bus's supervisor");
  daemon->require_subcommand(1);
  static StartArgs a;
  auto* start = daemon->add_subcommand("start", "start heraldd for the bus (detached; its log is <run dir>/<bus>.log)");
  start->add_option("--metrics", a.metrics, "also serve Prometheus metrics on ADDRESS:PORT (port 0 picks one)")
      ->check(CLI::Validator(
          [](std::string& v) -> std::string {
            // The form only; whether the address can be listened on is
            // heraldd's to find out (and report).
            const auto colon = v.rfind(':');
            if (colon == std::string::npos) return "'" + v + "' is not ADDRESS:PORT (e.g. 127.0.0.1:9464, or :0)";
            const std::string port = v.substr(colon + 1);
            if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos ||
                std::stoul(port) > 65535)
              return "'" + v + "': the port must be 0..65535 (0 picks one)";
            return {};
          },
          "ADDRESS:PORT"));
  start->add_flag("--foreground", a.foreground, "run in the foreground, logging to stderr");
  ctx.on(start, [&ctx] { return daemon_start(ctx, a); });
  auto* stop = daemon->add_subcommand("stop", "stop heraldd (the bus and its events stay)");
  ctx.on(stop, [&ctx] { return daemon_stop(ctx); });
  auto* status = daemon->add_subcommand("status", "is heraldd running? (exit 1 if not)");
  ctx.on(status, [&ctx] { return daemon_status(ctx); });

  auto* bus = app.add_subcommand("bus", "the bus itself");
  bus->require_subcommand(1);
  auto* destroy = bus->add_subcommand("destroy", "stop heraldd and remove every topic, segment and file of the bus");
  ctx.on(destroy, [&ctx] { return bus_destroy(ctx); });
}

}  // namespace herald::tools
