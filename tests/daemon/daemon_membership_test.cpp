// heraldd's consumer groups, in process with a stepped clock: assignment
// (sticky-cooperative and range), revocation with acknowledgement, fencing
// by generation, stuck members, revocation deadlines and lag-out.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <string>

#include "herald/herald.hpp"
#include "tests/daemon/daemon_fixture.hpp"

namespace herald::test {
namespace {

using Parts = std::vector<std::uint32_t>;

class DaemonMembershipTest : public DaemonFixture {};

TEST_F(DaemonMembershipTest, TwoStickyMembersSplitFourPartitionsCooperatively) {
  auto m = create_topic("t");
  const std::uint32_t ra = reader(*m), rb = reader(*m);
  const std::uint64_t a = join(1, "t", "g", ra);
  EXPECT_EQ(assigned(*m, ra), all_partitions(4));
  const auto gens_a = gens(*m);
  for (std::uint32_t p = 0; p < 4; ++p) EXPECT_EQ(owner_reader(*m, p), ra + 1);

  const std::uint64_t b = join(2, "t", "g", rb);
  // Cooperative: A is asked to give up half; B gets nothing until A acks.
  const Parts kept = assigned(*m, ra);
  ASSERT_EQ(kept.size(), 2u);
  EXPECT_TRUE(assigned(*m, rb).empty());
  const Parts moving = minus(all_partitions(4), kept);
  EXPECT_EQ(gens(*m), gens_a) << "nothing is reassigned before the ack";
  // A still owns the moving partitions' generation: its commit (CAS from the
  // word it last saw) still succeeds while it winds down.
  for (std::uint32_t p : moving) {
    std::uint64_t w = cursor(*m, p);
    EXPECT_TRUE(m->group_partition(group_slot_, p)->cursor.compare_exchange_strong(w, w));
  }
  const std::uint64_t zombie_word = cursor(*m, moving[0]);

  ack(1, a, moving);
  EXPECT_EQ(assigned(*m, rb), moving);
  EXPECT_EQ(assigned(*m, ra), kept);
  for (std::uint32_t p : moving) {
    EXPECT_EQ(gen(*m, p), gens_a[p] + 1) << "partition " << p << " moved: new generation";
    EXPECT_EQ(owner_reader(*m, p), rb + 1);
  }
  for (std::uint32_t p : kept) EXPECT_EQ(gen(*m, p), gens_a[p]) << "partition " << p << " did not move";
  // The old generation's commit fails: A is fenced on what it gave up.
  std::uint64_t w = zombie_word;
  EXPECT_FALSE(m->group_partition(group_slot_, moving[0])->cursor.compare_exchange_strong(w, zombie_word));
  EXPECT_EQ(shm::cursor_gen(w), shm::cursor_gen(zombie_word) + 1);
  EXPECT_EQ(owned_sorted(b), moving);
}

TEST_F(DaemonMembershipTest, ThirdStickyMemberRevokesOnlyThePartitionThatMustMove) {
  auto m = create_topic("t");
  const std::uint32_t ra = reader(*m), rb = reader(*m), rc = reader(*m);
  const std::uint64_t a = join(1, "t", "g", ra);
  const std::uint64_t b = join(2, "t", "g", rb);
  ack(1, a, minus(all_partitions(4), assigned(*m, ra)));
  const Parts a_parts = assigned(*m, ra), b_parts = assigned(*m, rb);
  ASSERT_EQ(a_parts.size(), 2u);
  ASSERT_EQ(b_parts.size(), 2u);
  const auto before = gens(*m);
  const std::uint64_t a_epoch = assign_epoch(*m, ra);

  const std::uint64_t c = join(3, "t", "g", rc);
  // 4 partitions over 3 members: 2/1/1. Exactly one partition is revoked,
  // from one member; the other is not even woken.
  const Parts a_now = assigned(*m, ra), b_now = assigned(*m, rb);
  const std::size_t revoked = (a_parts.size() - a_now.size()) + (b_parts.size() - b_now.size());
  EXPECT_EQ(revoked, 1u) << "A " << a_now.size() << " B " << b_now.size();
  EXPECT_TRUE(assigned(*m, rc).empty());
  EXPECT_EQ(gens(*m), before);
  const bool from_a = a_now.size() < a_parts.size();
  if (!from_a) {
    EXPECT_EQ(assign_epoch(*m, ra), a_epoch) << "A keeps everything and is not disturbed";
  }
  const Parts moving = from_a ? minus(a_parts, a_now) : minus(b_parts, b_now);
  ASSERT_EQ(moving.size(), 1u);

  ack(from_a ? 1 : 2, from_a ? a : b, moving);
  EXPECT_EQ(assigned(*m, rc), moving);
  for (std::uint32_t p = 0; p < 4; ++p)
    EXPECT_EQ(gen(*m, p), before[p] + (p == moving[0] ? 1u : 0u)) << "partition " << p;
  EXPECT_EQ(owned_sorted(c), moving);
}

TEST_F(DaemonMembershipTest, RangeAssignorGivesContiguousRangesAndMovesOnlyTheTail) {
  auto m = create_topic("t");
  const nlohmann::json range = {{"assignor", "range"}};
  const std::uint32_t ra = reader(*m), rb = reader(*m), rc = reader(*m);
  const std::uint64_t a = join(1, "t", "g", ra, range);
  const std::uint64_t b = join(2, "t", "g", rb, range);
  EXPECT_EQ(assigned(*m, ra), (Parts{0, 1}));
  ack(1, a, {2, 3});
  EXPECT_EQ(assigned(*m, rb), (Parts{2, 3}));
  const auto before = gens(*m);

  join(3, "t", "g", rc, range);
  // Range over 3: {0,1} {2} {3}: only partition 3 moves, from B to C.
  EXPECT_EQ(assigned(*m, ra), (Parts{0, 1}));
  EXPECT_EQ(assigned(*m, rb), (Parts{2}));
  EXPECT_TRUE(assigned(*m, rc).empty());
  ack(2, b, {3});
  EXPECT_EQ(assigned(*m, rc), (Parts{3}));
  EXPECT_EQ(gens(*m), (std::vector<std::uint32_t>{before[0], before[1], before[2], before[3] + 1}));
}

TEST_F(DaemonMembershipTest, AckForAPartitionNotBeingRevokedChangesNothing) {
  auto m = create_topic("t");
  const std::uint32_t ra = reader(*m), rb = reader(*m);
  const std::uint64_t a = join(1, "t", "g", ra);
  join(2, "t", "g", rb);
  const Parts kept = assigned(*m, ra);
  const auto before = gens(*m);
  ack(1, a, kept);  // not being revoked: ignored
  EXPECT_EQ(assigned(*m, ra), kept);
  EXPECT_TRUE(assigned(*m, rb).empty());
  EXPECT_EQ(gens(*m), before);
  // Another connection cannot ack for A.
  nlohmann::json r = call(7, {{"op", "ack"}, {"member_id", a}, {"partitions", minus(all_partitions(4), kept)}});
  EXPECT_FALSE(r.value("ok", true)) << r.dump();
  EXPECT_TRUE(assigned(*m, rb).empty());
}

TEST_F(DaemonMembershipTest, StuckMemberLosesItsPartitionsButOneParkedInPollDoesNot) {
  auto m = create_topic("t");
  const nlohmann::json mpi = {{"max_poll_interval_ms", 1000}};
  const std::uint32_t ra = reader(*m), rb = reader(*m);
  const std::uint64_t a = join(1, "t", "g", ra, mpi);
  const std::uint64_t b = join(2, "t", "g", rb, mpi);
  ack(1, a, minus(all_partitions(4), assigned(*m, ra)));
  const Parts b_parts = assigned(*m, rb);
  ASSERT_EQ(b_parts.size(), 2u);

  // B sits inside poll() on a quiet topic (in-poll bit set, no new polls)
  // for far longer than max_poll_interval: idle, not stuck.
  parked(*m, rb, true);
  for (int i = 0; i < 10; ++i) {
    polled(*m, ra);
    step(600 * kMs);
  }
  ASSERT_NE(member(b), nullptr);
  EXPECT_FALSE(member(b)->stuck);
  EXPECT_EQ(assigned(*m, rb), b_parts);

  // B leaves poll() and does not come back: stuck after max_poll_interval;
  // its partitions move to A at once (forced, no ack), with new generations.
  parked(*m, rb, false);
  polled(*m, ra);
  step(600 * kMs);
  EXPECT_EQ(assigned(*m, rb), b_parts) << "not stuck yet";
  const auto before = gens(*m);
  polled(*m, ra);
  step(600 * kMs);
  ASSERT_NE(member(b), nullptr);
  EXPECT_TRUE(member(b)->stuck);
  EXPECT_TRUE(assigned(*m, rb).empty());
  EXPECT_EQ(assigned(*m, ra), all_partitions(4));
  for (std::uint32_t p : b_parts) EXPECT_EQ(gen(*m, p), before[p] + 1) << "partition " << p;

  // B polls again: it is eligible again and gets two partitions back
  // (cooperatively: A releases them first).
  polled(*m, rb);
  polled(*m, ra);
  step(100 * kMs);
  EXPECT_FALSE(member(b)->stuck);
  const Parts a_kept = assigned(*m, ra);
  ASSERT_EQ(a_kept.size(), 2u);
  ack(1, a, minus(all_partitions(4), a_kept));
  EXPECT_EQ(assigned(*m, rb), minus(all_partitions(4), a_kept));
}

TEST_F(DaemonMembershipTest, RevocationDeadlineForcesTheMove) {
  auto m = create_topic("t");
  const nlohmann::json mpi = {{"max_poll_interval_ms", 1000}};
  const std::uint32_t ra = reader(*m), rb = reader(*m);
  join(1, "t", "g", ra, mpi);
  join(2, "t", "g", rb, mpi);
  const Parts kept = assigned(*m, ra);
  const Parts moving = minus(all_partitions(4), kept);
  const auto before = gens(*m);
  const std::uint64_t zombie_word = cursor(*m, moving[0]);
  // A keeps polling (it is alive, not stuck) but never acknowledges; B polls.
  polled(*m, ra);
  polled(*m, rb);
  step(600 * kMs);
  EXPECT_TRUE(assigned(*m, rb).empty()) << "deadline not reached";
  EXPECT_GT(d_->next_deadline(), now_);
  polled(*m, ra);
  polled(*m, rb);
  step(600 * kMs);
  EXPECT_EQ(assigned(*m, rb), moving) << "the revocation deadline forced the move";
  EXPECT_EQ(assigned(*m, ra), kept);
  for (std::uint32_t p : moving) EXPECT_EQ(gen(*m, p), before[p] + 1);
  std::uint64_t w = zombie_word;
  EXPECT_FALSE(m->group_partition(group_slot_, moving[0])->cursor.compare_exchange_strong(w, zombie_word))
      << "A's late commit is fenced";
}

TEST_F(DaemonMembershipTest, LeaveAndDisconnectHandTheirPartitionsToTheOthers) {
  auto m = create_topic("t");
  const std::uint32_t ra = reader(*m), rb = reader(*m), rc = reader(*m);
  const std::uint64_t a = join(1, "t", "g", ra);
  const std::uint64_t b = join(2, "t", "g", rb);
  ack(1, a, minus(all_partitions(4), assigned(*m, ra)));
  const Parts b_parts = assigned(*m, rb);
  const auto before = gens(*m);
  ok(2, {{"op", "leave"}, {"member_id", b}});
  step(kMs);  // the server runs do_work() after every batch of requests
  EXPECT_TRUE(assigned(*m, rb).empty());
  EXPECT_EQ(assigned(*m, ra), all_partitions(4));
  for (std::uint32_t p : b_parts) EXPECT_EQ(gen(*m, p), before[p] + 1);
  EXPECT_EQ(member(b), nullptr);

  const std::uint64_t c = join(3, "t", "g", rc);
  ack(1, a, minus(all_partitions(4), assigned(*m, ra)));
  const Parts c_parts = assigned(*m, rc);
  ASSERT_EQ(c_parts.size(), 2u);
  d_->disconnected(3);  // the socket closed: C is gone
  step(kMs);
  EXPECT_EQ(member(c), nullptr);
  EXPECT_EQ(assigned(*m, ra), all_partitions(4));
  EXPECT_TRUE(assigned(*m, rc).empty());
  EXPECT_EQ(m->reader(rc)->owner.load() & 0xffffffffu, static_cast<std::uint64_t>(::getpid()))
      << "C's process lives: its reader slot stays its own";
}

TEST_F(DaemonMembershipTest, JoinWithAReaderSlotOfAnotherProcessIsRefused) {
  auto m = create_topic("t");
  const std::uint32_t r = reader(*m);
  daemon::Peer other = self();
  other.pid = self().pid + 1;
  nlohmann::json resp = call(1, {{"op", "join"}, {"topic", "t"}, {"group", "g"}, {"reader", r}}, other);
  EXPECT_FALSE(resp.value("ok", true)) << resp.dump();
  EXPECT_EQ(resp.value("code", ""), "permission-denied");
  EXPECT_TRUE(d_->members().empty());
}

// A client that sends "join" and exits before the daemon handles it: the
// pidfd watch finds the process gone. The join must fail cleanly (the daemon
// used to add the member, remove it again as "exited", then keep using it).
// The peer here is this pid with a different start time: the same pid
// recycled, i.e. the process that asked is gone.
TEST_F(DaemonMembershipTest, JoinFromAClientThatExitedMeanwhileFailsCleanly) {
  auto m = create_topic("t");
  const std::uint32_t r = reader(*m);
  daemon::Peer gone = self();
  gone.start_time = self().start_time + 12345;
  nlohmann::json resp = call(1, {{"op", "join"}, {"topic", "t"}, {"group", "g"}, {"reader", r}}, gone);
  EXPECT_FALSE(resp.value("ok", true)) << resp.dump();
  EXPECT_TRUE(d_->members().empty());
  step(100 * kMs);
  // The daemon carries on: a live client joins.
  const std::uint32_t r2 = reader(*m);
  join(2, "t", "g", r2);
  EXPECT_EQ(assigned(*m, r2), all_partitions(4));
}

TEST_F(DaemonMembershipTest, LagOutGroupIsDemotedAfterItsGraceAndPromotedWhenAMemberJoins) {
  auto m = create_topic("t", 2, {{"policy", "lag-out"}, {"lagout_grace_ms", 1000}});
  const std::uint32_t ra = reader(*m);
  const std::uint64_t a = join(1, "t", "g", ra);
  EXPECT_TRUE(d_->group_gating("t", "g"));
  ok(1, {{"op", "leave"}, {"member_id", a}});

  // A daemonless producer in this process (no daemon socket answers).
  auto bus = Bus::attach(guard_.bus());
  ASSERT_TRUE(bus) << bus.error().message();
  auto prod = bus->producer("t", {.deadline = std::chrono::nanoseconds(0)});
  ASSERT_TRUE(prod) << prod.error().message();
  const std::string payload(200, 'x');
  auto fill = [&](std::uint64_t limit) {
    std::uint64_t bytes = 0;
    for (;;) {
      auto r = prod->publish({.payload = payload, .partition = 0});
      if (!r) {
        EXPECT_EQ(r.error().code, Errc::kBackPressured) << r.error().message();
        return bytes;
      }
      bytes += 256;
      if (bytes > limit) return bytes;
    }
  };
  // Still gating (no member, but within the grace): a ring at most.
  const std::uint64_t first = fill(1 << 20);
  EXPECT_LE(first, 65536u);
  step(500 * kMs);
  EXPECT_TRUE(d_->group_gating("t", "g"));

  step(600 * kMs);  // past the grace
  EXPECT_FALSE(d_->group_gating("t", "g"));
  EXPECT_EQ(m->group(group_slot_)->flags.load() & shm::kGroupGating, 0u);
  EXPECT_EQ(m->group(group_slot_)->demotions.load(), 1u);
  // Producers are no longer held back: two more rings go through.
  EXPECT_GT(fill(2 * 65536), 2u * 65536) << "publish past a ring after demotion";

  // A member returns: promoted, with the gate floor at tail (the Disruptor
  // rule), so producers may write one ring past it and no further.
  const std::uint32_t rb = reader(*m);
  join(2, "t", "g", rb);
  EXPECT_TRUE(d_->group_gating("t", "g"));
  EXPECT_EQ(m->group(group_slot_)->promotions.load(), 1u);
  for (std::uint32_t p = 0; p < 2; ++p)
    EXPECT_EQ(m->group_partition(group_slot_, p)->gate_floor.load(), shm::load_tail(m->partition(p))) << "p" << p;
  const std::uint64_t after = fill(1 << 20);
  EXPECT_GT(after, 0u);
  EXPECT_LE(after, 65536u);
}

TEST_F(DaemonMembershipTest, LossyAndLosslessGroupsAreNeverDemoted) {
  create_topic("t", 1, {{"lagout_grace_ms", 1000}});
  auto m = map_;
  const std::uint32_t r1 = reader(*m), r2 = reader(*m);
  const std::uint64_t a = join(1, "t", "audit", r1, {{"policy", "lossless"}});
  const std::uint64_t b = join(2, "t", "dash", r2, {{"policy", "lossy"}});
  ok(1, {{"op", "leave"}, {"member_id", a}});
  ok(2, {{"op", "leave"}, {"member_id", b}});
  step(5000 * kMs);
  EXPECT_TRUE(d_->group_gating("t", "audit"));
  EXPECT_FALSE(d_->group_gating("t", "dash"));
}

}  // namespace
}  // namespace herald::test
