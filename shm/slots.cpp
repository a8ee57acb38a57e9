#include "shm/slots.hpp"

#include <sys/syscall.h>
#include <unistd.h>

#include "shm/clock.hpp"
#include "shm/repair.hpp"

namespace herald::shm {

namespace {

void raise_hw(std::atomic<std::uint32_t>& hw, std::uint32_t v) noexcept {
  std::uint32_t cur = hw.load(std::memory_order_relaxed);
  // Release: a scanner that sees the new high-water mark sees the slot's owner.
  while (cur < v && !hw.compare_exchange_weak(cur, v, std::memory_order_release, std::memory_order_relaxed)) {
  }
}

bool slot_claims_empty(const TopicMap& topic, std::uint32_t slot) noexcept {
  for (std::uint32_t p = 0; p < topic.partitions(); ++p) {
    if ((topic.partition(p).claims[slot].word.load(std::memory_order_acquire) & kClaimStateMask) != kClaimEmpty)
      return false;
  }
  return true;
}

void init_producer_slot(const TopicMap& topic, std::uint32_t i, std::uint64_t producer_id) noexcept {
  ProducerSlotLayout* ps = topic.producer(i);
  ps->start_time.store(self_start_time(), std::memory_order_relaxed);
  ps->producer_id.store(producer_id, std::memory_order_relaxed);
  ps->attached_ns.store(realtime_ns(), std::memory_order_relaxed);
  ps->tid.store(static_cast<std::uint32_t>(::syscall(SYS_gettid)), std::memory_order_relaxed);
  raise_hw(topic.log_header()->producer_slots_hw, i + 1);
}

// Takes over slot i if its owner is dead; true if it is now ours.
bool take_over_dead_producer(const TopicMap& topic, std::uint32_t i, std::uint64_t me) noexcept {
  ProducerSlotLayout* ps = topic.producer(i);
  std::uint64_t owner = ps->owner.load(std::memory_order_acquire);
  if (!owner_dead(owner, ps->start_time.load(std::memory_order_relaxed))) return false;
  if (!ps->owner.compare_exchange_strong(owner, kOwnerReclaiming, std::memory_order_acq_rel)) return false;
  if (!repair_producer_slot(topic, i, 1ull << i)) {
    ps->owner.store(owner, std::memory_order_release);  // give it back: someone retries later
    return false;
  }
  std::uint64_t expect = 0;  // repair_producer_slot freed it
  return ps->owner.compare_exchange_strong(expect, me, std::memory_order_acq_rel);
}

}  // namespace

bool repair_producer_slot(const TopicMap& topic, std::uint32_t slot, std::uint64_t dead_slots) noexcept {
  bool done = true;
  for (std::uint32_t p = 0; p < topic.partitions(); ++p) {
    if (repair_claim_slot(topic, p, slot, dead_slots).outcome == RepairOutcome::kWait) done = false;
  }
  if (!done) return false;
  ProducerSlotLayout* ps = topic.producer(slot);
  ps->producer_id.store(0, std::memory_order_relaxed);
  ps->start_time.store(0, std::memory_order_relaxed);
  ps->owner.store(0, std::memory_order_release);
  return true;
}

// acquire_producer_slot without the producer id check (defined below).
Result<std::uint32_t> acquire_any_producer_slot(const TopicMap& topic, std::uint64_t producer_id);

namespace {
// An idempotent producer id is one live producer's: two writing under one
// id would both number their events 1, 2, 3... and a restarted producer,
// or a consumer deduplicating by (id, sequence), could not tell them apart.
// After slot i took the id: another live slot holding it, or UINT32_MAX.
// Each acquirer stores its id, then (seq_cst fence) loads the others', so
// of two racing for one id at least one sees the other (both may: each
// then fails and may retry).
std::uint32_t live_slot_with_id(const TopicMap& topic, std::uint32_t i, std::uint64_t producer_id) noexcept {
  std::atomic_thread_fence(std::memory_order_seq_cst);
  const std::uint32_t n = topic.geometry().producer_slots;
  for (std::uint32_t j = 0; j < n; ++j) {
    if (j == i) continue;
    ProducerSlotLayout* ps = topic.producer(j);
    const std::uint64_t owner = ps->owner.load(std::memory_order_seq_cst);
    if (owner == 0 || owner == kOwnerReclaiming) continue;
    if (ps->producer_id.load(std::memory_order_seq_cst) != producer_id) continue;
    if (owner_dead(owner, ps->start_time.load(std::memory_order_relaxed))) continue;
    return j;
  }
  return UINT32_MAX;
}
}  // namespace

Result<std::uint32_t> acquire_producer_slot(const TopicMap& topic, std::uint64_t producer_id) {
  auto slot = acquire_any_producer_slot(topic, producer_id);
  if (!slot || producer_id == 0) return slot;
  if (const std::uint32_t other = live_slot_with_id(topic, *slot, producer_id); other != UINT32_MAX) {
    const std::uint64_t owner = topic.producer(other)->owner.load(std::memory_order_relaxed);
    release_producer_slot(topic, *slot);
    return fail(Errc::kBusy, "producer id " + std::to_string(producer_id) + " is in use on topic '" + topic.topic() +
                                 "' by pid " + std::to_string(owner & 0xffffffffu) +
                                 " (one live producer per id: its sequences would collide)");
  }
  return slot;
}

Result<std::uint32_t> acquire_any_producer_slot(const TopicMap& topic, std::uint64_t producer_id) {
  if (topic.log_access() != Access::kReadWrite)
    return fail(Errc::kPermissionDenied, "a producer needs the log segment mapped read-write");
  const auto me = static_cast<std::uint64_t>(::getpid());
  const bool single = (topic.log_header()->flags & kLogSingleProducer) != 0;
  const std::uint32_t n = single ? 1 : topic.geometry().producer_slots;
  for (std::uint32_t i = 0; i < n; ++i) {
    std::uint64_t expect = 0;
    if (topic.producer(i)->owner.compare_exchange_strong(expect, me, std::memory_order_acq_rel)) {
      if (!slot_claims_empty(topic, i)) {
        // A slot freed with claims still named cannot happen through
        // release_producer_slot; be safe and leave it to repair.
        topic.producer(i)->owner.store(0, std::memory_order_release);
        continue;
      }
      init_producer_slot(topic, i, producer_id);
      return i;
    }
  }
  for (std::uint32_t i = 0; i < n; ++i) {
    if (take_over_dead_producer(topic, i, me)) {
      init_producer_slot(topic, i, producer_id);
      return i;
    }
  }
  if (single) {
    const std::uint64_t owner = topic.producer(0)->owner.load(std::memory_order_acquire);
    return fail(Errc::kBusy, "topic '" + topic.topic() + "' is single-producer and pid " +
                                 std::to_string(owner & 0xffffffffu) + " is producing to it");
  }
  return fail(Errc::kLimit, "topic '" + topic.topic() + "' already has " + std::to_string(n) +
                                " producers attached (one slot per producer thread)");
}

void release_producer_slot(const TopicMap& topic, std::uint32_t slot) noexcept {
  ProducerSlotLayout* ps = topic.producer(slot);
  ps->producer_id.store(0, std::memory_order_relaxed);
  ps->start_time.store(0, std::memory_order_relaxed);
  // Release: our last slot writes (all claims finished) happen before the
  // next owner's use.
  ps->owner.store(0, std::memory_order_release);
}

std::uint32_t reclaim_dead_producers(const TopicMap& topic) noexcept {
  if (topic.log_access() != Access::kReadWrite) return 0;
  const std::uint32_t n = topic.geometry().producer_slots;
  // Take over every dead slot first, so the threads of one dead process are
  // repaired together (the multi-dead candidate rule needs them all).
  std::uint64_t taken = 0;
  std::uint64_t owners[kProducerSlots] = {};
  for (std::uint32_t i = 0; i < n; ++i) {
    ProducerSlotLayout* ps = topic.producer(i);
    std::uint64_t owner = ps->owner.load(std::memory_order_acquire);
    if (!owner_dead(owner, ps->start_time.load(std::memory_order_relaxed))) continue;
    if (!ps->owner.compare_exchange_strong(owner, kOwnerReclaiming, std::memory_order_acq_rel)) continue;
    taken |= 1ull << i;
    owners[i] = owner;
  }
  std::uint32_t freed = 0;
  for (std::uint32_t i = 0; i < n; ++i) {
    if ((taken >> i & 1) == 0) continue;
    std::uint64_t same = 0;
    for (std::uint32_t j = 0; j < n; ++j)
      if ((taken >> j & 1) && owners[j] == owners[i]) same |= 1ull << j;
    if (repair_producer_slot(topic, i, same)) {
      ++freed;
    } else {
      topic.producer(i)->owner.store(owners[i], std::memory_order_release);  // someone retries later
    }
  }
  return freed;
}

void reclaim_reader_slot(const TopicMap& topic, std::uint32_t slot) noexcept {
  const std::uint64_t bit = 1ull << slot;
  for (std::uint32_t p = 0; p < topic.partitions(); ++p)
    topic.partition(p).state->waiters.fetch_and(~bit, std::memory_order_acq_rel);
  ReaderLayout* r = topic.reader(slot);
  for (auto& a : r->assigned) a.store(0, std::memory_order_relaxed);
  r->group.store(0, std::memory_order_relaxed);
  r->flags.store(0, std::memory_order_relaxed);
  r->start_time.store(0, std::memory_order_relaxed);
  r->owner.store(0, std::memory_order_release);
}

Result<std::uint32_t> acquire_reader_slot(const TopicMap& topic, std::uint32_t group_slot_plus1) {
  if (topic.state_access() != Access::kReadWrite)
    return fail(Errc::kPermissionDenied, "a consumer needs the state segment mapped read-write");
  const auto me = static_cast<std::uint64_t>(::getpid());
  const std::uint32_t n = topic.state_geometry().reader_slots;
  auto init = [&](std::uint32_t i) -> std::uint32_t {
    ReaderLayout* r = topic.reader(i);
    r->start_time.store(self_start_time(), std::memory_order_relaxed);
    r->group.store(group_slot_plus1, std::memory_order_relaxed);
    r->flags.store(0, std::memory_order_relaxed);
    r->poll_count.store(0, std::memory_order_relaxed);
    r->last_poll_ns.store(monotonic_ns(), std::memory_order_relaxed);
    r->attached_ns.store(realtime_ns(), std::memory_order_relaxed);
    r->events.store(0, std::memory_order_relaxed);
    for (auto& a : r->assigned) a.store(0, std::memory_order_relaxed);
    raise_hw(topic.state_header()->reader_slots_hw, i + 1);
    return i;
  };
  for (std::uint32_t i = 0; i < n; ++i) {
    std::uint64_t expect = 0;
    if (topic.reader(i)->owner.compare_exchange_strong(expect, me, std::memory_order_acq_rel)) return init(i);
  }
  for (std::uint32_t i = 0; i < n; ++i) {
    ReaderLayout* r = topic.reader(i);
    std::uint64_t owner = r->owner.load(std::memory_order_acquire);
    if (!owner_dead(owner, r->start_time.load(std::memory_order_relaxed))) continue;
    if (!r->owner.compare_exchange_strong(owner, kOwnerReclaiming, std::memory_order_acq_rel)) continue;
    reclaim_reader_slot(topic, i);
    std::uint64_t expect = 0;
    if (r->owner.compare_exchange_strong(expect, me, std::memory_order_acq_rel)) return init(i);
  }
  return fail(Errc::kLimit, "topic '" + topic.topic() + "' already has " + std::to_string(n) + " consumers attached");
}

void release_reader_slot(const TopicMap& topic, std::uint32_t slot) noexcept { reclaim_reader_slot(topic, slot); }

}  // namespace herald::shm
