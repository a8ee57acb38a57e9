// herald topic create|list|describe|delete
#include <cstdio>

#include "tools/cli.hpp"

namespace herald::tools {

namespace {

struct CreateArgs {
  std::string name;
  std::uint32_t partitions = 4;
  std::uint64_t ring = 16ull << 20;
  std::uint64_t max_event = 1ull << 20;
  std::string unix_group;
  std::string policy = "lag-out";
  std::uint64_t grace_ns = 30'000'000'000ull;
  bool single_producer = false;
  bool exist_ok = false;
  // Which options were given (not defaulted): --exist-ok compares these.
  bool partitions_given = false, ring_given = false, max_event_given = false, policy_given = false,
       single_producer_given = false;
};

Policy parse_policy(const std::string& p) {
  if (p == "lossless") return Policy::kLossless;
  if (p == "lossy") return Policy::kLossy;
  return Policy::kLagOut;
}

int topic_create(const Context& ctx, const CreateArgs& a) {
  // A size as given: rounded to a unit, 4095 read "4.0 KiB is not a power
  // of two" (found by an exploratory pass).
  auto as_given = [](std::uint64_t n) {
    return n >= 1024 && n % 1024 != 0 ? std::to_string(n) + " bytes" : format_bytes(static_cast<double>(n));
  };
  // The ring first: a ring that cannot be made would otherwise be reported
  // as too small for the default --max-event.
  if (a.ring == 0 || (a.ring & (a.ring - 1)) != 0)
    usage_error("--ring " + as_given(a.ring) + " is not a power of two (64K, 1M, 16M, ...)");
  if (a.max_event_given && a.max_event > a.ring / 4)
    usage_error("--max-event " + as_given(a.max_event) + " is more than a quarter of --ring " + as_given(a.ring) +
                "; raise --ring or lower --max-event");
  auto bus = ctx.attach();
  if (!bus) return runtime_error(bus.error());
  TopicConfig c;
  c.partitions = a.partitions;
  c.ring_bytes = a.ring;
  c.max_event = a.max_event_given ? a.max_event : 0;  // 0: 1M, or ring/4 if smaller
  c.unix_group = a.unix_group;
  c.default_policy = parse_policy(a.policy);
  c.lagout_grace = std::chrono::milliseconds(a.grace_ns / 1'000'000);
  c.single_producer = a.single_producer;
  auto t = bus->create_topic(a.name, c);
  bool existed = false;
  if (!t && t.error().code == Errc::kAlreadyExists && a.exist_ok) {
    existed = true;
  } else if (!t) {
    if (t.error().code == Errc::kAlreadyExists)
      return runtime_error(t.error().detail + "; delete it first ('herald topic delete " + a.name +
                           "') or pass --exist-ok");
    if (t.error().code == Errc::kInvalidArgument) usage_error(t.error().detail);
    return runtime_error(t.error(), "create topic '" + a.name + "'");
  }
  if (existed) {
    // --exist-ok accepts the topic as it is only if it is what was asked
    // for: a script that asked for 8 partitions must not go on with 4.
    auto info = bus->describe_topic(a.name);
    if (!info) return runtime_error(info.error(), "describe topic '" + a.name + "'");
    std::string diff;
    auto differs = [&](bool given, bool same, const std::string& what) {
      if (given && !same) diff += (diff.empty() ? "" : ", ") + what;
    };
    differs(a.partitions_given, info->partitions == a.partitions,
            counted(info->partitions, "partition") + " (asked " + std::to_string(a.partitions) + ")");
    differs(a.ring_given, info->ring_bytes == a.ring,
            format_bytes(static_cast<double>(info->ring_bytes)) + " ring (asked " +
                format_bytes(static_cast<double>(a.ring)) + ")");
    differs(a.max_event_given, info->max_event == a.max_event,
            "max event " + format_bytes(static_cast<double>(info->max_event)) + " (asked " +
                format_bytes(static_cast<double>(a.max_event)) + ")");
    differs(a.policy_given, info->default_policy == parse_policy(a.policy),
            std::string("policy ") + policy_name(info->default_policy) + " (asked " + a.policy + ")");
    differs(a.single_producer_given, info->single_producer == a.single_producer,
            info->single_producer ? "single-producer (asked without)" : "not single-producer (asked for it)");
    if (!diff.empty())
      return runtime_error(Error{Errc::kAlreadyExists, "topic '" + a.name + "' already exists with " + diff +
                                                           "; --exist-ok accepts it only as asked (delete it first, "
                                                           "or leave out the options that differ)"});
  }
  if (ctx.json) {
    nlohmann::json j = {{"name", a.name}, {"created", !existed}};
    if (t) {
      j["incarnation"] = t->incarnation;
      j["partitions"] = t->partitions;
      j["ring_bytes"] = t->ring_bytes;
      j["max_event"] = t->max_event;
      j["policy"] = policy_name(t->default_policy);
    }
    print_json_line(j);
  } else if (existed) {
    std::printf("topic '%s' already exists on bus '%s'\n", a.name.c_str(), bus->name().c_str());
  } else {
    std::printf("created topic '%s' on bus '%s': %s x %s ring, max event %s, policy %s\n", a.name.c_str(),
                bus->name().c_str(), counted(t->partitions, "partition").c_str(), format_bytes(static_cast<double>(t->ring_bytes)).c_str(),
                format_bytes(static_cast<double>(t->max_event)).c_str(), policy_name(t->default_policy));
  }
  return 0;
}

int topic_list(const Context& ctx) {
  StatsOptions o;
  o.dlq_depth = false;
  o.lag_time = false;
  auto s = read_stats(ctx.bus(), o);
  if (!s && s.error().code == Errc::kNotFound) {
    // No registry yet: a bus nobody used has no topics.
    if (ctx.json) print_json_line({{"bus", ctx.bus()}, {"topics", nlohmann::json::array()}});
    else std::printf("no topics on bus '%s' (create one with 'herald topic create NAME')\n", ctx.bus().c_str());
    return 0;
  }
  if (!s) return runtime_error(s.error());
  if (ctx.json) {
    nlohmann::json topics = nlohmann::json::array();
    for (const TopicStats& t : s->topics) {
      nlohmann::json groups = nlohmann::json::array();
      for (const GroupStats& g : t.groups)
        if (!g.internal) groups.push_back(g.name);
      topics.push_back({{"name", t.name},
                        {"partitions", t.partitions},
                        {"ring_bytes", t.ring_bytes},
                        {"max_event", t.max_event},
                        {"default_policy", policy_name(t.default_policy)},
                        {"dead_letter_topic", t.dead_letter_topic},
                        {"events", t.events},
                        {"groups", std::move(groups)},
                        {"created", format_time_ns(t.created_ns)}});
    }
    print_json_line({{"bus", s->bus}, {"topics", std::move(topics)}});
    return 0;
  }
  if (s->topics.empty()) {
    std::printf("no topics on bus '%s' (create one with 'herald topic create NAME')\n", s->bus.c_str());
    return 0;
  }
  Table tb({"TOPIC", "PARTITIONS", "RING", "MAX EVENT", "POLICY", "EVENTS", "GROUPS", "CREATED"});
  for (const TopicStats& t : s->topics) {
    std::size_t groups = 0;
    for (const GroupStats& g : t.groups) groups += g.internal ? 0 : 1;
    tb.row({t.name + (t.dead_letter_topic ? " (dlq)" : ""), std::to_string(t.partitions),
            format_bytes(static_cast<double>(t.ring_bytes)), format_bytes(static_cast<double>(t.max_event)),
            policy_name(t.default_policy), t.error.empty() ? std::to_string(t.events) : "?",
            std::to_string(groups), format_time_ns(t.created_ns)});
  }
  std::fputs(tb.render(ctx.tty).c_str(), stdout);
  return 0;
}

int topic_describe(const Context& ctx, const std::string& name) {
  StatsOptions o;
  o.topic = name;
  auto s = read_stats(ctx.bus(), o);
  if (!s) return runtime_error(s.error());
  const TopicStats* t = nullptr;
  for (const TopicStats& x : s->topics)
    if (x.name == name) t = &x;
  if (t == nullptr)
    return runtime_error("topic '" + name + "' does not exist on bus '" + s->bus + "'; see 'herald topic list'");
  if (ctx.json) {
    print_json_line(topic_stats_json(*t));
    return 0;
  }
  if (!t->error.empty()) return runtime_error("topic '" + name + "' cannot be read: " + t->error + "; run 'herald doctor'");
  Style st{ctx.tty};
  std::printf("%stopic %s%s  (bus %s, incarnation %llu, created %s)\n", st.bold(), t->name.c_str(), st.reset(),
              s->bus.c_str(), static_cast<unsigned long long>(t->incarnation), format_time_ns(t->created_ns).c_str());
  std::printf("  %s x %s ring, max event %s, default policy %s%s%s\n\n", counted(t->partitions, "partition").c_str(),
              format_bytes(static_cast<double>(t->ring_bytes)).c_str(),
              format_bytes(static_cast<double>(t->max_event)).c_str(), policy_name(t->default_policy),
              t->single_producer ? ", single producer" : "", t->dead_letter_topic ? ", a dead-letter topic" : "");
  Table parts({"PARTITION", "TAIL", "BEGINNING", "OLDEST EVENT", "EVENTS", "BYTES", "ABORTED"});
  for (const PartitionStats& p : t->partition_stats)
    parts.row({std::to_string(p.partition), std::to_string(p.tail), std::to_string(p.beginning),
               p.beginning_time_ns ? format_time_ns(p.beginning_time_ns) : "-", std::to_string(p.events),
               format_bytes(static_cast<double>(p.bytes)), std::to_string(p.aborted_records)});
  std::fputs(parts.render(ctx.tty, "  ").c_str(), stdout);
  // EVENTS and BYTES count from the topic's creation; what is still in the
  // ring runs from BEGINNING to TAIL.
  std::printf("  (EVENTS, BYTES: published since the topic was created; retained: BEGINNING to TAIL)\n");
  bool any = false;
  for (const GroupStats& g : t->groups) {
    if (g.internal) continue;
    if (!any) std::printf("\n");
    any = true;
    std::printf("  group %s%s%s: %s%s, %s, lag %s (%s), %s pending\n", st.bold(), g.name.c_str(), st.reset(),
                policy_name(g.policy), g.gating ? " (gating)" : "", counted(g.members, "member").c_str(),
                counted(g.lag_events, "event").c_str(), format_bytes(static_cast<double>(g.lag_bytes)).c_str(),
                counted(g.dlq_depth, "dead letter").c_str());
  }
  if (!any) std::printf("\n  no groups (start one with 'herald consume %s --group NAME')\n", t->name.c_str());
  return 0;
}

int topic_delete(const Context& ctx, const std::string& name, bool force) {
  if (name.empty()) usage_error("the topic name is empty");
  auto bus = ctx.attach();
  if (!bus) return runtime_error(bus.error());
  auto r = bus->delete_topic(name, {.force = force});
  if (!r) {
    if (r.error().code == Errc::kBusy && r.error().detail.find("dead-letter topic of group") != std::string::npos)
      return runtime_error(r.error().detail.substr(0, r.error().detail.rfind(';')) +
                           "; delete the group ('herald groups delete'), which deletes it too, or pass --force "
                           "(its dead letters are lost; the group's next member makes it again, empty)");
    if (r.error().code == Errc::kBusy)
      return runtime_error(r.error().detail.substr(0, r.error().detail.rfind(';')) +
                           "; stop them or pass --force (they get 'closed')");
    return runtime_error(r.error(), "delete topic '" + name + "'");
  }
  if (ctx.json) print_json_line({{"name", name}, {"deleted", true}});
  else std::printf("deleted topic '%s' (and its dead-letter topics)\n", name.c_str());
  return 0;
}

}  // namespace

void add_topic_commands(CLI::App& app, Context& ctx) {
  auto* topic = app.add_subcommand("topic", "create, list, describe and delete topics");
  topic->require_subcommand(1);

  static CreateArgs ca;
  auto* create = topic->add_subcommand("create", "create a topic");
  create->add_option("NAME", ca.name, "topic name ([A-Za-z0-9._-], 1-100 chars)")->required()->check(name_arg("topic"));
  create->add_option("--partitions", ca.partitions, "partitions (1-256)")->check(CLI::Range(1, 256))->capture_default_str();
  create->add_option("--ring", ca.ring, "ring size per partition: a power of two (64K, 16M, ...)")
      ->transform(size_arg())
      ->default_str("16M");
  create->add_option("--max-event", ca.max_event, "largest event, envelope included (at most ring/4)")
      ->transform(size_arg())
      ->default_str("1M, or ring/4 if smaller");
  create->add_option("--unix-group", ca.unix_group, "share with a Unix group (log 0640, state 0660)");
  create->add_option("--policy", ca.policy, "default policy of new groups")
      ->check(CLI::IsMember({"lossless", "lossy", "lag-out"}))
      ->capture_default_str();
  create->add_option("--lagout-grace", ca.grace_ns, "how long a lag-out group may have no member before it stops gating")
      ->transform(duration_arg())
      ->default_str("30s");
  create->add_flag("--single-producer", ca.single_producer, "claims by plain store; a second producer is refused");
  create->add_flag("--exist-ok", ca.exist_ok, "succeed if the topic already exists");
  ctx.on(create, [&ctx, create] {
    if (create->count("--unix-group") > 0 && ca.unix_group.empty()) usage_error("--unix-group needs a group name");
    ca.partitions_given = create->count("--partitions") > 0;
    ca.ring_given = create->count("--ring") > 0;
    ca.max_event_given = create->count("--max-event") > 0;
    ca.policy_given = create->count("--policy") > 0;
    ca.single_producer_given = create->count("--single-producer") > 0;
    return topic_create(ctx, ca);
  });

  auto* list = topic->add_subcommand("list", "list topics (dead-letter topics marked)");
  ctx.on(list, [&ctx] { return topic_list(ctx); });

  static std::string describe_name;
  auto* describe = topic->add_subcommand("describe", "partitions, tails, oldest retained position and time, groups");
  describe->add_option("NAME", describe_name, "topic")->required();
  ctx.on(describe, [&ctx] { return topic_describe(ctx, describe_name); });

  static std::string delete_name;
  static bool force = false;
  auto* del = topic->add_subcommand("delete", "delete a topic (and its groups' dead-letter topics)");
  del->add_option("NAME", delete_name, "topic")->required();
  del->add_flag("--force", force, "delete even while producers or consumers are attached (they get 'closed')");
  ctx.on(del, [&ctx] { return topic_delete(ctx, delete_name, force); });
}

}  // namespace herald::tools
