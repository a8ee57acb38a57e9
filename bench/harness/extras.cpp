#include "bench/harness/extras.hpp"

#include <dirent.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstring>

#include "daemon/daemon.hpp"
#include "daemon/server.hpp"
#include "herald/herald.hpp"
#include "herald/stats.hpp"
#include "runtime/src/run_dir.hpp"
#include "shm/clock.hpp"

namespace herald::bench {

namespace {

using detail::ChildIo;
using detail::Rep;
using detail::set_error;

constexpr const char* kTopic = "repair";

RowSpec control_spec() {
  RowSpec s;
  s.count = 1;  // a short budget: these children do little
  return s;
}

int fail(ChildIo& io, const std::string& what) {
  ChildReport r;
  set_error(r, "%s", what.c_str());
  io.send(r, nullptr);
  return 1;
}

std::uint64_t cpu_ns() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  auto ns = [](const timeval& t) {
    return static_cast<std::uint64_t>(t.tv_sec) * 1'000'000'000ull + static_cast<std::uint64_t>(t.tv_usec) * 1000ull;
  };
  return ns(u.ru_utime) + ns(u.ru_stime);
}

// heraldd, embedded: serves the bus until the go pipe closes.
int daemon_child(const std::string& bus, const std::string& workdir, ChildIo& io) {
  const std::string log_path = workdir + "/heraldd.log";
  std::FILE* log = std::fopen(log_path.c_str(), "a");
  auto logger = [log](const std::string& line) {
    if (log == nullptr) return;
    std::fprintf(log, "%s\n", line.c_str());
    std::fflush(log);
  };
  daemon::Config cfg;
  cfg.bus = bus;
  cfg.run_dir = workdir;
  auto d = daemon::Daemon::open(cfg, shm::monotonic_ns, logger);
  if (!d) return fail(io, "heraldd: " + d.error().message());
  daemon::Server server(**d, herald::detail::socket_path(workdir, bus), logger);
  if (auto l = server.listen(); !l) return fail(io, "heraldd listen: " + l.error().message());
  io.ready();
  server.run(io.go_fd);
  ChildReport r;
  r.ok = 1;
  io.send(r, nullptr);
  return 0;
}

// One kill: returns kill -> consumer-sees-the-next-event in ms, or < 0.
double repair_trial(const std::string& bus, int trial, std::string* err) {
  const RowSpec spec = control_spec();
  Rep rep(spec);
  const std::string want = "after-kill-" + std::to_string(trial);
  rep.start("repair consumer", false, [&](ChildIo& io) {
    auto b = Bus::attach(bus);
    if (!b) return fail(io, "attach: " + b.error().message());
    TopicConfig cfg{.partitions = 1, .ring_bytes = 1u << 20, .max_event = 4096, .default_policy = Policy::kLossless};
    if (auto t = b->create_topic(kTopic, cfg); !t && t.error().code != Errc::kAlreadyExists)
      return fail(io, "create topic: " + t.error().message());
    auto c = b->consumer(kTopic, {.group = "repair", .policy = Policy::kLossless, .wait = Wait::kPark});
    if (!c) return fail(io, "consumer: " + c.error().message());
    io.ready();
    std::uint64_t seen = 0;
    while (seen == 0 && !io.late()) {
      auto n = c->poll([&](const EventView& e) { if (e.payload_text() == want) seen = mono_ns(); }, 16,
                       std::chrono::milliseconds(100));
      if (!n) return fail(io, "poll: " + n.error().message());
    }
    if (seen == 0) return fail(io, "the event behind the killed claim never arrived");
    ChildReport r;
    r.ok = 1;
    r.first_ns = seen;
    io.send(r, nullptr);
    return 0;
  });
  if (!rep.wait_ready()) return *err = rep.error(), -1;
  rep.start("victim producer", true, [&](ChildIo& io) {
    auto b = Bus::attach(bus);
    if (!b) return fail(io, "attach: " + b.error().message());
    auto p = b->producer(kTopic);
    if (!p) return fail(io, "producer: " + p.error().message());
    auto claim = p->claim(64, Message{.partition = 0});
    if (!claim) return fail(io, "claim: " + claim.error().message());
    io.ready();
    while (!io.late()) ::sleep(1);  // idle until SIGKILL arrives, holding the claim
    return fail(io, "was not killed");
  });
  rep.start("second producer", true, [&](ChildIo& io) {
    auto b = Bus::attach(bus);
    if (!b) return fail(io, "attach: " + b.error().message());
    auto p = b->producer(kTopic, {.deadline = std::chrono::seconds(5)});
    if (!p) return fail(io, "producer: " + p.error().message());
    io.ready();
    if (!io.wait_go()) return fail(io, "no go");
    if (auto r = p->publish(Message{.payload = want, .partition = 0}); !r)
      return fail(io, "publish: " + r.error().message());
    ChildReport r;
    r.ok = 1;
    io.send(r, nullptr);
    return 0;
  });
  if (!rep.wait_ready()) return *err = rep.error(), -1;
  const std::uint64_t killed = mono_ns();
  ::kill(rep.pid(1), SIGKILL);
  rep.go();
  rep.wait_done();
  ChildReport c, p;
  if (!rep.report(0, &c) || !c.ok) return *err = std::string("repair consumer: ") + (rep.report(0, &c) ? c.error : "no report"), -1;
  if (!rep.report(2, &p) || !p.ok) return *err = std::string("second producer: ") + (rep.report(2, &p) ? p.error : "no report"), -1;
  return static_cast<double>(c.first_ns - killed) / 1e6;
}

// A consumer parked ~1 s with nothing to read: its CPU time / wall time.
double idle_cpu(const std::string& bus, double* seconds, std::string* err) {
  const RowSpec spec = control_spec();
  Rep rep(spec);
  rep.start("idle consumer", false, [&](ChildIo& io) {
    auto b = Bus::attach(bus);
    if (!b) return fail(io, "attach: " + b.error().message());
    auto c = b->consumer(kTopic, {.group = "idle", .start = Offset::latest(), .wait = Wait::kPark});
    if (!c) return fail(io, "consumer: " + c.error().message());
    io.ready();
    if (!io.wait_go()) return fail(io, "no go");
    const std::uint64_t cpu0 = cpu_ns(), t0 = mono_ns();
    std::uint64_t events = 0;
    while (mono_ns() - t0 < 1'000'000'000ull) {
      auto n = c->poll([&](const EventView&) { ++events; }, 256, std::chrono::milliseconds(200));
      if (!n) return fail(io, "poll: " + n.error().message());
    }
    ChildReport r;
    r.ok = events == 0;
    r.received = cpu_ns() - cpu0;  // CPU ns used while parked
    r.sent = mono_ns() - t0;       // wall ns
    if (!r.ok) set_error(r, "%llu events arrived on an idle topic", static_cast<unsigned long long>(events));
    io.send(r, nullptr);
    return r.ok ? 0 : 1;
  });
  if (!rep.wait_ready()) return *err = rep.error(), -1;
  rep.go();
  rep.wait_done();
  ChildReport r;
  if (!rep.report(0, &r) || !r.ok) return *err = std::string("idle consumer: ") + (rep.report(0, &r) ? r.error : "no report"), -1;
  *seconds = static_cast<double>(r.sent) / 1e9;
  return 100.0 * static_cast<double>(r.received) / static_cast<double>(r.sent);
}

void remove_bus_objects(const std::string& bus) noexcept {
  const std::string prefix = "herald." + bus + ".";
  if (DIR* d = ::opendir("/dev/shm")) {
    while (dirent* e = ::readdir(d))
      if (std::strncmp(e->d_name, prefix.c_str(), prefix.size()) == 0) ::shm_unlink((std::string("/") + e->d_name).c_str());
    ::closedir(d);
  }
}

}  // namespace

Extras run_extras(bool quick, const std::string& workdir) {
  Extras x;
  x.ran = true;
  const std::string bus = "hb" + std::to_string(::getpid()) + "-heraldd";
  std::fprintf(stderr, "[heraldd] repair latency of a killed producer, idle consumer CPU ...");
  std::fflush(stderr);
  {
    const RowSpec spec = control_spec();
    Rep daemon(spec);
    daemon.start("heraldd", false, [&](ChildIo& io) { return daemon_child(bus, workdir, io); });
    if (!daemon.wait_ready()) {
      x.repair_error = x.idle_error = daemon.error();
    } else {
      const int trials = quick ? 2 : 5;
      for (int t = 0; t < trials && x.repair_error.empty(); ++t) {
        std::string err;
        const double ms = repair_trial(bus, t, &err);
        if (ms < 0) x.repair_error = err;
        else x.repair_ms.push_back(ms);
      }
      if (x.repair_error.empty()) {
        auto st = read_stats(bus);
        if (st) {
          for (const TopicStats& t : st->topics)
            if (t.name == kTopic && !t.partition_stats.empty()) {
              x.daemon_last_repair_ms = static_cast<double>(t.partition_stats[0].last_repair_ns) / 1e6;
              x.daemon_max_repair_ms = static_cast<double>(t.partition_stats[0].max_repair_ns) / 1e6;
            }
        }
      }
      std::string err;
      const double pct = idle_cpu(bus, &x.idle_seconds, &err);
      if (pct < 0) x.idle_error = err;
      else x.idle_cpu_percent = pct;
      daemon.go();  // closes its stop pipe
      if (!daemon.wait_done() && x.repair_error.empty()) x.repair_error = "heraldd: " + daemon.error();
    }
  }
  (void)Bus::destroy(bus);
  remove_bus_objects(bus);
  std::fprintf(stderr, " done\n");
  return x;
}

}  // namespace herald::bench
