// Self-checking test payloads, shared by the unit, stress and multi-process
// suites (header-only, so every test binary and the peer can use it).
//
//   0         4     8      16       20       24          32
//   +---------+-----+------+--------+--------+-----------+------------------
//   | producer| key | seq  | length | magic  | checksum  | filler (a function of producer, key, seq)
//   +---------+-----+------+--------+--------+-----------+------------------
//
// `checksum` is FNV-1a 64 over every other byte, so a torn, shifted or
// truncated payload fails check_payload(); the filler depends on the stamp,
// so a payload copied from another event fails too.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <span>
#include <string>

namespace herald::test {

struct Stamp {
  std::uint32_t producer = 0;
  std::uint32_t key = 0;  // an entity id (0 when keys are not used)
  std::uint64_t seq = 0;  // per producer, or per (producer, key)
};

inline constexpr std::size_t kStampBytes = 32;
inline constexpr std::uint32_t kStampMagic = 0x48524c44;  // "HRLD"

// splitmix64: a tiny seeded generator, identical in every process.
inline std::uint64_t mix64(std::uint64_t x) noexcept {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

class SplitMix {
 public:
  explicit SplitMix(std::uint64_t seed) noexcept : s_(seed) {}
  std::uint64_t next() noexcept { return mix64(s_++ * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull); }
  // Uniform enough in [lo, hi] for test sizes.
  std::uint64_t in(std::uint64_t lo, std::uint64_t hi) noexcept { return lo + next() % (hi - lo + 1); }

 private:
  std::uint64_t s_;
};

inline std::uint64_t fnv1a(std::uint64_t h, const std::byte* p, std::size_t n) noexcept {
  for (std::size_t i = 0; i < n; ++i) {
    h ^= static_cast<std::uint8_t>(p[i]);
    h *= 0x100000001b3ull;
  }
  return h;
}

inline std::uint64_t payload_checksum(const std::byte* p, std::size_t n) noexcept {
  std::uint64_t h = fnv1a(0xcbf29ce484222325ull, p, 24);
  return fnv1a(h, p + kStampBytes, n - kStampBytes);
}

// Fills out[0, len) (len >= kStampBytes) with the stamp, its filler and the checksum.
inline void make_payload(std::byte* out, std::size_t len, const Stamp& s) noexcept {
  if (len < kStampBytes) std::abort();  // a test bug: no room for the stamp
  const auto n32 = static_cast<std::uint32_t>(len);
  std::memcpy(out, &s.producer, 4);
  std::memcpy(out + 4, &s.key, 4);
  std::memcpy(out + 8, &s.seq, 8);
  std::memcpy(out + 16, &n32, 4);
  std::memcpy(out + 20, &kStampMagic, 4);
  std::uint64_t f = mix64(s.seq ^ (std::uint64_t{s.producer} << 40) ^ (std::uint64_t{s.key} << 20));
  for (std::size_t i = kStampBytes; i < len; ++i) {
    if ((i & 7) == 0) f = mix64(f);
    out[i] = static_cast<std::byte>(f >> ((i & 7) * 8));
  }
  const std::uint64_t c = payload_checksum(out, len);
  std::memcpy(out + 24, &c, 8);
}

inline std::string make_payload(std::size_t len, const Stamp& s) {
  std::string out(len, '\0');
  make_payload(reinterpret_cast<std::byte*>(out.data()), len, s);
  return out;
}

// The stamp of a payload made by make_payload, or nullopt if any byte is off.
inline std::optional<Stamp> check_payload(std::span<const std::byte> p) noexcept {
  if (p.size() < kStampBytes) return std::nullopt;
  Stamp s;
  std::uint32_t len = 0, magic = 0;
  std::uint64_t c = 0;
  std::memcpy(&s.producer, p.data(), 4);
  std::memcpy(&s.key, p.data() + 4, 4);
  std::memcpy(&s.seq, p.data() + 8, 8);
  std::memcpy(&len, p.data() + 16, 4);
  std::memcpy(&magic, p.data() + 20, 4);
  std::memcpy(&c, p.data() + 24, 8);
  if (len != p.size() || magic != kStampMagic || c != payload_checksum(p.data(), p.size())) return std::nullopt;
  // The filler is a function of the stamp: a payload from another event fails.
  std::uint64_t f = mix64(s.seq ^ (std::uint64_t{s.producer} << 40) ^ (std::uint64_t{s.key} << 20));
  for (std::size_t i = kStampBytes; i < p.size(); ++i) {
    if ((i & 7) == 0) f = mix64(f);
    if (p[i] != static_cast<std::byte>(f >> ((i & 7) * 8))) return std::nullopt;
  }
  return s;
}

}  // namespace herald::test
