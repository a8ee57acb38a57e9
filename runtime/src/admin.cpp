#include "runtime/src/admin.hpp"

#include <grp.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>
#include <vector>

#include "runtime/src/dlq.hpp"
#include "runtime/src/groups.hpp"
#include "shm/clock.hpp"
#include "shm/names.hpp"
#include "shm/ring_log.hpp"
#include "shm/slots.hpp"

namespace herald::detail {

namespace {

Result<shm::TopicMap::Perms> perms_for(const TopicConfig& c, bool dead_letter) {
  shm::TopicMap::Perms p;
  if (c.unix_group.empty()) return p;
  std::vector<char> buf(16384);
  group grp{};
  group* out = nullptr;
  if (::getgrnam_r(c.unix_group.c_str(), &grp, buf.data(), buf.size(), &out) != 0 || out == nullptr)
    return fail(Errc::kInvalidArgument, "unix group '" + c.unix_group + "' does not exist");
  // Consumers only read the log; consumers and producers of the group write
  // the state (cursors, waiter bits). A dead-letter topic's log is written
  // by the source's consumers (they move poison events there), so the
  // group writes it too.
  p.log = shm::SegmentPerms{dead_letter ? 0660u : 0640u, static_cast<long>(out->gr_gid)};
  p.state = shm::SegmentPerms{0660, static_cast<long>(out->gr_gid)};
  return p;
}

std::string size_text(std::uint64_t v) {
  if (v >= (1ull << 20) && v % (1ull << 20) == 0) return std::to_string(v >> 20) + "M";
  if (v >= 1024 && v % 1024 == 0) return std::to_string(v >> 10) + "K";
  return std::to_string(v);
}

}  // namespace

Result<void> validate_topic_config(std::string_view name, const TopicConfig& c, bool internal) {
  if (auto r = shm::validate_entity_name(name, "topic", internal); !r) return r;
  shm::LogParams p{c.partitions, c.ring_bytes, effective_max_event(c), 0};
  if (auto r = shm::validate_log_params(p); !r) return r;
  if (!concrete_policy(c.default_policy))
    return fail(Errc::kInvalidArgument, "a topic's default_policy must be lossless, lossy or lag-out");
  if (c.lagout_grace.count() < 0) return fail(Errc::kInvalidArgument, "lagout_grace is negative");
  return {};
}

Result<TopicInfo> create_topic_locked(shm::Registry& reg, const std::string& bus, std::string_view name,
                                      const TopicConfig& config, const CreateTopicOptions& opts) {
  // A topic that exists is reported as such before its name is judged: a
  // bus made before a naming rule (names ending in '.dlq') may hold one,
  // and "create unless it exists" must go on working there.
  if (name.find(".dlq.") == std::string_view::npos && shm::validate_entity_name(name, "topic", true) && reg.find(name))
    return fail(Errc::kAlreadyExists, "topic '" + std::string(name) + "' already exists on bus '" + bus + "'");
  if (auto r = validate_topic_config(name, config, opts.internal); !r)
    return fail(std::move(r).error().with_context("create topic '" + shm::printable(name) + "'"));
  const bool dead_letter = (opts.extra_flags & shm::kLogDeadLetterTopic) != 0;
  auto perms = perms_for(config, dead_letter);
  if (!perms) return fail(std::move(perms).error());
  if (reg.find(name))
    return fail(Errc::kAlreadyExists, "topic '" + std::string(name) + "' already exists on bus '" + bus + "'");

  shm::TopicRecord rec;
  rec.name = std::string(name);
  rec.params = shm::LogParams{config.partitions, config.ring_bytes, effective_max_event(config),
                              (config.single_producer ? static_cast<std::uint32_t>(shm::kLogSingleProducer) : 0u) |
                                  opts.extra_flags};
  rec.mode = config.unix_group.empty() ? 0600 : dead_letter ? 0660 : 0640;
  rec.gid = perms->log.gid;
  rec.default_policy = to_shm(config.default_policy, shm::GroupPolicy::kLagOut);
  rec.lagout_grace_ms = static_cast<std::uint64_t>(config.lagout_grace.count());
  auto inserted = reg.insert(rec);  // allocates the incarnation
  if (!inserted) return fail(std::move(inserted).error());
  auto map = shm::TopicMap::create(bus, inserted->name, inserted->incarnation, rec.params, *perms);
  if (!map) {
    (void)reg.erase(inserted->name, inserted->incarnation);
    return fail(std::move(map).error().with_context("create topic '" + rec.name + "' (" +
                                                    std::to_string(config.partitions) + " x " +
                                                    size_text(config.ring_bytes) + ")"));
  }
  TopicInfo info;
  info.name = inserted->name;
  info.incarnation = inserted->incarnation;
  info.partitions = config.partitions;
  info.ring_bytes = config.ring_bytes;
  info.max_event = effective_max_event(config);
  info.default_policy = config.default_policy;
  info.single_producer = config.single_producer;
  info.created_ns = inserted->created_ns;
  return info;
}

std::string users_of(const shm::TopicMap& m) {
  std::string out;
  auto add = [&](std::uint64_t owner, std::uint64_t start, const char* what) {
    if (owner == 0 || owner == shm::kOwnerReclaiming) return;
    const auto pid = static_cast<pid_t>(owner & 0xffffffffu);
    if (!shm::process_alive(pid, start)) return;
    if (!out.empty()) out += ", ";
    out += "pid " + std::to_string(pid) + " (" + what + ")";
  };
  for (std::uint32_t s = 0; s < m.geometry().producer_slots; ++s)
    add(m.producer(s)->owner.load(std::memory_order_acquire), m.producer(s)->start_time.load(), "producer");
  for (std::uint32_t r = 0; r < m.state_geometry().reader_slots; ++r)
    add(m.reader(r)->owner.load(std::memory_order_acquire), m.reader(r)->start_time.load(), "consumer");
  return out;
}

Result<void> delete_topic_locked(shm::Registry& reg, const std::string& bus, std::string_view name, bool force) {
  auto found = reg.find(name);
  if (!found) return fail(Errc::kNotFound, "topic '" + shm::printable(name) + "' does not exist on bus '" + bus + "'");
  const shm::TopicRecord* rec = &*found;
  if ((rec->params.flags & shm::kLogDeadLetterTopic) != 0 && !force) {
    // A group's dead-letter topic goes with its group (delete_group): on
    // its own, the group's next dead letter would find no topic to go to.
    const std::string& n = rec->name;
    if (const auto at = n.rfind(".dlq."); at != std::string::npos) {
      const std::string source = n.substr(0, at), group = n.substr(at + 5);
      if (auto src = reg.find(source)) {
        auto sm = shm::TopicMap::attach(bus, src->name, src->incarnation, shm::Access::kReadOnly,
                                        shm::Access::kReadOnly);
        if (sm && find_group(*sm, group))
          return fail(Errc::kBusy, "topic '" + n + "' is the dead-letter topic of group '" + group + "' of '" + source +
                                       "', which still exists (its next dead letter would have nowhere to go); delete "
                                       "the group, whose dead-letter topic goes with it, or delete with force");
      }
    }
  }
  auto map = shm::TopicMap::attach(bus, rec->name, rec->incarnation, shm::Access::kReadWrite,
                                   shm::Access::kReadWrite);
  // A topic we may not open (another user's) is not ours to delete either:
  // erasing its record would leave its segments behind, unlisted.
  if (!map && map.error().code == Errc::kPermissionDenied)
    return fail(std::move(map).error().with_context("delete topic '" + rec->name + "'"));
  if (map) {
    if (!force) {
      const std::string users = users_of(*map);
      if (!users.empty())
        return fail(Errc::kBusy, "topic '" + rec->name + "' is in use by " + users +
                                     "; stop them or delete with force");
    }
    // The closed bit first: every attached producer and consumer learns
    // kClosed on its next call instead of writing into an unlinked segment.
    map->close();
  }
  shm::TopicMap::remove(bus, rec->name, rec->incarnation);
  const std::string topic = rec->name;
  auto erased = reg.erase(topic, rec->incarnation);
  // Its groups' dead-letter topics go with it.
  if ((rec->params.flags & shm::kLogDeadLetterTopic) == 0) delete_dlqs_locked(reg, bus, topic, "");
  return erased;
}

TopicInfo info_of(const shm::TopicRecord& r) {
  TopicInfo info;
  info.name = r.name;
  info.incarnation = r.incarnation;
  info.partitions = r.params.partitions;
  info.ring_bytes = r.params.ring_bytes;
  info.max_event = r.params.max_event;
  info.default_policy = from_shm(r.default_policy);
  info.single_producer = (r.params.flags & shm::kLogSingleProducer) != 0;
  info.dead_letter = (r.params.flags & shm::kLogDeadLetterTopic) != 0;
  info.created_ns = r.created_ns;
  return info;
}

namespace {
// The time of the event at pos (0 if none is readable there).
std::uint64_t time_at(const shm::PartitionView& v, std::uint64_t pos) {
  std::vector<std::byte> buf(v.max_event);
  std::uint32_t n = 0;
  if (buf.empty() || shm::read_copy(v, pos, buf.data(), &n) != shm::Status::kOk) return 0;
  std::uint64_t t = 0;
  std::memcpy(&t, buf.data() + offsetof(shm::RecordHeader, time_ns), sizeof t);
  return t;
}
}  // namespace

Result<TopicInfo> describe_topic(const shm::Registry& reg, const std::string& bus, std::string_view name) {
  auto rec = reg.find(name);
  if (!rec) return fail(Errc::kNotFound, "topic '" + shm::printable(name) + "' does not exist on bus '" + bus + "'");
  auto map = shm::TopicMap::attach(bus, rec->name, rec->incarnation, shm::Access::kReadOnly,
                                   shm::Access::kReadOnly);
  if (!map) return fail(std::move(map).error());
  TopicInfo info = info_of(*rec);
  for (std::uint32_t p = 0; p < map->partitions(); ++p) {
    const shm::PartitionView& v = map->partition(p);
    PartitionInfo pi;
    pi.partition = p;
    pi.tail = shm::load_tail(v);
    pi.beginning = shm::beginning(v);
    pi.beginning_time_ns = pi.beginning < pi.tail ? time_at(v, pi.beginning) : 0;
    for (std::uint32_t s = 0; s < map->geometry().producer_slots; ++s) {
      pi.events += map->counters(s, p)->events.load(std::memory_order_relaxed);
      pi.bytes += map->counters(s, p)->bytes.load(std::memory_order_relaxed);
    }
    pi.aborted_records = v.part->aborted_records.load(std::memory_order_relaxed);
    info.partition_info.push_back(pi);
  }
  for (const GroupRecord& g : list_groups(*map)) {
    GroupInfo gi;
    gi.name = g.name;
    gi.policy = from_shm(g.policy);
    gi.gating = (map->group(g.slot)->flags.load(std::memory_order_relaxed) & shm::kGroupGating) != 0;
    gi.members = map->group(g.slot)->members.load(std::memory_order_relaxed);
    for (std::uint32_t p = 0; p < map->partitions(); ++p) {
      const shm::GroupPartitionLayout* gp = map->group_partition(g.slot, p);
      GroupPartitionInfo gpi;
      gpi.partition = p;
      gpi.committed = shm::cursor_pos(gp->cursor.load(std::memory_order_acquire));
      const std::uint64_t tail = info.partition_info[p].tail;
      gpi.lag_bytes = tail > gpi.committed ? tail - gpi.committed : 0;
      gpi.gap_bytes = gp->gap_bytes.load(std::memory_order_relaxed);
      gpi.gaps = gp->gap_events.load(std::memory_order_relaxed);
      gi.partitions.push_back(gpi);
    }
    info.groups.push_back(std::move(gi));
  }
  return info;
}

}  // namespace herald::detail
