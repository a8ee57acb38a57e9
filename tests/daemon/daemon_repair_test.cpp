// heraldd repairing a dead producer's claim slots, one test per step of
// DESIGN.md's repair rule ("Producer crash"), on shared-memory states forged
// by hand. The dead producer is this process's pid with a start time that
// is not ours: to the daemon, a process that died and whose pid was reused.
// The daemon finds the slot on its periodic scan (the stepped clock) and
// repairs it; the test then walks the log.
#include <gtest/gtest.h>

#include "tests/daemon/daemon_fixture.hpp"

namespace herald::test {
namespace {

constexpr std::uint64_t kRec = 256;     // every forged record is 256 bytes
constexpr std::uint64_t kRing = 65536;  // create_topic's ring

class DaemonRepairTest : public DaemonFixture {
 protected:
  void SetUp() override {
    DaemonFixture::SetUp();
    m_ = create_topic("t", 1);
  }

  // A producer slot whose owner is dead (see the file comment). Take dead
  // slots before live ones: the daemon meets them first on its scan.
  std::uint32_t dead_slot() {
    auto s = shm::acquire_producer_slot(*m_, 0);
    EXPECT_TRUE(s) << s.error().message();
    m_->producer(*s)->start_time.store(shm::self_start_time() + 999);
    return *s;
  }
  std::uint32_t live_slot() {
    auto s = shm::acquire_producer_slot(*m_, 0);
    EXPECT_TRUE(s) << s.error().message();
    return *s;
  }
  const shm::PartitionView& v() const { return m_->partition(0); }
  std::uint64_t tail() const { return shm::load_tail(v()); }

  // Writes the record header at pos (everything but the commit word).
  void header(std::uint64_t pos, std::uint64_t size, std::uint32_t slot) {
    shm::RecordHeader* h = v().header_at(pos);
    h->size = static_cast<std::uint32_t>(size);
    h->payload_len = 0;
    h->time_ns = shm::realtime_ns();
    h->id_hi = 1;
    h->id_lo = pos;
    h->flags = 0;
    h->key_len = 0;
    h->meta_len = 0;
    h->producer_slot = static_cast<std::uint16_t>(slot);
  }
  // A whole publish by writer w: claim, header, commit, finish.
  std::uint64_t publish(shm::RingLogWriter& w) {
    std::uint64_t pos = 0;
    EXPECT_EQ(w.try_claim(0, kRec, &pos), shm::Status::kOk);
    header(pos, kRec, w.slot());
    w.commit_record(0, pos, kRec);
    w.finish(0);
    return pos;
  }
  // Publishes 256-byte records until backpressured or past `limit` bytes.
  std::uint64_t publish_until_blocked(shm::RingLogWriter& w, std::uint64_t limit) {
    std::uint64_t bytes = 0;
    while (bytes <= limit) {
      std::uint64_t pos = 0;
      const shm::Status st = w.try_claim(0, kRec, &pos);
      if (st != shm::Status::kOk) {
        EXPECT_EQ(st, shm::Status::kBackPressured);
        break;
      }
      header(pos, kRec, w.slot());
      w.commit_record(0, pos, kRec);
      w.finish(0);
      bytes += kRec;
    }
    return bytes;
  }
  std::uint64_t word(std::uint32_t slot) const { return v().claims[slot].word.load(); }
  void forge_candidate(std::uint32_t slot, std::uint64_t pos, std::uint64_t size) {
    v().claims[slot].size.store(size);
    v().claims[slot].committed_to.store(pos);
    v().claims[slot].word.store(pos | shm::kClaimCandidate);
  }
  // The log from 0 to tail is whole; returns the walk.
  LogWalk walk() {
    LogWalk w;
    std::string why;
    EXPECT_TRUE(walk_log(*m_, 0, 0, tail(), &w, &why)) << why;
    return w;
  }
  bool slot_free(std::uint32_t s) const { return m_->producer(s)->owner.load() == 0 && word(s) == 0; }

  std::shared_ptr<shm::TopicMap> m_;
};

TEST_F(DaemonRepairTest, WonClaimWithPartOfItsBatchCommittedIsAbortedFromItsFirstUncommittedRecord) {
  const std::uint32_t d = dead_slot();
  const std::uint32_t l = live_slot();
  shm::RingLogWriter live(m_.get(), l, false), dead(m_.get(), d, false);
  for (int i = 0; i < 3; ++i) publish(live);
  // The dead producer claimed a batch of 4 records and committed 2.
  std::uint64_t p0 = 0;
  ASSERT_EQ(dead.try_claim(0, 4 * kRec, &p0), shm::Status::kOk);
  for (std::uint64_t i = 0; i < 2; ++i) {
    header(p0 + i * kRec, kRec, d);
    dead.commit_record(0, p0 + i * kRec, kRec);
  }
  step(100 * kMs);
  EXPECT_TRUE(slot_free(d)) << describe_partitions(*m_);
  const LogWalk w = walk();
  EXPECT_EQ(w.end, p0 + 4 * kRec);
  EXPECT_EQ(w.aborted_bytes, 2 * kRec) << "exactly the unfinished half";
  EXPECT_EQ(v().header_at(p0)->flags, 0) << "committed records survive";
  EXPECT_EQ(v().header_at(p0 + kRec)->flags, 0);
  EXPECT_NE(v().header_at(p0 + 2 * kRec)->flags & shm::kRecordAborted, 0);
  EXPECT_EQ(v().part->repaired_claims.load(), 1u);
  EXPECT_EQ(v().part->aborted_records.load(), w.aborted_records);
  EXPECT_FALSE(log_.empty());
  publish(live);  // the partition flows on
}

TEST_F(DaemonRepairTest, CandidateThatNeverClaimedIsCleared) {
  const std::uint32_t d = dead_slot();
  const std::uint32_t l = live_slot();
  shm::RingLogWriter live(m_.get(), l, false);
  publish(live);
  const std::uint64_t t = tail();
  forge_candidate(d, t, kRec);  // died right before its CAS: tail is still p
  step(100 * kMs);
  EXPECT_TRUE(slot_free(d)) << describe_partitions(*m_);
  EXPECT_EQ(tail(), t);
  EXPECT_EQ(v().part->aborted_records.load(), 0u);
  EXPECT_EQ(v().part->repaired_claims.load(), 0u);
  walk();
}

// DESIGN.md: "a crash-point test for each step of the rule, including a
// producer that lost its CAS and died before rewriting its slot". The stale
// candidate holds the unfinished watermark W down, so until it is cleared no
// producer can get more than a ring past it.
TEST_F(DaemonRepairTest, CandidateThatLostItsCasAndDiedBeforeRewritingItsSlotIsCleared) {
  const std::uint32_t d = dead_slot();
  const std::uint32_t l = live_slot();
  shm::RingLogWriter live(m_.get(), l, false);
  publish(live);
  const std::uint64_t p = tail();
  forge_candidate(d, p, 2 * kRec);  // it loaded tail == p ...
  const std::uint64_t won = publish(live);  // ... and the live producer won p
  ASSERT_EQ(won, p);
  // Wedged one lap past p until the repair (no group gates this topic).
  const std::uint64_t before = publish_until_blocked(live, 4 * kRing);
  EXPECT_LE(tail(), p + kRing) << "the stale candidate holds W at " << p;
  EXPECT_LE(before, kRing);
  step(100 * kMs);
  EXPECT_TRUE(slot_free(d)) << describe_partitions(*m_);
  EXPECT_EQ(v().part->aborted_records.load(), 0u) << "nothing of the winner's is aborted";
  EXPECT_GT(publish_until_blocked(live, 2 * kRing), 2 * kRing) << "the partition flows again";
}

TEST_F(DaemonRepairTest, CandidateWhoseWinnerIsStillWritingIsCleared) {
  const std::uint32_t d = dead_slot();
  const std::uint32_t l = live_slot();
  shm::RingLogWriter live(m_.get(), l, false);
  const std::uint64_t p = tail();
  forge_candidate(d, p, kRec);
  std::uint64_t pos = 0;
  ASSERT_EQ(live.try_claim(0, kRec, &pos), shm::Status::kOk);  // won p, not committed yet
  ASSERT_EQ(pos, p);
  step(100 * kMs);
  EXPECT_TRUE(slot_free(d)) << describe_partitions(*m_);
  EXPECT_FALSE(shm::is_committed(v(), p)) << "the live winner's record is left alone";
  header(pos, kRec, l);
  live.commit_record(0, pos, kRec);
  live.finish(0);
  EXPECT_EQ(walk().aborted_bytes, 0u);
}

TEST_F(DaemonRepairTest, CandidateLappedSinceItsLoadIsCleared) {
  const std::uint32_t d = dead_slot();
  forge_candidate(d, 0, kRec);
  v().part->tail.store(kRing + 4 * kRec);  // tail > p + N: it lost long ago
  step(100 * kMs);
  EXPECT_TRUE(slot_free(d)) << describe_partitions(*m_);
  EXPECT_EQ(v().part->aborted_records.load(), 0u);
}

TEST_F(DaemonRepairTest, CandidateThatWonButDiedBeforeMarkingItIsAborted) {
  const std::uint32_t d = dead_slot();
  const std::uint32_t l = live_slot();
  shm::RingLogWriter live(m_.get(), l, false), dead(m_.get(), d, false);
  publish(live);
  std::uint64_t p = 0;
  ASSERT_EQ(dead.try_claim(0, 2 * kRec, &p), shm::Status::kOk);
  forge_candidate(d, p, 2 * kRec);  // claim.won_unmarked: the CAS won, the slot still says candidate
  publish(live);
  step(100 * kMs);
  EXPECT_TRUE(slot_free(d)) << describe_partitions(*m_);
  const LogWalk w = walk();
  EXPECT_EQ(w.aborted_bytes, 2 * kRec);
  EXPECT_NE(v().header_at(p)->flags & shm::kRecordAborted, 0);
  EXPECT_EQ(v().part->repaired_claims.load(), 1u);
}

TEST_F(DaemonRepairTest, CandidateRacingALiveCandidateForTheSamePositionWaitsForIt) {
  const std::uint32_t d = dead_slot();
  const std::uint32_t l = live_slot();
  shm::RingLogWriter dead(m_.get(), d, false);
  std::uint64_t p = 0;
  ASSERT_EQ(dead.try_claim(0, kRec, &p), shm::Status::kOk);
  forge_candidate(d, p, kRec);  // won, unmarked
  forge_candidate(l, p, kRec);  // a live producer that loaded the same tail, about to lose its CAS
  step(100 * kMs);
  EXPECT_NE(word(d), 0u) << "not repaired while a live producer races for " << p;
  EXPECT_EQ(m_->producer(d)->owner.load(), shm::kOwnerReclaiming) << "taken over, waiting";
  step(100 * kMs);
  EXPECT_NE(word(d), 0u);
  v().claims[l].word.store(shm::kClaimEmpty);  // the live one lost, re-reads tail, ...
  step(100 * kMs);
  EXPECT_TRUE(slot_free(d)) << describe_partitions(*m_);
  EXPECT_EQ(walk().aborted_bytes, kRec) << "the dead one had won p";
}

TEST_F(DaemonRepairTest, DeadCandidatesOfOneProcessAtOnePositionTheWinnerEndsAtTheBoundary) {
  const std::uint32_t d1 = dead_slot(), d2 = dead_slot();
  const std::uint64_t p = tail();
  // Two threads of one killed process loaded the same tail; the one
  // claiming 2 records won (tail moved to its end), neither marked it.
  forge_candidate(d1, p, kRec);
  forge_candidate(d2, p, 2 * kRec);
  v().part->tail.store(p + 2 * kRec);
  step(100 * kMs);
  EXPECT_TRUE(slot_free(d1)) << describe_partitions(*m_);
  EXPECT_TRUE(slot_free(d2));
  const LogWalk w = walk();
  EXPECT_EQ(w.aborted_bytes, 2 * kRec);
  EXPECT_EQ(w.end, p + 2 * kRec);
}

TEST_F(DaemonRepairTest, DeadCandidatesOfOneProcessTheShorterWonAndALiveRecordFollows) {
  const std::uint32_t d1 = dead_slot(), d2 = dead_slot();
  const std::uint32_t l = live_slot();
  shm::RingLogWriter live(m_.get(), l, false);
  const std::uint64_t p = tail();
  forge_candidate(d1, p, kRec);
  forge_candidate(d2, p, 2 * kRec);
  v().part->tail.store(p + kRec);  // d1 won [p, p + 256)
  const std::uint64_t next = publish(live);  // a live record right after it, also 256 bytes
  ASSERT_EQ(next, p + kRec);
  // Both p + 256 (a committed record starts there) and p + 512 (tail) are
  // boundaries; the winner's end is the first one after p.
  step(100 * kMs);
  EXPECT_TRUE(slot_free(d1)) << describe_partitions(*m_);
  EXPECT_TRUE(slot_free(d2));
  const LogWalk w = walk();
  EXPECT_EQ(w.aborted_bytes, kRec);
  EXPECT_EQ(v().header_at(next)->flags, 0) << "the live record is intact";
}

// Owners are (pid, start time): a dead producer's slot must be repaired
// even when the daemon already watches a live process with the same pid
// (the pid was reused). The live slot is met first on the scan here.
TEST_F(DaemonRepairTest, DeadSlotIsRepairedWhileAProcessWithItsRecycledPidIsWatched) {
  const std::uint32_t l = live_slot();
  shm::RingLogWriter live(m_.get(), l, false);
  publish(live);
  step(100 * kMs);  // the daemon now watches this pid (the live slot's owner)
  const std::uint32_t d = dead_slot();
  shm::RingLogWriter dead(m_.get(), d, false);
  std::uint64_t p = 0;
  ASSERT_EQ(dead.try_claim(0, kRec, &p), shm::Status::kOk);
  step(100 * kMs);
  step(100 * kMs);
  EXPECT_TRUE(slot_free(d)) << describe_partitions(*m_);
  EXPECT_EQ(walk().aborted_bytes, kRec);
  EXPECT_FALSE(slot_free(l)) << "the live producer keeps its slot";
}

}  // namespace
}  // namespace herald::test

namespace herald::test {
namespace {

// A slot left taken over (kOwnerReclaiming) by a repairer that died is
// finished by the daemon once it has stayed that way past the report time;
// a repairer that is merely busy is left alone.
TEST_F(DaemonRepairTest, SlotLeftHalfRepairedByADeadRepairerIsFinished) {
  const std::uint32_t d = dead_slot();
  const std::uint32_t l = live_slot();
  shm::RingLogWriter live(m_.get(), l, false), dead(m_.get(), d, false);
  publish(live);
  std::uint64_t p = 0;
  ASSERT_EQ(dead.try_claim(0, 2 * kRec, &p), shm::Status::kOk);
  m_->producer(d)->owner.store(shm::kOwnerReclaiming);  // taken over, then the repairer died
  step(100 * kMs);
  step(600 * kMs);
  EXPECT_NE(word(d), 0u) << "a repairer may still be at work";
  step(600 * kMs);
  EXPECT_TRUE(slot_free(d)) << describe_partitions(*m_);
  EXPECT_EQ(walk().aborted_bytes, 2 * kRec);
  publish(live);
}

TEST_F(DaemonRepairTest, SlotBrieflyTakenOverByALiveRepairerIsLeftToIt) {
  const std::uint32_t d = dead_slot();
  shm::RingLogWriter dead(m_.get(), d, false);
  std::uint64_t p = 0;
  ASSERT_EQ(dead.try_claim(0, kRec, &p), shm::Status::kOk);
  const std::uint64_t owner = m_->producer(d)->owner.load();
  m_->producer(d)->owner.store(shm::kOwnerReclaiming);  // a client taking the dead slot over ...
  step(100 * kMs);
  step(600 * kMs);
  EXPECT_NE(word(d), 0u);
  m_->producer(d)->owner.store(owner);  // ... gives it back (its repair had to wait)
  step(600 * kMs);
  step(600 * kMs);
  // The daemon repairs it as a dead producer's slot, not as an orphan.
  EXPECT_TRUE(slot_free(d)) << describe_partitions(*m_);
  EXPECT_EQ(walk().aborted_bytes, kRec);
}

}  // namespace
}  // namespace herald::test
