#include "runtime/src/groups.hpp"

#include <sched.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "shm/clock.hpp"
#include "shm/ring_log.hpp"
#include "shm/slots.hpp"

namespace herald::detail {

namespace {

std::optional<GroupRecord> read_group(const shm::TopicMap& topic, std::uint32_t i) {
  shm::GroupLayout* g = topic.group(i);
  // As Registry::read_entry: a writer killed mid-write leaves seq odd; give
  // up on the slot after 100 ms instead of hanging every reader.
  std::uint64_t give_up = 0;
  for (std::uint32_t attempt = 0;; ++attempt) {
    // Seqlock read; pairs with write_begin/write_end below.
    const std::uint32_t s1 = g->seq.load(std::memory_order_acquire);
    if (s1 & 1) {
      if (attempt == 64) give_up = shm::monotonic_ns() + 100'000'000ull;
      if (attempt > 64 && (attempt & 63) == 0 && shm::monotonic_ns() > give_up) return std::nullopt;
      sched_yield();
      continue;
    }
    if (g->state.load(std::memory_order_relaxed) != shm::kGroupActive) return std::nullopt;
    GroupRecord r;
    r.slot = i;
    const std::uint32_t len = g->name_len.load(std::memory_order_relaxed);
    char name[shm::kNameCapacity];
    for (std::uint32_t w = 0; w < shm::kNameCapacity / 8; ++w) {
      const std::uint64_t word = g->name_words[w].load(std::memory_order_relaxed);
      std::memcpy(name + w * 8, &word, 8);
    }
    r.policy = static_cast<shm::GroupPolicy>(g->policy.load(std::memory_order_relaxed));
    r.flags = g->flags.load(std::memory_order_relaxed);
    r.max_deliveries = g->max_deliveries.load(std::memory_order_relaxed);
    r.lagout_grace_ms = g->lagout_grace_ms.load(std::memory_order_relaxed);
    r.created_ns = g->created_ns.load(std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_acquire);
    if (g->seq.load(std::memory_order_relaxed) != s1) continue;
    if (len > shm::kNameCapacity) return std::nullopt;
    r.name.assign(name, len);
    return r;
  }
}

void write_begin(shm::GroupLayout* g) {
  // Odd while written; a slot left odd by a writer that died mid-write stays
  // odd (+2), so a reader never takes the rewrite for a stable slot.
  const std::uint32_t s = g->seq.load(std::memory_order_relaxed);
  g->seq.store(s + ((s & 1) != 0 ? 2 : 1), std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
}
void write_end(shm::GroupLayout* g) {
  g->seq.store(g->seq.load(std::memory_order_relaxed) + 1, std::memory_order_release);
}

}  // namespace

Result<void> refuse_internal(const GroupRecord& g, std::string_view topic) {
  if ((g.flags & shm::kGroupInternal) == 0) return {};
  return fail(Errc::kInvalidArgument, "group '" + g.name + "' of '" + std::string(topic) +
                                          "' is the dead-letter topic's own cursor; 'herald dlq redrive' and "
                                          "'herald dlq purge' move it");
}

std::optional<GroupRecord> find_group(const shm::TopicMap& topic, std::string_view name) {
  const std::uint32_t n = topic.state_geometry().group_slots;
  for (std::uint32_t i = 0; i < n; ++i) {
    if (topic.group(i)->state.load(std::memory_order_relaxed) != shm::kGroupActive) continue;
    auto r = read_group(topic, i);
    if (r && r->name == name) return r;
  }
  return std::nullopt;
}

std::vector<GroupRecord> list_groups(const shm::TopicMap& topic) {
  std::vector<GroupRecord> out;
  const std::uint32_t n = topic.state_geometry().group_slots;
  for (std::uint32_t i = 0; i < n; ++i) {
    if (topic.group(i)->state.load(std::memory_order_relaxed) != shm::kGroupActive) continue;
    if (auto r = read_group(topic, i)) out.push_back(std::move(*r));
  }
  return out;
}

Result<GroupRecord> create_group(const shm::TopicMap& topic, const NewGroup& ng,
                                 std::span<const std::uint64_t> start) {
  if (find_group(topic, ng.name))
    return fail(Errc::kAlreadyExists, "group '" + ng.name + "' already exists on topic '" + topic.topic() + "'");
  if (start.size() != topic.partitions()) return fail(Errc::kInvalidArgument, "one start position per partition");
  const std::uint32_t n = topic.state_geometry().group_slots;
  for (std::uint32_t i = 0; i < n; ++i) {
    shm::GroupLayout* g = topic.group(i);
    if (g->state.load(std::memory_order_acquire) != shm::kGroupFree) continue;
    const bool gating = ng.policy != shm::GroupPolicy::kLossy;
    write_begin(g);
    g->state.store(shm::kGroupCreating, std::memory_order_relaxed);
    g->flags.store(ng.extra_flags, std::memory_order_relaxed);
    g->policy.store(static_cast<std::uint32_t>(ng.policy), std::memory_order_relaxed);
    g->name_len.store(static_cast<std::uint32_t>(ng.name.size()), std::memory_order_relaxed);
    char name[shm::kNameCapacity] = {};
    std::memcpy(name, ng.name.data(), std::min<std::size_t>(ng.name.size(), shm::kNameCapacity));
    for (std::uint32_t w = 0; w < shm::kNameCapacity / 8; ++w) {
      std::uint64_t word = 0;
      std::memcpy(&word, name + w * 8, 8);
      g->name_words[w].store(word, std::memory_order_relaxed);
    }
    g->max_deliveries.store(ng.max_deliveries, std::memory_order_relaxed);
    g->lagout_grace_ms.store(ng.lagout_grace_ms, std::memory_order_relaxed);
    const std::uint64_t created_ns = shm::realtime_ns();
    g->created_ns.store(created_ns, std::memory_order_relaxed);
    g->dlq_incarnation.store(0, std::memory_order_relaxed);
    g->members.store(0, std::memory_order_relaxed);
    g->last_member_seen_ns.store(shm::monotonic_ns(), std::memory_order_relaxed);
    for (std::uint32_t p = 0; p < topic.partitions(); ++p) {
      shm::GroupPartitionLayout* gp = topic.group_partition(i, p);
      // The generation continues from the slot's previous life, so a zombie
      // of a deleted group with the same slot cannot commit into this one.
      const std::uint32_t gen = shm::cursor_gen(gp->cursor.load(std::memory_order_relaxed)) + 1;
      gp->lease.store(shm::kNoLease, std::memory_order_relaxed);
      gp->inflight.store(shm::kNoInflight, std::memory_order_relaxed);
      gp->dlq_pending.store(0, std::memory_order_relaxed);
      gp->gap_bytes.store(0, std::memory_order_relaxed);
      gp->gap_events.store(0, std::memory_order_relaxed);
      gp->dead_letters.store(0, std::memory_order_relaxed);
      gp->committed_ns.store(0, std::memory_order_relaxed);
      gp->owner_reader.store(0, std::memory_order_relaxed);
      gp->gate_floor.store(shm::load_tail(topic.partition(p)), std::memory_order_seq_cst);
      gp->cursor.store(shm::pack_cursor(gen, start[p]), std::memory_order_seq_cst);
    }
    // Raise the high-water mark before activating, so producers scan the slot.
    std::uint32_t hw = topic.state_header()->group_slots_hw.load(std::memory_order_relaxed);
    while (hw < i + 1 && !topic.state_header()->group_slots_hw.compare_exchange_weak(hw, i + 1)) {
    }
    if (gating) g->flags.fetch_or(shm::kGroupGating, std::memory_order_seq_cst);
    // seq_cst: pairs with the seq_cst load of `state` in compute_gate (the
    // Disruptor rule; see shm::lower_gate).
    g->state.store(shm::kGroupActive, std::memory_order_seq_cst);
    write_end(g);
    for (std::uint32_t p = 0; p < topic.partitions(); ++p) {
      const std::uint64_t t1 =
          topic.partition(p).part->tail.load(std::memory_order_seq_cst) & ~shm::kTailClosedBit;
      topic.group_partition(i, p)->gate_floor.store(t1, std::memory_order_seq_cst);
    }
    topic.state_header()->groups_epoch.fetch_add(1, std::memory_order_release);
    GroupRecord r;
    r.slot = i;
    r.name = ng.name;
    r.policy = ng.policy;
    r.flags = ng.extra_flags | (gating ? shm::kGroupGating : 0u);
    r.max_deliveries = ng.max_deliveries;
    r.lagout_grace_ms = ng.lagout_grace_ms;
    r.created_ns = created_ns;
    return r;
  }
  return fail(Errc::kLimit, "topic '" + topic.topic() + "' already has " + std::to_string(n) + " groups");
}

Result<void> delete_group(const shm::TopicMap& topic, std::uint32_t slot) {
  shm::GroupLayout* g = topic.group(slot);
  write_begin(g);
  g->state.store(shm::kGroupDeleting, std::memory_order_seq_cst);
  g->flags.fetch_and(~static_cast<std::uint32_t>(shm::kGroupGating), std::memory_order_seq_cst);
  for (std::uint32_t p = 0; p < topic.partitions(); ++p) {
    shm::GroupPartitionLayout* gp = topic.group_partition(slot, p);
    // Fence any member still attached: bump the generation.
    const std::uint64_t c = gp->cursor.load(std::memory_order_relaxed);
    gp->cursor.store(shm::pack_cursor(shm::cursor_gen(c) + 1, shm::cursor_pos(c)), std::memory_order_seq_cst);
    gp->owner_reader.store(0, std::memory_order_relaxed);
    shm::wake_producers(topic.partition(p));
  }
  // Members still attached no longer belong to any group (they learn it at
  // their next poll): a group made in this slot later must not count them
  // as its live members (reset and delete would be refused), and a
  // restarted heraldd must not restore them into it. Relaxed: the field is
  // read for those counts only, each a snapshot.
  for (std::uint32_t r = 0; r < topic.state_geometry().reader_slots; ++r) {
    shm::ReaderLayout* rd = topic.reader(r);
    std::uint32_t mine = slot + 1;
    rd->group.compare_exchange_strong(mine, 0, std::memory_order_relaxed);
  }
  g->state.store(shm::kGroupFree, std::memory_order_release);
  write_end(g);
  topic.state_header()->groups_epoch.fetch_add(1, std::memory_order_release);
  return {};
}

namespace {
// Reads records from `from` (lossy: copy and validate) until one has a time
// at or after t; returns its position, or tail.
std::uint64_t scan_time(const shm::PartitionView& v, std::uint64_t from, std::uint64_t t) {
  std::vector<std::byte> buf(v.max_event);
  std::uint64_t q = from;
  for (;;) {
    std::uint32_t n = 0;
    const shm::Status st = shm::read_copy(v, q, buf.data(), &n);
    if (st == shm::Status::kOverrun) {
      q = shm::beginning(v);
      continue;
    }
    if (st != shm::Status::kOk) return q;  // empty (tail), closed or corrupt: stop here
    const auto* h = reinterpret_cast<const shm::RecordHeader*>(buf.data());
    if ((h->flags & shm::kRecordAborted) == 0 && h->time_ns >= t) return q;
    q += n;
  }
}
}  // namespace

Result<std::uint64_t> resolve_offset(const shm::TopicMap& topic, std::uint32_t p, const Offset& where) {
  if (p >= topic.partitions())
    return fail(Errc::kInvalidArgument, "partition " + std::to_string(p) + " does not exist (topic '" +
                                            topic.topic() + "' has " + std::to_string(topic.partitions()) + ")");
  const shm::PartitionView& v = topic.partition(p);
  switch (where.kind) {
    case Offset::Kind::kEarliest: return shm::beginning(v);
    case Offset::Kind::kLatest: return shm::load_tail(v);
    case Offset::Kind::kPosition:
      if (shm::check_position(v, where.value) != shm::Status::kOk)
        return fail(Errc::kInvalidArgument,
                    "position " + std::to_string(where.value) + " is not a committed event boundary in partition " +
                        std::to_string(p) + " (retained: " + std::to_string(shm::beginning(v)) + ".." +
                        std::to_string(shm::load_tail(v)) + "); event positions are in what publish returns and in "
                        "'herald tail TOPIC --json'");
      return where.value;
    case Offset::Kind::kTime: return scan_time(v, shm::beginning(v), where.value);
  }
  return fail(Errc::kInvalidArgument, "unknown offset kind");
}

shm::GroupPolicy to_shm(Policy p, shm::GroupPolicy fallback) noexcept {
  switch (p) {
    case Policy::kLossless: return shm::GroupPolicy::kLossless;
    case Policy::kLossy: return shm::GroupPolicy::kLossy;
    case Policy::kLagOut: return shm::GroupPolicy::kLagOut;
    case Policy::kDefault: break;
  }
  return fallback;
}

Policy from_shm(shm::GroupPolicy p) noexcept {
  switch (p) {
    case shm::GroupPolicy::kLossless: return Policy::kLossless;
    case shm::GroupPolicy::kLossy: return Policy::kLossy;
    case shm::GroupPolicy::kLagOut: return Policy::kLagOut;
  }
  return Policy::kLagOut;
}

const char* policy_name(shm::GroupPolicy p) noexcept {
  switch (p) {
    case shm::GroupPolicy::kLossless: return "lossless";
    case shm::GroupPolicy::kLossy: return "lossy";
    case shm::GroupPolicy::kLagOut: return "lag-out";
  }
  return "?";
}

namespace {
// Whether reader slot r is a live member of group g.
bool live_member(const shm::TopicMap& topic, std::uint32_t g, std::uint32_t r) {
  if (r >= topic.state_geometry().reader_slots) return false;
  shm::ReaderLayout* rd = topic.reader(r);
  const std::uint64_t owner = rd->owner.load(std::memory_order_acquire);
  if (rd->group.load(std::memory_order_relaxed) != g + 1) return false;
  return shm::owner_live(owner, rd->start_time.load(std::memory_order_relaxed));
}
}  // namespace

std::uint32_t live_members(const shm::TopicMap& topic, std::uint32_t g) {
  std::uint32_t n = 0;
  for (std::uint32_t r = 0; r < topic.state_geometry().reader_slots; ++r) n += live_member(topic, g, r) ? 1u : 0u;
  return n;
}

Result<std::vector<ResetStep>> reset_group_cursors(const shm::TopicMap& topic, std::uint32_t g, const Offset& to,
                                                   std::int64_t partition, bool execute) {
  if (partition >= static_cast<std::int64_t>(topic.partitions()))
    return fail(Errc::kInvalidArgument, "partition " + std::to_string(partition) + " does not exist (topic '" +
                                            topic.topic() + "' has " + std::to_string(topic.partitions()) + ")");
  // Resolve every partition before changing any: a target one partition
  // cannot take (not an event boundary there) fails the whole reset with
  // nothing changed, rather than half-way through.
  std::vector<ResetStep> plan;
  for (std::uint32_t p = 0; p < topic.partitions(); ++p) {
    if (partition >= 0 && p != static_cast<std::uint32_t>(partition)) continue;
    auto pos = resolve_offset(topic, p, to);
    if (!pos) return fail(std::move(pos).error());
    plan.push_back({p, shm::cursor_pos(topic.group_partition(g, p)->cursor.load(std::memory_order_acquire)), *pos});
  }
  if (!execute) return plan;
  for (const ResetStep& st : plan) {
    shm::GroupPartitionLayout* gp = topic.group_partition(g, st.partition);
    const std::uint64_t cur = gp->cursor.load(std::memory_order_acquire);
    // A new generation fences anyone still holding the old cursor.
    const std::uint64_t desired = shm::pack_cursor(shm::cursor_gen(cur) + 1, st.to);
    if (st.to < shm::cursor_pos(cur)) {
      std::uint64_t floor = 0;
      (void)shm::lower_gate(topic, g, st.partition, cur, desired, &floor);
    } else {
      std::uint64_t expect = cur;
      gp->cursor.compare_exchange_strong(expect, desired, std::memory_order_seq_cst);
      shm::wake_producers(topic.partition(st.partition));
    }
    // The in-flight slot and a pending DLQ move belong to the old position.
    gp->inflight.store(shm::kNoInflight, std::memory_order_relaxed);
    gp->dlq_pending.store(0, std::memory_order_relaxed);
  }
  return plan;
}

std::vector<std::uint32_t> take_free_partitions(const shm::TopicMap& topic, std::uint32_t g, std::uint32_t reader) {
  std::vector<std::uint32_t> taken;
  for (std::uint32_t p = 0; p < topic.partitions(); ++p) {
    shm::GroupPartitionLayout* gp = topic.group_partition(g, p);
    std::uint32_t cur = gp->owner_reader.load(std::memory_order_acquire);
    if (cur == reader + 1) {
      taken.push_back(p);
      continue;
    }
    if (cur != 0 && live_member(topic, g, cur - 1)) continue;
    if (!gp->owner_reader.compare_exchange_strong(cur, reader + 1, std::memory_order_acq_rel)) continue;
    // Fence the previous owner (if any): bump the generation by CAS.
    std::uint64_t c = gp->cursor.load(std::memory_order_acquire);
    while (!gp->cursor.compare_exchange_weak(c, shm::pack_cursor(shm::cursor_gen(c) + 1, shm::cursor_pos(c)),
                                             std::memory_order_seq_cst)) {
    }
    gp->lease.store(shm::kNoLease, std::memory_order_release);
    taken.push_back(p);
  }
  return taken;
}

void release_partition(const shm::TopicMap& topic, std::uint32_t g, std::uint32_t p, std::uint32_t reader) {
  shm::GroupPartitionLayout* gp = topic.group_partition(g, p);
  std::uint32_t me = reader + 1;
  gp->lease.store(shm::kNoLease, std::memory_order_release);
  gp->owner_reader.compare_exchange_strong(me, 0, std::memory_order_acq_rel);
}

}  // namespace herald::detail
