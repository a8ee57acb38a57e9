// herald stat [--watch [--interval D] [--iterations N]]: the bus as shared
// memory shows it (herald::read_stats, read-only: it works while heraldd is
// down), like aeron-stat and top. On a terminal --watch redraws in place;
// otherwise it prints one table set per interval (JSON lines with --json).
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <map>
#include <optional>

#include "tools/cli.hpp"

namespace herald::tools {

namespace {

struct Rates {
  std::map<std::string, double> topic_events;              // topic -> events/s
  std::map<std::string, double> topic_bytes;               // topic -> bytes/s
  std::map<std::string, double> group_events;              // topic/group -> events/s consumed
  std::map<std::pair<std::string, std::uint32_t>, double> producer_events;  // (topic, slot) -> events/s
};

Rates rates_between(const BusStats* prev, const BusStats& cur) {
  Rates r;
  if (prev == nullptr || cur.mono_ns <= prev->mono_ns) return r;
  const double dt = static_cast<double>(cur.mono_ns - prev->mono_ns) / 1e9;
  std::map<std::string, const TopicStats*> before;
  for (const TopicStats& t : prev->topics) before[t.name] = &t;
  for (const TopicStats& t : cur.topics) {
    auto it = before.find(t.name);
    if (it == before.end() || it->second->incarnation != t.incarnation) continue;
    const TopicStats& o = *it->second;
    r.topic_events[t.name] = t.events >= o.events ? static_cast<double>(t.events - o.events) / dt : 0;
    r.topic_bytes[t.name] = t.tail_bytes >= o.tail_bytes ? static_cast<double>(t.tail_bytes - o.tail_bytes) / dt : 0;
    for (const GroupStats& g : t.groups) {
      for (const GroupStats& og : o.groups) {
        if (og.name != g.name || og.partitions.size() != g.partitions.size()) continue;
        double ev = 0;
        for (std::size_t p = 0; p < g.partitions.size(); ++p) {
          const PartitionStats& ps = t.partition_stats[p];
          const double avg = ps.events > 0 ? static_cast<double>(ps.bytes) / static_cast<double>(ps.events) : 64.0;
          const std::uint64_t a = og.partitions[p].committed, b = g.partitions[p].committed;
          if (b > a) ev += static_cast<double>(b - a) / avg;
        }
        r.group_events[t.name + "/" + g.name] = ev / dt;
      }
    }
    for (const ProducerSlotStats& p : t.producers)
      for (const ProducerSlotStats& op : o.producers)
        if (op.slot == p.slot && op.pid == p.pid && p.events >= op.events)
          r.producer_events[{t.name, p.slot}] = static_cast<double>(p.events - op.events) / dt;
  }
  return r;
}

std::string rate_text(const std::map<std::string, double>& m, const std::string& k, bool have) {
  if (!have) return "-";
  auto it = m.find(k);
  return it == m.end() ? "-" : format_count(it->second);
}

std::string render(const BusStats& s, const Rates& r, bool have_rates, const Style& st) {
  std::string out;
  char line[256];
  std::snprintf(line, sizeof line, "%sherald stat%s  bus '%s'  %s  ", st.bold(), st.reset(), s.bus.c_str(),
                format_time_ns(s.time_ns).c_str());
  out += line;
  if (s.daemon.alive && s.daemon.stopped)
    std::snprintf(line, sizeof line, "heraldd pid %lld %sSTOPPED%s (SIGSTOP? 'kill -CONT %lld'; joins and repairs wait)\n\n",
                  static_cast<long long>(s.daemon.pid), st.red(), st.reset(), static_cast<long long>(s.daemon.pid));
  else if (s.daemon.alive)
    std::snprintf(line, sizeof line, "heraldd pid %lld (epoch %llu)\n\n", static_cast<long long>(s.daemon.pid),
                  static_cast<unsigned long long>(s.daemon.epoch));
  else
    std::snprintf(line, sizeof line, "%sheraldd not running%s (producers and consumers keep working)\n\n", st.yellow(),
                  st.reset());
  out += line;
  if (s.topics.empty()) return out + "no topics (create one with 'herald topic create NAME')\n";

  Table topics({"TOPIC", "PARTS", "EVENTS", "EVENTS/S", "BYTES/S", "RETAINED", "ABORTED", "BP WAITS", "PRODUCERS"});
  Table groups({"TOPIC", "GROUP", "POLICY", "MEMBERS", "LAG EVENTS", "LAG BYTES", "LAG TIME", "EVENTS/S", "GAPS", "DLQ"});
  Table members({"TOPIC", "GROUP", "PID", "PARTITIONS", "STATE", "EVENTS"});
  Table producers({"TOPIC", "PID", "TID", "EVENTS", "EVENTS/S", "CLAIMS", "BP WAITS"});
  std::vector<std::string> problems;
  for (const TopicStats& t : s.topics) {
    if (!t.error.empty()) {
      problems.push_back("topic " + t.name + " cannot be read: " + t.error);
      continue;
    }
    std::uint64_t retained = 0;
    for (const PartitionStats& p : t.partition_stats) retained += p.tail - p.beginning;
    std::size_t live_producers = 0;
    for (const ProducerSlotStats& p : t.producers) live_producers += p.alive ? 1 : 0;
    topics.row({t.name + (t.dead_letter_topic ? " (dlq)" : ""), std::to_string(t.partitions), std::to_string(t.events),
                rate_text(r.topic_events, t.name, have_rates),
                have_rates && r.topic_bytes.count(t.name) ? format_bytes(r.topic_bytes.at(t.name)) : "-",
                format_bytes(static_cast<double>(retained)), std::to_string(t.aborted_records),
                std::to_string(t.backpressure_waits), std::to_string(live_producers)});
    for (const GroupStats& g : t.groups) {
      if (g.internal) continue;
      std::string dlq = std::to_string(g.dlq_depth);
      for (const GroupPartitionStats& p : g.partitions)
        if (p.dlq_stalled) {
          dlq += " STALLED";
          problems.push_back(t.name + "/" + g.name + ": partition " + std::to_string(p.partition) +
                             " waits for room in the full DLQ (redrive or purge it)");
        }
      groups.row({t.name, g.name, std::string(policy_name(g.policy)) + (g.gating ? "" : " (not gating)"),
                  std::to_string(g.members), std::to_string(g.lag_events), format_bytes(static_cast<double>(g.lag_bytes)),
                  g.lag_seconds > 0 ? format_duration_ns(static_cast<std::uint64_t>(g.lag_seconds * 1e9)) : "0",
                  rate_text(r.group_events, t.name + "/" + g.name, have_rates),
                  g.gaps == 0 ? "0" : std::to_string(g.gaps) + " (" + format_bytes(static_cast<double>(g.gap_bytes)) + ")",
                  dlq});
    }
    for (const MemberStats& m : t.members) {
      std::string parts;
      for (std::uint32_t p : m.partitions) parts += (parts.empty() ? "" : ",") + std::to_string(p);
      const std::string state = !m.alive    ? std::string(st.red()) + "dead" + st.reset()
                                : m.stopped ? std::string(st.red()) + "stopped" + st.reset()
                                : m.in_poll ? "waiting"
                                            : "busy " + format_duration_ns(m.since_last_poll_ns);
      members.row({t.name, m.group.empty() ? "(reader)" : m.group, std::to_string(m.pid), parts.empty() ? "-" : parts,
                   state, std::to_string(m.events)});
    }
    for (const ProducerSlotStats& p : t.producers) {
      std::string ev = "-";
      if (have_rates) {
        auto it = r.producer_events.find({t.name, p.slot});
        if (it != r.producer_events.end()) ev = format_count(it->second);
      }
      producers.row({t.name, std::to_string(p.pid) + (p.alive ? "" : " (dead)"), std::to_string(p.tid),
                     std::to_string(p.events), ev, std::to_string(p.claims), std::to_string(p.backpressure_waits)});
    }
    for (const PartitionStats& p : t.partition_stats) {
      for (const StalledClaim& c : p.stalled) {
        problems.push_back(t.name + ":" + std::to_string(p.partition) + ": claim at " + std::to_string(c.position) +
                           (c.owner_alive ? " held " + format_duration_ns(c.held_ns) + " by live pid " +
                                                std::to_string(c.pid) + " (tid " + std::to_string(c.tid) + ")"
                                          : " left by dead pid " + std::to_string(c.pid) + ", waiting for heraldd's repair"));
      }
    }
  }
  out += topics.render(st.on);
  if (!groups.empty()) out += "\n" + groups.render(st.on);
  if (!members.empty()) out += "\n" + members.render(st.on);
  if (!producers.empty()) out += "\n" + producers.render(st.on);
  if (!problems.empty()) {
    out += std::string("\n") + st.red() + "problems:" + st.reset() + "\n";
    for (const std::string& p : problems) out += "  " + p + "\n";
  }
  return out;
}

nlohmann::json with_rates(nlohmann::json j, const Rates& r, bool have) {
  if (!have) return j;
  for (auto& t : j["topics"]) {
    const std::string name = t["name"].get<std::string>();
    if (auto it = r.topic_events.find(name); it != r.topic_events.end()) t["events_per_s"] = it->second;
    if (auto it = r.topic_bytes.find(name); it != r.topic_bytes.end()) t["bytes_per_s"] = it->second;
    for (auto& g : t["groups"])
      if (auto it = r.group_events.find(name + "/" + g["name"].get<std::string>()); it != r.group_events.end())
        g["consumed_events_per_s"] = it->second;
  }
  return j;
}

struct StatArgs {
  bool watch = false;
  std::uint64_t interval_ns = 1'000'000'000ull;
  std::uint64_t iterations = 0;
  std::string topic;
};

int stat(const Context& ctx, const StatArgs& a) {
  if (!a.watch && a.iterations != 0) usage_error("--iterations needs --watch");
  if (a.interval_ns < 10'000'000ull) usage_error("--interval must be at least 10ms");
  StatsOptions o;
  o.topic = a.topic;
  const Style st{ctx.tty};
  std::optional<BusStats> prev;
  install_stop_signals();
  for (std::uint64_t i = 0; !stop_requested(); ++i) {
    auto s = read_stats(ctx.bus(), o);
    if (!s) return runtime_error(s.error());
    // A topic named that does not exist is an error, as in tail, groups
    // and describe (only the first look: one deleted while watching is news).
    if (i == 0 && !a.topic.empty() && s->topics.empty())
      return runtime_error("topic '" + a.topic + "' does not exist on bus '" + ctx.bus() + "'");
    const Rates r = rates_between(prev ? &*prev : nullptr, *s);
    const bool have = prev.has_value();
    if (ctx.json) {
      print_json_line(with_rates(bus_stats_json(*s), r, have), true);
    } else if (a.watch && ctx.tty) {
      const std::string screen = render(*s, r, have, st);
      std::printf("\033[H\033[2J%s\n%s(every %s; Ctrl-C quits)%s\n", screen.c_str(), st.dim(),
                  format_duration_ns(a.interval_ns).c_str(), st.reset());
      std::fflush(stdout);
    } else {
      if (i > 0) std::printf("\n");
      std::fputs(render(*s, r, have, st).c_str(), stdout);
      std::fflush(stdout);
    }
    prev = std::move(s).value();
    if (!a.watch || (a.iterations != 0 && i + 1 >= a.iterations)) break;
    // Sleep the interval in slices, so Ctrl-C quits at once.
    for (std::uint64_t slept = 0; slept < a.interval_ns && !stop_requested(); slept += 50'000'000ull) {
      const std::uint64_t d = std::min<std::uint64_t>(50'000'000ull, a.interval_ns - slept);
      timespec ts{static_cast<time_t>(d / 1'000'000'000ull), static_cast<long>(d % 1'000'000'000ull)};
      nanosleep(&ts, nullptr);
    }
  }
  return 0;
}

}  // namespace

void add_stat_command(CLI::App& app, Context& ctx) {
  static StatArgs a;
  auto* cmd = app.add_subcommand("stat", "live view of topics, rates, lag, DLQs, members and producers (reads shared memory; works without heraldd)");
  cmd->add_option("TOPIC", a.topic, "only this topic (and its dead-letter topics)");
  cmd->add_flag("--watch,-w", a.watch, "refresh every --interval (redraws on a terminal)");
  cmd->add_option("--interval", a.interval_ns, "time between refreshes")->transform(duration_arg())->default_str("1s");
  cmd->add_option("--iterations", a.iterations, "stop after N refreshes (default: until Ctrl-C)")->check(count_arg(1));
  ctx.on(cmd, [&ctx] { return stat(ctx, a); });
}

}  // namespace herald::tools
