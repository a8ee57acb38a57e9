// Repair of a dead producer's claim (shm/repair.cpp), one test per step of
// DESIGN.md's "Producer crash" rule, by forging the claim-slot states a
// producer killed at that step leaves behind. After every repair a reader
// walks the repaired range (aborted records skipped, committed ones intact)
// and a live producer publishes two more rings: no wedge.
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <initializer_list>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "shm/crash_point.hpp"
#include "shm/repair.hpp"
#include "shm/ring_log.hpp"
#include "shm/slots.hpp"
#include "shm/topic_map.hpp"
#include "tests/support/shm_records.hpp"
#include "tests/support/test_env.hpp"

namespace herald::shm {
namespace {

using test::check_record;
using test::fill_record;
using test::publish;

constexpr std::uint64_t kRing = 16 * 1024;
constexpr std::uint64_t kMax = 1024;

struct Seen {
  std::uint64_t pos;
  std::uint32_t size;
  bool aborted;
  std::uint64_t tag;
};

class RepairTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(topic_.ok());
    auto r = TopicMap::attach(topic_.guard.bus(), "t", 1, Access::kReadOnly, Access::kReadWrite);
    ASSERT_TRUE(r) << r.error().message();
    reader_ = std::move(r).value();
    // Slots 0 (live), 1, 2, 3 (the ones that die): taken properly so the
    // claim-table scan (bounded by producer_slots_hw) covers them.
    for (std::uint32_t i = 0; i < 4; ++i) {
      auto s = acquire_producer_slot(topic_.map, 100 + i);
      ASSERT_TRUE(s) << s.error().message();
      ASSERT_EQ(*s, i);
    }
    live_.emplace(&topic_.map, kLive, false);
  }

  static constexpr std::uint32_t kLive = 0, kA = 1, kB = 2, kC = 3;

  const PartitionView& wv() const { return topic_.part(0); }
  const PartitionView& rv() const { return reader_.partition(0); }
  std::uint64_t tail() const { return load_tail(rv()); }
  void forge_tail(std::uint64_t t) { wv().part->tail.store(t, std::memory_order_release); }
  ClaimSlotLayout& slot(std::uint32_t i) const { return wv().claims[i]; }

  // A claim slot as a producer killed at some instant leaves it.
  void forge_claim(std::uint32_t i, std::uint64_t pos, std::uint64_t state, std::uint64_t size,
                   std::optional<std::uint64_t> committed_to = std::nullopt) {
    slot(i).size.store(size);
    slot(i).committed_to.store(committed_to.value_or(pos));
    slot(i).word.store(pos | state, std::memory_order_release);
  }

  std::uint64_t publish_live(std::uint32_t size, std::uint64_t tag) {
    Status st{};
    auto pos = publish(*live_, 0, size, tag, &st);
    EXPECT_EQ(st, Status::kOk) << test::describe_partition(wv());
    return pos.value_or(0);
  }

  RepairReport repair(std::uint32_t i, std::uint64_t dead) { return repair_claim_slot(topic_.map, 0, i, dead); }

  // Reads [from, tail) with a gated reader through the read-only mapping.
  std::vector<Seen> walk(std::uint64_t from) {
    std::vector<Seen> out;
    std::uint64_t q = from;
    const std::uint64_t t = tail();
    while (q < t) {
      const RecordHeader* h = nullptr;
      const Status st = read_gated(rv(), q, &h);
      if (st != Status::kOk) {
        ADD_FAILURE() << "reader stuck at " << q << " (status " << static_cast<int>(st) << ", tail " << t << "); "
                      << test::describe_partition(wv());
        break;
      }
      Seen s{q, h->size, (h->flags & kRecordAborted) != 0, 0};
      if (s.aborted) {
        EXPECT_EQ(h->producer_slot, kRepairProducerSlot) << q;
        EXPECT_LE(h->size, kMax) << q;
      } else {
        EXPECT_TRUE(check_record(reinterpret_cast<const std::byte*>(h), q, &s.tag)) << "record at " << q << " damaged";
      }
      out.push_back(s);
      q += h->size;
    }
    return out;
  }

  // A live producer publishes two more rings and a reader follows it: the
  // partition is not wedged by anything the repair left (or failed to clear).
  void expect_no_wedge() {
    std::uint64_t q = tail();
    for (std::uint64_t i = 0; i < 2 * kRing / 256; ++i) {
      Status st{};
      auto pos = publish(*live_, 0, 256, 1'000'000 + i, &st);
      ASSERT_EQ(st, Status::kOk) << "publish " << i << " after the repair: " << test::describe_partition(wv());
      ASSERT_EQ(*pos, q);
      const RecordHeader* h = nullptr;
      ASSERT_EQ(read_gated(rv(), q, &h), Status::kOk) << q;
      ASSERT_TRUE(check_record(reinterpret_cast<const std::byte*>(h), q));
      q += 256;
    }
    for (std::uint32_t i = 0; i < 4; ++i)
      EXPECT_EQ(slot(i).word.load() & kClaimStateMask, kClaimEmpty) << "slot " << i << " still holds W";
  }

  static std::uint64_t bit(std::uint32_t i) { return 1ull << i; }

  // A producer in slot kA that claimed `claim` bytes after one live record,
  // wrote records of `sizes` (tags 10, 11, ...) into it, committed the first
  // `committed` of them and died. Returns the claim's position.
  std::uint64_t dying_batch(std::uint64_t claim, std::initializer_list<std::uint32_t> sizes, std::size_t committed) {
    publish_live(64, 1);
    RingLogWriter dying(&topic_.map, kA, false);
    std::uint64_t p0 = 0;
    EXPECT_EQ(dying.try_claim(0, claim, &p0), Status::kOk);
    std::uint64_t at = p0, tag = 10;
    std::size_t i = 0;
    for (std::uint32_t size : sizes) {
      fill_record(wv(), at, size, tag++);
      if (i++ < committed) dying.commit_record(0, at, size);
      at += size;
    }
    return p0;
  }

  test::ShmTopic topic_{LogParams{.partitions = 1, .ring_bytes = kRing, .max_event = kMax, .flags = 0}};
  TopicMap reader_;
  std::optional<RingLogWriter> live_;
};

TEST_F(RepairTest, EmptySlotNeedsNothing) {
  publish_live(128, 1);
  const RepairReport r = repair(kA, bit(kA));
  EXPECT_EQ(r.outcome, RepairOutcome::kNothing);
  EXPECT_EQ(tail(), 128u);
  walk(0);
  expect_no_wedge();
}

// ---- won: abort from the first uncommitted record ---------------------------

TEST_F(RepairTest, WonWithNothingCommittedAbortsTheWholeRange) {
  publish_live(1024, 1);
  publish_live(1024, 1);
  publish_live(1024, 1);  // the claim below starts at 3072: its range crosses an index page
  RingLogWriter dying(&topic_.map, kA, false);
  std::uint64_t p0 = 0;
  ASSERT_EQ(dying.try_claim(0, 2496, &p0), Status::kOk);  // a batch of 2496 bytes; dies before any commit
  ASSERT_EQ(slot(kA).word.load(), p0 | kClaimWon);
  publish_live(192, 2);  // others go on publishing after it
  publish_live(64, 3);
  // While the slot stands it holds W: nobody may lap the unfinished range.
  EXPECT_EQ(live_->compute_gate(0), p0);

  const RepairReport r = repair(kA, bit(kA));
  EXPECT_EQ(r.outcome, RepairOutcome::kAborted);
  EXPECT_EQ(r.position, p0);
  EXPECT_EQ(r.size, 2496u);
  EXPECT_EQ(r.aborted_from, p0);
  EXPECT_EQ(r.aborted_records, 3u);  // 1024 + 1024 + 448: at most max_event each
  EXPECT_EQ(wv().part->aborted_records.load(), 3u);
  EXPECT_EQ(wv().part->repaired_claims.load(), 1u);
  EXPECT_EQ(slot(kA).word.load() & kClaimStateMask, kClaimEmpty);

  const auto seen = walk(0);
  ASSERT_EQ(seen.size(), 8u);
  EXPECT_FALSE(seen[2].aborted);
  EXPECT_TRUE(seen[3].aborted && seen[4].aborted && seen[5].aborted);
  EXPECT_EQ(seen[3].size + seen[4].size + seen[5].size, 2496u);
  EXPECT_EQ(seen[6].tag, 2u);
  EXPECT_EQ(seen[7].tag, 3u);
  // The boundary index knows the aborted records too.
  ASSERT_EQ(p0, 3072u);
  EXPECT_EQ(check_position(rv(), p0 + 1024), Status::kOk);
  EXPECT_EQ(boundary_at_or_after(rv(), p0 + 64), p0 + 1024);
  expect_no_wedge();
}

class RepairPartialBatchTest : public RepairTest {
 protected:
  // A batch of three 256-byte records; the first two committed, then death.
  void claim_and_commit_two() {
    publish_live(64, 1);
    RingLogWriter dying(&topic_.map, kA, false);
    ASSERT_EQ(dying.try_claim(0, 768, &p0_), Status::kOk);
    for (std::uint64_t i = 0; i < 3; ++i) fill_record(wv(), p0_ + 256 * i, 256, 10 + i);
    dying.commit_record(0, p0_, 256);
    dying.commit_record(0, p0_ + 256, 256);
    ASSERT_EQ(slot(kA).committed_to.load(), p0_ + 512);
    publish_live(128, 2);
  }
  void expect_aborted_from_third() {
    const RepairReport r = repair(kA, bit(kA));
    EXPECT_EQ(r.outcome, RepairOutcome::kAborted);
    EXPECT_EQ(r.aborted_from, p0_ + 512);
    EXPECT_EQ(r.aborted_records, 1u);
    const auto seen = walk(0);
    ASSERT_EQ(seen.size(), 5u);
    EXPECT_EQ(seen[1].tag, 10u);  // committed records intact
    EXPECT_EQ(seen[2].tag, 11u);
    EXPECT_FALSE(seen[1].aborted || seen[2].aborted);
    EXPECT_TRUE(seen[3].aborted);
    EXPECT_EQ(seen[3].pos, p0_ + 512);
    EXPECT_EQ(seen[4].tag, 2u);
    expect_no_wedge();
  }
  std::uint64_t p0_ = 0;
};

TEST_F(RepairPartialBatchTest, AbortsFromTheFirstUncommittedRecord) {
  claim_and_commit_two();
  expect_aborted_from_third();
}

TEST_F(RepairPartialBatchTest, CommittedToLaggingBehindIsOnlyAHint) {
  // Killed between a commit word and the committed_to store that follows it.
  claim_and_commit_two();
  slot(kA).committed_to.store(p0_);
  expect_aborted_from_third();
}

TEST_F(RepairPartialBatchTest, CommittedToPastTheClaimIsIgnored) {
  claim_and_commit_two();
  slot(kA).committed_to.store(p0_ + 768 + 64);
  expect_aborted_from_third();
}

TEST_F(RepairPartialBatchTest, CommittedToBeforeTheClaimIsIgnored) {
  claim_and_commit_two();
  slot(kA).committed_to.store(p0_ - 64);
  expect_aborted_from_third();
}

TEST_F(RepairPartialBatchTest, UnalignedCommittedToIsIgnored) {
  claim_and_commit_two();
  slot(kA).committed_to.store(p0_ + 100);
  expect_aborted_from_third();
}

// committed_to is read from shared memory: a value ahead of the commit words
// (or pointing inside a committed record) must not make repair skip an
// uncommitted record (the reader would wait at it forever) or write an
// aborted record over a committed one.
TEST_F(RepairPartialBatchTest, CommittedToAheadOfTheCommitWordsIsNotTrusted) {
  claim_and_commit_two();
  slot(kA).committed_to.store(p0_ + 768);  // says "all done"; the third record is not
  expect_aborted_from_third();
}

TEST_F(RepairPartialBatchTest, CommittedToInsideACommittedRecordIsNotTrusted) {
  claim_and_commit_two();
  slot(kA).committed_to.store(p0_ + 64);  // inside the first (committed) record
  expect_aborted_from_third();
}

TEST_F(RepairPartialBatchTest, RepairIsIdempotentAfterTheRepairerDies) {
  claim_and_commit_two();
  // A repairer killed after writing the aborted record but before clearing
  // the slot: the next repair walks over it and finds nothing left to do.
  write_aborted(wv(), p0_ + 512, p0_ + 768);
  const RepairReport r = repair(kA, bit(kA));
  EXPECT_EQ(r.outcome, RepairOutcome::kAborted);
  EXPECT_EQ(r.aborted_from, p0_ + 768);
  EXPECT_EQ(r.aborted_records, 0u);
  const auto seen = walk(0);
  ASSERT_EQ(seen.size(), 5u);
  EXPECT_TRUE(seen[3].aborted);
  expect_no_wedge();
}

// Records of a batch are packed 16-byte aligned inside the claim's 64-byte
// aligned range: a 112-byte record committed, a 144-byte one (the last,
// padded to the claim's end) not.
TEST_F(RepairTest, PackedBatchAbortsFromItsFirstUncommittedRecord) {
  const std::uint64_t p0 = dying_batch(256, {112, 144}, 1);
  publish_live(128, 2);
  const RepairReport r = repair(kA, bit(kA));
  EXPECT_EQ(r.outcome, RepairOutcome::kAborted);
  EXPECT_EQ(r.aborted_from, p0 + 112);
  EXPECT_EQ(r.aborted_records, 1u);
  const auto seen = walk(0);
  ASSERT_EQ(seen.size(), 4u);
  EXPECT_EQ(seen[1].tag, 10u);
  EXPECT_EQ(seen[1].size, 112u);
  EXPECT_TRUE(seen[2].aborted);
  EXPECT_EQ(seen[2].pos, p0 + 112);
  EXPECT_EQ(seen[2].size, 144u);
  EXPECT_EQ(seen[3].tag, 2u);
  expect_no_wedge();
}

// An uncommitted range 16 bytes longer than max_event: a max_event piece
// would leave 16 bytes, too few for a header, so the first piece is one
// line shorter and the second holds the rest.
TEST_F(RepairTest, RangeJustOverMaxEventIsAbortedInPiecesThatEachHoldAHeader) {
  const std::uint64_t p0 = dying_batch(1152, {112}, 1);  // 112 committed, 1040 never written
  const RepairReport r = repair(kA, bit(kA));
  EXPECT_EQ(r.outcome, RepairOutcome::kAborted);
  EXPECT_EQ(r.aborted_from, p0 + 112);
  EXPECT_EQ(r.aborted_records, 2u);
  const auto seen = walk(0);
  ASSERT_EQ(seen.size(), 4u);
  EXPECT_EQ(seen[1].tag, 10u);
  EXPECT_TRUE(seen[2].aborted && seen[3].aborted);
  EXPECT_EQ(seen[2].size, kMax - 64);
  EXPECT_EQ(seen[3].size, 1040u - (kMax - 64));
  expect_no_wedge();
}

// A committed record whose size leaves 16 bytes of the claim (only a corrupt
// header can say that) is not walked over: the rest could not hold an
// aborted record, so the range is aborted from that record on.
TEST_F(RepairTest, CommittedRecordLeavingLessThanAHeaderIsAbortedWithTheRest) {
  const std::uint64_t p0 = dying_batch(256, {240}, 1);
  const RepairReport r = repair(kA, bit(kA));
  EXPECT_EQ(r.outcome, RepairOutcome::kAborted);
  EXPECT_EQ(r.aborted_from, p0);
  const auto seen = walk(0);
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_TRUE(seen[1].aborted);
  EXPECT_EQ(seen[1].size, 256u);
  expect_no_wedge();
}

// ---- candidate: it may have lost its CAS, or won and died before marking it --

TEST_F(RepairTest, CandidateWithTailAtItsPositionNeverClaimed) {
  publish_live(128, 1);
  forge_claim(kA, tail(), kClaimCandidate, 256);
  EXPECT_EQ(live_->compute_gate(0), 128u) << "a stale candidate holds W while it stands";
  const RepairReport r = repair(kA, bit(kA));
  EXPECT_EQ(r.outcome, RepairOutcome::kCleared);
  EXPECT_EQ(tail(), 128u);
  EXPECT_EQ(slot(kA).word.load(), kClaimEmpty);
  walk(0);
  expect_no_wedge();
}

TEST_F(RepairTest, CandidateLappedLostAndIsCleared) {
  // The candidate loaded tail = p and was descheduled; by the time it died
  // the others had published more than a ring past p (their gates were
  // computed before its slot was written, so they were allowed to).
  const std::uint64_t p = publish_live(256, 1) + 256;
  while (tail() <= p + kRing) publish_live(512, 2);
  forge_claim(kA, p, kClaimCandidate, 256);
  const RepairReport r = repair(kA, bit(kA));
  EXPECT_EQ(r.outcome, RepairOutcome::kCleared);
  walk(beginning(rv()));
  expect_no_wedge();
}

TEST_F(RepairTest, CandidateBeyondTheTailIsGarbageAndCleared) {
  publish_live(128, 1);
  forge_claim(kA, tail() + 4096, kClaimCandidate, 256);
  EXPECT_EQ(repair(kA, bit(kA)).outcome, RepairOutcome::kCleared);
  EXPECT_EQ(tail(), 128u);
  expect_no_wedge();
}

TEST_F(RepairTest, CandidateWaitsWhileALiveSlotNamesTheSamePosition) {
  publish_live(128, 1);
  const std::uint64_t p = tail();
  forge_claim(kA, p, kClaimCandidate, 128);  // dead
  forge_claim(kB, p, kClaimCandidate, 256);  // live, won its CAS, not yet marked
  forge_tail(p + 256);
  RepairReport r = repair(kA, bit(kA));
  EXPECT_EQ(r.outcome, RepairOutcome::kWait);
  EXPECT_EQ(slot(kA).word.load(), p | kClaimCandidate) << "kWait leaves the slot for a later try";
  // B marks its claim won: A lost.
  slot(kB).word.store(p | kClaimWon);
  r = repair(kA, bit(kA));
  EXPECT_EQ(r.outcome, RepairOutcome::kCleared);
  EXPECT_EQ(tail(), p + 256) << "a repair that clears writes nothing";
  // B finishes its record.
  RingLogWriter b(&topic_.map, kB, false);
  fill_record(wv(), p, 256, 5);
  b.commit_record(0, p, 256);
  b.finish(0);
  const auto seen = walk(0);
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[1].tag, 5u);
  expect_no_wedge();
}

TEST_F(RepairTest, CandidateWhosePositionIsCommittedLostAndIsCleared) {
  publish_live(128, 1);
  const std::uint64_t p = tail();
  forge_claim(kA, p, kClaimCandidate, 128);  // lost its CAS for p to the live producer
  const std::uint64_t q = publish_live(320, 2);
  ASSERT_EQ(q, p);
  publish_live(64, 3);
  const RepairReport r = repair(kA, bit(kA));
  EXPECT_EQ(r.outcome, RepairOutcome::kCleared);
  const auto seen = walk(0);
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[1].tag, 2u) << "the winner's record is intact";
  EXPECT_FALSE(seen[1].aborted);
  expect_no_wedge();
}

TEST_F(RepairTest, CandidateThatWonIsAborted) {
  publish_live(128, 1);
  const std::uint64_t p = tail();
  forge_claim(kA, p, kClaimCandidate, 320);
  forge_tail(p + 320);  // its CAS won; it died before storing kClaimWon
  publish_live(192, 2);
  publish_live(64, 3);
  const RepairReport r = repair(kA, bit(kA));
  EXPECT_EQ(r.outcome, RepairOutcome::kAborted);
  EXPECT_EQ(r.aborted_from, p);
  EXPECT_EQ(r.aborted_records, 1u);
  const auto seen = walk(0);
  ASSERT_EQ(seen.size(), 4u);
  EXPECT_TRUE(seen[1].aborted);
  EXPECT_EQ(seen[1].size, 320u);
  EXPECT_EQ(seen[2].tag, 2u);
  expect_no_wedge();
}

TEST_F(RepairTest, GarbageSlotStatesAreCleared) {
  publish_live(128, 1);
  const std::uint64_t p = tail();
  forge_claim(kA, p, 3, 128);  // no such state
  EXPECT_EQ(repair(kA, bit(kA)).outcome, RepairOutcome::kCleared);
  for (std::uint64_t size : {std::uint64_t{0}, std::uint64_t{100}, kRing / 2 + 64, ~std::uint64_t{0}}) {
    SCOPED_TRACE(size);
    forge_claim(kA, p, kClaimWon, size);
    EXPECT_EQ(repair(kA, bit(kA)).outcome, RepairOutcome::kCleared);
    forge_claim(kA, p, kClaimCandidate, size);
    EXPECT_EQ(repair(kA, bit(kA)).outcome, RepairOutcome::kCleared);
  }
  EXPECT_EQ(tail(), p);
  expect_no_wedge();
}

// A won slot can only name a range inside [tail - ring, tail]. Anything
// else is garbage and is cleared without writing: aborted records beyond
// the tail would carry commit words for positions not yet claimed.
TEST_F(RepairTest, WonSlotOutsideTheWindowIsGarbageAndClearedWithoutWriting) {
  publish_live(128, 1);
  const std::uint64_t t = tail();
  struct Case {
    const char* what;
    std::uint64_t pos, size;
  };
  const Case cases[] = {
      {"range beyond the tail", t, 256},
      {"range ending past the tail", t - 64, 256},
      {"lapped", t + 64 - 2 * kRing, 64},  // wraps below 0: never a real claim either
      {"range just below 2^64", ~std::uint64_t{0} - 127 - 63, 64},
      {"range wrapping 2^64", ~std::uint64_t{0} - 63 - 63, 256},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    forge_claim(kA, c.pos & ~std::uint64_t{63}, kClaimWon, c.size);
    const std::uint64_t before = wv().part->aborted_records.load();
    const RepairReport r = repair(kA, bit(kA));
    EXPECT_EQ(r.outcome, RepairOutcome::kCleared);
    EXPECT_EQ(wv().part->aborted_records.load(), before);
    EXPECT_EQ(slot(kA).word.load(), kClaimEmpty);
  }
  // Nothing was written at the tail: the next record there is not "committed" early.
  const RecordHeader* h = nullptr;
  EXPECT_EQ(read_gated(rv(), t, &h), Status::kEmpty);
  EXPECT_EQ(tail(), t);
  expect_no_wedge();
}

// ---- two dead candidates naming the same position ---------------------------
// Threads of one killed process: A with 128 bytes, B with 320 bytes, both
// candidates for p, one of them won. The winner is the one whose end is the
// smallest provable boundary. `later_boundary` makes the loser's end a
// boundary too (a later record starts there), which "the one whose end is a
// boundary" alone would get wrong when the smaller one won.
class RepairTwoCandidatesTest : public RepairTest,
                                public ::testing::WithParamInterface<std::tuple<bool, bool, bool>> {};

TEST_P(RepairTwoCandidatesTest, OnlyTheWinnersRangeIsAborted) {
  const auto [smaller_won, later_boundary, winner_first] = GetParam();
  publish_live(128, 1);
  const std::uint64_t p = tail();
  forge_claim(kA, p, kClaimCandidate, 128);
  forge_claim(kB, p, kClaimCandidate, 320);
  const std::uint32_t winner = smaller_won ? kA : kB;
  const std::uint32_t loser = smaller_won ? kB : kA;
  const std::uint64_t win_end = p + (smaller_won ? 128 : 320);
  forge_tail(win_end);
  // Others publish after the winner's range. With later_boundary and A the
  // winner, a 192-byte record makes p + 320 (B's end) a boundary as well.
  std::vector<std::uint64_t> after;
  if (later_boundary && smaller_won) after.push_back(publish_live(192, 20));
  after.push_back(publish_live(64, 21));
  after.push_back(publish_live(256, 22));
  if (later_boundary && smaller_won) {
    ASSERT_EQ(check_position(rv(), p + 320), Status::kOk);
  }
  const std::uint64_t dead = bit(kA) | bit(kB);

  const std::uint32_t first = winner_first ? winner : loser;
  const std::uint32_t second = winner_first ? loser : winner;
  const RepairReport r1 = repair(first, dead);
  const RepairReport r2 = repair(second, dead);
  const RepairReport& rw = winner_first ? r1 : r2;
  const RepairReport& rl = winner_first ? r2 : r1;
  EXPECT_EQ(rw.outcome, RepairOutcome::kAborted) << "winner " << winner;
  EXPECT_EQ(rw.aborted_from, p);
  EXPECT_EQ(rl.outcome, RepairOutcome::kCleared) << "loser " << loser;

  const auto seen = walk(0);
  ASSERT_GE(seen.size(), 2u);
  EXPECT_TRUE(seen[1].aborted);
  EXPECT_EQ(seen[1].pos, p);
  EXPECT_EQ(seen[1].size, win_end - p) << "the aborted range is exactly the winner's";
  ASSERT_EQ(seen.size(), 2 + after.size());
  for (std::size_t i = 0; i < after.size(); ++i) {
    EXPECT_EQ(seen[2 + i].pos, after[i]);
    EXPECT_FALSE(seen[2 + i].aborted) << "a record published after the winner was overwritten";
  }
  expect_no_wedge();
}

std::string two_candidates_name(const ::testing::TestParamInfo<std::tuple<bool, bool, bool>>& param) {
  const bool smaller_won = std::get<0>(param.param);
  const bool later_boundary = std::get<1>(param.param);
  const bool winner_first = std::get<2>(param.param);
  return std::string(smaller_won ? "SmallerWon" : "LargerWon") + (later_boundary ? "LoserEndAlsoABoundary" : "") +
         (winner_first ? "WinnerRepairedFirst" : "LoserRepairedFirst");
}

INSTANTIATE_TEST_SUITE_P(AllOrders, RepairTwoCandidatesTest,
                         ::testing::Combine(::testing::Bool(), ::testing::Bool(), ::testing::Bool()),
                         two_candidates_name);

TEST_F(RepairTest, TwoDeadCandidatesOfEqualSizeAbortTheRangeOnce) {
  publish_live(128, 1);
  const std::uint64_t p = tail();
  forge_claim(kA, p, kClaimCandidate, 256);
  forge_claim(kB, p, kClaimCandidate, 256);
  forge_tail(p + 256);
  publish_live(64, 2);
  const std::uint64_t dead = bit(kA) | bit(kB);
  EXPECT_EQ(repair(kA, dead).outcome, RepairOutcome::kAborted);
  EXPECT_EQ(repair(kB, dead).outcome, RepairOutcome::kCleared);  // p is committed (aborted) now
  const auto seen = walk(0);
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_TRUE(seen[1].aborted);
  EXPECT_EQ(seen[2].tag, 2u);
  expect_no_wedge();
}

TEST_F(RepairTest, DeadCandidateAndADeadWinnerThatMarkedItsClaim) {
  publish_live(128, 1);
  const std::uint64_t p = tail();
  forge_claim(kA, p, kClaimCandidate, 128);
  RingLogWriter b(&topic_.map, kB, false);
  std::uint64_t pb = 0;
  ASSERT_EQ(b.try_claim(0, 320, &pb), Status::kOk);  // B won p and marked it; both die
  ASSERT_EQ(pb, p);
  const std::uint64_t dead = bit(kA) | bit(kB);
  EXPECT_EQ(repair(kA, dead).outcome, RepairOutcome::kCleared);
  EXPECT_EQ(repair(kB, dead).outcome, RepairOutcome::kAborted);
  walk(0);
  expect_no_wedge();
}

// ---- the repairer itself killed half way through ---------------------------

// A dead candidate that won a batch claim longer than max_event (three
// aborted records' worth), repaired by a child process that is killed at the
// named crash point; this process then repairs again, as heraldd's successor
// would. Without the kClaimWon store before aborting, a repairer killed after
// the first aborted word left a candidate whose p looked "won by someone
// else": the re-run cleared it and readers waited at p + max_event forever
// (SPIN, docs/models/README.md section 4).
class RepairerKilledTest : public RepairTest, public ::testing::WithParamInterface<const char*> {};

TEST_P(RepairerKilledTest, ASuccessorFinishesTheBatchAbort) {
#ifndef HERALD_TESTING
  GTEST_SKIP() << "crash points are compiled only with HERALD_TESTING";
#else
  publish_live(128, 1);
  const std::uint64_t p = tail();
  const std::uint64_t size = 3 * kMax;
  forge_claim(kA, p, kClaimCandidate, size);
  forge_tail(p + size);  // its CAS won; it died before storing kClaimWon
  publish_live(64, 2);
  const pid_t child = ::fork();
  ASSERT_NE(child, -1);
  if (child == 0) {
    // The crash-point table is read on the first hit; this process never hit
    // one before the fork (g_crash_armed was false), so it reads this value.
    ::setenv("HERALD_CRASH_AT", GetParam(), 1);
    g_crash_armed = true;
    (void)repair_claim_slot(topic_.map, 0, kA, bit(kA));
    ::_exit(3);  // the crash point was not reached
  }
  int st = 0;
  ASSERT_EQ(::waitpid(child, &st, 0), child);
  ASSERT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) << "the repairer was not killed at " << GetParam()
                                                          << " (status " << st << ")";
  EXPECT_EQ(slot(kA).word.load() & kClaimStateMask, kClaimWon) << "the winner was marked before anything was written";
  const RepairReport r = repair(kA, bit(kA));
  EXPECT_EQ(r.outcome, RepairOutcome::kAborted);
  EXPECT_EQ(slot(kA).word.load(), kClaimEmpty);
  const auto seen = walk(0);
  ASSERT_EQ(seen.size(), 5u) << test::describe_partition(wv());
  std::uint64_t aborted = 0;
  for (std::size_t i = 1; i < 4; ++i) {
    EXPECT_TRUE(seen[i].aborted) << i;
    aborted += seen[i].size;
  }
  EXPECT_EQ(aborted, size);
  EXPECT_EQ(seen[4].tag, 2u);
  expect_no_wedge();
#endif
}

INSTANTIATE_TEST_SUITE_P(EveryRepairPoint, RepairerKilledTest,
                         ::testing::Values("repair.promoted", "repair.first_aborted", "repair.before_clear"),
                         [](const ::testing::TestParamInfo<const char*>& i) {
                           std::string n = i.param;
                           for (char& c : n)
                             if (c == '.') c = '_';
                           return n;
                         });

// ---- slots.cpp: a new producer takes over a dead one's slot -----------------

TEST_F(RepairTest, AcquireTakesOverADeadProducersSlotAfterRepairingIt) {
  publish_live(128, 1);
  // Fill the table, then let slot 5's owner be a process that does not exist,
  // dead while holding a won claim.
  std::vector<std::uint32_t> taken;
  for (;;) {
    auto s = acquire_producer_slot(topic_.map, 0);
    if (!s) {
      EXPECT_EQ(s.error().code, Errc::kLimit) << s.error().message();
      break;
    }
    taken.push_back(*s);
  }
  ASSERT_EQ(taken.size() + 4, kProducerSlots);
  RingLogWriter dying(&topic_.map, 5, false);
  std::uint64_t p = 0;
  ASSERT_EQ(dying.try_claim(0, 512, &p), Status::kOk);
  topic_.map.producer(5)->owner.store(0x7ffffff0);  // no such pid (above pid_max)
  topic_.map.producer(5)->start_time.store(12345);
  auto s = acquire_producer_slot(topic_.map, 0);
  ASSERT_TRUE(s) << s.error().message();
  EXPECT_EQ(*s, 5u);
  EXPECT_EQ(slot(5).word.load() & kClaimStateMask, kClaimEmpty);
  const auto seen = walk(0);
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_TRUE(seen[1].aborted);
  for (std::uint32_t i : taken) release_producer_slot(topic_.map, i);
  expect_no_wedge();
}

}  // namespace
}  // namespace herald::shm
