#include "runtime/src/dlq.hpp"

#include <grp.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <set>
#include <thread>
#include <vector>

#include "runtime/src/admin.hpp"
#include "runtime/src/bus_impl.hpp"
#include "runtime/src/control.hpp"
#include "runtime/src/envelope.hpp"
#include "runtime/src/groups.hpp"
#include "shm/clock.hpp"
#include "shm/mapping.hpp"
#include "shm/names.hpp"
#include "shm/ring_log.hpp"
#include "shm/slots.hpp"

namespace herald::detail {

TopicConfig dlq_config(const shm::TopicRecord& source) {
  TopicConfig c;
  c.partitions = 1;
  // Room for the source's largest event plus the dead-letter headers.
  std::uint64_t max_event = shm::align_up(source.params.max_event + 8192, 64);
  // As large as the source's ring, from 1 MiB to 16 MiB: a tiny topic's
  // groups no longer take 16 MiB of /dev/shm each for dead letters (a docs
  // pass found a few 4 KiB topics using 241 MiB); then room for 4 of its
  // largest events at least.
  std::uint64_t ring = std::clamp<std::uint64_t>(source.params.ring_bytes, 1ull << 20, 16ull << 20);
  while (ring / 4 < max_event) ring <<= 1;
  c.ring_bytes = ring;
  c.max_event = max_event;
  c.default_policy = Policy::kLossless;
  // Shared with the source's Unix group, if it has one: the group's members
  // may read the source, so they may read (and redrive) its dead letters.
  if (source.gid >= 0) {
    group buf_grp{};
    group* out = nullptr;
    std::vector<char> buf(16384);
    if (::getgrgid_r(static_cast<gid_t>(source.gid), &buf_grp, buf.data(), buf.size(), &out) == 0 && out != nullptr)
      c.unix_group = out->gr_name;
  }
  return c;
}

Result<void> ensure_dlq_locked(shm::Registry& reg, const std::string& bus, const shm::TopicRecord& source,
                               const std::string& group) {
  if ((source.params.flags & shm::kLogDeadLetterTopic) != 0) return {};  // a DLQ has no DLQ
  const std::string name = shm::dlq_topic_name(source.name, group);
  if (!reg.find(name)) {
    // A handle that outlived Bus::destroy still maps the unlinked registry:
    // a DLQ made through it would be segments nobody can find (found by an
    // exploratory pass), as in Bus::create_topic.
    if (!shm::Segment::exists(shm::registry_segment_name(bus)))
      return fail(Errc::kClosed, "bus '" + bus + "' was destroyed; attach again to make it anew");
    CreateTopicOptions o;
    o.internal = true;
    o.extra_flags = shm::kLogDeadLetterTopic;
    auto made = create_topic_locked(reg, bus, name, dlq_config(source), o);
    if (!made && made.error().code != Errc::kAlreadyExists) return fail(std::move(made).error());
  }
  auto rec = reg.find(name);
  if (!rec) return fail(Errc::kNotFound, "dead-letter topic '" + name + "' vanished while being created");
  auto map = shm::TopicMap::attach(bus, name, rec->incarnation, shm::Access::kReadWrite, shm::Access::kReadWrite);
  if (!map) return fail(std::move(map).error());
  if (find_group(*map, kDlqCursorGroup)) return {};
  NewGroup ng;
  ng.name = kDlqCursorGroup;
  ng.policy = shm::GroupPolicy::kLossless;
  ng.extra_flags = shm::kGroupInternal;
  const std::uint64_t start[1] = {shm::beginning(map->partition(0))};
  auto g = create_group(*map, ng, start);
  if (!g) return fail(std::move(g).error());
  return {};
}

Result<GroupRecord> ensure_group_locked(shm::Registry& reg, const std::string& bus, const shm::TopicMap& topic,
                                        const shm::TopicRecord& source, const NewGroup& ng, const Offset& start,
                                        bool* made) {
  bool created_now = false;
  auto g = find_group(topic, ng.name);
  if (!g) {
    std::vector<std::uint64_t> positions(topic.partitions());
    for (std::uint32_t p = 0; p < topic.partitions(); ++p) {
      auto pos = resolve_offset(topic, p, start);
      if (!pos) return fail(std::move(pos).error().with_context("start of group '" + ng.name + "'"));
      positions[p] = *pos;
    }
    auto created = create_group(topic, ng, positions);
    if (!created) return fail(std::move(created).error());
    g = std::move(created).value();
    created_now = true;
  }
  if (auto d = ensure_dlq_locked(reg, bus, source, g->name); !d) {
    if (created_now) (void)delete_group(topic, g->slot);
    return fail(std::move(d).error().with_context("dead-letter topic of group '" + g->name + "'"));
  }
  if (made != nullptr) *made = created_now;
  return *g;
}

void delete_dlqs_locked(shm::Registry& reg, const std::string& bus, const std::string& topic,
                        const std::string& group) {
  const std::string prefix = topic + ".dlq.";
  for (const shm::TopicRecord& r : reg.list()) {
    if (r.name.rfind(prefix, 0) != 0) continue;
    if (!group.empty() && r.name != prefix + group) continue;
    (void)delete_topic_locked(reg, bus, r.name, /*force=*/true);
  }
}

namespace {
std::string num(std::uint64_t v) { return std::to_string(v); }
// s cut to at most n bytes, at a UTF-8 character's start (a text reason
// stays text).
std::string cut_at_char(std::string_view s, std::size_t n) {
  if (s.size() <= n) return std::string(s);
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return std::string(s.substr(0, n));
}
std::uint64_t parse_u64(std::string_view s) {
  std::uint64_t v = 0;
  std::from_chars(s.data(), s.data() + s.size(), v);
  return v;
}
}  // namespace

void build_dead_letter(const EventView& e, const shm::TopicRecord& source, const std::string& group,
                       const std::string& reason, std::uint32_t deliveries, std::uint64_t first_failure_ns,
                       std::uint64_t last_failure_ns, DeadLetterMessage* out) {
  out->strings = {source.name,     num(source.incarnation), num(e.partition()),      num(e.position()),
                  num(e.time_ns()), group,                  cut_at_char(reason, 4096), num(deliveries),
                  num(first_failure_ns), num(last_failure_ns)};
  const char* names[] = {kHdrTopic,  kHdrIncarnation, kHdrPartition, kHdrPosition,     kHdrTime,
                         kHdrGroup, kHdrReason,      kHdrDeliveries, kHdrFirstFailure, kHdrLastFailure};
  constexpr std::size_t kReasonAt = 6;
  out->headers.clear();
  // The original headers first (all of them: a user's event has at most
  // kMaxHeaders, and a DLQ record may add kReservedHeaders), then ours.
  // herald.dlq.* headers the event already had (a dead letter forwarded by
  // hand and dead-lettered again) are dropped: they describe another
  // dead-lettering, and parse_dead_letter must find only this one's.
  for (std::size_t i = 0; i < e.header_count(); ++i)
    if (e.header_at(i).name.rfind("herald.dlq.", 0) != 0) out->headers.push_back(e.header_at(i));
  for (std::size_t i = 0; i < 10; ++i) out->headers.push_back({names[i], out->strings[i]});
  Message& m = out->message;
  m = Message{};
  m.key = e.key();
  m.type = e.type();
  m.payload = Bytes(e.payload());
  m.source = e.source();
  m.correlation_id = e.correlation_id();
  m.causation_id = e.causation_id();
  m.content_type = e.content_type();
  m.headers = out->headers;
  m.id = e.id();
  m.time_ns = e.time_ns();
  m.partition = 0;
  // The reason is cut to what the meta section has room for: a user's
  // event leaves kReservedMeta of it (envelope.hpp), which holds the fixed
  // headers above and at least a few hundred bytes of reason. Cut at a
  // UTF-8 character's start, so a text reason stays text.
  // (The DLQ producer names no default source: "" as in its options.)
  Header& rh = out->headers[out->headers.size() - 10 + kReasonAt];
  std::string& r = out->strings[kReasonAt];
  rh.value = {};
  m.headers = out->headers;
  const char* bad = nullptr;
  const std::size_t without = meta_size(m, "", &bad, false, true);
  const std::size_t room = without < kMaxMeta ? kMaxMeta - without : 0;
  if (r.size() > room) r = cut_at_char(r, room);
  rh.value = r;
  m.headers = out->headers;
}

std::optional<DeadLetter> parse_dead_letter(const EventView& e, std::uint64_t dlq_position) {
  auto topic = e.header(kHdrTopic);
  if (!topic) return std::nullopt;
  DeadLetter d;
  d.event = e.to_event();
  d.dlq_position = dlq_position;
  d.topic = std::string(*topic);
  d.incarnation = parse_u64(e.header(kHdrIncarnation).value_or("0"));
  d.partition = static_cast<std::uint32_t>(parse_u64(e.header(kHdrPartition).value_or("0")));
  d.position = parse_u64(e.header(kHdrPosition).value_or("0"));
  d.time_ns = parse_u64(e.header(kHdrTime).value_or("0"));
  d.group = std::string(e.header(kHdrGroup).value_or(""));
  d.reason = std::string(e.header(kHdrReason).value_or(""));
  d.deliveries = static_cast<std::uint32_t>(parse_u64(e.header(kHdrDeliveries).value_or("0")));
  d.first_failure_ns = parse_u64(e.header(kHdrFirstFailure).value_or("0"));
  d.last_failure_ns = parse_u64(e.header(kHdrLastFailure).value_or("0"));
  return d;
}

}  // namespace herald::detail

namespace herald {

namespace {

// The DLQ of (topic, group), mapped to read and to move its cursor.
struct DlqView {
  std::shared_ptr<const shm::TopicMap> map;
  std::string name;
  std::uint32_t cursor_slot = 0;
  shm::TopicRecord source;
};

Result<DlqView> open_dlq(Bus::Impl& bus, std::string_view topic, std::string_view group) {
  auto src = bus.find_topic(topic);
  if (!src) return fail(std::move(src).error());
  DlqView v;
  v.source = *src;
  v.name = shm::dlq_topic_name(topic, group);
  if (!bus.registry.find(v.name))
    return fail(Errc::kNotFound, "group '" + std::string(group) + "' of topic '" + std::string(topic) +
                                     "' has no dead-letter topic (" + v.name + ")");
  auto map = bus.map_topic(v.name, shm::Access::kReadWrite, shm::Access::kReadWrite);
  if (!map) return fail(std::move(map).error());
  v.map = std::move(map).value();
  auto g = detail::find_group(*v.map, detail::kDlqCursorGroup);
  if (!g) return fail(Errc::kCorrupt, "dead-letter topic " + v.name + " has no cursor group");
  v.cursor_slot = g->slot;
  return v;
}

struct DlqScan {
  std::vector<DeadLetter> pending;     // not resolved, in order
  std::set<std::uint64_t> resolved;    // positions of resolved dead letters
  // Records from the cursor on: position, whether resolved (markers count as resolved).
  std::vector<std::pair<std::uint64_t, std::uint64_t>> records;  // (position, next position)
  std::vector<bool> record_resolved;
  std::uint64_t cursor = 0;
};

DlqScan scan(const DlqView& v) {
  DlqScan s;
  const shm::PartitionView& pv = v.map->partition(0);
  s.cursor = shm::cursor_pos(v.map->group_partition(v.cursor_slot, 0)->cursor.load(std::memory_order_acquire));
  std::vector<std::byte> buf(pv.max_event);
  std::vector<std::pair<std::uint64_t, bool>> kinds;  // position, is-marker
  std::vector<DeadLetter> letters;
  std::uint64_t q = s.cursor;
  for (;;) {
    std::uint32_t n = 0;
    const shm::Status st = shm::read_copy(pv, q, buf.data(), &n);
    if (st != shm::Status::kOk) break;  // the cursor gates the rest: nothing is overwritten
    const auto* h = reinterpret_cast<const shm::RecordHeader*>(buf.data());
    const EventView e = EventView::over(buf.data(), v.name, 0, q, 1);
    if ((h->flags & shm::kRecordAborted) == 0) {
      if (e.type() == detail::kResolvedType) {
        if (auto r = e.header(detail::kHdrResolves)) {
          std::uint64_t pos = 0;
          std::from_chars(r->data(), r->data() + r->size(), pos);
          s.resolved.insert(pos);
        }
        kinds.emplace_back(q, true);
      } else if (auto d = detail::parse_dead_letter(e, q)) {
        letters.push_back(std::move(*d));
        kinds.emplace_back(q, false);
      } else {
        kinds.emplace_back(q, true);  // not ours: nothing to resolve
      }
    } else {
      kinds.emplace_back(q, true);
    }
    s.records.emplace_back(q, q + n);
    q += n;
  }
  for (DeadLetter& d : letters)
    if (!s.resolved.count(d.dlq_position)) s.pending.push_back(std::move(d));
  for (const auto& [pos, marker] : kinds) s.record_resolved.push_back(marker || s.resolved.count(pos) != 0);
  return s;
}

// Moves the DLQ's cursor forward over the longest prefix that is resolved.
// Moves the DLQ's own cursor forward to `to` (never back) and wakes
// producers waiting for room. Redrive, purge and purge of one letter hold
// resolving_lock, so the cursor moves only here; a failed CAS means it moved
// already.
void move_cursor_to(const DlqView& v, std::uint64_t to) {
  shm::GroupPartitionLayout* gp = v.map->group_partition(v.cursor_slot, 0);
  std::uint64_t cur = gp->cursor.load(std::memory_order_acquire);
  if (shm::cursor_pos(cur) >= to) return;
  // R4: as a member's commit (seq_cst RMW, paired with the producers'
  // gate refresh): frees the DLQ for new dead letters.
  gp->cursor.compare_exchange_strong(cur, shm::pack_cursor(shm::cursor_gen(cur), to), std::memory_order_seq_cst);
  shm::wake_producers(v.map->partition(0));
}

// Past every resolved record at the head of the DLQ.
void advance_cursor(const DlqView& v) {
  const DlqScan s = scan(v);
  std::uint64_t to = s.cursor;
  for (std::size_t i = 0; i < s.records.size() && s.record_resolved[i]; ++i) to = s.records[i].second;
  move_cursor_to(v, to);
}

}  // namespace

Result<std::vector<DeadLetter>> Bus::dead_letters(std::string_view topic, std::string_view group) const {
  if (impl_ == nullptr) [[unlikely]] return fail(detail::moved_from("Bus"));
  auto v = open_dlq(*impl_, topic, group);
  if (!v) return fail(std::move(v).error());
  return scan(*v).pending;
}

namespace {
// Redrive and purge scan what is pending and then resolve it: two at once
// saw the same pending letters, and two redrives published each twice
// (found by an exploratory pass). One at a time per bus: a byte lock on the
// admin lock file (the admin flock itself stays free for topic changes),
// held for the whole scan and resolution, released if the process dies.
Result<detail::FileLock> resolving_lock(const std::string& run_dir, const std::string& bus, std::string_view topic,
                                        std::string_view group) {
  auto l = detail::FileLock::try_acquire_byte(detail::admin_lock_path(run_dir, bus), 1);
  if (!l && l.error().code == Errc::kBusy)
    return fail(Errc::kBusy, "another redrive or purge of dead letters is running on bus '" + bus +
                                 "'; run this one ('" + std::string(topic) + "', group '" + std::string(group) +
                                 "') when it is done");
  return l;
}
}  // namespace

Result<RedriveResult> Bus::redrive(std::string_view topic, std::string_view group, const RedriveOptions& o) {
  if (impl_ == nullptr) [[unlikely]] return fail(detail::moved_from("Bus"));
  auto v = open_dlq(*impl_, topic, group);
  if (!v) return fail(std::move(v).error());
  if (o.rate < 0) return fail(Errc::kInvalidArgument, "redrive rate must not be negative");
  auto one_at_a_time = resolving_lock(impl_->run_dir, impl_->name, topic, group);
  if (!one_at_a_time) return fail(std::move(one_at_a_time).error());
  DlqScan s = scan(*v);
  std::vector<const DeadLetter*> chosen;
  for (const DeadLetter& d : s.pending) {
    if (o.position && d.dlq_position != *o.position) continue;
    if (!o.type.empty() && d.event.type() != o.type) continue;
    if (!o.header_name.empty() && d.event.header(o.header_name).value_or("\x01") != o.header_value) continue;
    chosen.push_back(&d);
  }
  if (o.position && chosen.empty()) {
    for (const DeadLetter& d : s.pending)
      if (d.dlq_position == *o.position)
        return fail(Errc::kNotFound, "the dead letter of " + d.topic + " " + std::to_string(d.partition) + ":" +
                                         std::to_string(d.position) + " does not match the type or header filter");
    return fail(Errc::kNotFound, "no pending dead letter at position " + std::to_string(*o.position) + " of " + v->name);
  }
  RedriveResult res;
  res.matched = chosen.size();
  if (chosen.empty()) return res;
  auto out = detail::ProducerFactory::make(impl_, topic, {}, shm::kRecordRedriven);
  if (!out) {
    // Redrive is a producer of the topic: on a single-producer topic it
    // waits for the topic's own producer to go (kBusy says who it is).
    if (out.error().code == Errc::kBusy)
      return fail(std::move(out).error().with_context(
          "redrive republishes as a producer of '" + std::string(topic) +
          "', and a single-producer topic takes one at a time: redrive when its producer has stopped"));
    return fail(std::move(out).error());
  }
  auto marks = detail::ProducerFactory::make(impl_, v->name, {}, 0);
  if (!marks) return fail(std::move(marks).error());
  const std::string group_s(group);
  const std::uint64_t start = shm::monotonic_ns();
  for (const DeadLetter* d : chosen) {
    if (o.rate > 0) {
      const auto due = start + static_cast<std::uint64_t>(static_cast<double>(res.redriven) * 1e9 / o.rate);
      while (shm::monotonic_ns() < due) std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    const EventView& e = d->event.view();
    // The original envelope; herald.dlq.* headers, and the redrive headers
    // of an earlier redrive (the consumer reads the first of a name),
    // replaced by where it came from.
    std::vector<Header> hs;
    const std::string from = v->name + "@" + std::to_string(d->dlq_position);
    for (std::size_t i = 0; i < e.header_count(); ++i) {
      const std::string_view n = e.header_at(i).name;
      if (n.rfind("herald.dlq.", 0) != 0 && n != detail::kHdrRedrivenFrom && n != detail::kHdrRedriveGroup)
        hs.push_back(e.header_at(i));
    }
    hs.push_back({detail::kHdrRedrivenFrom, from});
    hs.push_back({detail::kHdrRedriveGroup, group_s});
    Message m;
    m.key = e.key();
    m.type = e.type();
    m.payload = Bytes(e.payload());
    m.source = e.source();
    m.correlation_id = e.correlation_id();
    m.causation_id = e.causation_id();
    m.content_type = e.content_type();
    m.headers = hs;
    m.id = e.id();
    m.time_ns = e.time_ns();
    m.partition = d->partition < out->partitions() ? static_cast<std::int32_t>(d->partition) : -1;
    if (auto r = out->publish(m); !r) {
      // A letter the topic cannot take stays pending; the rest go on.
      if (r.error().code != Errc::kTooLarge) return fail(std::move(r).error().with_context("redrive " + from));
      if (res.refused++ == 0)
        res.refusal = "the dead letter of " + d->topic + " " + std::to_string(d->partition) + ":" +
                      std::to_string(d->position) + ": " + r.error().detail;
      continue;
    }
    const std::string pos = std::to_string(d->dlq_position);
    const Header mh[] = {{detail::kHdrResolves, pos}, {detail::kHdrAction, "redrive"}};
    if (auto r = marks->publish({.type = detail::kResolvedType, .headers = mh}); !r)
      return fail(std::move(r).error().with_context("mark " + from + " redriven"));
    ++res.redriven;
    if (o.progress) o.progress(res.redriven, res.matched);
  }
  advance_cursor(*v);
  return res;
}

Result<std::uint64_t> Bus::purge_dead_letters(std::string_view topic, std::string_view group) {
  if (impl_ == nullptr) [[unlikely]] return fail(detail::moved_from("Bus"));
  auto v = open_dlq(*impl_, topic, group);
  if (!v) return fail(std::move(v).error());
  auto one_at_a_time = resolving_lock(impl_->run_dir, impl_->name, topic, group);
  if (!one_at_a_time) return fail(std::move(one_at_a_time).error());
  const DlqScan s = scan(*v);
  // Everything up to tail is dropped: move the cursor there.
  move_cursor_to(*v, s.records.empty() ? s.cursor : s.records.back().second);
  return static_cast<std::uint64_t>(s.pending.size());
}

Result<void> Bus::purge_dead_letter(std::string_view topic, std::string_view group, std::uint64_t dlq_position) {
  if (impl_ == nullptr) [[unlikely]] return fail(detail::moved_from("Bus"));
  auto v = open_dlq(*impl_, topic, group);
  if (!v) return fail(std::move(v).error());
  auto one_at_a_time = resolving_lock(impl_->run_dir, impl_->name, topic, group);
  if (!one_at_a_time) return fail(std::move(one_at_a_time).error());
  const DlqScan s = scan(*v);
  const auto it = std::find_if(s.pending.begin(), s.pending.end(),
                               [&](const DeadLetter& d) { return d.dlq_position == dlq_position; });
  if (it == s.pending.end())
    return fail(Errc::kNotFound, "no pending dead letter at position " + std::to_string(dlq_position) + " of " + v->name);
  // The first unresolved record: move the cursor past it (as purge does
  // for all), then past the resolved ones after it.
  std::size_t i = 0;
  while (i < s.records.size() && s.record_resolved[i]) ++i;
  if (i < s.records.size() && s.records[i].first == dlq_position) {
    move_cursor_to(*v, s.records[i].second);
    advance_cursor(*v);
    return {};
  }
  auto marks = detail::ProducerFactory::make(impl_, v->name, {}, 0);
  if (!marks) return fail(std::move(marks).error());
  const std::string pos = std::to_string(dlq_position);
  const Header mh[] = {{detail::kHdrResolves, pos}, {detail::kHdrAction, "purge"}};
  if (auto r = marks->publish({.type = detail::kResolvedType, .headers = mh}); !r)
    return fail(std::move(r).error().with_context("mark the dead letter at " + pos + " of " + v->name + " purged"));
  advance_cursor(*v);
  return {};
}

Result<void> Bus::delete_group(std::string_view topic, std::string_view group, bool force) {
  if (impl_ == nullptr) [[unlikely]] return fail(detail::moved_from("Bus"));
  if (impl_->daemon_mode) {
    auto r = impl_->call_daemon({{"op", "delete_group"}, {"topic", std::string(topic)}, {"group", std::string(group)}, {"force", force}});
    if (!r) return fail(std::move(r).error());
    return {};
  }
  auto lock = impl_->admin_lock();
  if (!lock) return fail(std::move(lock).error());
  auto map = impl_->map_topic(topic, shm::Access::kReadWrite, shm::Access::kReadWrite);
  if (!map) return fail(std::move(map).error());
  auto g = detail::find_group(**map, group);
  if (!g) return fail(Errc::kNotFound, "group '" + shm::printable(group) + "' does not exist on topic '" + std::string(topic) + "'");
  if (auto r = detail::refuse_internal(*g, topic); !r) return r;
  if (!force) {
    const std::uint32_t live = detail::live_members(**map, g->slot);
    if (live > 0)
      return fail(Errc::kBusy, "group '" + g->name + "' has " + std::to_string(live) + (live == 1 ? " live member" : " live members") +
                                   "; stop them or delete with force");
  }
  if (auto r = detail::delete_group(**map, g->slot); !r) return r;
  detail::delete_dlqs_locked(impl_->registry, impl_->name, std::string(topic), g->name);
  return {};
}

namespace {
Result<std::vector<ResetStep>> reset_group_impl(Bus::Impl& bus, std::string_view topic, std::string_view group,
                                                Offset to, bool execute, std::int64_t partition);
}  // namespace

Result<std::vector<ResetStep>> Bus::reset_group(std::string_view topic, std::string_view group, Offset to,
                                                bool execute) {
  if (impl_ == nullptr) [[unlikely]] return fail(detail::moved_from("Bus"));
  return reset_group_impl(*impl_, topic, group, to, execute, -1);
}

Result<std::vector<ResetStep>> Bus::reset_group(std::string_view topic, std::string_view group,
                                                std::uint32_t partition, Offset to, bool execute) {
  if (impl_ == nullptr) [[unlikely]] return fail(detail::moved_from("Bus"));
  return reset_group_impl(*impl_, topic, group, to, execute, partition);
}

namespace {
Result<std::vector<ResetStep>> reset_group_impl(Bus::Impl& bus, std::string_view topic, std::string_view group,
                                                Offset to, bool execute, std::int64_t partition) {
  Bus::Impl* impl_ = &bus;
  if (impl_->daemon_mode) {
    const char* kind = to.kind == Offset::Kind::kEarliest   ? "earliest"
                       : to.kind == Offset::Kind::kLatest   ? "latest"
                       : to.kind == Offset::Kind::kPosition ? "position"
                                                            : "time";
    nlohmann::json req = {{"op", "reset_group"}, {"topic", std::string(topic)}, {"group", std::string(group)},
                          {"to", kind},          {"value", to.value},          {"execute", execute}};
    if (partition >= 0) req["partition"] = static_cast<std::uint64_t>(partition);
    auto r = impl_->call_daemon(std::move(req));
    if (!r) return fail(std::move(r).error());
    std::vector<ResetStep> plan;
    for (const auto& step : (*r)["plan"])
      plan.push_back({step["partition"].get<std::uint32_t>(), step["from"].get<std::uint64_t>(), step["to"].get<std::uint64_t>()});
    return plan;
  }
  auto lock = impl_->admin_lock();
  if (!lock) return fail(std::move(lock).error());
  auto map = impl_->map_topic(topic, shm::Access::kReadWrite, shm::Access::kReadWrite);
  if (!map) return fail(std::move(map).error());
  auto g = detail::find_group(**map, group);
  if (!g) return fail(Errc::kNotFound, "group '" + shm::printable(group) + "' does not exist on topic '" + std::string(topic) + "'");
  if (auto r = detail::refuse_internal(*g, topic); !r) return fail(std::move(r).error());
  if (execute) {
    const std::uint32_t live = detail::live_members(**map, g->slot);
    if (live > 0)
      return fail(Errc::kBusy, "group '" + g->name + "' has " + std::to_string(live) + (live == 1 ? " live member" : " live members") +
                                   "; stop them before resetting its cursors");
  }
  return detail::reset_group_cursors(**map, g->slot, to, partition, execute);
}
}  // namespace

}  // namespace herald
