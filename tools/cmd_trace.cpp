// herald trace ID: one request across topics. Every retained event whose
// correlation id is ID (or, given an event id, the events of that event's
// correlation id), on every topic or the ones named, printed as the tree its
// causation ids make: what caused what, on which topic, from which source,
// how long after the first. Dead letters show up under the event they hold,
// with their reason. Group-less readers: it holds no producer back and
// needs no heraldd.
#include <algorithm>
#include <cstdio>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "tools/cli.hpp"

namespace herald::tools {

namespace {

struct TraceArgs {
  std::string id;
  std::vector<std::string> topics;
};

struct Found {
  Event event;
  bool dead_letter = false;  // a copy in a group's dead-letter topic
};

struct Scan {
  std::vector<Found> found;
  std::uint64_t events = 0;     // read, matching or not
  std::uint64_t gap_bytes = 0;  // overwritten while it read (a busy topic lapping the scan)
  std::size_t topics = 0;
  std::vector<std::string> unread;  // "topic partition P from position X": held up (an open claim)
};

// Reads each topic's retained events (up to its tails at the start) and
// keeps those `keep` accepts.
template <class Keep>
Result<Scan> scan(Bus& bus, const std::vector<TopicInfo>& topics, Keep keep) {
  Scan s;
  for (const TopicInfo& t : topics) {
    auto info = bus.describe_topic(t.name);
    if (!info) {
      if (info.error().code == Errc::kNotFound) continue;  // deleted meanwhile
      return fail(std::move(info).error());
    }
    auto c = bus.consumer(t.name, {.on_gap = [&s](const GapReport& g) { s.gap_bytes += g.bytes; }});
    if (!c) {
      if (c.error().code == Errc::kNotFound) continue;  // deleted meanwhile
      return fail(std::move(c).error());
    }
    ++s.topics;
    std::vector<std::uint64_t> tails;
    for (const PartitionInfo& p : info->partition_info) tails.push_back(p.tail);
    auto read = read_to_tails(
        *c, tails,
        [&](const EventView& e) {
          ++s.events;
          if (keep(e)) s.found.push_back({e.to_event(), t.dead_letter});
        },
        std::chrono::milliseconds(10));
    // A topic deleted meanwhile: what was read of it stands.
    if (!read && read.error().code != Errc::kClosed) return fail(std::move(read).error());
    for (std::uint32_t p : c->assignment())
      if (p < tails.size() && c->position(p) < tails[p])
        s.unread.push_back("'" + t.name + "' partition " + std::to_string(p) + " from position " +
                           std::to_string(c->position(p)));
  }
  return s;
}

// An id as EventId::to_string spells it when it parses as one (upper case,
// no dashes), else as it is.
std::string canonical_id(std::string_view id) {
  if (auto parsed = EventId::parse(id)) return parsed->to_string();
  return std::string(id);
}

std::string header_or(const Event& e, std::string_view name, std::string_view otherwise = {}) {
  const auto v = e.header(name);
  return std::string(v ? *v : otherwise);
}

int trace(const Context& ctx, const TraceArgs& a) {
  if (a.id.empty()) usage_error("ID is empty: give a correlation id or an event id");
  // Group-less readers need no daemon: trace never starts one.
  ::setenv("HERALD_NO_AUTOSTART", "1", 1);
  auto bus = ctx.attach();
  if (!bus) return runtime_error(bus.error());
  std::vector<TopicInfo> topics;
  if (a.topics.empty()) {
    auto all = bus->list_topics();
    if (!all) return runtime_error(all.error());
    topics = std::move(all).value();
  } else {
    for (const std::string& name : a.topics) {
      auto t = bus->describe_topic(name);
      if (!t) return runtime_error(t.error(), "trace");
      topics.push_back(std::move(t).value());
    }
  }
  install_stop_signals();

  // An event id (in any spelling EventId::parse takes) names its event; the
  // trace is then that event's request: the events of its correlation id,
  // and those that use the event's own id as theirs (a common convention).
  std::string correlation = a.id;
  std::string event_id;
  EventId target{};
  if (auto parsed = EventId::parse(a.id)) {
    target = *parsed;
    auto byid = scan(*bus, topics, [&](const EventView& e) { return e.id() == target; });
    if (!byid) return runtime_error(byid.error(), "trace");
    if (!byid->found.empty()) {
      event_id = target.to_string();
      correlation = std::string(byid->found.front().event.correlation_id());  // empty: none
    }
  }
  auto s = scan(*bus, topics, [&](const EventView& e) {
    if (!correlation.empty() && e.correlation_id() == correlation) return true;
    return !event_id.empty() && (e.id() == target || canonical_id(e.correlation_id()) == event_id);
  });
  if (!s) return runtime_error(s.error(), "trace");
  if (s->gap_bytes > 0)
    std::fprintf(stderr,
                 "herald: warning: %s of events were overwritten while trace read them; the trace may miss some\n",
                 format_bytes(static_cast<double>(s->gap_bytes)).c_str());
  for (const std::string& u : s->unread)
    std::fprintf(stderr,
                 "herald: warning: %s was not read to its end: an open claim holds readers there (a producer "
                 "mid-publish, or a dead one heraldd has not repaired); the trace may miss events after it\n",
                 u.c_str());
  if (s->found.empty())
    return runtime_error("no retained event has correlation id or event id '" + a.id + "' on bus '" + ctx.bus() +
                         "' (" + counted(s->events, "event") + " on " + counted(s->topics, "topic") +
                         " read); events older than a topic's ring are gone");

  // The tree: an event's parent is the event its causation id names, if
  // retained; a dead letter's is the event it holds (same id).
  std::vector<Found>& f = s->found;
  std::stable_sort(f.begin(), f.end(), [](const Found& x, const Found& y) {
    return x.event.time_ns() != y.event.time_ns() ? x.event.time_ns() < y.event.time_ns()
                                                  : x.dead_letter < y.dead_letter;
  });
  std::map<std::string, std::size_t> original;  // id -> index of its first non-DLQ copy
  for (std::size_t i = 0; i < f.size(); ++i)
    if (!f[i].dead_letter) original.emplace(f[i].event.id().to_string(), i);
  // An event's parent: the retained event its causation id names (in any
  // spelling EventId::parse takes), a dead letter's the event it holds;
  // SIZE_MAX for none.
  std::vector<std::size_t> parent(f.size(), SIZE_MAX);
  std::vector<std::vector<std::size_t>> children(f.size());
  std::vector<std::size_t> roots;
  for (std::size_t i = 0; i < f.size(); ++i) {
    const std::string key = f[i].dead_letter ? f[i].event.id().to_string() : canonical_id(f[i].event.causation_id());
    auto it = original.find(key);
    if (it != original.end() && it->second != i) {
      parent[i] = it->second;
      children[it->second].push_back(i);
    } else {
      roots.push_back(i);
    }
  }
  // The walk, depth first and iterative (a chain of 20,000 causes must not
  // overflow the stack): each event once, in tree order. Events on a
  // causation cycle, and those hanging off one, are reachable from no
  // root; each cycle is entered at one of its events (below).
  struct Step {
    std::size_t i;
    std::size_t depth;
    bool last;  // the last child of its parent
    bool root;
  };
  std::vector<Step> order;
  order.reserve(f.size());
  std::vector<bool> seen(f.size(), false);
  auto walk = [&](std::size_t root) {
    std::vector<Step> stack{{root, 0, true, true}};
    seen[root] = true;
    while (!stack.empty()) {
      const Step at = stack.back();
      stack.pop_back();
      order.push_back(at);
      const std::vector<std::size_t>& kids = children[at.i];
      for (std::size_t k = kids.size(); k-- > 0;) {
        if (seen[kids[k]]) continue;
        seen[kids[k]] = true;
        stack.push_back({kids[k], at.depth + 1, k + 1 == kids.size(), false});
      }
    }
  };
  for (std::size_t r : roots) walk(r);
  // What is left hangs off a cycle: from the earliest such event, follow
  // parents until one repeats; that one is on the cycle, and the walk from
  // it reaches the rest (the events hanging off it under their causes).
  std::vector<std::size_t> cycle_roots;
  for (std::size_t i = 0; i < f.size(); ++i) {
    if (seen[i]) continue;
    std::set<std::size_t> path;
    std::size_t j = i;
    while (parent[j] != SIZE_MAX && path.insert(j).second) j = parent[j];
    cycle_roots.push_back(j);
    walk(j);
  }
  auto parent_of = [&](const Step& st) -> std::string {
    if (st.root) return "";
    return f[st.i].dead_letter ? f[st.i].event.id().to_string() : canonical_id(f[st.i].event.causation_id());
  };
  const std::uint64_t t0 = f.front().event.time_ns();
  std::uint64_t t_last = t0;
  std::set<std::string> topic_names;
  for (const Found& x : f) {
    t_last = std::max(t_last, x.event.time_ns());
    topic_names.insert(std::string(x.event.topic()));
  }

  if (ctx.json) {
    nlohmann::json events = nlohmann::json::array();
    for (const Step& st : order) {
      nlohmann::json j = event_json(f[st.i].event.view());
      j["depth"] = st.depth;
      const std::string parent_id = parent_of(st);
      j["parent_id"] = valid_utf8(parent_id) ? parent_id : base64(parent_id);
      j["dead_letter"] = f[st.i].dead_letter;
      events.push_back(std::move(j));
    }
    nlohmann::json out;
    out["bus"] = ctx.bus();
    // What the user typed and a correlation id are bytes: JSON holds text.
    if (valid_utf8(a.id)) out["id"] = a.id;
    else out["id_base64"] = base64(a.id);
    if (valid_utf8(correlation)) out["correlation_id"] = correlation;
    else out["correlation_id_base64"] = base64(correlation);
    out["events"] = std::move(events);
    out["span_ns"] = t_last - t0;
    out["gap_bytes"] = s->gap_bytes;
    std::printf("%s\n", out.dump(2).c_str());
    return 0;
  }
  const Style st{ctx.tty};
  // Every field an event carries is anybody's bytes: shown as terminal_text
  // (a type or reason with escape sequences drove the terminal; found by an
  // adversarial pass).
  auto shown = [](std::string_view v) { return terminal_text(v); };
  std::printf("%strace %s%s: %s on %s over %s, from %s\n", st.bold(),
              correlation.empty() ? ("event " + event_id).c_str() : ("'" + shown(correlation) + "'").c_str(), st.reset(),
              counted(f.size(), "event").c_str(), counted(topic_names.size(), "topic").c_str(),
              format_duration_ns(t_last - t0).c_str(), format_time_ns(t0).c_str());
  // Indentation up to kMaxDrawn levels; deeper ones say their depth, so a
  // long chain prints in linear space.
  constexpr std::size_t kMaxDrawn = 24;
  std::vector<bool> open_at;  // open_at[d]: the branch at depth d has siblings below
  for (const Step& step : order) {
    const Event& e = f[step.i].event;
    if (step.root) {
      const std::string cause(e.causation_id());
      if (std::find(cycle_roots.begin(), cycle_roots.end(), step.i) != cycle_roots.end())
        std::printf("%s(a causation cycle)%s\n", st.dim(), st.reset());
      else if (!f[step.i].dead_letter && canonical_id(cause) == e.id().to_string())
        std::printf("%s(names itself as its cause)%s\n", st.dim(), st.reset());
      else if (!f[step.i].dead_letter && !cause.empty())
        std::printf("%s(caused by %s, not retained)%s\n", st.dim(), shown(cause).c_str(), st.reset());
    }
    std::string indent;
    if (step.depth > kMaxDrawn) {
      indent = "[depth " + std::to_string(step.depth) + "] ";
    } else {
      for (std::size_t d = 1; d < step.depth; ++d) indent += open_at[d] ? "│  " : "   ";
      if (!step.root) indent += step.last ? "└─ " : "├─ ";
    }
    if (open_at.size() <= step.depth) open_at.resize(step.depth + 1);
    open_at[step.depth] = !step.last;
    const std::string at = std::string(e.topic()) + " " + std::to_string(e.partition()) + ":" +
                           std::to_string(e.position());
    if (f[step.i].dead_letter) {
      const std::string deliveries = header_or(e, "herald.dlq.deliveries", "?");
      std::printf("%s%sdead-lettered%s by group '%s' to %s after %s %s: %s\n", indent.c_str(), st.red(), st.reset(),
                  shown(header_or(e, "herald.dlq.group", "?")).c_str(), at.c_str(), shown(deliveries).c_str(),
                  deliveries == "1" ? "delivery" : "deliveries", shown(header_or(e, "herald.dlq.reason")).c_str());
      continue;
    }
    const bool mark = !event_id.empty() && e.id() == target;
    std::printf("%s%s%s%s  %s  %s+%s  %sid %s%s%s\n", indent.c_str(), st.bold(),
                e.type().empty() ? "(no type)" : shown(e.type()).c_str(), st.reset(), at.c_str(),
                e.source().empty() ? "" : ("from " + shown(e.source()) + "  ").c_str(),
                format_duration_ns(e.time_ns() - t0).c_str(), st.dim(), e.id().to_string().c_str(), st.reset(),
                mark ? "  <- this one" : "");
  }
  return 0;
}

}  // namespace

void add_trace_command(CLI::App& app, Context& ctx) {
  static TraceArgs a;
  auto* cmd = app.add_subcommand(
      "trace", "follow one request across topics: the events of a correlation id, as the tree their causation ids make");
  cmd->add_option("ID", a.id, "a correlation id, or an event id (its request is traced)")->required();
  cmd->add_option("--topics", a.topics, "topics to read (default: all, dead-letter topics included)")
      ->delimiter(',')
      ->check(name_arg("topic"));
  ctx.on(cmd, [&ctx] { return trace(ctx, a); });
}

}  // namespace herald::tools
