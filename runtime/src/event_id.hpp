// Time-ordered 128-bit event ids (UUIDv7 layout), generated from
// per-producer state with no shared memory traffic and no system call:
//
//   hi: unix_ms (48) | version 7 (4) | counter bits 43..32 (12)
//   lo: variant 0b10 (2) | producer nonce (30) | counter bits 31..0 (32)
//
// Within one producer ids strictly increase (ms never goes back, the counter
// always increments); across producers they are ordered by millisecond.
#pragma once

#include <cstdint>

#include "herald/event.hpp"

namespace herald::detail {

class IdGenerator {
 public:
  IdGenerator();
  EventId next(std::uint64_t time_ns) noexcept {
    std::uint64_t ms = time_ns / 1'000'000;
    if (ms < last_ms_) ms = last_ms_;  // the wall clock stepped back: keep ids ordered
    last_ms_ = ms;
    const std::uint64_t c = counter_++;
    return EventId{(ms & 0xffffffffffffull) << 16 | 0x7000ull | ((c >> 32) & 0xfff),
                   0x8000000000000000ull | nonce_ << 32 | (c & 0xffffffffull)};
  }

 private:
  std::uint64_t last_ms_ = 0;
  std::uint64_t counter_ = 0;
  std::uint64_t nonce_ = 0;  // 30 random bits
};

}  // namespace herald::detail
