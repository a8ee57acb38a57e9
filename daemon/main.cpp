// heraldd: the supervisor daemon of one bus (the library does the work).
#include <signal.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <ctime>

#include "daemon/daemon.hpp"
#include "daemon/metrics.hpp"
#include "daemon/server.hpp"
#include "runtime/src/run_dir.hpp"
#include "shm/clock.hpp"

namespace {
void log_line(const std::string& msg) {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  tm t{};
  gmtime_r(&ts.tv_sec, &t);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &t);
  std::fprintf(stderr, "%s.%03ldZ heraldd[%d]: %s\n", stamp, ts.tv_nsec / 1'000'000, ::getpid(), msg.c_str());
  std::fflush(stderr);
}
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"heraldd: the herald supervisor daemon (one per bus)"};
  herald::daemon::Config cfg;
  const char* env_bus = std::getenv("HERALD_BUS");
  cfg.bus = env_bus != nullptr && *env_bus != '\0' ? env_bus : "default";
  bool foreground = false, daemonize = false;
  double grace_s = 10;
  std::string metrics;
  app.add_option("--bus", cfg.bus, "bus name (default: $HERALD_BUS, else 'default')");
  app.add_option("--run-dir", cfg.run_dir, "socket and lock directory (default: $HERALD_RUN_DIR, /run/herald, /tmp/herald)");
  app.add_flag("--foreground", foreground, "stay in the foreground, log to stderr (the default unless --daemonize)");
  app.add_flag("--daemonize", daemonize, "detach: fork, the parent exits at once (used by autostart)");
  app.add_option("--metrics", metrics, "serve Prometheus metrics on ADDRESS:PORT (port 0 picks one; the URL is logged)");
  app.add_option("--rejoin-grace", grace_s, "seconds to keep assignments for members after a restart")->check(CLI::Range(0.0, 3600.0));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);
    std::fprintf(stderr, "heraldd: error: %s\n", e.what());
    return 2;
  }
  (void)foreground;
  cfg.rejoin_grace_ns = static_cast<std::uint64_t>(grace_s * 1e9);
  if (cfg.run_dir.empty()) {
    auto dir = herald::detail::run_dir();
    if (!dir) return std::fprintf(stderr, "heraldd: error: %s\n", dir.error().message().c_str()), 1;
    cfg.run_dir = *dir;
  }
  if (daemonize) {
    const pid_t child = ::fork();
    if (child < 0) return std::perror("heraldd: fork"), 1;
    if (child > 0) return 0;  // the parent: the caller reaps us, init adopts the daemon
    ::setsid();
  }
  // One fd per connection and per watched process: take the hard limit
  // (autostart inherits whatever soft limit the first client had, often
  // 1024). Running short is survivable (PidWatch polls, the server refuses
  // connections), but slower.
  if (rlimit rl{}; ::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    (void)::setrlimit(RLIMIT_NOFILE, &rl);
  }
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigprocmask(SIG_BLOCK, &mask, nullptr);
  const int stop_fd = ::signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
  ::signal(SIGPIPE, SIG_IGN);

  auto d = herald::daemon::Daemon::open(cfg, herald::shm::monotonic_ns, log_line);
  if (!d) return std::fprintf(stderr, "heraldd: error: %s\n", d.error().detail.c_str()), 1;
  const std::string sock = herald::detail::socket_path(cfg.run_dir, cfg.bus);
  herald::daemon::Server server(**d, sock, log_line);
  if (auto r = server.listen(); !r) return std::fprintf(stderr, "heraldd: error: %s\n", r.error().message().c_str()), 1;
  log_line("listening on " + sock);
  std::unique_ptr<herald::daemon::MetricsServer> metrics_server;  // its own thread; stopped before we return
  if (!metrics.empty()) {
    auto m = herald::daemon::MetricsServer::start(metrics, cfg.bus, log_line);
    if (!m) return std::fprintf(stderr, "heraldd: error: %s\n", m.error().detail.c_str()), 1;
    metrics_server = std::move(m).value();
  }
  server.run(stop_fd);
  if ((*d)->destroy_requested()) {
    (*d)->destroy_bus();
  } else {
    ::unlink(sock.c_str());
    log_line("stopped; the bus state stays in shared memory");
  }
  return 0;
}
