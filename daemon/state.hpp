// The daemon's in-memory view of the bus (rebuilt from the segments on
// start). Private to daemon/*.cpp.
#pragma once

#include <bitset>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "daemon/daemon.hpp"
#include "shm/registry.hpp"
#include "shm/state_layout.hpp"
#include "shm/topic_map.hpp"

namespace herald::daemon {

struct Daemon::TopicState {
  shm::TopicRecord rec;
  std::shared_ptr<shm::TopicMap> map;  // log and state read-write
  struct SlotOwner {
    std::uint64_t owner = 0;
    std::uint64_t start_time = 0;
    std::uint64_t orphan_since_ns = 0;  // first seen taken over (kOwnerReclaiming) by someone else
  };
  std::vector<SlotOwner> producers;  // per producer slot, as last scanned
  struct ClaimSeen {
    std::uint64_t word = 0;
    std::uint64_t since_ns = 0;
    std::uint64_t pid = 0;  // who was reported (stalled_pid), when reported
    bool reported = false;
  };
  std::vector<ClaimSeen> claims;  // [partition * producer_slots + slot]
};

struct Daemon::Member {
  std::uint64_t id = 0;
  ConnId conn = 0;  // 0 while a restored member has not reconnected
  pid_t pid = 0;
  std::uint64_t start_time = 0;
  std::string topic;
  std::uint32_t group = 0;  // group slot
  std::uint32_t reader = 0;
  Assignor assignor = Assignor::kSticky;
  std::uint64_t max_poll_interval_ns = 0;
  std::bitset<shm::kMaxPartitions> owned;  // assigned to it, mirrored into its reader slot
  std::uint64_t last_poll_count = 0;
  std::uint64_t last_progress_ns = 0;
  std::uint64_t last_moved_ns = 0;  // when poll_count last moved
  bool stuck = false;
  bool restored = false;  // rebuilt after a daemon restart; waiting for its rejoin
  std::uint64_t rejoin_deadline_ns = 0;
};

struct Daemon::GroupState {
  std::string topic;
  std::string name;
  std::uint32_t slot = 0;
  shm::GroupPolicy policy = shm::GroupPolicy::kLagOut;
  std::uint64_t lagout_grace_ns = 30'000'000'000ull;
  std::vector<std::uint64_t> members;          // member ids in join order
  std::vector<std::uint64_t> owner;            // per partition: member id, 0 = unowned
  std::vector<std::uint64_t> revoking;         // per partition: member asked to give it up, 0 = none
  std::vector<std::uint64_t> revoke_deadline;  // per partition (clock ns)
  std::uint64_t empty_since_ns = 0;            // no live member since then (0 = has members)
  bool dirty = false;                          // needs a rebalance
};

struct Daemon::Dead {
  pid_t pid = 0;
  std::uint64_t start_time = 0;
  std::uint64_t noticed_ns = 0;
};

}  // namespace herald::daemon
