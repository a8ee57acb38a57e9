// The packed 64-bit words of the state segment (shm/state_layout.hpp):
// cursor {generation, position/64} and in-flight {position/64, deliveries,
// in-handler}. Each must round-trip every value it can hold.
#include <gtest/gtest.h>

#include <random>

#include "shm/state_layout.hpp"
#include "tests/support/test_env.hpp"

namespace herald::shm {
namespace {

TEST(StateLayoutTest, CursorPackingRoundTrips) {
  std::mt19937_64 rng(test::seed("cursor packing"));
  for (std::uint32_t gen : {0u, 1u, 7u, 4095u}) {
    for (std::uint64_t pos : {std::uint64_t{0}, std::uint64_t{64}, std::uint64_t{1} << 40, kMaxCursorPosition}) {
      const std::uint64_t w = pack_cursor(gen, pos);
      EXPECT_EQ(cursor_gen(w), gen);
      EXPECT_EQ(cursor_pos(w), pos);
    }
  }
  for (int i = 0; i < 100000; ++i) {
    const auto gen = static_cast<std::uint32_t>(rng() & kGenMask);
    const std::uint64_t pos = (rng() % (kMaxCursorPosition / 16 + 1)) * 16;
    const std::uint64_t w = pack_cursor(gen, pos);
    ASSERT_EQ(cursor_gen(w), gen) << w;
    ASSERT_EQ(cursor_pos(w), pos) << w;
  }
  // The generation is 12 bits: 4096 wraps to 0 without touching the position.
  EXPECT_EQ(cursor_gen(pack_cursor(4096, 640)), 0u);
  EXPECT_EQ(cursor_pos(pack_cursor(4096, 640)), 640u);
  // A position is stored in units of 16 (every record boundary is 16-byte
  // aligned, inside a batch too): the low bits are dropped, never carried
  // into the generation.
  EXPECT_EQ(cursor_pos(pack_cursor(3, 127)), 112u);
  EXPECT_EQ(cursor_pos(pack_cursor(3, 80)), 80u);
  EXPECT_EQ(cursor_gen(pack_cursor(3, ~0ull)), 3u);
  EXPECT_EQ(kMaxCursorPosition, ((1ull << 52) - 1) * 16);
  // No valid cursor word equals kNoLease with generation 4095 and a position below the maximum.
  EXPECT_NE(pack_cursor(4095, kMaxCursorPosition - 16), kNoLease);
}

TEST(StateLayoutTest, InflightPackingRoundTrips) {
  std::mt19937_64 rng(test::seed("inflight packing"));
  for (int i = 0; i < 100000; ++i) {
    const std::uint64_t pos = (rng() % (kMaxCursorPosition / 16 + 1)) * 16;
    const auto deliveries = static_cast<std::uint32_t>(rng() & kDeliveriesMask);
    const bool in_handler = (rng() & 1) != 0;
    const bool marks = (rng() & 1) != 0;
    const std::uint64_t w = pack_inflight(pos, deliveries, in_handler, marks);
    ASSERT_EQ(inflight_pos(w), pos);
    ASSERT_EQ(inflight_deliveries(w), deliveries);
    ASSERT_EQ(inflight_in_handler(w), in_handler);
    ASSERT_EQ(inflight_marks(w), marks);
  }
  EXPECT_EQ(pack_inflight(0, 0, false, false), kNoInflight);
  // Deliveries are cut to the field width (10 bits), never spill into the
  // position or the flags.
  const std::uint64_t w = pack_inflight(640, 0x3ff + 1, true, false);
  EXPECT_EQ(inflight_pos(w), 640u);
  EXPECT_TRUE(inflight_in_handler(w));
  EXPECT_FALSE(inflight_marks(w));
  EXPECT_EQ(inflight_deliveries(pack_inflight(128, 5, false, true)), 5u);
  // The DLQ-pending word round-trips a position.
  EXPECT_TRUE(dlq_pending_set(pack_dlq_pending(4096)));
  EXPECT_EQ(dlq_pending_pos(pack_dlq_pending(4096)), 4096u);
}

}  // namespace
}  // namespace herald::shm
