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
  // The ids of `count` events that share one time, as next(time_ns) would
  // give them one by one: id k of the run is at(first + k).
  struct Run {
    std::uint64_t hi;     // ms and version; counter bits 43..32 added per id
    std::uint64_t lo;     // variant and nonce; counter bits 31..0 added per id
    std::uint64_t first;  // the counter of the run's first id
    [[nodiscard]] EventId at(std::uint64_t c) const noexcept {
      return EventId{hi | ((c >> 32) & 0xfff), lo | (c & 0xffffffffull)};
    }
  };
  Run run(std::uint64_t time_ns, std::uint64_t count) noexcept {
    std::uint64_t ms = time_ns / 1'000'000;
    // The wall clock stepped back: keep ids ordered. Stored only when the
    // millisecond moves on (a publish's stores are its cost; see
    // Producer::Impl::count).
    if (ms <= last_ms_) ms = last_ms_;
    else last_ms_ = ms;
    const Run r{(ms & 0xffffffffffffull) << 16 | 0x7000ull, 0x8000000000000000ull | nonce_ << 32, counter_};
    counter_ += count;
    return r;
  }
  EventId next(std::uint64_t time_ns) noexcept {
    const Run r = run(time_ns, 1);
    return r.at(r.first);
  }

 private:
  std::uint64_t last_ms_ = 0;
  std::uint64_t counter_ = 0;
  std::uint64_t nonce_ = 0;  // 30 random bits
};

}  // namespace herald::detail
