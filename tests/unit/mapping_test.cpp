// Segments and double-mapped rings (shm/mapping.cpp).
#include <gtest/gtest.h>

#include <sys/resource.h>
#include <sys/stat.h>

#include <cstring>

#include "shm/mapping.hpp"
#include "shm/names.hpp"
#include "shm/segment_layout.hpp"
#include "tests/support/test_env.hpp"

namespace herald::shm {
namespace {

class MappingTest : public ::testing::Test {
 protected:
  std::string name(const std::string& what) const { return bus_segment_prefix(guard_.bus()) + what; }
  test::BusGuard guard_;
};

TEST_F(MappingTest, CreateZeroFillsAndSetsTheMode) {
  auto s = Segment::create(name("a"), 3 * kPageBytes, {0640, -1});
  ASSERT_TRUE(s) << s.error().message();
  EXPECT_EQ(s->size(), 3 * kPageBytes);
  for (std::uint64_t i = 0; i < s->size(); ++i) ASSERT_EQ(s->data()[i], std::byte{0}) << i;
  struct stat st{};
  ASSERT_EQ(::stat(("/dev/shm/" + name("a")).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0640u);
  EXPECT_EQ(Segment::list(bus_segment_prefix(guard_.bus())).size(), 1u);
}

TEST_F(MappingTest, CreateRefusesBadSizesAndDuplicates) {
  for (std::uint64_t bad : {std::uint64_t{0}, std::uint64_t{100}, kPageBytes + 1}) {
    auto s = Segment::create(name("b"), bad, {});
    ASSERT_FALSE(s);
    EXPECT_EQ(s.error().code, Errc::kInvalidArgument) << s.error().message();
    EXPECT_NE(s.error().detail.find(std::to_string(bad)), std::string::npos) << s.error().message();
  }
  EXPECT_FALSE(Segment::exists(name("b")));
  ASSERT_TRUE(Segment::create(name("b"), kPageBytes, {}));
  auto dup = Segment::create(name("b"), kPageBytes, {});
  ASSERT_FALSE(dup);
  EXPECT_EQ(dup.error().code, Errc::kAlreadyExists) << dup.error().message();
  EXPECT_NE(dup.error().detail.find(name("b")), std::string::npos);
}

TEST_F(MappingTest, OpenAndRemoveReportMissingObjects) {
  auto o = Segment::open(name("missing"), Access::kReadOnly);
  ASSERT_FALSE(o);
  EXPECT_EQ(o.error().code, Errc::kNotFound) << o.error().message();
  auto r = Segment::remove(name("missing"));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kNotFound);
}

TEST_F(MappingTest, DoubleMapIsContiguousAcrossTheEnd) {
  constexpr std::uint64_t kRing = 4 * kPageBytes;
  auto s = Segment::create(name("ring"), kPageBytes + kRing, {});
  ASSERT_TRUE(s);
  auto dm = s->map_twice(kPageBytes, kRing);
  ASSERT_TRUE(dm) << dm.error().message();
  EXPECT_EQ(dm->bytes(), kRing);
  // A 256-byte value written across the end through the mapping lands at the
  // ring's end and start in the segment.
  std::byte pattern[256];
  for (int i = 0; i < 256; ++i) pattern[i] = static_cast<std::byte>(i);
  std::memcpy(dm->data() + kRing - 100, pattern, sizeof pattern);
  EXPECT_EQ(std::memcmp(s->data() + kPageBytes + kRing - 100, pattern, 100), 0);
  EXPECT_EQ(std::memcmp(s->data() + kPageBytes, pattern + 100, 156), 0);
  // And a read-only double map of the same bytes sees it too.
  auto ro = Segment::open(name("ring"), Access::kReadOnly);
  ASSERT_TRUE(ro);
  auto rdm = ro->map_twice(kPageBytes, kRing);
  ASSERT_TRUE(rdm) << rdm.error().message();
  EXPECT_EQ(std::memcmp(rdm->data() + kRing - 100, pattern, sizeof pattern), 0);
  EXPECT_EQ(std::memcmp(rdm->data() + 2 * kRing - 100, pattern, 100), 0);
}

long minor_faults() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return u.ru_minflt;
}

// populate() installs the page tables of the ring and of the spill into the
// second copy (smaps counts them resident), so the first write to each page
// through a read-write mapping takes no fault; without it, every page faults.
TEST_F(MappingTest, PopulatedRingTakesNoFaultOnFirstWrite) {
  constexpr std::uint64_t kPages = 256;
  constexpr std::uint64_t kRing = kPages * kPageBytes;
  constexpr long kRingKb = static_cast<long>(kRing / 1024), kPageKb = static_cast<long>(kPageBytes / 1024);
  auto s = Segment::create(name("pop"), kPageBytes + kRing, {});
  ASSERT_TRUE(s) << s.error().message();
  auto touch_all = [&](const Segment::DoubleMap& dm, std::uint64_t spill) {
    const long before = minor_faults();
    for (std::uint64_t off = 0; off < kRing + spill; off += kPageBytes) dm.data()[off] = std::byte{1};
    return minor_faults() - before;
  };
  auto cold = s->map_twice(kPageBytes, kRing);
  ASSERT_TRUE(cold) << cold.error().message();
  EXPECT_EQ(test::rss_kb(cold->data()), 0);
  const long cold_faults = touch_all(*cold, 0);
  auto warm = s->map_twice(kPageBytes, kRing);
  ASSERT_TRUE(warm) << warm.error().message();
  warm->populate(2 * kPageBytes);
  warm->populate(2 * kPageBytes);  // idempotent
  EXPECT_EQ(test::rss_kb(warm->data()), kRingKb);
  // The second copy: at least the spill (the kernel's fault-around may map
  // more of it, never beyond the copy).
  EXPECT_GE(test::rss_kb(warm->data() + kRing), 2 * kPageKb);
  EXPECT_LE(test::rss_kb(warm->data() + kRing), kRingKb);
  const long warm_faults = touch_all(*warm, 2 * kPageBytes);
  // A sanitizer's instrumented stores fault on its shadow pages too: the
  // counts then say nothing about the ring's.
  if (!test::under_asan() && !test::under_tsan()) {
    EXPECT_GE(cold_faults, static_cast<long>(kPages / 2)) << "cold " << cold_faults << ", populated " << warm_faults;
    EXPECT_LE(warm_faults, static_cast<long>(kPages / 16)) << "cold " << cold_faults << ", populated " << warm_faults;
  }
  // A read-only double map populates too, and sees the bytes.
  auto ro = Segment::open(name("pop"), Access::kReadOnly);
  ASSERT_TRUE(ro);
  auto rdm = ro->map_twice(kPageBytes, kRing);
  ASSERT_TRUE(rdm) << rdm.error().message();
  rdm->populate(kRing * 4);           // more than a copy: clamped to one
  rdm->populate(~std::uint64_t{0});   // and no wrap-around
  EXPECT_EQ(test::rss_kb(rdm->data()), kRingKb);
  EXPECT_EQ(test::rss_kb(rdm->data() + kRing), kRingKb);
  EXPECT_EQ(rdm->data()[kRing - kPageBytes], std::byte{1});
  EXPECT_EQ(rdm->data()[2 * kRing - kPageBytes], std::byte{1});
  Segment::DoubleMap empty;
  empty.populate(kPageBytes);  // no mapping: nothing to do
}

TEST_F(MappingTest, MapTwiceRefusesBadRanges) {
  auto s = Segment::create(name("r"), 4 * kPageBytes, {});
  ASSERT_TRUE(s);
  struct Case {
    std::uint64_t off, bytes;
    Errc code;
  };
  for (const Case& c : {Case{100, kPageBytes, Errc::kInvalidArgument}, Case{0, 100, Errc::kInvalidArgument},
                        Case{0, 0, Errc::kInvalidArgument}, Case{kPageBytes, 4 * kPageBytes, Errc::kCorrupt},
                        Case{8 * kPageBytes, kPageBytes, Errc::kCorrupt},
                        Case{~std::uint64_t{0} - kPageBytes + 1, kPageBytes, Errc::kCorrupt}}) {
    auto dm = s->map_twice(c.off, c.bytes);
    ASSERT_FALSE(dm) << c.off << "+" << c.bytes;
    EXPECT_EQ(dm.error().code, c.code) << dm.error().message();
  }
  Segment empty;
  auto dm = empty.map_twice(0, kPageBytes);
  ASSERT_FALSE(dm);
  EXPECT_EQ(dm.error().code, Errc::kInvalidArgument);
}

}  // namespace
}  // namespace herald::shm
