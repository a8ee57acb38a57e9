// Repair of a dead producer's claim slots (DESIGN.md "Producer crash"),
// checked against the SPIN model in models/log-protocol.pml. The caller must
// own the dead producer's slot exclusively (it took it over by CAS on the
// owner word) and map the log read-write.
#pragma once

#include <cstdint>

#include "shm/topic_map.hpp"

namespace herald::shm {

enum class RepairOutcome : std::uint8_t {
  kNothing,  // the slot was empty
  kCleared,  // a candidate that never claimed, or lost its CAS: cleared
  kAborted,  // a claim it held: its unfinished records are now aborted records
  kWait,     // another live slot names the same position: try again later
};

struct RepairReport {
  RepairOutcome outcome = RepairOutcome::kNothing;
  std::uint64_t position = 0;      // the slot's candidate position
  std::uint64_t size = 0;          // its claimed size
  std::uint64_t aborted_from = 0;  // first aborted byte (kAborted)
  std::uint64_t aborted_records = 0;
};

// Repairs claim slot `slot` of partition `p`. `dead_slots` has a bit for
// every producer slot known dead (the threads of one killed process), which
// decides between dead candidates that name the same position. Idempotent:
// running it again after a crash of the repairer finishes the job.
RepairReport repair_claim_slot(const TopicMap& topic, std::uint32_t p, std::uint32_t slot,
                               std::uint64_t dead_slots) noexcept;

// The first position in [from, end) whose record is not committed, walking
// commit words (a word is stored before committed_to advances).
std::uint64_t first_uncommitted(const PartitionView& v, std::uint64_t from, std::uint64_t end) noexcept;

}  // namespace herald::shm
