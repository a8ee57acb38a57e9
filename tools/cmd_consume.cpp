// herald consume TOPIC --group G   (a group member; at-least-once)
// herald tail TOPIC                (a group-less reader; never holds producers back)
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <cstdlib>
#include <chrono>
#include <deque>
#include <optional>
#include <set>

#include "tools/cli.hpp"
#include "tools/exec_handler.hpp"

namespace herald::tools {

namespace {

std::uint64_t mono_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<std::uint64_t>(ts.tv_nsec);
}

void print_event(const Context& ctx, const EventView& e) {
  if (ctx.json) {
    print_json_line(event_json(e));
    return;
  }
  // Raw to a pipe or file (binary payloads stay intact); to a terminal,
  // control characters and bytes that are not UTF-8 are shown escaped.
  const std::string_view raw = e.payload_text();
  std::string shown;
  const std::string_view d = ctx.terminal ? std::string_view(shown = terminal_text(raw)) : raw;
  std::fwrite(d.data(), 1, d.size(), stdout);
  std::fputc('\n', stdout);
}

// Stops at --count or --timeout of idleness or a signal; returns false to stop.
struct Budget {
  std::uint64_t count = 0;       // 0: unlimited
  std::uint64_t idle_ns = 0;     // 0: wait forever
  std::uint64_t done = 0;
  std::uint64_t last_event = mono_ns();
  [[nodiscard]] std::size_t room(std::size_t max) const {
    return count == 0 ? max : static_cast<std::size_t>(std::min<std::uint64_t>(max, count - done));
  }
  [[nodiscard]] bool finished() const { return count != 0 && done >= count; }
  [[nodiscard]] bool idle_expired() const { return idle_ns != 0 && mono_ns() - last_event >= idle_ns; }
  [[nodiscard]] std::chrono::nanoseconds slice() const {
    std::uint64_t s = 200'000'000ull;  // wake up this often to notice signals
    if (idle_ns != 0) {
      const std::uint64_t waited = mono_ns() - last_event;
      s = std::min(s, waited >= idle_ns ? 1 : idle_ns - waited);
    }
    return std::chrono::nanoseconds(s);
  }
};

// ---- consume -------------------------------------------------------------------

struct ConsumeArgs {
  std::string topic, group;
  std::string from = "earliest";
  bool reset = false;
  std::uint64_t count = 0;
  std::uint64_t timeout_ns = 0;
  std::uint32_t max_deliveries = 5;
  std::string exec;
  bool exec_given = false;  // --exec was on the command line (even empty)
  std::uint64_t exec_timeout_ns = 30'000'000'000ull;
  std::uint64_t retry_backoff_ns = 100'000'000ull;
  std::string policy;
};

bool group_exists(const Context& ctx, const std::string& topic, const std::string& group) {
  StatsOptions o;
  o.topic = topic;
  o.dlq_depth = false;
  o.lag_time = false;
  auto s = read_stats(ctx.bus(), o);
  if (!s) return false;
  for (const TopicStats& t : s->topics)
    if (t.name == topic)
      for (const GroupStats& g : t.groups)
        if (g.name == group) return true;
  return false;
}

int consume(const Context& ctx, const ConsumeArgs& a) {
  const Where where = where_or_usage(a.from, "--from");
  if (a.exec_given && a.exec.find_first_not_of(" \t") == std::string::npos)
    usage_error("--exec needs a command (an empty one would acknowledge every event unhandled)");
  if (a.exec_timeout_ns == 0) usage_error("--exec-timeout must be more than zero");
  auto bus = ctx.attach();
  if (!bus) return runtime_error(bus.error());
  const bool existed = group_exists(ctx, a.topic, a.group);
  if (existed && a.reset) {
    auto r = where.kind == Where::Kind::kPosition
                 ? bus->reset_group(a.topic, a.group, where.at.partition, to_offset(where), true)
                 : bus->reset_group(a.topic, a.group, to_offset(where), true);
    if (!r) return runtime_error(r.error(), "reset group '" + a.group + "' to " + a.from);
  }
  if (where.kind == Where::Kind::kPosition && !existed) {
    // Checked before the group exists: a refused --from must not leave a
    // new group behind (on a lossless topic it would gate the producers).
    // A group-less reader resolves the position the way seek() will.
    ConsumerOptions probe;
    probe.start = Offset::at(where.at.position);
    probe.partitions = {where.at.partition};
    if (auto r = bus->consumer(a.topic, probe); !r) {
      if (r.error().code == Errc::kNotFound)
        return runtime_error(r.error().detail + "; create it with 'herald topic create " + a.topic + "'");
      return runtime_error(r.error(), "--from " + a.from);
    }
  }
  ConsumerOptions co;
  co.group = a.group;
  co.start = where.kind == Where::Kind::kPosition ? Offset::earliest() : to_offset(where);
  co.max_deliveries = a.max_deliveries;
  // Printing: an event is handled once its line reached stdout, so commit
  // only after the flush (a consumer killed by SIGPIPE or a crash before it
  // gets the batch again). --exec: each event is acknowledged by its command.
  if (a.exec.empty()) co.commit_mode = CommitMode::kManual;
  co.retry.initial = std::chrono::milliseconds(a.retry_backoff_ns / 1'000'000);
  co.retry.max = std::max(co.retry.max, co.retry.initial);  // "doubles each time, at most 10 s" or the first wait
  if (co.retry.initial > kMaxRetryWait) usage_error("--retry-backoff is longer than a year");
  if (a.policy == "lossless") co.policy = Policy::kLossless;
  else if (a.policy == "lossy") co.policy = Policy::kLossy;
  else if (a.policy == "lag-out") co.policy = Policy::kLagOut;
  // Events overwritten before the group read them (a lossy or demoted group
  // lapped, history from before a new group existed) are never silent.
  co.on_gap = [topic = a.topic, group = a.group](const GapReport& g) {
    std::fprintf(stderr,
                 "herald: warning: group '%s' skipped %llu bytes of events on partition %u of '%s' "
                 "(positions %llu..%llu were overwritten before it read them)\n",
                 group.c_str(), static_cast<unsigned long long>(g.bytes), g.partition, topic.c_str(),
                 static_cast<unsigned long long>(g.from), static_cast<unsigned long long>(g.to));
  };
  if (!a.exec.empty()) {
    // A handler may run up to --exec-timeout; it must not be taken for stuck.
    co.max_poll_interval = std::chrono::milliseconds(a.exec_timeout_ns / 1'000'000 + 30'000);
  }
  auto c = bus->consumer(a.topic, co);
  if (!c) {
    if (c.error().code == Errc::kNotFound)
      return runtime_error(c.error().detail + "; create it with 'herald topic create " + a.topic + "'");
    return runtime_error(c.error(), "consume '" + a.topic + "' as group '" + a.group + "'");
  }
  if (where.kind == Where::Kind::kPosition && !existed) {
    // A new group starting at PART:POS: the other partitions start at the
    // earliest event; move that one partition once it is ours.
    const std::uint64_t until = mono_ns() + 5'000'000'000ull;
    for (;;) {
      const auto as = c->assignment();
      if (std::find(as.begin(), as.end(), where.at.partition) != as.end()) break;
      if (mono_ns() > until)
        return runtime_error("partition " + std::to_string(where.at.partition) + " of '" + a.topic +
                             "' was not assigned to this member (another member owns it); stop the others or use "
                             "'herald groups reset'");
      (void)c->poll([](const EventView&) { return HandlerResult::failure("not yet"); }, 0,
                    std::chrono::milliseconds(20));
    }
    if (auto r = c->seek(where.at.partition, Offset::at(where.at.position)); !r)
      return runtime_error(r.error(), "--from " + a.from);
  }
  install_stop_signals();
  if (!a.exec.empty()) ::signal(SIGPIPE, SIG_IGN);  // a script that does not read its stdin
  Budget b{a.count, a.timeout_ns};
  std::uint64_t handled = 0;
  while (!b.finished() && !stop_requested()) {
    const std::uint64_t before = c->stats().dead_lettered;
    auto n = c->poll(
        [&](const EventView& e) -> HandlerResult {
          if (a.exec.empty()) {
            print_event(ctx, e);
            return {};
          }
          std::fflush(stdout);
          ExecResult r = run_exec(a.exec, e, a.exec_timeout_ns);
          if (r.ok) return {};
          std::fprintf(stderr, "herald: %s:%u:%llu delivery %u failed: %s\n", a.topic.c_str(), e.partition(),
                       static_cast<unsigned long long>(e.position()), e.delivery(), r.reason.c_str());
          return nack("--exec command failed: " + r.reason);
        },
        // --exec: one event per poll, so the cursor moves after each one
        // (a command takes milliseconds; a poll, nanoseconds). With a
        // batch, a lossless topic's producers waited for the whole batch
        // of slow commands, and a killed consumer's successor ran them all
        // again.
        b.room(a.exec.empty() ? 1024 : 1), b.slice());
    if (std::fflush(stdout) != 0 || std::ferror(stdout))
      return runtime_error(std::string("write to stdout failed: ") + std::strerror(errno) +
                           "; the last batch was not committed and will be delivered again");
    if (n && a.exec.empty()) {
      if (auto cr = c->commit(); !cr && cr.error().code != Errc::kFenced) return runtime_error(cr.error(), "commit");
    }
    if (!n) {
      if (n.error().code == Errc::kClosed) return runtime_error(n.error().detail);
      return runtime_error(n.error(), "consume '" + a.topic + "'");
    }
    const std::uint64_t dead = c->stats().dead_lettered - before;
    if (dead > 0)
      std::fprintf(stderr, "herald: %s moved to the dead-letter topic %s.dlq.%s (see 'herald dlq list %s --group %s')\n",
                   counted(dead, "event").c_str(), a.topic.c_str(), a.group.c_str(), a.topic.c_str(), a.group.c_str());
    b.done += *n + dead;
    handled += *n;
    if (*n + dead > 0) b.last_event = mono_ns();
    else if (b.idle_expired()) break;
  }
  if (auto r = c->commit(); !r && r.error().code != Errc::kFenced) return runtime_error(r.error(), "final commit");
  const ConsumerStats st = c->stats();
  if (ctx.tty || st.failures > 0)
    std::fprintf(stderr, "herald: consumed %s (%s, %llu dead-lettered)\n", counted(handled, "event").c_str(),
                 counted(st.failures, "failed delivery", "failed deliveries").c_str(),
                 static_cast<unsigned long long>(st.dead_lettered));
  if (a.count != 0 && b.done < a.count && !stop_requested())
    return runtime_error("got " + std::to_string(b.done) + " of " + std::to_string(a.count) +
                         " events before --timeout " + format_duration_ns(a.timeout_ns) + " passed without events");
  return 0;
}

// ---- tail ------------------------------------------------------------------------

struct TailArgs {
  std::string topic;
  std::string from;
  std::uint64_t last = 0;
  bool follow = false;
};

int tail(const Context& ctx, const TailArgs& a) {
  if (!a.from.empty() && a.last != 0) usage_error("give --from or --last, not both");
  const Where where = where_or_usage(a.from.empty() ? "earliest" : a.from, "--from");
  StatsOptions so;
  so.topic = a.topic;
  so.dlq_depth = false;
  so.lag_time = false;
  auto s = read_stats(ctx.bus(), so);
  if (!s) return runtime_error(s.error());
  const TopicStats* t = nullptr;
  for (const TopicStats& x : s->topics)
    if (x.name == a.topic) t = &x;
  if (t == nullptr)
    return runtime_error("topic '" + a.topic + "' does not exist on bus '" + s->bus + "'; see 'herald topic list'");
  if (!t->error.empty()) return runtime_error("topic '" + a.topic + "' cannot be read: " + t->error);
  std::vector<std::uint64_t> tails;
  for (const PartitionStats& p : t->partition_stats) tails.push_back(p.tail);
  if (where.kind == Where::Kind::kPosition && where.at.partition >= tails.size())
    usage_error("--from " + a.from + ": topic '" + a.topic + "' has " + counted(tails.size(), "partition"));

  // A group-less reader needs no daemon: tail never starts one.
  ::setenv("HERALD_NO_AUTOSTART", "1", 1);
  auto bus = ctx.attach();
  if (!bus) return runtime_error(bus.error());
  ConsumerOptions co;
  co.start = to_offset(where);
  if (where.kind == Where::Kind::kPosition) co.partitions = {where.at.partition};
  // tail never holds producers back, so a ring that laps it (a slow
  // terminal, a stopped tail -f) overwrites events it has not printed: say
  // so, at most once a second (a ring lapping a busy tail overruns it
  // thousands of times a second), with the totals since the last warning.
  struct Skipped {
    std::uint64_t bytes = 0, gaps = 0, last_ns = 0;
    std::set<std::uint32_t> partitions;
  } skipped;
  auto warn_skipped = [&](bool now) {
    if (skipped.gaps == 0) return;
    const auto now_ns = static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
            .count());
    if (!now && skipped.last_ns != 0 && now_ns - skipped.last_ns < 1'000'000'000) return;
    std::string parts;
    for (std::uint32_t p : skipped.partitions) parts += (parts.empty() ? "" : ",") + std::to_string(p);
    std::fprintf(stderr,
                 "herald: warning: tail skipped %s of events on partition%s %s of '%s' (%llu overrun%s: "
                 "overwritten before it read them)\n",
                 format_bytes(static_cast<double>(skipped.bytes)).c_str(), skipped.partitions.size() > 1 ? "s" : "",
                 parts.c_str(), a.topic.c_str(), static_cast<unsigned long long>(skipped.gaps),
                 skipped.gaps == 1 ? "" : "s");
    skipped = Skipped{0, 0, now_ns, {}};
  };
  co.on_gap = [&skipped](const GapReport& g) {
    skipped.bytes += g.bytes;
    skipped.gaps += 1;
    skipped.partitions.insert(g.partition);
  };
  auto c = bus->consumer(a.topic, co);
  if (!c) return runtime_error(c.error(), "tail '" + a.topic + "'");
  install_stop_signals();

  // What is retained (up to the tails seen at start), kept per partition in
  // order and printed merged by time; --last N keeps the last N of it.
  std::vector<std::deque<Event>> kept(tails.size());
  const std::vector<std::uint32_t> parts = c->assignment();
  // Events retained when tail looked at the topic, overwritten before the
  // reader started (a busy small ring): earliest is past them.
  for (std::uint32_t p : parts)
    if (where.kind == Where::Kind::kEarliest && c->position(p) > tails[p])
      co.on_gap(GapReport{p, tails[p], c->position(p), c->position(p) - tails[p]});
  // (Events after the tails arrived after tail started: --follow prints them.)
  auto read = read_to_tails(
      *c, tails,
      [&](const EventView& e) {
        kept[e.partition()].push_back(e.to_event());
        if (a.last != 0 && kept[e.partition()].size() > a.last) kept[e.partition()].pop_front();
      },
      std::chrono::milliseconds(50));
  if (!read) return runtime_error(read.error(), "tail '" + a.topic + "'");
  warn_skipped(/*now=*/true);
  std::vector<const Event*> merged;
  std::vector<std::size_t> idx(kept.size(), 0);
  for (;;) {
    int best = -1;
    for (std::size_t p = 0; p < kept.size(); ++p) {
      if (idx[p] >= kept[p].size()) continue;
      if (best < 0 || kept[p][idx[p]].time_ns() < kept[static_cast<std::size_t>(best)][idx[static_cast<std::size_t>(best)]].time_ns())
        best = static_cast<int>(p);
    }
    if (best < 0) break;
    merged.push_back(&kept[static_cast<std::size_t>(best)][idx[static_cast<std::size_t>(best)]++]);
  }
  const std::size_t from = a.last != 0 && merged.size() > a.last ? merged.size() - a.last : 0;
  for (std::size_t i = from; i < merged.size(); ++i) print_event(ctx, merged[i]->view());
  std::fflush(stdout);
  if (!a.follow) return 0;
  // Whatever arrived after the start (skipped above) is printed now.
  for (std::uint32_t p : parts) {
    if (c->position(p) <= tails[p] || c->seek(p, Offset::at(tails[p]))) continue;
    // Overwritten since: what is still retained follows, and the rest is a gap.
    const std::uint64_t tail_at_start = tails[p];
    if (auto r = c->seek(p, Offset::earliest()); !r) return runtime_error(r.error(), "tail '" + a.topic + "'");
    co.on_gap(GapReport{p, tail_at_start, c->position(p), c->position(p) - tail_at_start});
  }
  while (!stop_requested()) {
    auto n = c->poll([&](const EventView& e) { print_event(ctx, e); }, 1024, std::chrono::milliseconds(200));
    std::fflush(stdout);
    warn_skipped(/*now=*/false);
    if (!n) {
      warn_skipped(/*now=*/true);
      if (n.error().code == Errc::kClosed) return runtime_error(n.error().detail);
      return runtime_error(n.error(), "tail '" + a.topic + "'");
    }
  }
  warn_skipped(/*now=*/true);
  return 0;
}

}  // namespace

void add_consume_commands(CLI::App& app, Context& ctx) {
  static ConsumeArgs a;
  auto* cmd = app.add_subcommand("consume", "consume as a member of a group (at-least-once; failures retried, then dead-lettered)");
  cmd->add_option("TOPIC", a.topic, "topic")->required();
  cmd->add_option("--group", a.group, "consumer group (made on first use)")->required()->check(name_arg("group"));
  cmd->add_option("--from", a.from,
                  "where a NEW group starts: earliest|beginning, latest|end, PARTITION:POSITION, "
                  "an RFC 3339 time or -5m")
      ->capture_default_str();
  cmd->add_flag("--reset", a.reset, "move an EXISTING group to --from first (refused while it has live members)");
  cmd->add_option("--count", a.count, "stop after N events (dead-lettered ones count)")->check(count_arg(1));
  cmd->add_option("--timeout", a.timeout_ns, "stop after this long without an event")->transform(duration_arg());
  cmd->add_option("--max-deliveries", a.max_deliveries, "deliveries of a failing event before it is dead-lettered (0: retry forever)")
      ->check(CLI::Range(0, 1000))
      ->capture_default_str();
  cmd->add_option("--exec", a.exec,
                  "run CMD (sh -c) per event: payload on stdin, envelope in HERALD_* variables; exit 0 acknowledges");
  cmd->add_option("--exec-timeout", a.exec_timeout_ns, "a CMD running longer fails (and is killed)")
      ->transform(duration_arg())
      ->default_str("30s");
  cmd->add_option("--retry-backoff", a.retry_backoff_ns, "wait before the first retry of a failed event (doubles each time)")
      ->transform(duration_arg())
      ->default_str("100ms");
  cmd->add_option("--policy", a.policy, "policy of a NEW group (default: the topic's)")
      ->check(CLI::IsMember({"lossless", "lossy", "lag-out"}));
  ctx.on(cmd, [&ctx, cmd] {
    a.exec_given = cmd->count("--exec") > 0;
    if (a.exec.empty() && a.exec_timeout_ns != 30'000'000'000ull) usage_error("--exec-timeout needs --exec");
    return consume(ctx, a);
  });

  static TailArgs t;
  auto* tail_cmd = app.add_subcommand("tail", "print retained events (group-less: never holds producers back)");
  tail_cmd->add_option("TOPIC", t.topic, "topic")->required();
  tail_cmd->add_option("--from", t.from, "earliest (default), latest, PARTITION:POSITION (that partition only), a time");
  tail_cmd->add_option("--last", t.last, "only the last N retained events")->check(count_arg(1));
  tail_cmd->add_flag("--follow,-f", t.follow, "then keep printing new events until interrupted");
  ctx.on(tail_cmd, [&ctx] { return tail(ctx, t); });
}

}  // namespace herald::tools
