// Command-line values, one parser for every command (DESIGN.md, Defaults):
//   sizes      binary:  4096, 64K, 16M, 1G (K/M/G/T = 2^10..2^40; "KiB", "KB", "k" accepted)
//   rates      decimal: 500, 100k, 1.5M (k/M/G = 10^3..10^9; an optional "/s")
//   durations  5s, 100ms, 250us, 2m, 1h, 1.5s (a unit is required; "0" alone is zero)
//   times      RFC 3339 (2024-05-01T12:00:00Z, +02:00 offsets, fractions) or relative (-5m: five minutes ago)
//   positions  PARTITION:POSITION (2:4096)
// Each parse_* returns the value or an error message naming the bad input
// and the expected form; format_* render values for humans.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace herald::tools {

template <class T>
struct Parsed {
  T value{};
  std::string error{};  // empty: ok
  [[nodiscard]] bool ok() const noexcept { return error.empty(); }
};

Parsed<std::uint64_t> parse_size(std::string_view text);
Parsed<double> parse_rate(std::string_view text);
Parsed<std::uint64_t> parse_duration_ns(std::string_view text);
// Nanoseconds since the epoch; `now_ns` anchors relative times.
Parsed<std::uint64_t> parse_time_ns(std::string_view text, std::uint64_t now_ns);

struct PartPos {
  std::uint32_t partition = 0;
  std::uint64_t position = 0;
};
Parsed<PartPos> parse_part_pos(std::string_view text);

// Where to start or reset to: earliest|beginning, latest|end, PART:POS, TIME.
struct Where {
  enum class Kind { kEarliest, kLatest, kPosition, kTime } kind = Kind::kEarliest;
  PartPos at{};
  std::uint64_t time_ns = 0;
};
Parsed<Where> parse_where(std::string_view text, std::uint64_t now_ns);

// "64 B", "16.0 KiB", "1.5 MiB"
std::string format_bytes(double bytes);
// "812", "12.4k", "1.20M"
std::string format_count(double v);
// "850ns", "12.4us", "3.10ms", "1.20s", "2m05s", "1h02m"
std::string format_duration_ns(std::uint64_t ns);
// RFC 3339 in UTC with milliseconds: "2024-05-01T12:00:00.123Z"
std::string format_time_ns(std::uint64_t ns);
// `s` made safe to show on a terminal: printable UTF-8 and tabs as they
// are; control characters (C0, DEL, C1: a payload's escape sequences would
// drive the terminal), NULs and bytes that are not UTF-8 as \xNN.
std::string terminal_text(std::string_view s);
// "1 partition", "4 partitions": n and the noun, plural unless n is 1
// (`many`, or the noun with an 's' when `many` is empty).
std::string counted(std::uint64_t n, std::string_view one, std::string_view many = {});

}  // namespace herald::tools
