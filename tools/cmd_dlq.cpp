// herald dlq list|show|redrive|purge: the dead letters of a topic's groups.
// A dead letter is named by where its event came from: PARTITION:POSITION
// in the source topic (as `dlq list` prints it).
#include <time.h>

#include <cstdio>
#include <optional>

#include "tools/cli.hpp"

namespace herald::tools {

namespace {

struct DlqArgs {
  std::string topic, group, position, filter;
  bool all = false;
  double rate = 0;
};

// The groups of `topic` that have a dead-letter topic (or just `group`).
Result<std::vector<std::string>> dlq_groups(const Context& ctx, const std::string& topic, const std::string& group) {
  StatsOptions o;
  o.topic = topic;
  o.dlq_depth = false;
  o.lag_time = false;
  auto s = read_stats(ctx.bus(), o);
  if (!s) return fail(std::move(s).error());
  for (const TopicStats& t : s->topics) {
    if (t.name != topic) continue;
    std::vector<std::string> out;
    for (const GroupStats& g : t.groups) {
      if (g.internal || g.dlq_topic.empty()) continue;
      if (!group.empty() && g.name != group) continue;
      out.push_back(g.name);
    }
    if (!group.empty() && out.empty())
      return fail(Errc::kNotFound, "group '" + group + "' of topic '" + topic +
                                       "' has no dead-letter topic (does the group exist? see 'herald groups " + topic + "')");
    return out;
  }
  return fail(Errc::kNotFound, "topic '" + topic + "' does not exist on bus '" + s->bus + "'; see 'herald topic list'");
}

// Exactly one group: --group, or the only group with a DLQ.
std::string one_group(const Context& ctx, const std::string& topic, const std::string& group, Error* err) {
  auto gs = dlq_groups(ctx, topic, group);
  if (!gs) {
    *err = gs.error();
    return {};
  }
  if (gs->empty()) {
    *err = Error{Errc::kNotFound, "topic '" + topic + "' has no groups, so no dead letters"};
    return {};
  }
  if (gs->size() > 1) {
    std::string names;
    for (const std::string& g : *gs) names += (names.empty() ? "" : ", ") + g;
    usage_error("topic '" + topic + "' has several groups (" + names + "): name one with --group");
  }
  return gs->front();
}

nlohmann::json dead_letter_json(const DeadLetter& d, bool with_event) {
  nlohmann::json j = {{"group", d.group},
                      {"partition", d.partition},
                      {"position", d.position},
                      {"dlq_position", d.dlq_position},
                      {"id", d.event.id().to_string()},
                      {"type", std::string(d.event.type())},
                      {"key", std::string(d.event.key())},
                      {"reason", d.reason},
                      {"deliveries", d.deliveries},
                      {"time", format_time_ns(d.time_ns)},
                      {"first_failure", format_time_ns(d.first_failure_ns)},
                      {"last_failure", format_time_ns(d.last_failure_ns)}};
  if (with_event) j["event"] = event_json(d.event.view());
  return j;
}

std::string cut(std::string s, std::size_t n) {
  if (s.size() > n) s = s.substr(0, n - 3) + "...";
  return s;
}

int dlq_list(const Context& ctx, const DlqArgs& a) {
  auto gs = dlq_groups(ctx, a.topic, a.group);
  if (!gs) return runtime_error(gs.error());
  auto bus = ctx.attach();
  if (!bus) return runtime_error(bus.error());
  nlohmann::json all = nlohmann::json::array();
  Table tb({"GROUP", "SOURCE", "TYPE", "KEY", "DELIVERIES", "FAILED", "REASON"});
  for (const std::string& g : *gs) {
    auto letters = bus->dead_letters(a.topic, g);
    if (!letters) return runtime_error(letters.error(), "dead letters of group '" + g + "'");
    for (const DeadLetter& d : *letters) {
      all.push_back(dead_letter_json(d, false));
      tb.row({g, std::to_string(d.partition) + ":" + std::to_string(d.position), terminal_text(d.event.type()),
              cut(terminal_text(d.event.key()), 24), std::to_string(d.deliveries), format_time_ns(d.last_failure_ns),
              cut(terminal_text(d.reason), 80)});
    }
  }
  if (ctx.json) {
    print_json_line({{"topic", a.topic}, {"dead_letters", std::move(all)}});
  } else if (tb.empty()) {
    std::printf("no dead letters for topic '%s'%s\n", a.topic.c_str(),
                a.group.empty() ? "" : (" in group '" + a.group + "'").c_str());
  } else {
    std::fputs(tb.render(ctx.tty).c_str(), stdout);
    // The --group that `dlq show` will need: the one given, or any when the
    // topic has several (the hint named none with --group given).
    std::printf("\nshow one: herald dlq show %s PARTITION:POSITION%s\n", a.topic.c_str(),
                !a.group.empty() ? (" --group " + a.group).c_str() : gs->size() > 1 ? " --group GROUP" : "");
  }
  return 0;
}

// The pending dead letter of `group` whose event came from `pp`.
std::optional<DeadLetter> find_letter(Bus& bus, const std::string& topic, const std::string& group, const PartPos& pp,
                                      Error* err) {
  auto letters = bus.dead_letters(topic, group);
  if (!letters) {
    *err = letters.error();
    return std::nullopt;
  }
  for (DeadLetter& d : *letters)
    if (d.partition == pp.partition && d.position == pp.position) return std::move(d);
  *err = Error{Errc::kNotFound, "no pending dead letter of group '" + group + "' came from " +
                                    std::to_string(pp.partition) + ":" + std::to_string(pp.position) +
                                    "; see 'herald dlq list " + topic + "'"};
  return std::nullopt;
}

int dlq_show(const Context& ctx, const DlqArgs& a) {
  auto pp = parse_part_pos(a.position);
  if (!pp.ok()) usage_error(pp.error);
  Error err;
  const std::string group = one_group(ctx, a.topic, a.group, &err);
  if (group.empty()) return runtime_error(err);
  auto bus = ctx.attach();
  if (!bus) return runtime_error(bus.error());
  auto d = find_letter(*bus, a.topic, group, pp.value, &err);
  if (!d) return runtime_error(err);
  if (ctx.json) {
    print_json_line(dead_letter_json(*d, true));
    return 0;
  }
  const Style st{ctx.tty};
  const Event& e = d->event;
  std::printf("%sdead letter of group '%s'%s: %s:%u:%llu\n", st.bold(), group.c_str(), st.reset(), a.topic.c_str(),
              d->partition, static_cast<unsigned long long>(d->position));
  // Every field as terminal_text: a handler's reason and an event's fields
  // are anybody's bytes.
  auto shown = [](std::string_view s) { return terminal_text(s); };
  std::printf("  reason       %s%s%s\n", st.red(), shown(d->reason).c_str(), st.reset());
  std::printf("  deliveries   %u (first failure %s, last %s)\n", d->deliveries, format_time_ns(d->first_failure_ns).c_str(),
              format_time_ns(d->last_failure_ns).c_str());
  std::printf("  id           %s\n", e.id().to_string().c_str());
  std::printf("  type         %s\n", shown(e.type()).c_str());
  std::printf("  source       %s\n", shown(e.source()).c_str());
  std::printf("  key          %s\n", shown(e.key()).c_str());
  std::printf("  time         %s\n", format_time_ns(d->time_ns).c_str());
  if (!e.correlation_id().empty()) std::printf("  correlation  %s\n", shown(e.correlation_id()).c_str());
  if (!e.causation_id().empty()) std::printf("  causation    %s\n", shown(e.causation_id()).c_str());
  for (std::size_t i = 0; i < e.header_count(); ++i) {
    const Header h = e.header_at(i);
    if (h.name.rfind("herald.dlq.", 0) == 0) continue;
    std::printf("  header       %s=%s\n", shown(h.name).c_str(), shown(h.value).c_str());
  }
  const std::string_view data = e.payload_text();
  std::printf("  payload      %s\n", valid_utf8(data) ? shown(data).c_str() : ("(base64) " + base64(data)).c_str());
  std::printf("\nredrive it: herald dlq redrive %s --group %s --position %u:%llu\n", a.topic.c_str(), group.c_str(),
              d->partition, static_cast<unsigned long long>(d->position));
  return 0;
}

int dlq_redrive(const Context& ctx, const DlqArgs& a) {
  if (!a.position.empty() && a.all) usage_error("give --position or --all, not both");
  if (a.position.empty() && !a.all && a.filter.empty())
    usage_error("say what to redrive: --position PARTITION:POSITION, --all, or --filter");
  std::optional<PartPos> pp;
  if (!a.position.empty()) {
    auto p = parse_part_pos(a.position);
    if (!p.ok()) usage_error(p.error);
    pp = p.value;
  }
  RedriveOptions o;
  if (!a.filter.empty()) {
    if (a.filter.rfind("type=", 0) == 0 && a.filter.size() > 5) {
      o.type = a.filter.substr(5);
    } else if (a.filter.rfind("header:", 0) == 0 && a.filter.find('=') != std::string::npos &&
               a.filter.find('=') > 7) {
      const auto eq = a.filter.find('=');
      o.header_name = a.filter.substr(7, eq - 7);
      o.header_value = a.filter.substr(eq + 1);
    } else {
      usage_error("--filter '" + a.filter + "' is not type=TYPE or header:NAME=VALUE");
    }
  }
  o.rate = a.rate;
  Error err;
  const std::string group = one_group(ctx, a.topic, a.group, &err);
  if (group.empty()) return runtime_error(err);
  auto bus = ctx.attach();
  if (!bus) return runtime_error(bus.error());
  if (pp) {
    auto d = find_letter(*bus, a.topic, group, *pp, &err);
    if (!d) return runtime_error(err);
    o.position = d->dlq_position;
  }
  if (ctx.tty && !ctx.json)
    o.progress = [](std::uint64_t done, std::uint64_t total) {
      std::fprintf(stderr, "\r\033[K  redriving %llu/%llu", static_cast<unsigned long long>(done),
                   static_cast<unsigned long long>(total));
    };
  auto r = bus->redrive(a.topic, group, o);
  if (ctx.tty && !ctx.json) std::fprintf(stderr, "\r\033[K");
  if (!r) return runtime_error(r.error(), "redrive dead letters of group '" + group + "'");
  if (ctx.json) {
    nlohmann::json j = {{"topic", a.topic}, {"group", group}, {"redriven", r->redriven}, {"matched", r->matched},
                        {"refused", r->refused}};
    if (r->refused > 0) j["refusal"] = r->refusal;
    print_json_line(j);
  } else {
    std::printf("redrove %s to '%s' for group '%s' (other groups skip them)\n",
                counted(r->redriven, "dead letter").c_str(), a.topic.c_str(), group.c_str());
  }
  if (r->refused > 0) {
    // A refused letter stays pending and holds the DLQ's room behind it:
    // say how to take it out (read it from the DLQ topic first if needed).
    std::fprintf(stderr,
                 "herald: %s left pending: the topic cannot take them (first: %s); read it from the DLQ topic "
                 "'%s' if you need it, then drop it with 'herald dlq purge %s --group %s --position "
                 "PARTITION:POSITION'\n",
                 counted(r->refused, "dead letter").c_str(), r->refusal.c_str(), (a.topic + ".dlq." + group).c_str(),
                 a.topic.c_str(), group.c_str());
    return 1;
  }
  return 0;
}

int dlq_purge(const Context& ctx, const DlqArgs& a) {
  Error err;
  const std::string group = one_group(ctx, a.topic, a.group, &err);
  if (group.empty()) return runtime_error(err);
  auto bus = ctx.attach();
  if (!bus) return runtime_error(bus.error());
  if (!a.position.empty()) {
    auto pp = parse_part_pos(a.position);
    if (!pp.ok()) usage_error(pp.error);
    auto d = find_letter(*bus, a.topic, group, pp.value, &err);
    if (!d) return runtime_error(err);
    auto one = bus->purge_dead_letter(a.topic, group, d->dlq_position);
    if (!one) return runtime_error(one.error(), "purge the dead letter of " + a.topic + " " + a.position);
    if (ctx.json) print_json_line({{"topic", a.topic}, {"group", group}, {"purged", 1}});
    else std::printf("purged the dead letter of %s %s (group '%s')\n", a.topic.c_str(), a.position.c_str(), group.c_str());
    return 0;
  }
  auto r = bus->purge_dead_letters(a.topic, group);
  if (!r) return runtime_error(r.error(), "purge dead letters of group '" + group + "'");
  if (ctx.json) print_json_line({{"topic", a.topic}, {"group", group}, {"purged", *r}});
  else std::printf("purged %s of group '%s'\n", counted(*r, "dead letter").c_str(), group.c_str());
  return 0;
}

}  // namespace

void add_dlq_commands(CLI::App& app, Context& ctx) {
  auto* dlq = app.add_subcommand("dlq", "dead letters: list, show, redrive, purge");
  dlq->require_subcommand(1);
  static DlqArgs a;
  auto add_common = [](CLI::App* c, bool needs_group_hint) {
    c->add_option("TOPIC", a.topic, "topic")->required();
    c->add_option("--group", a.group,
                  needs_group_hint ? "the group (needed when the topic has several)" : "only this group");
  };
  auto* list = dlq->add_subcommand("list", "pending dead letters, by the position their event came from");
  add_common(list, false);
  ctx.on(list, [&ctx] { return dlq_list(ctx, a); });

  auto* show = dlq->add_subcommand("show", "one dead letter: envelope, payload, reason, deliveries");
  add_common(show, true);
  show->add_option("POSITION", a.position, "PARTITION:POSITION of the original event (from 'dlq list')")->required();
  ctx.on(show, [&ctx] { return dlq_show(ctx, a); });

  auto* redrive = dlq->add_subcommand("redrive", "republish dead letters to the topic, for their group only");
  add_common(redrive, true);
  redrive->add_option("--position", a.position, "one dead letter: PARTITION:POSITION of the original event");
  redrive->add_flag("--all", a.all, "every pending dead letter (narrow with --filter)");
  redrive->add_option("--filter", a.filter, "only type=TYPE or header:NAME=VALUE");
  redrive->add_option("--rate", a.rate, "at most this many events per second (100, 10k)")->transform(rate_arg());
  ctx.on(redrive, [&ctx] { return dlq_redrive(ctx, a); });

  auto* purge = dlq->add_subcommand("purge", "drop every pending dead letter of a group (or one, with --position)");
  add_common(purge, true);
  purge->add_option("--position", a.position, "only this one: PARTITION:POSITION of the original event");
  ctx.on(purge, [&ctx] { return dlq_purge(ctx, a); });
}

}  // namespace herald::tools
