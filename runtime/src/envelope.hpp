// The envelope's wire form inside a record (see shm/record_layout.hpp):
//
//   [RecordHeader 48 B][key][meta][payload][padding]
//
// `meta` holds the optional fields as a small TLV list, in this order when
// present (absent fields take no bytes):
//   tag u8 (1 type, 2 source, 3 content type, 4 correlation id, 5 causation id)
//       len u8, bytes[len]
//   tag u8 = 6 (header) name_len u8, value_len u16 (little-endian), name, value
// Readers bounds-check every length against meta_len; a malformed list reads
// as "field absent", never out of bounds.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "herald/event.hpp"
#include "herald/result.hpp"

namespace herald::detail {

// Bytes the meta section of `m` takes (with `source` standing in for an
// empty m.source). Returns SIZE_MAX and sets *bad to a description when a
// field is over its limit.
//   tag u8 = 7 (idempotent producer) producer id u64, sequence u64 (little-endian)
// A user's event may hold kMaxHeaders headers and kMaxUserMeta bytes of
// meta; herald's own records (`internal`: dead letters, redrives) may add
// kReservedHeaders headers and use all 65535 bytes, so every event a
// producer accepts can be dead-lettered with its envelope intact.
std::size_t meta_size(const Message& m, std::string_view source, const char** bad, bool with_seq = false,
                      bool internal = false) noexcept;
inline constexpr std::size_t kMaxMeta = 65535;
inline constexpr std::size_t kReservedMeta = 1024;
inline constexpr std::size_t kMaxUserMeta = kMaxMeta - kReservedMeta;
inline constexpr std::size_t kReservedHeaders = 16;
// Writes it; `out` has room for meta_size() bytes. A non-zero producer_id
// adds the (producer id, sequence) entry.
void encode_meta(std::byte* out, const Message& m, std::string_view source, std::uint64_t producer_id = 0,
                 std::uint64_t sequence = 0) noexcept;
inline constexpr std::size_t kSeqEntryBytes = 17;
// A clear error for the field meta_size() rejected.
Error meta_error(const Message& m, const char* bad);

}  // namespace herald::detail
