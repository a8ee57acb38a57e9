// runtime/src/event_id.cpp: UUIDv7-layout event ids: generation (time
// ordered, strictly increasing per producer), text form and parsing.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "herald/event.hpp"
#include "runtime/src/event_id.hpp"
#include "tests/support/payload.hpp"
#include "tests/support/test_env.hpp"

namespace herald {
namespace {

TEST(EventIdTest, GeneratedIdsAreUuidV7AndStrictlyIncreasing) {
  detail::IdGenerator gen;
  const std::uint64_t t0 = 1'700'000'000'123'456'789ull;  // ns
  EventId prev = gen.next(t0);
  EXPECT_EQ(prev.hi >> 16, t0 / 1'000'000) << "48-bit unix ms";
  EXPECT_EQ((prev.hi >> 12) & 0xf, 7u) << "version 7";
  EXPECT_EQ(prev.lo >> 62, 2u) << "variant 0b10";
  for (int i = 0; i < 10000; ++i) {
    // Same millisecond, later ones, and a clock that steps back: ids still
    // strictly increase.
    const std::uint64_t t = i % 3 == 0 ? t0 : i % 3 == 1 ? t0 + std::uint64_t(i) * 1000 : t0 - 5'000'000'000ull;
    const EventId id = gen.next(t);
    ASSERT_LT(prev, id) << "id " << i << ": " << prev.to_string() << " !< " << id.to_string();
    EXPECT_EQ((id.hi >> 12) & 0xf, 7u);
    prev = id;
  }
}

TEST(EventIdTest, TwoGeneratorsDoNotCollide) {
  detail::IdGenerator a, b;
  const std::uint64_t t = 1'700'000'000'000'000'000ull;
  // Different per-producer nonces (30 random bits): the same (ms, counter)
  // gives different ids. A collision here has probability 2^-30.
  EXPECT_NE(a.next(t), b.next(t));
}

TEST(EventIdTest, ToStringParseRoundTrip) {
  const std::uint64_t seed = test::seed("EventIdTest.ToStringParseRoundTrip");
  test::SplitMix rng(seed);
  std::vector<EventId> ids = {EventId{0, 1}, EventId{~0ull, ~0ull}, EventId{0x0190a1b2c3d47e5full, 0x8a9b0c1d2e3f4a5bull}};
  for (int i = 0; i < 1000; ++i) ids.push_back(EventId{rng.next(), rng.next()});
  for (const EventId& id : ids) {
    const std::string s = id.to_string();
    ASSERT_EQ(s.size(), 36u) << s;
    EXPECT_EQ(s[8], '-');
    EXPECT_EQ(s[13], '-');
    EXPECT_EQ(s[18], '-');
    EXPECT_EQ(s[23], '-');
    auto back = EventId::parse(s);
    ASSERT_TRUE(back) << s << ": " << back.error().message();
    EXPECT_EQ(*back, id) << s;
  }
  EXPECT_EQ(EventId({0x0190a1b2c3d47e5full, 0x8a9b0c1d2e3f4a5bull}).to_string(), "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b");
  // 32 bare hex digits and upper case parse too.
  auto bare = EventId::parse("0190A1B2C3D47E5F8A9B0C1D2E3F4A5B");
  ASSERT_TRUE(bare) << bare.error().message();
  EXPECT_EQ(*bare, (EventId{0x0190a1b2c3d47e5full, 0x8a9b0c1d2e3f4a5bull}));
}

TEST(EventIdTest, ParseRejectsMalformedIdsNamingThem) {
  const std::vector<std::string> bad = {
      "",
      "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5",    // 35 chars
      "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5bc",  // 37 chars
      "0190a1b2c3d4-7e5f-8a9b-0c1d2e3f4a5b0",   // a dash out of place
      "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5g",   // not hex
      "0190a1b2-c3d4-7e5f-8a9b 0c1d2e3f4a5b",   // a space for a dash
      "0190a1b2c3d47e5f8a9b0c1d2e3f4a5",        // 31 digits
      "0190a1b2c3d47e5f8a9b0c1d2e3f4a5b0",      // 33 digits
      "{0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b}",
      "not-a-uuid",
  };
  for (const std::string& s : bad) {
    auto r = EventId::parse(s);
    ASSERT_FALSE(r) << "'" << s << "' parsed as " << r->to_string();
    EXPECT_EQ(r.error().code, Errc::kInvalidArgument) << s;
    EXPECT_NE(r.error().detail.find("'" + s + "'"), std::string::npos) << r.error().message();
  }
}

}  // namespace
}  // namespace herald
