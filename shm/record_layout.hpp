// One record in a partition's ring: an event as stored.
//
// Records start at 16-byte aligned positions and occupy `size` bytes (a
// multiple of 16, 48 <= size <= max_event). Claims (what a producer takes
// from tail, one record or a batch's run) start and end 64-byte aligned:
// a single record is padded to a whole number of cache lines, and the
// records of a batch are packed 16-byte aligned with the run's last record
// padded to the claim's end. So a 64 B payload is a 128-byte record when
// published alone and a 112-byte one inside a batch. Why both: packing saves
// a batch 1/8 of its lines at 64 B (publish_batch +18 % between two
// processes with the vCPUs far apart, unchanged close), while a lone record
// that shares a line with the next one lets a reader that keeps up pull
// that line away from the producer between two publishes (single publish
// -12 %; bench/RESULTS.md, "Packed batches"). The ring is mapped twice
// back to back, so a record that crosses the ring's end is contiguous in
// memory.
//
// Writers: P = the producer that won the claim (or heraldd repairing a dead
// producer's claim with an aborted record). Every field is written before the
// commit word; the commit word is written last with release (R1 in
// ring_log.cpp) and read with acquire (A1).
//
//   0            8       12            16         24                   40      42        44        46      48
//   +------------+-------+-------------+----------+--------------------+-------+---------+---------+-------+----
//   | commit word| size  | payload_len | time_ns  | id (128-bit, hi,lo)| flags | key_len | meta_len| prod  | key, meta, payload, padding
//   | pos ^ salt |       |             |          |                    |       |         |         | slot  |
//   +------------+-------+-------------+----------+--------------------+-------+---------+---------+-------+----
//
// The body after the header is [key][meta][payload][padding to size]. `meta`
// is the envelope's optional fields in a small TLV form owned by the runtime
// (runtime/src/envelope.cpp); shm only needs the sizes to bounds-check.
//
// Commit word: `position XOR salt`, where salt is random per ring with
// non-zero low 4 bits. Positions are 16-byte aligned, so a committed word
// never has zero low bits: zeroed memory, a word from an older lap and a
// payload that happens to hold a raw position can never match `q ^ salt`.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "shm/segment_layout.hpp"

namespace herald::shm {

enum RecordFlags : std::uint16_t {
  kRecordAborted = 1u << 0,     // a claim abandoned by its producer or repaired after its death: skip it
  kRecordRedriven = 1u << 1,    // republished from a dead-letter topic (runtime header names the group)
  kRecordDeadLetter = 1u << 2,  // a record in a DLQ topic
};

struct RecordHeader {
  std::atomic<std::uint64_t> word;  // position ^ salt; written LAST (release)
  std::uint32_t size;               // bytes this record occupies in the log (multiple of 16)
  std::uint32_t payload_len;        // payload bytes (may be less than the space after meta)
  std::uint64_t time_ns;            // CLOCK_REALTIME, set by the producer
  std::uint64_t id_hi;              // 128-bit event id, time-ordered (UUIDv7 layout)
  std::uint64_t id_lo;
  std::uint16_t flags;              // RecordFlags
  std::uint16_t key_len;
  std::uint16_t meta_len;
  std::uint16_t producer_slot;      // which producer slot wrote it (repairs write 0xffff)
};
static_assert(std::is_standard_layout_v<RecordHeader>);
static_assert(sizeof(RecordHeader) == 48);
static_assert(offsetof(RecordHeader, size) == 8);
static_assert(offsetof(RecordHeader, time_ns) == 16);
static_assert(offsetof(RecordHeader, flags) == 40);

inline constexpr std::uint32_t kRecordHeaderBytes = sizeof(RecordHeader);
inline constexpr std::uint16_t kRepairProducerSlot = 0xffff;

// The log bytes a record with these variable parts needs (16-byte aligned;
// alone in a claim it takes claim_bytes() of this).
constexpr std::uint64_t record_size(std::uint64_t key_len, std::uint64_t meta_len, std::uint64_t payload_len) noexcept {
  return (kRecordHeaderBytes + key_len + meta_len + payload_len + kRecordAlign - 1) & ~(kRecordAlign - 1);
}

// The bytes a claim of `record_bytes` takes: claims start and end 64-byte aligned.
constexpr std::uint64_t claim_bytes(std::uint64_t record_bytes) noexcept {
  return (record_bytes + kClaimAlign - 1) & ~(kClaimAlign - 1);
}

}  // namespace herald::shm
