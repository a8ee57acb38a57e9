// The log segment of a topic: `herald.<bus>.<topic>.<incarnation>.log`.
//
// Producers map it read-write; consumers map it READ-ONLY, so no
// read-modify-write (CAS, fetch_add) may ever target it from a consumer: it
// would fault. Consumers only load from it and FUTEX_WAIT on their wake word
// (FUTEX_WAIT works on a read-only shared mapping).
//
// Writers: C = creator (runtime or heraldd, once, before layout_version),
// P = producers, D = heraldd (repair, stats). Every offset below is computed by
// LogGeometry::compute() from the five parameters in the header; attach
// recomputes it and checks it against the stored copy and the mapping size.
//
//  offset                        region                                  writer
//  0           +------------------------------------------------+
//              | LogHeaderLayout (one page)                     |  C / P (producer_slots_hw) / closer (close_started)
//  partitions  +------------------------------------------------+
//              | PartitionLayout[partitions]   512 B each       |  C / P (tail, waiters) / D (repair stats)
//  wake        +------------------------------------------------+
//              | ReaderWakeLayout[reader_slots] 64 B each       |  P (bump + FUTEX_WAKE); consumers wait on it
//  producers   +------------------------------------------------+
//              | ProducerSlotLayout[producer_slots] 128 B each  |  P (own slot) / D (frees dead ones)
//  claims      +------------------------------------------------+
//              | ClaimSlotLayout[partitions][producer_slots]    |  P (own slot) / D (repair)
//  counters    +------------------------------------------------+
//              | ProducerCountersLayout[producer_slots][parts]  |  P (own row, plain relaxed stores, no RMW)
//  index       +------------------------------------------------+
//              | u64 boundary[partitions][ring_bytes / 4096]    |  P (the claim crossing into a page)
//  rings       +------------------------------------------------+  page aligned
//              | ring 0 | ring 1 | ... (ring_bytes each)        |  P (records) / D (aborted records)
//              +------------------------------------------------+
//
// Each ring is mapped twice back to back (mapping.cpp), so a record that
// crosses the end of the ring is contiguous.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "shm/segment_layout.hpp"

namespace herald::shm {

inline constexpr std::uint32_t kMaxPartitions = 256;
inline constexpr std::uint32_t kProducerSlots = 64;  // producer threads attached to one topic at once
inline constexpr std::uint32_t kReaderSlots = 64;    // consumers (members and group-less readers) per topic
inline constexpr std::uint64_t kMinRingBytes = 4096;
inline constexpr std::uint64_t kMaxRingBytes = 1ull << 32;
inline constexpr std::uint64_t kMinMaxEvent = 128;
inline constexpr std::uint64_t kIndexPageBytes = 4096;  // one boundary-index entry per 4 KiB of ring

enum LogFlags : std::uint32_t {
  kLogSingleProducer = 1u << 0,  // attach refuses a second producer; its claims may move tail by plain store (C1, try_claim)
  kLogDeadLetterTopic = 1u << 1, // a group's DLQ (`<topic>.dlq.<group>`)
};

// The low bit of `tail` is the closed bit: topic delete sets it before
// unlinking, so every later claim (a CAS expects a clean value; a plain-store
// claim sees the bit when it re-loads tail) and every read that finds
// nothing learns Errc::kClosed instead of waiting forever.
inline constexpr std::uint64_t kTailClosedBit = 1;

struct LogHeaderLayout {
  SegmentHeaderLayout segment;  // C; kind = kLog
  std::uint32_t partitions;     // C; 1..kMaxPartitions
  std::uint32_t producer_slots; // C
  std::uint32_t reader_slots;   // C
  std::uint32_t flags;          // C; LogFlags
  std::uint64_t ring_bytes;     // C; power of two, multiple of the page size
  std::uint64_t max_event;      // C; multiple of 64, kMinMaxEvent..ring_bytes/4
  // Region offsets (C), as computed by LogGeometry::compute().
  std::uint64_t partitions_off;
  std::uint64_t wake_off;
  std::uint64_t producers_off;
  std::uint64_t claims_off;
  std::uint64_t counters_off;
  std::uint64_t index_off;
  std::uint64_t rings_off;
  // Highest producer slot index ever used + 1 (P, fetch_max by CAS when a
  // slot is taken): bounds the claim-table scan when computing W.
  std::atomic<std::uint32_t> producer_slots_hw;
  // Non-zero once a topic delete began (the closer: an administrator, who
  // maps the log read-write; TopicMap::close stores it before it sets the
  // first closed bit in a tail). Waiting readers poll this word, on a line
  // producers do not write, for the closer that died before its wake-ups,
  // and read a tail only once it is set: polling tail itself cost the
  // producer a cross-core transfer per event (Consumer::Impl's
  // kEmptyReadsPerCloseCheck; docs/ARCHITECTURE.md, departure 14). Zero in
  // a new segment (was reserved, zero).
  std::atomic<std::uint32_t> close_started;
};
static_assert(std::is_standard_layout_v<LogHeaderLayout>);
static_assert(sizeof(LogHeaderLayout) <= kPageBytes);
static_assert(offsetof(LogHeaderLayout, partitions) == 64);

// One per partition, 512 bytes, each group of fields on its own 128-byte
// block so the producers' CAS on `tail` does not share a line (or the
// adjacent-line prefetch pair) with anything else.
struct alignas(128) PartitionLayout {
  // +0 read-mostly (C): never written after creation.
  std::uint64_t salt;      // random, low 6 bits non-zero
  std::uint64_t ring_off;  // offset of this partition's ring in the segment
  std::uint64_t index_off; // offset of this partition's boundary index
  std::uint64_t claims_off;// offset of this partition's claim slots
  // +128 (P): the next position to claim; CAS by producers, or a plain
  // store by the one producer of a single-producer topic (C1 in
  // ring_log.hpp: TopicMap::close then keeps its closed bit). Bit 0 is
  // kTailClosedBit.
  alignas(128) std::atomic<std::uint64_t> tail;
  // +256 (P): producers parked on backpressure (fetch_add/sub); consumers and
  // heraldd load it after a cursor change to decide whether to wake them.
  alignas(128) std::atomic<std::uint32_t> producer_waiters;
  // +384 (D): repair statistics for this partition; aborted_records also
  // counts the records a live producer aborted itself (P, fetch_add).
  alignas(128) std::atomic<std::uint64_t> aborted_records;
  std::atomic<std::uint64_t> repaired_claims;
  std::atomic<std::uint64_t> last_repair_ns;     // duration of the last repair (death noticed -> range aborted)
  std::atomic<std::uint64_t> max_repair_ns;
  std::atomic<std::uint64_t> ignored_gates;      // gates above tail or unaligned, ignored by producers (P)
  std::atomic<std::uint64_t> stalled_pid;        // a live producer holding a claim past the report time (0: none)
  std::atomic<std::uint64_t> stalled_position;   // the position it holds
  std::atomic<std::uint64_t> stalled_claims;     // claims reported as stalled, ever
};
static_assert(std::is_standard_layout_v<PartitionLayout>);
static_assert(sizeof(PartitionLayout) == 512);
static_assert(offsetof(PartitionLayout, tail) == 128);
static_assert(offsetof(PartitionLayout, producer_waiters) == 256);
static_assert(offsetof(PartitionLayout, aborted_records) == 384);

// One per reader slot: a consumer parks on its own word, whatever partitions
// it waits for; a producer that sees the reader's bit in a partition's
// `waiters` mask (state segment) bumps it and FUTEX_WAKEs it.
struct alignas(64) ReaderWakeLayout {
  std::atomic<std::uint32_t> seq;  // P (fetch_add), futex word
  std::uint32_t reserved[15];
};
static_assert(sizeof(ReaderWakeLayout) == 64);

// One per producer (thread). The owner is (pid, process start time), not a
// pid, so a recycled pid is never mistaken for the producer that died.
struct alignas(128) ProducerSlotLayout {
  std::atomic<std::uint64_t> owner;  // P: 0 = free, else pid; taken by CAS 0 -> pid
  std::atomic<std::uint64_t> start_time;  // P: owner's start time (/proc/<pid>/stat field 22)
  std::atomic<std::uint64_t> producer_id; // P: idempotence identity (0 = none)
  std::atomic<std::uint64_t> attached_ns; // P
  std::atomic<std::uint32_t> tid;         // P: owning thread (stat, doctor)
  std::uint32_t reserved0;
  // P: the slot's counters (ProducerCountersLayout, summed over the
  // partitions) when this owner took it. The counters run on across owners
  // (partition totals sum them); stat subtracts these to show the owner's
  // own. In the slot's padding: the slot's size and the layout are as before.
  std::atomic<std::uint64_t> base_events;
  std::atomic<std::uint64_t> base_bytes;
  std::atomic<std::uint64_t> base_claims;
  std::atomic<std::uint64_t> base_waits;
};
static_assert(sizeof(ProducerSlotLayout) == 128);

// Claim slot states (low 2 bits of ClaimSlotLayout::word; the rest is the
// candidate position, which is 64-byte aligned).
enum ClaimState : std::uint64_t { kClaimEmpty = 0, kClaimCandidate = 1, kClaimWon = 2 };
inline constexpr std::uint64_t kClaimStateMask = 3;

// One per (partition, producer slot). Written by its producer BEFORE each
// CAS on tail (size and committed_to only when they change: the same bytes
// either way): so at every instant the slot names the only range the
// producer can hold and how much of it is committed. Other producers read `word` to
// compute the unfinished watermark W; heraldd reads all of it to repair a
// dead producer's claim.
struct alignas(64) ClaimSlotLayout {
  std::atomic<std::uint64_t> word;          // P: candidate position | ClaimState
  std::atomic<std::uint64_t> size;          // P: claimed bytes
  std::atomic<std::uint64_t> committed_to;  // P: records below this are committed
  std::atomic<std::uint64_t> sequence;      // unused: no longer written (ARCHITECTURE.md, departure 13)
  std::atomic<std::uint64_t> won_ns;        // P: when the claim was taken (CLOCK_REALTIME, the event clock; stall reports)
  std::uint64_t reserved[3];
};
static_assert(sizeof(ClaimSlotLayout) == 64);

// One per (producer slot, partition); only the owner writes (relaxed stores
// of its own running totals, never a shared RMW); readers sum the rows.
struct alignas(32) ProducerCountersLayout {
  std::atomic<std::uint64_t> events;
  std::atomic<std::uint64_t> bytes;
  std::atomic<std::uint64_t> backpressure_waits;
  std::atomic<std::uint64_t> claims;
};
static_assert(sizeof(ProducerCountersLayout) == 32);

struct LogParams {
  std::uint32_t partitions = 4;
  std::uint64_t ring_bytes = 16ull << 20;
  std::uint64_t max_event = 1ull << 20;
  std::uint32_t flags = 0;
};

// Where everything lives; a pure function of the parameters.
struct LogGeometry {
  LogParams params;
  std::uint32_t producer_slots = kProducerSlots;
  std::uint32_t reader_slots = kReaderSlots;
  std::uint64_t partitions_off = 0, wake_off = 0, producers_off = 0, claims_off = 0, counters_off = 0,
                index_off = 0, rings_off = 0, total_bytes = 0;

  std::uint64_t index_entries_per_ring() const noexcept { return params.ring_bytes / kIndexPageBytes; }
  std::uint64_t ring_off(std::uint32_t p) const noexcept { return rings_off + std::uint64_t{p} * params.ring_bytes; }
  std::uint64_t partition_index_off(std::uint32_t p) const noexcept {
    return index_off + std::uint64_t{p} * index_entries_per_ring() * 8;
  }
  std::uint64_t partition_claims_off(std::uint32_t p) const noexcept {
    return claims_off + std::uint64_t{p} * producer_slots * sizeof(ClaimSlotLayout);
  }

  static constexpr LogGeometry compute(const LogParams& p) noexcept {
    LogGeometry g;
    g.params = p;
    std::uint64_t off = kPageBytes;
    g.partitions_off = off;
    off += std::uint64_t{p.partitions} * sizeof(PartitionLayout);
    g.wake_off = off = align_up(off, 128);
    off += std::uint64_t{g.reader_slots} * sizeof(ReaderWakeLayout);
    g.producers_off = off = align_up(off, 128);
    off += std::uint64_t{g.producer_slots} * sizeof(ProducerSlotLayout);
    g.claims_off = off = align_up(off, 128);
    off += std::uint64_t{p.partitions} * g.producer_slots * sizeof(ClaimSlotLayout);
    g.counters_off = off = align_up(off, 128);
    off += std::uint64_t{g.producer_slots} * p.partitions * sizeof(ProducerCountersLayout);
    g.index_off = off = align_up(off, 128);
    off += std::uint64_t{p.partitions} * (p.ring_bytes / kIndexPageBytes) * 8;
    g.rings_off = off = align_up(off, kPageBytes);
    off += std::uint64_t{p.partitions} * p.ring_bytes;
    g.total_bytes = off;
    return g;
  }
};

}  // namespace herald::shm
