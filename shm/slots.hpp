// Ownership of producer slots (log segment) and reader slots (state
// segment). A slot's owner is (pid, start time); a slot whose owner is dead
// can be taken over by CAS, and the taker cleans up what the dead left: a
// producer slot's claims are repaired (repair.hpp), a reader slot's waiter
// bits are cleared.
#pragma once

#include <cstdint>

#include "herald/result.hpp"
#include "shm/clock.hpp"
#include "shm/topic_map.hpp"

namespace herald::shm {

// Takes a producer slot for the calling thread. On a single-producer topic
// only slot 0 exists, and a live owner there is kBusy. A producer_id (an
// idempotent producer's) that another live slot holds is kBusy too. Needs
// the log RW.
Result<std::uint32_t> acquire_producer_slot(const TopicMap& topic, std::uint64_t producer_id);
// Frees it; its claim slots must be empty (every claim finished or aborted).
void release_producer_slot(const TopicMap& topic, std::uint32_t slot) noexcept;

// Takes a reader slot; group_slot_plus1 is 0 for a group-less reader.
// Needs the state RW.
Result<std::uint32_t> acquire_reader_slot(const TopicMap& topic, std::uint32_t group_slot_plus1);
void release_reader_slot(const TopicMap& topic, std::uint32_t slot) noexcept;

// Repairs every claim of a producer slot whose owner is dead and frees the
// slot. Returns false if a repair has to wait (another live producer races
// for the same position); try again later. `dead_slots` as in
// repair_claim_slot. The caller must have taken the slot over.
bool repair_producer_slot(const TopicMap& topic, std::uint32_t slot, std::uint64_t dead_slots) noexcept;

// Repairs and frees every producer slot whose owner died: what heraldd does,
// for daemonless clients that find a dead producer in their way. Needs the
// log read-write. Returns how many slots it freed.
std::uint32_t reclaim_dead_producers(const TopicMap& topic) noexcept;

// Frees a reader slot whose owner is dead: clears its waiter bits.
void reclaim_reader_slot(const TopicMap& topic, std::uint32_t slot) noexcept;

// The owner word value a taker writes while cleaning up a dead owner's slot.
inline constexpr std::uint64_t kOwnerReclaiming = 1ull << 63;

// An owner word that names a process: not free, not being reclaimed.
inline bool owner_held(std::uint64_t owner) noexcept { return owner != 0 && owner != kOwnerReclaiming; }

// A held owner word (with its slot's start time) whose (pid, start time) runs.
inline bool owner_live(std::uint64_t owner, std::uint64_t start_time) noexcept {
  return owner_held(owner) && process_alive(static_cast<pid_t>(owner & 0xffffffffu), start_time);
}

// A held owner word whose process is gone. Such a slot may be taken over.
inline bool owner_dead(std::uint64_t owner, std::uint64_t start_time) noexcept {
  return owner_held(owner) && !process_alive(static_cast<pid_t>(owner & 0xffffffffu), start_time);
}

}  // namespace herald::shm
