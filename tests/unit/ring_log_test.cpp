// The partition log at the shm level (shm/ring_log.cpp): claims, commits,
// reads through a read-only mapping, the boundary index after wraps, and
// hand-forged ring states a reader must never take for a record.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <random>
#include <set>
#include <vector>

#include "shm/clock.hpp"
#include "shm/ring_log.hpp"
#include "shm/slots.hpp"
#include "shm/topic_map.hpp"
#include "tests/support/shm_records.hpp"
#include "tests/support/test_env.hpp"

namespace herald::shm {
namespace {

using test::check_record;
using test::fill_record;
using test::forge_commit;
using test::publish;

constexpr std::uint64_t kRing = 16 * 1024;
constexpr std::uint64_t kMax = 1024;

class RingLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(topic_.ok());
    // The reader maps the log read-only, as consumers do: any RMW a read
    // path attempted on it would fault here.
    auto r = TopicMap::attach(topic_.guard.bus(), "t", 1, Access::kReadOnly, Access::kReadWrite);
    ASSERT_TRUE(r) << r.error().message();
    reader_ = std::move(r).value();
    auto s = acquire_producer_slot(topic_.map, 0);
    ASSERT_TRUE(s) << s.error().message();
    slot_ = *s;
    writer_.emplace(&topic_.map, slot_, false);
  }

  const PartitionView& wv() const { return topic_.part(0); }     // the producer's (read-write) view
  const PartitionView& rv() const { return reader_.partition(0); }  // the consumer's (read-only) view
  std::uint64_t tail() const { return load_tail(rv()); }
  void forge_tail(std::uint64_t t) { wv().part->tail.store(t, std::memory_order_release); }

  std::uint64_t publish_ok(std::uint32_t size, std::uint64_t tag) {
    Status st{};
    auto pos = publish(*writer_, 0, size, tag, &st);
    EXPECT_EQ(st, Status::kOk) << test::describe_partition(wv());
    return pos.value_or(0);
  }

  // Reads q both ways and checks the record's bytes; returns its size.
  std::uint32_t expect_readable(std::uint64_t q) {
    const RecordHeader* h = nullptr;
    EXPECT_EQ(read_gated(rv(), q, &h), Status::kOk) << "at " << q;
    if (h == nullptr) return 0;
    EXPECT_TRUE(check_record(reinterpret_cast<const std::byte*>(h), q)) << "gated body at " << q;
    std::uint32_t n = 0;
    EXPECT_EQ(read_copy(rv(), q, buf_.data(), &n), Status::kOk) << "at " << q;
    EXPECT_EQ(n, h->size);
    EXPECT_TRUE(check_record(buf_.data(), q)) << "copied body at " << q;
    return h->size;
  }

  void expect_nothing_at(std::uint64_t q, Status copy_status = Status::kEmpty) {
    const RecordHeader* h = nullptr;
    EXPECT_EQ(read_gated(rv(), q, &h), Status::kEmpty) << "read_gated at " << q;
    EXPECT_EQ(h, nullptr);
    std::uint32_t n = 0;
    EXPECT_EQ(read_copy(rv(), q, buf_.data(), &n), copy_status) << "read_copy at " << q;
  }

  test::ShmTopic topic_{LogParams{.partitions = 1, .ring_bytes = kRing, .max_event = kMax, .flags = 0}};
  TopicMap reader_;
  std::uint32_t slot_ = 0;
  std::optional<RingLogWriter> writer_;
  // Exactly max_event bytes on the heap: ASan catches a copy one byte longer.
  std::vector<std::byte> buf_ = std::vector<std::byte>(kMax);
};

TEST_F(RingLogTest, PublishesAndReadsThroughAReadOnlyMapping) {
  const std::uint64_t a = publish_ok(64, 1);
  const std::uint64_t b = publish_ok(256, 2);
  EXPECT_EQ(a, 0u);
  EXPECT_EQ(b, 64u);
  EXPECT_EQ(tail(), 320u);
  EXPECT_EQ(expect_readable(a), 64u);
  EXPECT_EQ(expect_readable(b), 256u);
  expect_nothing_at(320);
  // The claim slot is empty after finish: it holds nobody back.
  EXPECT_EQ(wv().claims[slot_].word.load() & kClaimStateMask, kClaimEmpty);
  EXPECT_EQ(wv().claims[slot_].committed_to.load(), 320u);
}

TEST_F(RingLogTest, RecordCrossingTheEndIsContiguous) {
  forge_tail(kRing - 128);  // nothing before it matters to this test
  const std::uint64_t pos = publish_ok(512, 7);
  ASSERT_EQ(pos, kRing - 128);
  EXPECT_EQ(expect_readable(pos), 512u);
  // The record's last 384 bytes are the ring's first 384 bytes.
  EXPECT_EQ(std::memcmp(rv().ring + kRing, rv().ring, 384), 0);
  EXPECT_EQ(std::memcmp(rv().bytes_at(pos) + 128, rv().ring, 384), 0);
  // The same holds for a max_event record that starts at the last 64 bytes.
  forge_tail(3 * kRing - 64);
  const std::uint64_t p2 = publish_ok(kMax, 8);
  EXPECT_EQ(expect_readable(p2), kMax);
}

TEST_F(RingLogTest, AcceptsAMaxEventRecordAndRefusesLargerOnes) {
  const std::uint64_t pos = publish_ok(kMax, 1);
  EXPECT_EQ(expect_readable(pos), kMax);
  // Claims must be 64-aligned (112 is a valid record size, not a valid
  // claim), non-zero and at most half a ring (a batch).
  std::uint64_t p = 0;
  for (std::uint64_t bad : {std::uint64_t{0}, std::uint64_t{100}, std::uint64_t{112}, kRing / 2 + 64, kRing, ~std::uint64_t{63}}) {
    EXPECT_EQ(writer_->try_claim(0, bad, &p), Status::kTooLarge) << bad;
    EXPECT_EQ(writer_->claim(0, bad, monotonic_ns(), WaitPolicy{}, &p), Status::kTooLarge) << bad;
  }
  EXPECT_EQ(wv().claims[slot_].word.load() & kClaimStateMask, kClaimEmpty);
  EXPECT_EQ(tail(), kMax);
  // A single record larger than max_event (a producer bug or a corrupt log)
  // is refused by both readers, and read_copy does not copy past the buffer.
  ASSERT_EQ(writer_->try_claim(0, kMax + 64, &p), Status::kOk);
  fill_record(wv(), p, kMax + 64, 2);
  writer_->commit_record(0, p, kMax + 64);
  writer_->finish(0);
  const RecordHeader* h = nullptr;
  EXPECT_EQ(read_gated(rv(), p, &h), Status::kCorrupt);
  std::uint32_t n = 0;
  EXPECT_EQ(read_copy(rv(), p, buf_.data(), &n), Status::kCorrupt);
}

// A group cursor holds positions up to kMaxCursorPosition (2^56 - 16): a
// claim that would end past it fails with kExhausted and changes nothing,
// rather than write records no cursor can point past.
TEST_F(RingLogTest, AClaimEndingPastTheLargestCursorPositionIsRefused) {
  const std::uint64_t last = kMaxCursorPosition & ~(kClaimAlign - 1);  // the last claim boundary
  forge_tail(last - 256);
  const std::uint64_t pos = publish_ok(256, 5);  // ends exactly at `last`
  EXPECT_EQ(pos, last - 256);
  EXPECT_EQ(tail(), last);
  std::uint64_t p = 0;
  EXPECT_EQ(writer_->try_claim(0, 64, &p), Status::kExhausted) << test::describe_partition(wv());
  EXPECT_EQ(writer_->claim(0, 64, monotonic_ns() + 1'000'000'000, WaitPolicy{}, &p), Status::kExhausted);
  EXPECT_EQ(tail(), last);
  EXPECT_EQ(wv().claims[slot_].word.load() & kClaimStateMask, kClaimEmpty);  // holds nobody back
  EXPECT_EQ(expect_readable(pos), 256u);
}

TEST(AbortedPieceTest, EveryPieceHoldsAHeaderAndNoneExceedsMaxEvent) {
  constexpr std::uint64_t kMaxEvent = 128;
  EXPECT_EQ(aborted_piece(0, kMaxEvent), 0u);
  EXPECT_EQ(aborted_piece(16, kMaxEvent), 0u);  // less than a header: nothing valid fits
  EXPECT_EQ(aborted_piece(32, kMaxEvent), 0u);
  EXPECT_EQ(aborted_piece(48, kMaxEvent), 48u);
  EXPECT_EQ(aborted_piece(128, kMaxEvent), 128u);
  EXPECT_EQ(aborted_piece(144, kMaxEvent), 64u);   // 128 would leave 16
  EXPECT_EQ(aborted_piece(160, kMaxEvent), 64u);   // 128 would leave 32
  EXPECT_EQ(aborted_piece(176, kMaxEvent), 128u);  // leaves 48: a header fits
  // Any 16-aligned range of at least a header splits into valid pieces.
  for (std::uint64_t max_event : {std::uint64_t{128}, std::uint64_t{192}, std::uint64_t{1024}}) {
    for (std::uint64_t rest = kRecordHeaderBytes; rest <= 4 * max_event; rest += kRecordAlign) {
      std::uint64_t left = rest;
      while (left != 0) {
        const std::uint64_t e = aborted_piece(left, max_event);
        ASSERT_GE(e, kRecordHeaderBytes) << "rest " << rest << " left " << left << " max_event " << max_event;
        ASSERT_LE(e, max_event);
        ASSERT_EQ(e % kRecordAlign, 0u);
        left -= e;
      }
    }
  }
}

TEST_F(RingLogTest, FreshZeroedRingShowsNothingCommitted) {
  for (std::uint64_t q = 0; q < 3 * kRing; q += 64) expect_nothing_at(q);
  EXPECT_EQ(beginning(rv()), 0u);
  EXPECT_EQ(boundary_at_or_after(rv(), 0), 0u);
  EXPECT_EQ(boundary_at_or_after(rv(), 12345), 0u);
  EXPECT_EQ(check_position(rv(), 0), Status::kOk);  // the tail itself
  EXPECT_EQ(check_position(rv(), 64), Status::kInvalid);
  EXPECT_EQ(check_position(rv(), kRing), Status::kInvalid);
}

TEST_F(RingLogTest, HalfWrittenRecordIsInvisible) {
  publish_ok(128, 1);
  std::uint64_t pos = 0;
  ASSERT_EQ(writer_->try_claim(0, 256, &pos), Status::kOk);
  fill_record(wv(), pos, 256, 2);  // header and body written, commit word not
  EXPECT_EQ(tail(), pos + 256);
  expect_nothing_at(pos);
  EXPECT_EQ(check_position(rv(), pos), Status::kInvalid);
  EXPECT_NE(boundary_at_or_after(rv(), pos), pos);
  // A reader parked on it times out rather than waking for nothing. (A tiny
  // timeout: this asserts only that it is not reported ready.)
  auto rs = acquire_reader_slot(reader_, 0);
  ASSERT_TRUE(rs);
  const PartitionView* parts[] = {&rv()};
  const std::uint64_t at[] = {pos};
  EXPECT_EQ(park_reader(reader_, *rs, parts, at, 1'000'000), Status::kTimeout);
  EXPECT_EQ(rv().state->waiters.load(), 0u) << "the waiter bit is cleared after parking";
  writer_->commit_record(0, pos, 256);
  writer_->finish(0);
  EXPECT_EQ(expect_readable(pos), 256u);
  EXPECT_EQ(park_reader(reader_, *rs, parts, at, 10'000'000'000ull), Status::kOk);
  release_reader_slot(reader_, *rs);
}

TEST_F(RingLogTest, PayloadHoldingARawPositionIsNotACommit) {
  // A record whose body holds, at every 16-byte offset (where a record may
  // start), the raw position of that offset in this lap and in the next.
  std::uint64_t pos = 0;
  ASSERT_EQ(writer_->try_claim(0, kMax, &pos), Status::kOk);
  fill_record(wv(), pos, kMax, 1);
  for (std::uint64_t off = kRecordHeaderBytes; off < kMax; off += kRecordAlign) {
    std::uint64_t raw[2] = {pos + off, pos + off + kRing};
    std::memcpy(wv().bytes_at(pos + off), raw, sizeof raw);
  }
  writer_->commit_record(0, pos, kMax);
  writer_->finish(0);
  for (std::uint64_t off = kRecordHeaderBytes; off < kMax; off += kRecordAlign) {
    expect_nothing_at(pos + off);          // inside the record: never a boundary
    expect_nothing_at(pos + off + kRing);  // a future position
    EXPECT_EQ(check_position(rv(), pos + off), Status::kInvalid);
  }
  const RecordHeader* h = nullptr;
  ASSERT_EQ(read_gated(rv(), pos, &h), Status::kOk);
  EXPECT_EQ(h->size, kMax);
  EXPECT_EQ(boundary_at_or_after(rv(), pos + 16), kMax);  // the tail, not a payload word
}

TEST_F(RingLogTest, StaleLapWordIsNotACommitAndANewerLapIsAnOverrun) {
  const std::uint64_t q = 2 * kRing + 640;
  // An older lap's record committed at q - ring (and q - 2 ring) left its word.
  wv().header_at(q)->word.store((q - kRing) ^ wv().salt);
  forge_tail(q);
  expect_nothing_at(q);
  wv().header_at(q)->word.store((q - 2 * kRing) ^ wv().salt);
  expect_nothing_at(q);
  forge_tail(q + 64);  // q claimed, not yet committed
  expect_nothing_at(q);
  // A newer lap's word at q: a lossy reader was lapped.
  wv().header_at(q)->word.store((q + kRing) ^ wv().salt);
  forge_tail(q + kRing + 64);
  expect_nothing_at(q, Status::kOverrun);
  // Lapped by tail alone (the newer record not committed yet).
  wv().header_at(q)->word.store((q - kRing) ^ wv().salt);
  expect_nothing_at(q, Status::kOverrun);
  // A word that is off by a non-multiple of the ring is neither.
  wv().header_at(q)->word.store((q + 64) ^ wv().salt);
  forge_tail(q + 64);
  expect_nothing_at(q);
}

// Where a record is about to be written, the ring still holds an older
// lap's bytes: often the middle of an older record's payload. Payload bytes
// can look like a newer lap's commit word for q ((q + k * ring) ^ salt): one
// random 64-bit word in 64 has the low bits, one in ring/64 the offset. With
// the tail showing nobody lapped q, that is not an overrun: a lossy reader
// told kOverrun there would skip a record nobody overwrote (found by the
// lossy reader of RingLogTwoGroupsTest/8KiB, which polls the head).
TEST_F(RingLogTest, PayloadLookingLikeANewerLapWordIsNotAnOverrun) {
  const std::uint64_t q = 3 * kRing + 1088;
  forge_tail(q);
  for (std::uint64_t k : {1ull, 2ull, 5ull, 1000ull}) {
    SCOPED_TRACE(k);
    wv().header_at(q)->word.store((q + k * kRing) ^ wv().salt);  // old payload bytes at q's offset
    expect_nothing_at(q);
    forge_tail(q + 128);  // q claimed, its producer still writing
    expect_nothing_at(q);
    forge_tail(q);
  }
  // A parked reader is not woken by it either (it would spin instead of sleeping).
  auto rs = acquire_reader_slot(reader_, 0);
  ASSERT_TRUE(rs);
  const PartitionView* parts[] = {&rv()};
  const std::uint64_t at[] = {q};
  EXPECT_EQ(park_reader(reader_, *rs, parts, at, 1'000'000), Status::kTimeout);
  release_reader_slot(reader_, *rs);
  // Once the tail does pass q + ring, it is an overrun whatever the word says.
  forge_tail(q + kRing + 64);
  expect_nothing_at(q, Status::kOverrun);
}

TEST_F(RingLogTest, GarbageHeaderBehindAValidCommitWordIsCorrupt) {
  struct Garbage {
    const char* what;
    std::uint32_t size;
    std::uint16_t key_len, meta_len;
    std::uint32_t payload_len;
  };
  const Garbage cases[] = {
      {"size 0", 0, 0, 0, 0},
      {"size below a header", 32, 0, 0, 0},
      {"unaligned size", 100, 0, 0, 0},
      {"size above max_event", kMax + 64, 0, 0, 0},
      {"huge size", 0xffffffc0u, 0, 0, 0},
      {"max size", 0xffffffffu, 0, 0, 0},
      {"payload longer than the record", 128, 0, 0, 128 - 48 + 1},
      {"huge payload", 128, 0, 0, 0xffffffffu},
      {"key longer than the record", 128, 0xffff, 0, 0},
      {"meta longer than the record", 128, 0, 0xffff, 0},
      {"parts that add up past the record", kMax, 400, 400, 400},
  };
  std::uint64_t q = kRing - 64;  // the last slot of the ring: garbage sizes would cross the end
  forge_tail(q);
  for (const Garbage& g : cases) {
    SCOPED_TRACE(g.what);
    std::uint64_t pos = 0;
    ASSERT_EQ(writer_->try_claim(0, 128, &pos), Status::kOk);
    ASSERT_EQ(pos, q);
    RecordHeader* h = wv().header_at(q);
    h->size = g.size;
    h->key_len = g.key_len;
    h->meta_len = g.meta_len;
    h->payload_len = g.payload_len;
    writer_->commit_record(0, q, 128);
    writer_->finish(0);
    const RecordHeader* out = nullptr;
    EXPECT_EQ(read_gated(rv(), q, &out), Status::kCorrupt);
    EXPECT_EQ(out, nullptr);
    std::uint32_t n = 12345;
    std::vector<std::byte> exact(kMax);  // ASan: no byte past max_event is written
    EXPECT_EQ(read_copy(rv(), q, exact.data(), &n), Status::kCorrupt);
    EXPECT_EQ(n, 12345u) << "a corrupt record reports no size";
    q += 128;
  }
}

TEST_F(RingLogTest, BoundaryIndexAfterSeveralWraps) {
  std::mt19937_64 rng(test::seed("boundary index"));
  std::vector<std::uint64_t> starts;
  while (tail() < 5 * kRing + 777) {
    const auto size = static_cast<std::uint32_t>(64 * (1 + rng() % (kMax / 64)));
    starts.push_back(publish_ok(size, starts.size()));
    if (HasFailure()) return;
  }
  const std::uint64_t t = tail();
  const std::set<std::uint64_t> in_window(std::lower_bound(starts.begin(), starts.end(), t - kRing), starts.end());
  auto is_boundary = [&](std::uint64_t x) { return x == t || in_window.count(x) != 0; };

  // The first boundary at or after x, by the list of what was published.
  auto first_at_or_after = [&](std::uint64_t x) {
    auto it = in_window.lower_bound(x);
    return it == in_window.end() ? t : *it;
  };

  const std::uint64_t b = beginning(rv());
  EXPECT_EQ(b, first_at_or_after(t - kRing + kMax));
  EXPECT_EQ(check_position(rv(), b), Status::kOk);

  for (std::uint64_t x = t - kRing; x <= t + 128; x += 64) {
    const std::uint64_t r = boundary_at_or_after(rv(), x);
    ASSERT_TRUE(is_boundary(r)) << "x=" << x << " r=" << r << " t=" << t;
    ASSERT_GE(r, std::min(x, t)) << x;
    if (in_window.count(x) != 0) {
      ASSERT_EQ(r, x);
    }
    ASSERT_EQ(r, x < t ? first_at_or_after(x) : t) << "x=" << x;
    // Unaligned inputs round up.
    ASSERT_TRUE(is_boundary(boundary_at_or_after(rv(), x + 1)));
    ASSERT_GE(boundary_at_or_after(rv(), x + 1), std::min(x + 64, t));
  }
  for (std::uint64_t pos = t - kRing; pos <= t; pos += 64)
    ASSERT_EQ(check_position(rv(), pos), is_boundary(pos) ? Status::kOk : Status::kInvalid) << pos;
  // Overwritten (older than a ring), beyond the tail, unaligned.
  for (std::uint64_t old : starts) {
    if (old >= t - kRing) break;
    ASSERT_EQ(check_position(rv(), old), Status::kInvalid) << old;
  }
  EXPECT_EQ(check_position(rv(), t + 64), Status::kInvalid);
  EXPECT_EQ(check_position(rv(), ~std::uint64_t{63}), Status::kInvalid);
  EXPECT_EQ(check_position(rv(), *in_window.begin() + 1), Status::kInvalid);
  EXPECT_EQ(check_position(rv(), t), Status::kOk);
  // Every retained record is still intact.
  for (std::uint64_t x : in_window) expect_readable(x);
}

// A ring of one index page with max_event under a page: the index entry of
// every position's page already belongs to the tail's lap, so only the scan
// of the positions after x can find the retained records. It used to scan
// from the next page, past the tail: "earliest" was the tail, and a reader
// starting there missed every retained event (found by an exploratory pass).
TEST(RingLogSmallRingTest, BeginningOfAOnePageRingIsItsOldestRetainedRecord) {
  for (const std::uint64_t max_event : {std::uint64_t{128}, std::uint64_t{1024}}) {
    SCOPED_TRACE(max_event);
    test::ShmTopic topic{LogParams{.partitions = 1, .ring_bytes = 4096, .max_event = max_event, .flags = 0}};
    ASSERT_TRUE(topic.ok());
    auto slot = acquire_producer_slot(topic.map, 0);
    ASSERT_TRUE(slot) << slot.error().message();
    RingLogWriter writer(&topic.map, *slot, false);
    const PartitionView& v = topic.part(0);
    std::mt19937_64 rng(test::seed("one-page ring"));
    std::vector<std::uint64_t> starts;
    for (int i = 0; i < 500; ++i) {
      Status st{};
      const auto size = static_cast<std::uint32_t>(64 * (1 + rng() % (max_event / 64)));
      auto pos = publish(writer, 0, size, static_cast<std::uint64_t>(i), &st);
      ASSERT_EQ(st, Status::kOk) << test::describe_partition(v);
      starts.push_back(*pos);
      const std::uint64_t t = load_tail(v);
      if (t + max_event <= 4096) continue;  // not wrapped: beginning is 0
      const std::uint64_t want = *std::lower_bound(starts.begin(), starts.end(), t - 4096 + max_event);
      ASSERT_EQ(beginning(v), want) << "after " << i + 1 << " records, tail " << t;
      ASSERT_EQ(check_position(v, want), Status::kOk);
    }
  }
}

// A reader that resynchronises from a position far behind the window (a
// consumer back after a long absence) must not scan every index page
// between it and the tail: with a tail near 2^50 that is 2^38 pages, a hang
// that the test's timeout turns into a failure.
TEST_F(RingLogTest, BoundaryAtOrAfterAFarOlderPositionLandsInTheWindow) {
  const std::uint64_t base = 1ull << 50;
  forge_tail(base);
  std::set<std::uint64_t> starts;
  std::mt19937_64 rng(test::seed("far resync"));
  while (tail() < base + 2 * kRing + 320) {
    const auto size = static_cast<std::uint32_t>(64 * (1 + rng() % (kMax / 64)));
    starts.insert(publish_ok(size, starts.size()));
    if (HasFailure()) return;
  }
  const std::uint64_t t = tail();
  for (std::uint64_t x : {std::uint64_t{0}, std::uint64_t{64}, base / 2, base - 64, t - 3 * kRing, t - kRing - 64}) {
    const std::uint64_t r = boundary_at_or_after(rv(), x);
    EXPECT_TRUE(r == t || (starts.count(r) != 0 && r >= t - kRing)) << "x=" << x << " r=" << r << " t=" << t;
    EXPECT_EQ(check_position(rv(), r), Status::kOk) << "x=" << x << " r=" << r;
  }
  const std::uint64_t b = beginning(rv());
  EXPECT_TRUE(starts.count(b) != 0 && b >= t - kRing + kMax) << b;
  EXPECT_EQ(check_position(rv(), 0), Status::kInvalid);
  EXPECT_EQ(check_position(rv(), base), Status::kInvalid);
}

// A corrupt tail near 2^64: the index scan must not wrap around to 0 and
// walk every page of the 64-bit space (found by herald_fuzz_segments).
TEST_F(RingLogTest, BoundaryAtOrAfterWithATailNearTwoToTheSixtyFourTerminates) {
  const std::uint64_t t = ~std::uint64_t{0} - 63;  // 2^64 - 64, aligned
  forge_tail(t);
  for (std::uint64_t x : {t - 4098, t - kRing, t - 64, t - 1, std::uint64_t{0}}) {
    const std::uint64_t r = boundary_at_or_after(rv(), x);
    EXPECT_GE(r, std::min(x, t)) << x;
    EXPECT_LE(r, t) << x;
  }
  EXPECT_LE(beginning(rv()), t);
  EXPECT_EQ(check_position(rv(), t - 64), Status::kInvalid);
}

TEST_F(RingLogTest, CloseMakesClaimsAndEmptyReadsReturnClosed) {
  const std::uint64_t a = publish_ok(128, 1);
  std::uint64_t held = 0;
  ASSERT_EQ(writer_->try_claim(0, 192, &held), Status::kOk);  // a claim in flight across the close
  fill_record(wv(), held, 192, 2);
  auto rs = acquire_reader_slot(reader_, 0);
  ASSERT_TRUE(rs);

  topic_.map.close();
  EXPECT_TRUE(reader_.closed());
  EXPECT_TRUE(is_closed(rv()));
  EXPECT_EQ(tail(), held + 192) << "the closed bit does not move the tail";

  // Committed records stay readable; nothing committed reads as closed.
  expect_readable(a);
  const RecordHeader* h = nullptr;
  std::uint32_t n = 0;
  EXPECT_EQ(read_gated(rv(), held + 192, &h), Status::kClosed);
  EXPECT_EQ(read_copy(rv(), held + 192, buf_.data(), &n), Status::kClosed);
  // A parked reader is not left waiting for its timeout.
  const PartitionView* parts[] = {&rv()};
  const std::uint64_t at[] = {held + 192};
  EXPECT_EQ(park_reader(reader_, *rs, parts, at, 10'000'000'000ull), Status::kOk);

  // The claim made before the close can still be committed and read.
  writer_->commit_record(0, held, 192);
  writer_->finish(0);
  expect_readable(held);

  // Every later claim is refused, waiting or not, and leaves the slot empty.
  std::uint64_t p = 0;
  EXPECT_EQ(writer_->try_claim(0, 64, &p), Status::kClosed);
  EXPECT_EQ(writer_->claim(0, 64, monotonic_ns() + 1'000'000'000, WaitPolicy{}, &p), Status::kClosed);
  EXPECT_EQ(wv().claims[slot_].word.load() & kClaimStateMask, kClaimEmpty);
  RingLogWriter other(&topic_.map, slot_ + 1, false);
  EXPECT_EQ(other.try_claim(0, 64, &p), Status::kClosed);
  release_reader_slot(reader_, *rs);
}

// ---- gates ------------------------------------------------------------------

// Makes group slot g an active lossless gating group (what the runtime's
// group creation does under the admin lock), cursor at 0.
void activate_lossless_group(const TopicMap& t, std::uint32_t g) {
  GroupLayout* grp = t.group(g);
  grp->seq.store(1);
  grp->policy.store(static_cast<std::uint32_t>(GroupPolicy::kLossless));
  grp->name_len.store(1);
  grp->name_words[0].store('g' + g);
  grp->flags.store(kGroupGating);
  grp->state.store(kGroupActive, std::memory_order_seq_cst);
  grp->seq.store(2, std::memory_order_release);
  std::uint32_t hw = t.state_header()->group_slots_hw.load();
  while (hw < g + 1 && !t.state_header()->group_slots_hw.compare_exchange_weak(hw, g + 1)) {
  }
}

TEST_F(RingLogTest, LosslessGroupGatesClaimsUntilItsCursorMoves) {
  activate_lossless_group(topic_.map, 0);
  std::uint64_t published = 0;
  Status st = Status::kOk;
  while (publish(*writer_, 0, 512, published, &st)) ++published;
  EXPECT_EQ(st, Status::kBackPressured);
  EXPECT_EQ(published, kRing / 512) << "exactly one ring fits in front of a cursor at 0";
  EXPECT_EQ(tail(), kRing);
  EXPECT_EQ(wv().claims[slot_].word.load() & kClaimStateMask, kClaimEmpty) << "nothing claimed, no hole";
  std::uint64_t pos = 0;
  EXPECT_EQ(writer_->claim(0, 512, monotonic_ns() + 2'000'000, WaitPolicy{}, &pos), Status::kBackPressured);
  EXPECT_EQ(writer_->compute_gate(0), 0u);
  // The consumer reads two records and moves its cursor; exactly that much
  // room appears.
  GroupPartitionLayout* gp = reader_.group_partition(0, 0);
  std::uint64_t c = gp->cursor.load();
  ASSERT_TRUE(gp->cursor.compare_exchange_strong(c, pack_cursor(0, 1024)));
  wake_producers(rv());
  EXPECT_EQ(writer_->compute_gate(0), 1024u);
  EXPECT_TRUE(publish(*writer_, 0, 512, 100));
  EXPECT_TRUE(publish(*writer_, 0, 512, 101));
  EXPECT_FALSE(publish(*writer_, 0, 64, 102, &st));
  EXPECT_EQ(st, Status::kBackPressured);
  // A lease of the same generation below the cursor holds the gate down.
  gp->lease.store(pack_cursor(0, 512));
  EXPECT_EQ(writer_->compute_gate(0), 512u);
  gp->lease.store(pack_cursor(1, 0));  // another generation's lease: ignored
  EXPECT_EQ(writer_->compute_gate(0), 1024u);
  gp->lease.store(kNoLease);
}

TEST_F(RingLogTest, GatesAboveTheTailOrUnalignedAreIgnoredAndCounted) {
  activate_lossless_group(topic_.map, 3);
  publish_ok(256, 1);
  GroupPartitionLayout* gp = reader_.group_partition(3, 0);
  gp->cursor.store(pack_cursor(0, 1ull << 40));  // far above the tail: garbage
  const std::uint64_t before = wv().part->ignored_gates.load();
  EXPECT_EQ(writer_->compute_gate(0), 256u);
  EXPECT_EQ(wv().part->ignored_gates.load(), before + 1);
  gp->cursor.store(pack_cursor(0, 0));
  gp->gate_floor.store(100);  // max(floor, cursor) unaligned: ignored
  EXPECT_EQ(writer_->compute_gate(0), 256u);
  EXPECT_EQ(wv().part->ignored_gates.load(), before + 2);
  gp->gate_floor.store(0);
  EXPECT_EQ(writer_->compute_gate(0), 0u);
}

TEST_F(RingLogTest, LoweringAGateSetsTheFloorAtTheTail) {
  activate_lossless_group(topic_.map, 1);
  GroupPartitionLayout* gp = reader_.group_partition(1, 0);
  gp->cursor.store(pack_cursor(0, 0));
  for (int i = 0; i < 8; ++i) publish_ok(512, static_cast<std::uint64_t>(i));
  std::uint64_t c = gp->cursor.load();
  ASSERT_TRUE(gp->cursor.compare_exchange_strong(c, pack_cursor(0, tail())));
  // Seek back to 0: producers keep their room up to the floor (the tail now),
  // and the group reads the history below it as lossy.
  std::uint64_t floor = 0;
  ASSERT_TRUE(lower_gate(reader_, 1, 0, gp->cursor.load(), pack_cursor(1, 0), &floor));
  EXPECT_EQ(floor, tail());
  EXPECT_EQ(gp->gate_floor.load(), floor);
  EXPECT_EQ(cursor_gen(gp->cursor.load()), 1u);
  EXPECT_EQ(writer_->compute_gate(0), floor);
  clear_floor(reader_, 1, 0);
  EXPECT_EQ(gp->gate_floor.load(), 0u);
  EXPECT_EQ(writer_->compute_gate(0), 0u);
}

TEST_F(RingLogTest, LoweringAGateFromAStaleCursorChangesNothing) {
  activate_lossless_group(topic_.map, 1);
  GroupPartitionLayout* gp = reader_.group_partition(1, 0);
  for (int i = 0; i < 8; ++i) publish_ok(512, static_cast<std::uint64_t>(i));
  gp->cursor.store(pack_cursor(3, tail()));  // heraldd moved the partition on: generation 3
  const std::uint64_t floor_before = gp->gate_floor.load();
  std::uint64_t floor = 0;
  // A fenced member (it last saw generation 2) tries to seek back.
  EXPECT_FALSE(lower_gate(reader_, 1, 0, pack_cursor(2, tail()), pack_cursor(2, 0), &floor));
  EXPECT_EQ(gp->cursor.load(), pack_cursor(3, tail()));
  EXPECT_EQ(gp->gate_floor.load(), floor_before);  // no floor of ours over the new owner's bytes
}

}  // namespace
}  // namespace herald::shm
