// The state segment of a topic: `herald.<bus>.<topic>.<incarnation>.state`.
//
// Consumers map it read-write (cursors, waiter bits, leases, in-flight
// slots); producers map it READ-ONLY (they load gates and futex-wait on
// `gate_seq`); heraldd maps it read-write (generations, assignments, repair).
//
// Writers: C = creator, M = the member that owns the (group, partition),
// R = the reader that owns the reader slot, D = heraldd, A = whoever
// administers groups (heraldd, or the runtime in daemonless mode under the
// bus admin lock).
//
//  offset                     region                                         writer
//  0          +----------------------------------------------------+
//             | StateHeaderLayout (one page)                       |  C
//  parts      +----------------------------------------------------+
//             | PartitionStateLayout[partitions]   256 B each      |  R (waiters) / M,D (gate_seq)
//  groups     +----------------------------------------------------+
//             | GroupLayout[group_slots]           256 B each      |  A / D
//  cursors    +----------------------------------------------------+
//             | GroupPartitionLayout[group_slots][partitions] 256 B|  M (cursor CAS, lease, in-flight) / D (generation)
//  readers    +----------------------------------------------------+
//             | ReaderLayout[reader_slots]         256 B each      |  R (own slot) / D (assignment, frees dead)
//             +----------------------------------------------------+
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "shm/log_layout.hpp"
#include "shm/segment_layout.hpp"

namespace herald::shm {

inline constexpr std::uint32_t kGroupSlots = 32;  // consumer groups per topic (DLQ cursors included)
inline constexpr std::uint32_t kNameCapacity = 104;  // names are at most 100 bytes
inline constexpr std::uint32_t kAssignWords = kMaxPartitions / 64;

// ---- packed words --------------------------------------------------------
// A group cursor is ONE 64-bit word {generation: 12 bits, position/16: 52
// bits}, changed only by CAS from the value its writer last saw. heraldd bumps
// the generation (by CAS) on every reassignment, so a zombie's commit fails.
// Positions are stored in units of kRecordAlign (16 bytes), the alignment of
// every record boundary: a publish_batch packs its records 16-byte aligned
// inside a 64-byte aligned claim, so a cursor, a lease or an in-flight
// position may name any 16-byte aligned boundary. (Units of 64 rounded such
// a position down to inside the record before it, where no commit word
// matches: the group never read that partition again. Layout version 3.)
inline constexpr unsigned kPosShift = 4;
static_assert((1ull << kPosShift) == kRecordAlign);
inline constexpr unsigned kGenBits = 12;
inline constexpr std::uint64_t kGenMask = (1ull << kGenBits) - 1;
inline constexpr std::uint64_t kPosUnitsMask = (1ull << (64 - kGenBits)) - 1;
inline constexpr std::uint64_t kMaxCursorPosition = kPosUnitsMask << kPosShift;  // 2^56 bytes: fail loudly past it

constexpr std::uint64_t pack_cursor(std::uint32_t gen, std::uint64_t pos) noexcept {
  return (std::uint64_t{gen} & kGenMask) << (64 - kGenBits) | ((pos >> kPosShift) & kPosUnitsMask);
}
constexpr std::uint64_t cursor_pos(std::uint64_t word) noexcept { return (word & kPosUnitsMask) << kPosShift; }
constexpr std::uint32_t cursor_gen(std::uint64_t word) noexcept {
  return static_cast<std::uint32_t>(word >> (64 - kGenBits));
}
inline constexpr std::uint64_t kNoLease = ~0ull;

// In-flight slot, written by the owning member before and after each
// handler call: {position/16: 52 bits, deliveries: 10 bits, marks: 1 bit,
// in-handler: 1 bit}. It names the first event this member has not handled
// successfully yet and how often that event was delivered. `marks` says the
// member commits after handling (at-least-once), so everything before the
// named position was handled and a new owner may resume there rather than at
// the committed cursor. A member that dies with in-handler set counts one
// delivery for that event only; one killed outside a handler counts nothing.
inline constexpr std::uint64_t kInHandlerBit = 1;
inline constexpr std::uint64_t kHandledMarksBit = 2;
inline constexpr std::uint64_t kDeliveriesMask = 0x3ff;
inline constexpr std::uint32_t kMaxDeliveriesCounted = 0x3ff;
constexpr std::uint64_t pack_inflight(std::uint64_t pos, std::uint32_t deliveries, bool in_handler,
                                      bool marks) noexcept {
  return ((pos >> kPosShift) & kPosUnitsMask) << 12 | (std::uint64_t{deliveries} & kDeliveriesMask) << 2 |
         (marks ? kHandledMarksBit : 0) | (in_handler ? kInHandlerBit : 0);
}
constexpr std::uint64_t inflight_pos(std::uint64_t w) noexcept { return ((w >> 12) & kPosUnitsMask) << kPosShift; }
constexpr std::uint32_t inflight_deliveries(std::uint64_t w) noexcept {
  return static_cast<std::uint32_t>((w >> 2) & kDeliveriesMask);
}
constexpr bool inflight_in_handler(std::uint64_t w) noexcept { return (w & kInHandlerBit) != 0; }
constexpr bool inflight_marks(std::uint64_t w) noexcept { return (w & kHandledMarksBit) != 0; }
inline constexpr std::uint64_t kNoInflight = 0;

// DLQ move in progress: {DLQ position/16 << 1 | pending}. Written after the
// DLQ claim and before its commit word; the source event is the in-flight
// slot's position. Recovery finishes or redoes the move (consumer.cpp).
constexpr std::uint64_t pack_dlq_pending(std::uint64_t dlq_pos) noexcept { return (dlq_pos >> kPosShift) << 1 | 1; }
constexpr bool dlq_pending_set(std::uint64_t w) noexcept { return (w & 1) != 0; }
constexpr std::uint64_t dlq_pending_pos(std::uint64_t w) noexcept { return (w >> 1) << kPosShift; }

enum class GroupPolicy : std::uint32_t { kLossless = 0, kLossy = 1, kLagOut = 2 };

enum GroupState : std::uint32_t { kGroupFree = 0, kGroupCreating = 1, kGroupActive = 2, kGroupDeleting = 3 };

enum GroupFlags : std::uint32_t {
  kGroupGating = 1u << 0,    // producers honour this group's gates (lossless, or lag-out while promoted)
  kGroupInternal = 1u << 1,  // the internal DLQ cursor (moved only by redrive and purge)
};

enum ReaderFlags : std::uint32_t {
  kReaderInPoll = 1u << 0,  // inside poll(): a member parked here is idle, not stuck
  kReaderParked = 1u << 1,
};

struct StateHeaderLayout {
  SegmentHeaderLayout segment;  // C; kind = kState
  std::uint32_t partitions;     // C
  std::uint32_t group_slots;    // C
  std::uint32_t reader_slots;   // C
  std::uint32_t reserved0;
  std::uint64_t partitions_off; // C
  std::uint64_t groups_off;     // C
  std::uint64_t cursors_off;    // C
  std::uint64_t readers_off;    // C
  // Highest group slot ever used + 1 (A): bounds the producers' gate scan.
  std::atomic<std::uint32_t> group_slots_hw;
  // Highest reader slot ever used + 1 (R, by CAS when a slot is taken).
  std::atomic<std::uint32_t> reader_slots_hw;
  // Bumped (A/D) whenever a group is added, deleted, promoted or demoted, so
  // producers refresh a cached gate that no longer holds.
  std::atomic<std::uint64_t> groups_epoch;
};
static_assert(std::is_standard_layout_v<StateHeaderLayout>);
static_assert(sizeof(StateHeaderLayout) <= kPageBytes);

struct alignas(128) PartitionStateLayout {
  // +0 (R): one bit per reader slot parked (or about to park) on this
  // partition. Set with fetch_or, cleared with fetch_and; heraldd clears a
  // dead reader's bit exactly because they are bits, not a count.
  std::atomic<std::uint64_t> waiters;
  // +128 (M, D): futex word for producers parked on backpressure. Bumped by a
  // cursor commit, a lag-out demotion, a group deletion or a repair, when
  // `producer_waiters` (log segment) is non-zero.
  alignas(128) std::atomic<std::uint32_t> gate_seq;
};
static_assert(sizeof(PartitionStateLayout) == 256);
static_assert(offsetof(PartitionStateLayout, gate_seq) == 128);

// A group slot. Its descriptive fields are read under `seq` (a seqlock:
// odd while an administrator writes the slot), so a slot deleted and reused
// while a reader looks it up is seen as changed, never half-read.
struct alignas(128) GroupLayout {
  std::atomic<std::uint32_t> seq;     // A: odd while written
  std::atomic<std::uint32_t> state;   // A: GroupState
  std::atomic<std::uint32_t> flags;   // A/D: GroupFlags
  std::atomic<std::uint32_t> policy;  // A: GroupPolicy
  std::atomic<std::uint32_t> name_len;        // A
  std::atomic<std::uint32_t> max_deliveries;  // A
  std::atomic<std::uint64_t> name_words[kNameCapacity / 8];  // A
  std::atomic<std::uint64_t> created_ns;      // A
  std::atomic<std::uint64_t> lagout_grace_ms; // A
  std::atomic<std::uint64_t> dlq_incarnation; // A: the incarnation of `<topic>.dlq.<group>` (0 = none)
  alignas(64) std::atomic<std::uint32_t> members;  // D: live members (daemonless: 0 or 1)
  std::atomic<std::uint32_t> reserved0;            // zero; keeps the fields below where readers expect them
  std::atomic<std::uint64_t> last_member_seen_ns;  // D: when the last member was last alive (lag-out)
  std::atomic<std::uint64_t> demotions;            // D
  std::atomic<std::uint64_t> promotions;           // D
  std::atomic<std::uint64_t> rebalances;           // D
};
static_assert(std::is_standard_layout_v<GroupLayout>);
static_assert(sizeof(GroupLayout) == 256);

struct alignas(128) GroupPartitionLayout {
  // +0: what producers read when they refresh a gate (cursor first, acquire,
  // then lease and floor).
  std::atomic<std::uint64_t> cursor;      // M: CAS {gen, pos/64}; D: CAS to bump gen
  std::atomic<std::uint64_t> lease;       // M: {gen, pos/16} held while an at-most-once handler runs; kNoLease.
                                          // Set and cleared by CAS: a fenced member never touches a new owner's
  std::atomic<std::uint64_t> gate_floor;  // A/M: Disruptor rule floor; 0 = none
  // +128: owned by the member that holds the partition.
  alignas(128) std::atomic<std::uint64_t> inflight;  // M: pack_inflight(), written before each handler call
  std::atomic<std::uint64_t> dlq_pending;  // M: {DLQ candidate/64 << 1 | pending}
  std::atomic<std::uint64_t> gap_bytes;    // M: bytes lost to overruns (lossy reading)
  std::atomic<std::uint64_t> gap_events;   // M: number of gaps
  std::atomic<std::uint64_t> committed_ns; // M: CLOCK_REALTIME of the last commit
  std::atomic<std::uint64_t> dead_letters; // M: events moved to the DLQ
  std::atomic<std::uint32_t> owner_reader; // D (daemonless: M): reader slot + 1 that owns it, 0 = none
  std::atomic<std::uint32_t> dlq_stalled;  // M: 1 while a dead letter waits for room in the full DLQ
};
static_assert(sizeof(GroupPartitionLayout) == 256);
static_assert(offsetof(GroupPartitionLayout, inflight) == 128);

struct alignas(128) ReaderLayout {
  std::atomic<std::uint64_t> owner;         // R: 0 = free, else pid (CAS 0 -> pid)
  std::atomic<std::uint64_t> start_time;    // R: owner's process start time
  std::atomic<std::uint32_t> group;         // R: group slot + 1; 0 = group-less reader
  std::atomic<std::uint32_t> flags;         // R: ReaderFlags
  std::atomic<std::uint64_t> poll_count;    // R: bumped on each poll and each timed wake
  std::atomic<std::uint64_t> last_poll_ns;  // R: CLOCK_MONOTONIC_COARSE at the last poll entry, wake, or exit after a wait
  std::atomic<std::uint64_t> assign_epoch;  // D: bumped (release) after `assigned` changes
  std::atomic<std::uint64_t> member_id;     // D: the daemon's id for this member
  std::atomic<std::uint64_t> attached_ns;   // R
  std::atomic<std::uint64_t> assigned[kAssignWords];  // D: bitmap of owned partitions
  std::atomic<std::uint64_t> events;        // R: events delivered (stat)
};
static_assert(std::is_standard_layout_v<ReaderLayout>);
static_assert(sizeof(ReaderLayout) == 128);

struct StateGeometry {
  std::uint32_t partitions = 0;
  std::uint32_t group_slots = kGroupSlots;
  std::uint32_t reader_slots = kReaderSlots;
  std::uint64_t partitions_off = 0, groups_off = 0, cursors_off = 0, readers_off = 0, total_bytes = 0;

  std::uint64_t group_partition_off(std::uint32_t g, std::uint32_t p) const noexcept {
    return cursors_off + (std::uint64_t{g} * partitions + p) * sizeof(GroupPartitionLayout);
  }

  static constexpr StateGeometry compute(std::uint32_t partitions) noexcept {
    StateGeometry g;
    g.partitions = partitions;
    std::uint64_t off = kPageBytes;
    g.partitions_off = off;
    off += std::uint64_t{partitions} * sizeof(PartitionStateLayout);
    g.groups_off = off = align_up(off, 128);
    off += std::uint64_t{g.group_slots} * sizeof(GroupLayout);
    g.cursors_off = off = align_up(off, 128);
    off += std::uint64_t{g.group_slots} * partitions * sizeof(GroupPartitionLayout);
    g.readers_off = off = align_up(off, 128);
    off += std::uint64_t{g.reader_slots} * sizeof(ReaderLayout);
    g.total_bytes = align_up(off, kPageBytes);
    return g;
  }
};

}  // namespace herald::shm
