// The registry of a bus: `herald.<bus>.registry`, host-wide.
//
// Holds the topic table and the daemon's identity and epoch. Every client
// maps it read-write (the registry mirrors what the daemon decided; clients
// only read it, but a read-only mapping would stop the daemonless runtime from
// administering topics). Mutations happen under the bus admin lock (an flock
// on `<run dir>/<bus>.admin.lock`), by heraldd or, with no daemon, by the
// runtime; readers use each entry's seqlock and never block.
//
// Writers: A = administrator (under the admin lock), D = heraldd.
//
//  0        +---------------------------------------------+
//           | RegistryHeaderLayout (one page)             |  A / D
//  topics   +---------------------------------------------+
//           | TopicEntryLayout[topic_slots]   320 B each  |  A (seqlock)
//           +---------------------------------------------+
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "shm/segment_layout.hpp"
#include "shm/state_layout.hpp"

namespace herald::shm {

inline constexpr std::uint32_t kTopicSlots = 1024;  // topics per bus, DLQ topics included
// A DLQ topic is `<topic>.dlq.<group>`: up to 100 + 5 + 100 bytes.
inline constexpr std::uint32_t kTopicNameCapacity = 208;

enum TopicState : std::uint32_t { kTopicFree = 0, kTopicActive = 1 };

struct RegistryHeaderLayout {
  SegmentHeaderLayout segment;  // C; kind = kRegistry, incarnation = random bus id
  std::uint32_t topic_slots;    // C
  std::uint32_t reserved0;
  std::uint64_t topics_off;     // C
  // D: pid and start time of the running heraldd (0 = none), written at start.
  alignas(64) std::atomic<std::uint64_t> daemon_pid;
  std::atomic<std::uint64_t> daemon_start_time;
  // D: bumped by every daemon start: clients notice a restarted daemon with
  // one relaxed load and re-register.
  std::atomic<std::uint64_t> daemon_epoch;
  // A: bumped after every topic create or delete (release).
  std::atomic<std::uint64_t> topics_epoch;
  // A: next incarnation id to hand out (never reused within this registry).
  std::atomic<std::uint64_t> next_incarnation;
};
static_assert(std::is_standard_layout_v<RegistryHeaderLayout>);
static_assert(sizeof(RegistryHeaderLayout) <= kPageBytes);

// A topic entry. Read with the seqlock: load seq (acquire) - odd means being
// written - copy the fields, acquire fence, re-load seq; retry on change.
struct alignas(64) TopicEntryLayout {
  std::atomic<std::uint32_t> seq;     // A: odd while the entry is being written
  std::atomic<std::uint32_t> state;   // A: TopicState
  std::atomic<std::uint32_t> name_len;
  std::atomic<std::uint32_t> partitions;
  std::atomic<std::uint64_t> incarnation;
  std::atomic<std::uint64_t> ring_bytes;
  std::atomic<std::uint64_t> max_event;
  std::atomic<std::uint32_t> flags;   // LogFlags
  std::atomic<std::uint32_t> mode;    // permission bits of the segments (0600 / 0640+0660)
  std::atomic<std::uint32_t> gid;     // Unix group, or ~0u for none
  std::atomic<std::uint32_t> default_policy;  // GroupPolicy for groups created without one
  std::atomic<std::uint64_t> created_ns;
  std::atomic<std::uint64_t> lagout_grace_ms;
  // A: the name as relaxed atomic words, so a seqlock reader copying it while
  // an administrator rewrites the slot is a checked race, not UB.
  std::atomic<std::uint64_t> name_words[kTopicNameCapacity / 8];
};
static_assert(std::is_standard_layout_v<TopicEntryLayout>);
static_assert(sizeof(TopicEntryLayout) == 320);

struct RegistryGeometry {
  std::uint32_t topic_slots = kTopicSlots;
  std::uint64_t topics_off = kPageBytes;
  std::uint64_t total_bytes = kPageBytes + std::uint64_t{kTopicSlots} * sizeof(TopicEntryLayout);
};

}  // namespace herald::shm
