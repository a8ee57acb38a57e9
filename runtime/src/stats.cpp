// herald::read_stats: a read-only walk over a bus's shared memory (see
// herald/stats.hpp). Segments are mapped read-only and validated by attach;
// every value read from them afterwards is bounded or clamped here before it
// is used (an index, a length, a position), and seqlocked records are read
// with a bounded number of retries so a writer that died mid-update cannot
// hang the reader.
#include "herald/stats.hpp"

#include <sched.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <charconv>
#include <optional>
#include <set>

#include "runtime/src/dlq.hpp"
#include "shm/clock.hpp"
#include "shm/mapping.hpp"
#include "shm/names.hpp"
#include "shm/record_layout.hpp"
#include "shm/registry.hpp"
#include "shm/ring_log.hpp"
#include "shm/slots.hpp"
#include "shm/topic_map.hpp"

namespace herald {

const char* policy_name(Policy p) noexcept {
  switch (p) {
    case Policy::kLossless: return "lossless";
    case Policy::kLossy: return "lossy";
    case Policy::kLagOut: return "lag-out";
    case Policy::kDefault: break;
  }
  return "default";
}

namespace {

constexpr int kSeqlockAttempts = 10'000;          // then the record is reported unreadable
constexpr std::uint64_t kStallReportNs = 1'000'000'000ull;  // DESIGN.md: a claim held longer is reported
constexpr int kSkipAborted = 64;                  // aborted records passed over to find a real event's time

Policy policy_of(std::uint32_t raw) noexcept {
  switch (raw) {
    case static_cast<std::uint32_t>(shm::GroupPolicy::kLossless): return Policy::kLossless;
    case static_cast<std::uint32_t>(shm::GroupPolicy::kLossy): return Policy::kLossy;
    default: return Policy::kLagOut;
  }
}

std::int64_t pid_of(std::uint64_t owner) noexcept {
  if (owner == 0 || (owner & shm::kOwnerReclaiming) != 0) return 0;
  return static_cast<std::int64_t>(owner & 0xffffffffu);
}

bool alive(std::int64_t pid, std::uint64_t start_time) noexcept {
  return pid > 0 && shm::process_alive(static_cast<pid_t>(pid), start_time);
}

struct GroupSnapshot {
  std::string name;
  std::uint32_t flags = 0;
  std::uint32_t policy = 0;
  std::uint32_t max_deliveries = 0;
  std::uint64_t lagout_grace_ms = 0;
  std::uint64_t created_ns = 0;
};

// A group slot read under its seqlock, with bounded retries.
std::optional<GroupSnapshot> read_group(const shm::TopicMap& m, std::uint32_t i) {
  const shm::GroupLayout* g = m.group(i);
  for (int attempt = 0; attempt < kSeqlockAttempts; ++attempt) {
    // Seqlock read: pairs with the administrator's odd store / release even store.
    const std::uint32_t s1 = g->seq.load(std::memory_order_acquire);
    if (s1 & 1) {
      sched_yield();
      continue;
    }
    if (g->state.load(std::memory_order_relaxed) != shm::kGroupActive) return std::nullopt;
    GroupSnapshot r;
    const std::uint32_t len = g->name_len.load(std::memory_order_relaxed);
    char name[shm::kNameCapacity];
    for (std::uint32_t w = 0; w < shm::kNameCapacity / 8; ++w) {
      const std::uint64_t word = g->name_words[w].load(std::memory_order_relaxed);
      std::memcpy(name + w * 8, &word, 8);
    }
    r.flags = g->flags.load(std::memory_order_relaxed);
    r.policy = g->policy.load(std::memory_order_relaxed);
    r.max_deliveries = g->max_deliveries.load(std::memory_order_relaxed);
    r.lagout_grace_ms = g->lagout_grace_ms.load(std::memory_order_relaxed);
    r.created_ns = g->created_ns.load(std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_acquire);
    if (g->seq.load(std::memory_order_relaxed) != s1) continue;
    if (len == 0 || len > shm::kMaxTopicName) return std::nullopt;  // not a valid name: skip the slot
    r.name.assign(name, len);
    if (!shm::validate_entity_name(r.name, "group", true)) return std::nullopt;
    return r;
  }
  return std::nullopt;
}

// The time of the first real (not aborted) event at or after q, 0 if none
// is readable (q at tail, overwritten, or garbage).
std::uint64_t event_time_at(const shm::PartitionView& v, std::uint64_t q, std::vector<std::byte>& buf) {
  const std::uint64_t tail = shm::load_tail(v);
  if (q >= tail) return 0;
  if (tail - q > v.ring_bytes) q = shm::beginning(v);
  for (int i = 0; i < kSkipAborted && q < tail; ++i) {
    std::uint32_t n = 0;
    const shm::Status st = shm::read_copy(v, q, buf.data(), &n);
    if (st == shm::Status::kOverrun) {
      q = shm::beginning(v);
      continue;
    }
    if (st != shm::Status::kOk || n < shm::kRecordHeaderBytes) return 0;
    shm::RecordHeader h;
    std::memcpy(static_cast<void*>(&h), buf.data(), sizeof h);
    if ((h.flags & shm::kRecordAborted) == 0) return h.time_ns;
    q += n;
  }
  return 0;
}

// Pending dead letters in a DLQ topic: dead letters from its internal
// cursor to tail, less those a resolution marker (redrive, purge) names.
std::uint64_t dlq_depth(const shm::TopicMap& dlq) {
  std::optional<std::uint32_t> cursor_slot;
  for (std::uint32_t g = 0; g < dlq.state_geometry().group_slots; ++g) {
    if (dlq.group(g)->state.load(std::memory_order_relaxed) != shm::kGroupActive) continue;
    auto rec = read_group(dlq, g);
    if (rec && rec->name == detail::kDlqCursorGroup) cursor_slot = g;
  }
  if (!cursor_slot || dlq.partitions() == 0) return 0;
  const shm::PartitionView& v = dlq.partition(0);
  const std::uint64_t tail = shm::load_tail(v);
  std::uint64_t q = shm::cursor_pos(dlq.group_partition(*cursor_slot, 0)->cursor.load(std::memory_order_acquire));
  if (q > tail || tail - q > v.ring_bytes) q = shm::beginning(v);
  std::vector<std::byte> buf(v.max_event);
  std::set<std::uint64_t> letters, resolved;
  // Bounded: a ring holds at most ring_bytes / 64 records.
  for (std::uint64_t i = 0; q < tail && i <= v.ring_bytes / shm::kRecordAlign; ++i) {
    std::uint32_t n = 0;
    if (shm::read_copy(v, q, buf.data(), &n) != shm::Status::kOk) break;
    const auto* h = reinterpret_cast<const shm::RecordHeader*>(buf.data());
    if ((h->flags & shm::kRecordAborted) == 0) {
      const EventView e = EventView::over(buf.data(), dlq.topic(), 0, q, 1);
      if (e.type() == detail::kResolvedType) {
        if (auto r = e.header(detail::kHdrResolves)) {
          std::uint64_t pos = 0;
          std::from_chars(r->data(), r->data() + r->size(), pos);
          resolved.insert(pos);
        }
      } else if (e.header(detail::kHdrTopic)) {
        letters.insert(q);
      }
    }
    q += n;
  }
  std::uint64_t depth = 0;
  for (std::uint64_t pos : letters) depth += resolved.count(pos) == 0 ? 1u : 0u;
  return depth;
}

void read_partitions(const shm::TopicMap& m, TopicStats& t) {
  const std::uint64_t rt_now = shm::realtime_ns();
  const std::uint32_t slots = m.geometry().producer_slots;
  std::vector<std::byte> buf(m.geometry().params.max_event);
  for (std::uint32_t p = 0; p < m.partitions(); ++p) {
    const shm::PartitionView& v = m.partition(p);
    PartitionStats ps;
    ps.partition = p;
    ps.tail = shm::load_tail(v);
    ps.closed = shm::is_closed(v);
    ps.beginning = std::min(shm::beginning(v), ps.tail);
    ps.beginning_time_ns = event_time_at(v, ps.beginning, buf);
    for (std::uint32_t s = 0; s < slots; ++s) {
      // Relaxed: statistics; each row has one writer.
      const shm::ProducerCountersLayout* c = m.counters(s, p);
      ps.events += c->events.load(std::memory_order_relaxed);
      ps.bytes += c->bytes.load(std::memory_order_relaxed);
      ps.claims += c->claims.load(std::memory_order_relaxed);
      ps.backpressure_waits += c->backpressure_waits.load(std::memory_order_relaxed);
    }
    const shm::PartitionLayout* pl = v.part;
    ps.aborted_records = pl->aborted_records.load(std::memory_order_relaxed);
    ps.repaired_claims = pl->repaired_claims.load(std::memory_order_relaxed);
    ps.last_repair_ns = pl->last_repair_ns.load(std::memory_order_relaxed);
    ps.max_repair_ns = pl->max_repair_ns.load(std::memory_order_relaxed);
    ps.ignored_gates = pl->ignored_gates.load(std::memory_order_relaxed);
    ps.stalled_claims_reported = pl->stalled_claims.load(std::memory_order_relaxed);
    ps.reported_stall_pid = static_cast<std::int64_t>(pl->stalled_pid.load(std::memory_order_relaxed) & 0xffffffffu);
    ps.reported_stall_position = pl->stalled_position.load(std::memory_order_relaxed);
    ps.parked_producers = pl->producer_waiters.load(std::memory_order_relaxed);
    ps.parked_readers =
        static_cast<std::uint32_t>(std::popcount(v.state->waiters.load(std::memory_order_relaxed)));
    // Claims held too long, or left by a dead producer.
    for (std::uint32_t s = 0; s < slots; ++s) {
      const shm::ClaimSlotLayout& c = v.claims[s];
      const std::uint64_t w = c.word.load(std::memory_order_acquire);
      const std::uint64_t state = w & shm::kClaimStateMask;
      if (state == shm::kClaimEmpty) continue;
      const shm::ProducerSlotLayout* ps_slot = m.producer(s);
      StalledClaim sc;
      sc.partition = p;
      sc.producer_slot = s;
      sc.pid = pid_of(ps_slot->owner.load(std::memory_order_acquire));
      sc.tid = ps_slot->tid.load(std::memory_order_relaxed);
      sc.owner_alive = alive(sc.pid, ps_slot->start_time.load(std::memory_order_relaxed));
      sc.position = w & ~shm::kClaimStateMask;
      sc.bytes = c.size.load(std::memory_order_relaxed);
      // When the claim was taken (CLOCK_REALTIME; 0 if never noted): a claim
      // held for a second while the wall clock steps by more is misjudged,
      // which only moves when it is reported.
      const std::uint64_t won = c.won_ns.load(std::memory_order_relaxed);
      sc.held_ns = state == shm::kClaimWon && won != 0 && won < rt_now ? rt_now - won : 0;
      if (!sc.owner_alive || sc.held_ns > kStallReportNs) ps.stalled.push_back(sc);
    }
    t.events += ps.events;
    t.bytes += ps.bytes;
    t.tail_bytes += ps.tail;
    t.aborted_records += ps.aborted_records;
    t.backpressure_waits += ps.backpressure_waits;
    t.partition_stats.push_back(std::move(ps));
  }
}

void read_readers(const shm::TopicMap& m, TopicStats& t, const std::vector<std::string>& group_names,
                  std::uint64_t mono_now) {
  const std::uint32_t n = std::min(m.state_header()->reader_slots_hw.load(std::memory_order_acquire),
                                   m.state_geometry().reader_slots);
  for (std::uint32_t r = 0; r < n; ++r) {
    const shm::ReaderLayout* rd = m.reader(r);
    const std::int64_t pid = pid_of(rd->owner.load(std::memory_order_acquire));
    if (pid == 0) continue;
    MemberStats ms;
    ms.reader_slot = r;
    ms.pid = pid;
    ms.alive = alive(pid, rd->start_time.load(std::memory_order_relaxed));
    ms.stopped = ms.alive && shm::process_stopped(static_cast<pid_t>(pid));
    const std::uint32_t g = rd->group.load(std::memory_order_relaxed);
    if (g != 0 && g - 1 < group_names.size()) ms.group = group_names[g - 1];
    if (g != 0 && ms.group.empty()) ms.group = "?";
    ms.member_id = rd->member_id.load(std::memory_order_relaxed);
    const std::uint32_t flags = rd->flags.load(std::memory_order_relaxed);
    ms.in_poll = (flags & shm::kReaderInPoll) != 0;
    ms.poll_count = rd->poll_count.load(std::memory_order_relaxed);
    const std::uint64_t last = rd->last_poll_ns.load(std::memory_order_relaxed);
    ms.since_last_poll_ns = last != 0 && last < mono_now ? mono_now - last : 0;
    ms.events = rd->events.load(std::memory_order_relaxed);
    ms.attached_ns = rd->attached_ns.load(std::memory_order_relaxed);
    for (std::uint32_t p = 0; p < m.partitions(); ++p)
      if ((rd->assigned[p / 64].load(std::memory_order_relaxed) >> (p % 64) & 1) != 0) ms.partitions.push_back(p);
    t.members.push_back(std::move(ms));
  }
}

void read_producers(const shm::TopicMap& m, TopicStats& t) {
  const std::uint32_t n = std::min(m.log_header()->producer_slots_hw.load(std::memory_order_acquire),
                                   m.geometry().producer_slots);
  for (std::uint32_t s = 0; s < n; ++s) {
    const shm::ProducerSlotLayout* sl = m.producer(s);
    const std::int64_t pid = pid_of(sl->owner.load(std::memory_order_acquire));
    if (pid == 0) continue;
    ProducerSlotStats ps;
    ps.slot = s;
    ps.pid = pid;
    ps.tid = sl->tid.load(std::memory_order_relaxed);
    ps.alive = alive(pid, sl->start_time.load(std::memory_order_relaxed));
    ps.stopped = ps.alive && shm::process_stopped(static_cast<pid_t>(pid));
    ps.producer_id = sl->producer_id.load(std::memory_order_relaxed);
    ps.attached_ns = sl->attached_ns.load(std::memory_order_relaxed);
    for (std::uint32_t p = 0; p < m.partitions(); ++p) {
      const shm::ProducerCountersLayout* c = m.counters(s, p);
      ps.events += c->events.load(std::memory_order_relaxed);
      ps.bytes += c->bytes.load(std::memory_order_relaxed);
      ps.claims += c->claims.load(std::memory_order_relaxed);
      ps.backpressure_waits += c->backpressure_waits.load(std::memory_order_relaxed);
    }
    // The counters run on across the slot's owners: this owner's own are
    // what it added since it took the slot (its base, stored just after;
    // read unordered, so clamp at zero for the moment in between).
    auto own = [](std::uint64_t total, const std::atomic<std::uint64_t>& base) {
      const std::uint64_t b = base.load(std::memory_order_relaxed);
      return total > b ? total - b : 0;
    };
    ps.events = own(ps.events, sl->base_events);
    ps.bytes = own(ps.bytes, sl->base_bytes);
    ps.claims = own(ps.claims, sl->base_claims);
    ps.backpressure_waits = own(ps.backpressure_waits, sl->base_waits);
    t.producers.push_back(ps);
  }
}

void read_groups(const shm::TopicMap& m, TopicStats& t, const shm::Registry& reg, const std::string& bus,
                 const StatsOptions& o, std::uint64_t now_rt, std::vector<std::string>& names) {
  const std::uint32_t slots = m.state_geometry().group_slots;
  names.assign(slots, std::string());
  std::vector<std::byte> buf(m.geometry().params.max_event);
  for (std::uint32_t gi = 0; gi < slots; ++gi) {
    if (m.group(gi)->state.load(std::memory_order_relaxed) != shm::kGroupActive) continue;
    auto rec = read_group(m, gi);
    if (!rec) continue;
    names[gi] = rec->name;
    const shm::GroupLayout* g = m.group(gi);
    GroupStats gs;
    gs.name = rec->name;
    gs.slot = gi;
    gs.policy = policy_of(rec->policy);
    gs.gating = (g->flags.load(std::memory_order_relaxed) & shm::kGroupGating) != 0;
    gs.internal = (rec->flags & shm::kGroupInternal) != 0;
    gs.max_deliveries = rec->max_deliveries;
    gs.lagout_grace_ms = rec->lagout_grace_ms;
    gs.created_ns = rec->created_ns;
    gs.demotions = g->demotions.load(std::memory_order_relaxed);
    gs.promotions = g->promotions.load(std::memory_order_relaxed);
    gs.rebalances = g->rebalances.load(std::memory_order_relaxed);
    for (std::uint32_t p = 0; p < m.partitions(); ++p) {
      const shm::GroupPartitionLayout* gp = m.group_partition(gi, p);
      const PartitionStats& ps = t.partition_stats[p];
      GroupPartitionStats s;
      s.partition = p;
      const std::uint64_t word = gp->cursor.load(std::memory_order_acquire);
      s.generation = shm::cursor_gen(word);
      s.committed = std::min(shm::cursor_pos(word), ps.tail);  // a cursor past tail is garbage: clamp
      s.lag_bytes = ps.tail - s.committed;
      const std::uint64_t avg = ps.events > 0 ? std::max<std::uint64_t>(ps.bytes / ps.events, shm::kRecordAlign) : 0;
      // Rounded to the nearest; at least 1 while any byte is unconsumed.
      s.lag_events = s.lag_bytes == 0 ? 0 : avg == 0 ? 1 : std::max<std::uint64_t>(1, (s.lag_bytes + avg / 2) / avg);
      // A cursor below the oldest retained event (a demoted lag-out or a
      // lossy group that fell a ring behind): those bytes are gone, and the
      // oldest unconsumed event still there is the oldest retained one.
      // Not so for a gating group: `beginning` keeps a max_event margin
      // below which the next claim may overwrite, but no claim passes a
      // gating group's cursor, so everything from it on is still there. A
      // lossless group a full ring behind was shown as having lost a
      // max_event of events it then read in full (found by an exploratory
      // pass).
      const bool overwritten = !gs.gating && s.committed < ps.beginning && ps.tail > ps.beginning;
      if (overwritten) s.overwritten_bytes = ps.beginning - s.committed;
      if (o.lag_time && s.lag_bytes > 0) {
        const std::uint64_t at = overwritten ? ps.beginning_time_ns : event_time_at(m.partition(p), s.committed, buf);
        if (at != 0 && at < now_rt) s.lag_seconds = static_cast<double>(now_rt - at) / 1e9;
      }
      s.gate_floor = gp->gate_floor.load(std::memory_order_relaxed);
      s.gap_bytes = gp->gap_bytes.load(std::memory_order_relaxed);
      s.gaps = gp->gap_events.load(std::memory_order_relaxed);
      s.dead_letters = gp->dead_letters.load(std::memory_order_relaxed);
      s.dlq_stalled = gp->dlq_stalled.load(std::memory_order_relaxed) != 0;
      s.committed_ns = gp->committed_ns.load(std::memory_order_relaxed);
      s.owner_reader = gp->owner_reader.load(std::memory_order_relaxed);
      if (s.owner_reader != 0 && s.owner_reader <= m.state_geometry().reader_slots) {
        const shm::ReaderLayout* rd = m.reader(s.owner_reader - 1);
        s.owner_pid = pid_of(rd->owner.load(std::memory_order_acquire));
      } else {
        s.owner_reader = 0;
      }
      const std::uint64_t inflight = gp->inflight.load(std::memory_order_relaxed);
      if (shm::inflight_deliveries(inflight) > 0) {
        s.inflight_position = shm::inflight_pos(inflight);
        s.inflight_deliveries = shm::inflight_deliveries(inflight);
      }
      gs.lag_bytes += s.lag_bytes;
      gs.lag_events += s.lag_events;
      gs.gap_bytes += s.gap_bytes;
      gs.overwritten_bytes += s.overwritten_bytes;
      gs.gaps += s.gaps;
      gs.dead_letters += s.dead_letters;
      gs.lag_seconds = std::max(gs.lag_seconds, s.lag_seconds);
      gs.partitions.push_back(s);
    }
    if (!gs.internal && !t.dead_letter_topic) {
      const std::string dlq = shm::dlq_topic_name(t.name, gs.name);
      if (auto drec = reg.find(dlq)) {
        gs.dlq_topic = dlq;
        if (o.dlq_depth) {
          auto dm = shm::TopicMap::attach(bus, drec->name, drec->incarnation, shm::Access::kReadOnly,
                                          shm::Access::kReadOnly);
          if (dm) gs.dlq_depth = dlq_depth(*dm);
        }
      }
    }
    t.groups.push_back(std::move(gs));
  }
}

std::string resolve_bus(std::string_view name) {
  if (!name.empty()) return std::string(name);
  if (const char* env = std::getenv("HERALD_BUS"); env != nullptr && *env != '\0') return env;
  return "default";
}

}  // namespace

Result<BusStats> read_stats(std::string_view bus_in, const StatsOptions& o) {
  const std::string bus = resolve_bus(bus_in);
  auto reg = shm::Registry::open_read_only(bus);
  if (!reg) return fail(std::move(reg).error());
  BusStats out;
  out.bus = bus;
  out.time_ns = shm::realtime_ns();
  out.mono_ns = shm::monotonic_ns();
  const shm::RegistryHeaderLayout* h = reg->header();
  out.daemon.pid = pid_of(h->daemon_pid.load(std::memory_order_acquire));
  out.daemon.alive = alive(out.daemon.pid, h->daemon_start_time.load(std::memory_order_relaxed));
  out.daemon.stopped = out.daemon.alive && shm::process_stopped(static_cast<pid_t>(out.daemon.pid));
  out.daemon.epoch = h->daemon_epoch.load(std::memory_order_relaxed);
  std::vector<shm::TopicRecord> recs = reg->list();
  std::sort(recs.begin(), recs.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  for (const shm::TopicRecord& rec : recs) {
    const bool is_dlq = (rec.params.flags & shm::kLogDeadLetterTopic) != 0;
    if (!o.topic.empty() && rec.name != o.topic && rec.name.rfind(o.topic + ".dlq.", 0) != 0) continue;
    TopicStats t;
    t.name = rec.name;
    t.incarnation = rec.incarnation;
    t.partitions = rec.params.partitions;
    t.ring_bytes = rec.params.ring_bytes;
    t.max_event = rec.params.max_event;
    t.default_policy = policy_of(static_cast<std::uint32_t>(rec.default_policy));
    t.single_producer = (rec.params.flags & shm::kLogSingleProducer) != 0;
    t.dead_letter_topic = is_dlq;
    t.mode = rec.mode;
    t.gid = rec.gid;
    t.created_ns = rec.created_ns;
    t.lagout_grace_ms = rec.lagout_grace_ms;
    if (!shm::validate_entity_name(rec.name, "topic", true) || !shm::validate_log_params(rec.params)) {
      t.error = "registry entry fails validation";
      out.topics.push_back(std::move(t));
      continue;
    }
    auto m = shm::TopicMap::attach(bus, rec.name, rec.incarnation, shm::Access::kReadOnly, shm::Access::kReadOnly);
    if (!m) {
      t.error = m.error().message();
      out.topics.push_back(std::move(t));
      continue;
    }
    t.segment_bytes = m->geometry().total_bytes + m->state_geometry().total_bytes;
    const std::uint64_t mono_now = shm::monotonic_ns();
    read_partitions(*m, t);
    std::vector<std::string> group_names;
    read_groups(*m, t, *reg, bus, o, out.time_ns, group_names);
    read_readers(*m, t, group_names, mono_now);
    read_producers(*m, t);
    for (GroupStats& g : t.groups) {
      for (const MemberStats& ms : t.members)
        if (ms.alive && ms.group == g.name) ++g.members;
      // Ownership as the cursors record it (daemonless members have no
      // mirrored assignment bitmap): merged into the members' partitions.
      for (const GroupPartitionStats& gp : g.partitions)
        for (MemberStats& ms : t.members)
          if (gp.owner_reader == ms.reader_slot + 1 && ms.group == g.name &&
              std::find(ms.partitions.begin(), ms.partitions.end(), gp.partition) == ms.partitions.end())
            ms.partitions.push_back(gp.partition);
    }
    for (MemberStats& ms : t.members) std::sort(ms.partitions.begin(), ms.partitions.end());
    out.topics.push_back(std::move(t));
  }
  return out;
}

Result<std::vector<SegmentInfo>> bus_segments(std::string_view bus_in) {
  const std::string bus = resolve_bus(bus_in);
  if (auto r = shm::validate_bus_name(bus); !r) return fail(std::move(r).error());
  std::vector<SegmentInfo> out;
  std::vector<shm::TopicRecord> recs;
  auto reg = shm::Registry::open_read_only(bus);
  if (reg) recs = reg->list();
  const std::string reg_name = shm::registry_segment_name(bus);
  std::set<std::string> seen;
  for (const std::string& name : shm::Segment::list(shm::bus_segment_prefix(bus))) {
    SegmentInfo si;
    si.name = name;
    struct stat st{};
    if (::stat(("/dev/shm/" + name).c_str(), &st) == 0) {
      si.bytes = static_cast<std::uint64_t>(st.st_size);
      si.mode = static_cast<std::uint32_t>(st.st_mode & 07777);
      si.uid = st.st_uid;
      si.gid = st.st_gid;
    }
    const auto ends = [&](const char* suf) {
      const std::size_t n = std::strlen(suf);
      return name.size() >= n && name.compare(name.size() - n, n, suf) == 0;
    };
    si.kind = name == reg_name ? "registry" : ends(".log") ? "log" : ends(".state") ? "state" : "unknown";
    if (name == reg_name) si.registered = static_cast<bool>(reg);
    for (const shm::TopicRecord& r : recs) {
      const bool log = name == shm::log_segment_name(bus, r.name, r.incarnation);
      const bool state = name == shm::state_segment_name(bus, r.name, r.incarnation);
      if (!log && !state) continue;
      si.registered = true;
      si.topic = r.name;
      si.expected_mode = r.gid < 0 ? 0600u : (log ? 0640u : 0660u);
      seen.insert(name);
    }
    out.push_back(std::move(si));
  }
  for (const shm::TopicRecord& r : recs) {
    for (const std::string& name : {shm::log_segment_name(bus, r.name, r.incarnation),
                                    shm::state_segment_name(bus, r.name, r.incarnation)}) {
      if (seen.count(name) != 0) continue;
      SegmentInfo si;
      si.kind = name.size() > 4 && name.compare(name.size() - 4, 4, ".log") == 0 ? "log" : "state";
      si.topic = r.name;
      si.registered = true;
      out.push_back(std::move(si));
    }
  }
  return out;
}

}  // namespace herald
