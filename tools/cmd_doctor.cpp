// herald doctor [--fix]: what can go wrong with a bus on this host, checked
// read-only: leftover segments (and whether any process still maps them),
// registered topics whose segments are gone, stalled or unrepaired claims,
// lossless groups nobody consumes, full DLQs, permissions of the run
// directory and the segments, free space in /dev/shm. --fix removes
// leftovers no process maps. Exit 1 when a problem was found.
#include <dirent.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <set>

#include "runtime/src/daemon_client.hpp"
#include "runtime/src/run_dir.hpp"
#include "tools/cli.hpp"

namespace herald::tools {

namespace {

enum class Level { kOk, kWarn, kProblem };

struct Check {
  Level level = Level::kOk;
  std::string what;  // the check
  std::string detail;
};

// pid -> the /dev/shm names it maps (from /proc/*/maps), for names in `want`.
std::map<std::string, std::set<long>> mappers(const std::set<std::string>& want) {
  std::map<std::string, std::set<long>> out;
  if (want.empty()) return out;
  DIR* d = ::opendir("/proc");
  if (d == nullptr) return out;
  while (dirent* e = ::readdir(d)) {
    char* end = nullptr;
    const long pid = std::strtol(e->d_name, &end, 10);
    if (pid <= 0 || *end != '\0') continue;
    std::ifstream maps(std::string("/proc/") + e->d_name + "/maps");
    std::string line;
    while (std::getline(maps, line)) {
      const auto at = line.find("/dev/shm/");
      if (at == std::string::npos) continue;
      std::string name = line.substr(at + 9);
      if (const auto sp = name.find(' '); sp != std::string::npos) name.resize(sp);  // " (deleted)"
      if (want.count(name) != 0) out[name].insert(pid);
    }
  }
  ::closedir(d);
  return out;
}

std::string pids_text(const std::set<long>& pids) {
  std::string s;
  for (long p : pids) s += (s.empty() ? "" : ", ") + std::to_string(p);
  return s;
}

std::string mode_text(std::uint32_t m) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04o", m);
  return buf;
}

void check_segments(const Context& ctx, bool fix, std::vector<Check>& out, std::uint64_t* herald_bytes) {
  auto segs = bus_segments(ctx.bus());
  if (!segs) {
    out.push_back({Level::kProblem, "segments", segs.error().message()});
    return;
  }
  std::set<std::string> leftovers;
  std::size_t registered = 0;
  for (const SegmentInfo& s : *segs) {
    *herald_bytes += s.bytes;
    if (s.name.empty()) {
      out.push_back({Level::kProblem, "segments",
                     "topic '" + s.topic + "' is registered but its " + s.kind +
                         " segment is gone; delete it with 'herald topic delete " + s.topic + " --force'"});
      continue;
    }
    if (!s.registered) leftovers.insert(s.name);
    else ++registered;
    if (s.registered && s.expected_mode != 0 && s.mode != s.expected_mode)
      out.push_back({Level::kWarn, "permissions",
                     "/dev/shm/" + s.name + " has mode " + mode_text(s.mode) + ", expected " +
                         mode_text(s.expected_mode) + " (chmod it, or re-create the topic)"});
    if (s.registered && s.uid != ::geteuid() && ::geteuid() != 0)
      out.push_back({Level::kWarn, "permissions",
                     "/dev/shm/" + s.name + " belongs to uid " + std::to_string(s.uid) + ", not to you"});
  }
  const auto users = mappers(leftovers);
  for (const std::string& name : leftovers) {
    auto it = users.find(name);
    if (it != users.end()) {
      out.push_back({Level::kWarn, "leftover segment",
                     "/dev/shm/" + name + " is not in the registry but pids " + pids_text(it->second) +
                         " still map it (stop them, then 'herald doctor --fix')"});
    } else if (fix) {
      const bool removed = ::shm_unlink(("/" + name).c_str()) == 0;
      out.push_back({removed ? Level::kOk : Level::kProblem, "leftover segment",
                     (removed ? "removed /dev/shm/" : "could not remove /dev/shm/") + name +
                         (removed ? " (no process mapped it)" : std::string(": ") + std::strerror(errno))});
    } else {
      out.push_back({Level::kProblem, "leftover segment",
                     "/dev/shm/" + name + " is not in the registry and no process maps it; remove it with "
                                          "'herald doctor --fix'"});
    }
  }
  if (leftovers.empty())
    out.push_back({Level::kOk, "segments", std::to_string(registered) + " segments, all registered"});
}

// Whether the running daemon answers on its socket: a process that lives
// but does not answer (stopped with SIGSTOP, stuck) holds every new
// producer and consumer of the bus, which wait for its hello. Empty when it
// answers; else why not. Waits up to the client's hello timeout (5 s).
std::string daemon_silence(const Context& ctx) {
  auto dir = detail::run_dir();
  if (!dir) return dir.error().message();
  std::string found = *dir;
  auto c = detail::connect_bus(&found, ctx.bus());
  return c ? std::string() : c.error().message();
}

void check_stats(const Context& ctx, const BusStats& s, std::vector<Check>& out) {
  if (!s.daemon.alive) {
    out.push_back({Level::kWarn, "daemon",
                   "heraldd is not running: producers and consumers keep working, but joins, rebalances and repairs "
                   "of dead producers wait ('herald daemon start')"});
  } else if (s.daemon.stopped) {
    out.push_back({Level::kProblem, "daemon",
                   "heraldd pid " + std::to_string(s.daemon.pid) +
                       " is stopped (SIGSTOP or a debugger): new producers and consumers wait for it; 'kill -CONT " +
                       std::to_string(s.daemon.pid) + "'"});
  } else if (const std::string why = daemon_silence(ctx); !why.empty()) {
    out.push_back({Level::kProblem, "daemon",
                   "heraldd pid " + std::to_string(s.daemon.pid) + " is running but does not answer (" + why +
                       "): new producers and consumers wait for it. Stopped (SIGSTOP) or stuck? 'kill -CONT " +
                       std::to_string(s.daemon.pid) + "', or 'kill " + std::to_string(s.daemon.pid) +
                       "' and 'herald daemon start'"});
  } else {
    out.push_back({Level::kOk, "daemon", "heraldd pid " + std::to_string(s.daemon.pid) + " is running and answers"});
  }
  std::size_t claims = 0, groups = 0;
  for (const TopicStats& t : s.topics) {
    if (!t.error.empty()) {
      // Typically a topic whose creator died half-way (its segments are
      // registered but never got their header): deleting it is the repair.
      out.push_back({Level::kProblem, "topic",
                     "topic '" + t.name + "' cannot be read: " + t.error + "; if it was never finished (its creator "
                     "was killed), 'herald topic delete " + t.name + " --force' removes it"});
      continue;
    }
    for (const PartitionStats& p : t.partition_stats)
      for (const StalledClaim& c : p.stalled) {
        ++claims;
        const std::string where = t.name + ":" + std::to_string(p.partition) + " at " + std::to_string(c.position);
        if (c.owner_alive)
          out.push_back({Level::kWarn, "stalled claim",
                         "pid " + std::to_string(c.pid) + " (tid " + std::to_string(c.tid) + ") has held a claim on " +
                             where + " for " + format_duration_ns(c.held_ns) +
                             "; readers of that partition wait for it (is the process stopped?)"});
        else
          out.push_back({Level::kProblem, "stalled claim",
                         "dead pid " + std::to_string(c.pid) + " left an unfinished claim on " + where +
                             (s.daemon.alive ? "; heraldd should repair it shortly"
                                             : "; start heraldd ('herald daemon start') to repair it")});
      }
    // Stopped processes: alive, so nothing repairs or replaces them, and
    // what waits on them waits until someone continues them.
    auto member_state = [&](std::int64_t pid) -> std::string {
      for (const MemberStats& m : t.members)
        if (m.pid == pid) {
          if (!m.alive) return "dead";
          if (m.stopped) return "stopped (SIGSTOP or a debugger; 'kill -CONT " + std::to_string(pid) + "')";
          return m.in_poll ? "waiting in poll" : "in its handler for " + format_duration_ns(m.since_last_poll_ns);
        }
      return "not attached";
    };
    for (const MemberStats& m : t.members)
      if (m.alive && m.stopped && !m.group.empty())
        out.push_back({Level::kProblem, "stopped member",
                       "pid " + std::to_string(m.pid) + ", a member of group '" + m.group + "' of topic '" + t.name +
                           "', is stopped (SIGSTOP or a debugger): its partitions wait, and heraldd does not move "
                           "them while it lives; 'kill -CONT " + std::to_string(m.pid) + "' or stop it"});
    for (const ProducerSlotStats& p : t.producers)
      if (p.alive && p.stopped)
        out.push_back({Level::kWarn, "stopped producer",
                       "pid " + std::to_string(p.pid) + " (tid " + std::to_string(p.tid) + "), a producer of topic '" +
                           t.name + "', is stopped (SIGSTOP or a debugger); 'kill -CONT " + std::to_string(p.pid) +
                           "'"});
    // Producers waiting for room: say which gating group holds them and
    // what its reader is doing.
    for (const PartitionStats& p : t.partition_stats) {
      if (p.parked_producers == 0) continue;
      const GroupStats* slowest = nullptr;
      const GroupPartitionStats* at = nullptr;
      for (const GroupStats& g : t.groups)
        if (g.gating && !g.internal)
          for (const GroupPartitionStats& gp : g.partitions)
            if (gp.partition == p.partition && (at == nullptr || gp.lag_bytes > at->lag_bytes)) {
              slowest = &g;
              at = &gp;
            }
      std::string who = "no gating group is behind (a claim left open? see the claims check)";
      if (slowest != nullptr)
        who = "group '" + slowest->name + "' is " + format_bytes(static_cast<double>(at->lag_bytes)) +
              " behind there; " +
              (at->owner_pid != 0 ? "its reader, pid " + std::to_string(at->owner_pid) + ", is " + member_state(at->owner_pid)
                                  : std::string("no member reads it"));
      out.push_back({Level::kProblem, "back-pressure",
                     std::to_string(p.parked_producers) + " producer(s) of topic '" + t.name + "' wait for room in partition " +
                         std::to_string(p.partition) + ": " + who});
    }
    for (const GroupStats& g : t.groups) {
      if (g.internal) continue;
      ++groups;
      if (g.members == 0 && g.gating && g.lag_bytes > 0) {
        const bool lossless = g.policy == Policy::kLossless;
        out.push_back({lossless ? Level::kProblem : Level::kWarn, "dead group",
                       "group '" + g.name + "' of topic '" + t.name + "' is " + policy_name(g.policy) +
                           " with no live member and " + std::to_string(g.lag_events) + " events behind: " +
                           (lossless ? "producers stop when it is a ring behind; start a consumer or 'herald groups "
                                       "delete " + t.name + " " + g.name + "'"
                                     : s.daemon.alive ? "it stops gating after its lag-out grace"
                                                      : "it would stop gating after its lag-out grace, but only heraldd "
                                                        "demotes it ('herald daemon start')")});
      }
      for (const GroupPartitionStats& p : g.partitions)
        if (p.dlq_stalled)
          out.push_back({Level::kProblem, "full DLQ",
                         "group '" + g.name + "' of topic '" + t.name + "', partition " + std::to_string(p.partition) +
                             ": a dead letter waits for room; 'herald dlq redrive' or 'herald dlq purge " + t.name +
                             " --group " + g.name + "'"});
    }
  }
  if (claims == 0) out.push_back({Level::kOk, "claims", "no stalled or unrepaired claims"});
  out.push_back({Level::kOk, "groups", std::to_string(groups) + " groups checked"});
}

void check_run_dir(const Context& ctx, std::vector<Check>& out) {
  auto dir = detail::run_dir();
  if (!dir) {
    out.push_back({Level::kProblem, "run dir", dir.error().message()});
    return;
  }
  struct stat st{};
  if (::lstat(dir->c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    out.push_back({Level::kProblem, "run dir", *dir + " is not a directory"});
    return;
  }
  std::string d = *dir + " (mode " + mode_text(st.st_mode & 07777) + ", uid " + std::to_string(st.st_uid) + ")";
  if (*dir == "/tmp/herald" && (st.st_mode & 01777) != 01777)
    out.push_back({Level::kWarn, "run dir", d + ": a shared /tmp/herald should be mode 1777"});
  else if (::access(dir->c_str(), W_OK | X_OK) != 0)
    out.push_back({Level::kProblem, "run dir", d + " is not writable by you; set HERALD_RUN_DIR"});
  else
    out.push_back({Level::kOk, "run dir", d});
  const std::string sock = detail::socket_path(*dir, ctx.bus());
  if (::lstat(sock.c_str(), &st) == 0 && !S_ISSOCK(st.st_mode))
    out.push_back({Level::kProblem, "run dir", sock + " is not a socket; remove it"});
}

void check_space(const BusStats* s, std::uint64_t herald_bytes, std::vector<Check>& out) {
  struct statvfs vfs{};
  if (::statvfs("/dev/shm", &vfs) != 0) {
    out.push_back({Level::kProblem, "/dev/shm", std::string("statvfs: ") + std::strerror(errno)});
    return;
  }
  const std::uint64_t free = static_cast<std::uint64_t>(vfs.f_bavail) * vfs.f_frsize;
  const std::uint64_t total = static_cast<std::uint64_t>(vfs.f_blocks) * vfs.f_frsize;
  // The largest topic of the bus; with none, a default topic (4
  // partitions x 16 MiB).
  std::uint64_t largest = 0;
  bool any = false;
  if (s != nullptr)
    for (const TopicStats& t : s->topics) {
      largest = std::max(largest, t.segment_bytes);
      any = true;
    }
  if (!any) largest = 4ull * (16ull << 20);
  const std::string d = format_bytes(static_cast<double>(free)) + " free of " + format_bytes(static_cast<double>(total)) +
                        "; this bus uses " + format_bytes(static_cast<double>(herald_bytes)) +
                        (any ? "; its largest topic needs " : "; a topic of the default size needs ") +
                        format_bytes(static_cast<double>(largest));
  if (free < largest)
    out.push_back({Level::kProblem, "/dev/shm", d + ": creating another such topic would fail (kNoSpace)"});
  else if (free < 4 * largest)
    out.push_back({Level::kWarn, "/dev/shm", d + ": room for fewer than 4 more such topics"});
  else
    out.push_back({Level::kOk, "/dev/shm", d});
}

int doctor(const Context& ctx, bool fix) {
  std::vector<Check> checks;
  std::uint64_t herald_bytes = 0;
  auto s = read_stats(ctx.bus());
  if (!s && s.error().code != Errc::kNotFound) checks.push_back({Level::kProblem, "registry", s.error().message()});
  if (!s && s.error().code == Errc::kNotFound)
    checks.push_back({Level::kOk, "registry", "bus '" + ctx.bus() + "' has no registry (never used, or destroyed)"});
  if (s) check_stats(ctx, *s, checks);
  check_segments(ctx, fix, checks, &herald_bytes);
  check_run_dir(ctx, checks);
  check_space(s ? &*s : nullptr, herald_bytes, checks);
  std::size_t problems = 0, warnings = 0;
  for (const Check& c : checks) {
    problems += c.level == Level::kProblem ? 1 : 0;
    warnings += c.level == Level::kWarn ? 1 : 0;
  }
  if (ctx.json) {
    nlohmann::json arr = nlohmann::json::array();
    for (const Check& c : checks)
      arr.push_back({{"check", c.what},
                     {"status", c.level == Level::kOk ? "ok" : c.level == Level::kWarn ? "warn" : "problem"},
                     {"detail", c.detail}});
    print_json_line({{"bus", ctx.bus()}, {"problems", problems}, {"warnings", warnings}, {"checks", std::move(arr)}});
  } else {
    const Style st{ctx.tty};
    std::printf("%sherald doctor%s  bus '%s'\n", st.bold(), st.reset(), ctx.bus().c_str());
    for (const Check& c : checks) {
      const char* tag = c.level == Level::kOk ? "ok     " : c.level == Level::kWarn ? "warn   " : "PROBLEM";
      const char* col = c.level == Level::kOk ? st.green() : c.level == Level::kWarn ? st.yellow() : st.red();
      std::printf("  %s%s%s  %-17s %s\n", col, tag, st.reset(), c.what.c_str(), c.detail.c_str());
    }
    std::printf("%zu problem(s), %zu warning(s)\n", problems, warnings);
  }
  std::fflush(stdout);
  if (problems > 0)
    return runtime_error("doctor found " + std::to_string(problems) + " problem(s) on bus '" + ctx.bus() +
                         "'; each line above says what to do");
  return 0;
}

}  // namespace

void add_doctor_command(CLI::App& app, Context& ctx) {
  static bool fix = false;
  auto* cmd = app.add_subcommand("doctor", "check the bus for leftovers, stalled claims, dead groups, permissions and space");
  cmd->add_flag("--fix", fix, "remove leftover segments that no process maps");
  ctx.on(cmd, [&ctx] { return doctor(ctx, fix); });
}

}  // namespace herald::tools
