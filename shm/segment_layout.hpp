// The header every herald segment starts with.
//
// Writers: C = the creator of the segment (the runtime in daemonless mode, or
// heraldd). All fields are written once, before `layout_version`, which is
// stored LAST with release; attach loads it with acquire and treats 0 as
// "still being created" (Errc::kNotReady, retryable), any other mismatch as
// Errc::kVersionMismatch.
//
//   0        8          12     16              24             32          40        48         64
//   +--------+----------+------+---------------+--------------+-----------+---------+----------+
//   | magic  | layout_  | kind | segment_bytes | incarnation  | created_ns| creator | reserved |
//   |  (C)   | version  | (C)  |     (C)       |     (C)      |    (C)    | pid (C) |          |
//   +--------+----------+------+---------------+--------------+-----------+---------+----------+
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace herald::shm {

// Bumped whenever any segment layout changes incompatibly. Attach refuses a
// segment made with another version and says which two versions met.
inline constexpr std::uint32_t kLayoutVersion = 3;  // 2: records 16-byte aligned inside 64-byte claims; 3: cursors in units of 16

inline constexpr std::uint64_t kPageBytes = 4096;
inline constexpr std::uint64_t kCacheLine = 64;
// Records start 16-byte aligned; claims (and so tail) 64-byte aligned
// (record_layout.hpp says why the two differ).
inline constexpr std::uint64_t kRecordAlign = 16;
inline constexpr std::uint64_t kClaimAlign = 64;

enum class SegmentKind : std::uint32_t { kLog = 1, kState = 2, kRegistry = 3 };

// "HERALDLG", "HERALDST", "HERALDRG" read as little-endian u64.
inline constexpr std::uint64_t kMagicLog = 0x474C444C41524548ull;
inline constexpr std::uint64_t kMagicState = 0x5453444C41524548ull;
inline constexpr std::uint64_t kMagicRegistry = 0x4752444C41524548ull;

struct SegmentHeaderLayout {
  std::uint64_t magic;
  std::atomic<std::uint32_t> layout_version;  // stored LAST (release) by the creator
  std::uint32_t kind;                         // SegmentKind
  std::uint64_t segment_bytes;                // the size the segment was created with
  std::uint64_t incarnation;                  // the topic's incarnation (0 for the registry)
  std::uint64_t created_ns;                   // CLOCK_REALTIME at creation
  std::uint32_t creator_pid;
  std::uint32_t reserved0;
  std::uint64_t reserved1[2];
};
static_assert(std::is_standard_layout_v<SegmentHeaderLayout>);
static_assert(sizeof(SegmentHeaderLayout) == 64);
static_assert(offsetof(SegmentHeaderLayout, layout_version) == 8);
static_assert(offsetof(SegmentHeaderLayout, segment_bytes) == 16);
static_assert(std::atomic<std::uint64_t>::is_always_lock_free, "lock-free atomics are required across processes");
static_assert(std::atomic<std::uint32_t>::is_always_lock_free);

constexpr std::uint64_t align_up(std::uint64_t v, std::uint64_t a) noexcept { return (v + a - 1) & ~(a - 1); }
constexpr bool is_pow2(std::uint64_t v) noexcept { return v != 0 && (v & (v - 1)) == 0; }

}  // namespace herald::shm
