// Consumer groups in a topic's state segment: lookup (lock-free, seqlock),
// creation and deletion (under the bus admin lock), and the daemonless
// ownership of partitions by members.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "herald/bus.hpp"
#include "herald/consumer.hpp"
#include "herald/result.hpp"
#include "shm/state_layout.hpp"
#include "shm/topic_map.hpp"

namespace herald::detail {

struct GroupRecord {
  std::uint32_t slot = 0;
  std::string name;
  shm::GroupPolicy policy = shm::GroupPolicy::kLagOut;
  std::uint32_t flags = 0;
  std::uint32_t max_deliveries = 5;
  std::uint64_t lagout_grace_ms = 30'000;
  std::uint64_t created_ns = 0;
};

std::optional<GroupRecord> find_group(const shm::TopicMap& topic, std::string_view name);
// A user's delete or reset of a group: kInvalidArgument for a dead-letter
// topic's own cursor (kGroupInternal), which only redrive and purge move.
Result<void> refuse_internal(const GroupRecord& g, std::string_view topic);
std::vector<GroupRecord> list_groups(const shm::TopicMap& topic);

struct NewGroup {
  std::string name;
  shm::GroupPolicy policy = shm::GroupPolicy::kLagOut;
  std::uint32_t extra_flags = 0;  // kGroupInternal for a DLQ's cursor
  std::uint32_t max_deliveries = 5;
  std::uint64_t lagout_grace_ms = 30'000;
};

// Under the admin lock. Sets every partition's cursor to start[p] and
// activates the group by the Disruptor rule (floor at tail, activate,
// re-read tail, raise the floor): history below the floor is read lossy.
Result<GroupRecord> create_group(const shm::TopicMap& topic, const NewGroup& g, std::span<const std::uint64_t> start);
// Under the admin lock. Stops gating, wakes parked producers, frees the slot.
Result<void> delete_group(const shm::TopicMap& topic, std::uint32_t slot);

// Live members of group slot g (reader slots of the group whose process lives).
std::uint32_t live_members(const shm::TopicMap& topic, std::uint32_t g);

// Moves every partition's cursor (or only `partition` when >= 0) of group
// slot g to `to`, with a new generation (fencing anyone holding the old
// cursor) and the Disruptor rule when moving back. With execute = false
// only computes the plan. The caller makes sure no member is live.
Result<std::vector<ResetStep>> reset_group_cursors(const shm::TopicMap& topic, std::uint32_t g, const Offset& to,
                                                   std::int64_t partition, bool execute);

// Resolves an Offset to a position on partition p (kEarliest: the oldest
// retained boundary; kLatest: tail; kPosition: must be a committed boundary
// in the window; kTime: the first event at or after the time, in partition
// order — times across producers are not monotonic).
Result<std::uint64_t> resolve_offset(const shm::TopicMap& topic, std::uint32_t p, const Offset& where);

// One of lossless, lossy, lag-out (not kDefault, nor a value outside the enum).
inline bool concrete_policy(Policy p) noexcept {
  return p == Policy::kLossless || p == Policy::kLossy || p == Policy::kLagOut;
}
shm::GroupPolicy to_shm(Policy p, shm::GroupPolicy fallback) noexcept;
Policy from_shm(shm::GroupPolicy p) noexcept;
const char* policy_name(shm::GroupPolicy p) noexcept;

// Daemonless membership: reader slot `reader` of group `g` takes every
// partition whose owner is free or dead, bumping the cursor generation of
// each (fencing whoever held it). Returns the partitions it now owns.
std::vector<std::uint32_t> take_free_partitions(const shm::TopicMap& topic, std::uint32_t g, std::uint32_t reader);
// Gives a partition back (graceful leave).
void release_partition(const shm::TopicMap& topic, std::uint32_t g, std::uint32_t p, std::uint32_t reader);

}  // namespace herald::detail
