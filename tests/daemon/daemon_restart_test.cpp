// A restarted heraldd rebuilds itself from the segments: live owners keep
// their partitions and generations for the rejoin grace (no rebalance storm,
// no fencing of live members); an owner that does not come back loses its
// partitions when the grace ends. One daemon per bus.
#include <gtest/gtest.h>

#include "runtime/src/run_dir.hpp"
#include "tests/daemon/daemon_fixture.hpp"

namespace herald::test {
namespace {

using Parts = std::vector<std::uint32_t>;

class DaemonRestartTest : public DaemonFixture {
 protected:
  // Two members A and B of group g on m, settled with two partitions each.
  struct TwoMembers {
    std::uint32_t ra = 0, rb = 0;
    Parts a_parts, b_parts;
    std::vector<std::uint32_t> gens_before;
  };
  void two_members(shm::TopicMap& m, TwoMembers* t) {
    t->ra = reader(m);
    t->rb = reader(m);
    const std::uint64_t a = join(1, "t", "g", t->ra);
    join(2, "t", "g", t->rb);
    ack(1, a, minus(all_partitions(4), assigned(m, t->ra)));
    t->a_parts = assigned(m, t->ra);
    t->b_parts = assigned(m, t->rb);
    ASSERT_EQ(t->a_parts.size(), 2u);
    ASSERT_EQ(t->b_parts.size(), 2u);
    t->gens_before = gens(m);
  }
};

TEST_F(DaemonRestartTest, SecondDaemonForTheBusIsRefusedNamingTheRunningPid) {
  auto second = daemon::Daemon::open(config(), [this] { return now_; }, {});
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().code, Errc::kBusy);
  EXPECT_NE(second.error().detail.find("pid " + std::to_string(::getpid())), std::string::npos)
      << second.error().detail;
  // The first one is untouched.
  EXPECT_TRUE(call(1, {{"op", "ping"}}).value("ok", false));
}

TEST_F(DaemonRestartTest, RestartKeepsLiveOwnersForTheRejoinGraceWithoutNewGenerations) {
  auto m = create_topic("t");
  TwoMembers two;
  ASSERT_NO_FATAL_FAILURE(two_members(*m, &two));
  const std::uint64_t epoch1 = d_->epoch();

  // The daemon goes away (its connections with it); a new one starts over
  // the same segments with a 10 s rejoin grace.
  d_.reset();
  daemon::Config c = config();
  c.rejoin_grace_ns = 10'000 * kMs;
  open_daemon(c);
  EXPECT_GT(d_->epoch(), epoch1);
  auto ms = d_->members();
  ASSERT_EQ(ms.size(), 2u);
  std::uint64_t new_a = 0, new_b = 0;
  for (const auto& mi : ms) {
    EXPECT_TRUE(mi.restored) << "member " << mi.id;
    EXPECT_EQ(mi.pid, ::getpid());
    if (mi.reader == two.ra) {
      new_a = mi.id;
      EXPECT_EQ(mi.owned, two.a_parts);
    } else {
      EXPECT_EQ(mi.reader, two.rb);
      new_b = mi.id;
      EXPECT_EQ(mi.owned, two.b_parts);
    }
  }
  EXPECT_EQ(gens(*m), two.gens_before) << "a restart fences no one";
  EXPECT_EQ(assigned(*m, two.ra), two.a_parts);
  EXPECT_EQ(assigned(*m, two.rb), two.b_parts);

  // A rejoins on a new connection: same partitions, same generations.
  nlohmann::json r = ok(11, {{"op", "rejoin"}, {"topic", "t"}, {"group", "g"}, {"reader", two.ra}});
  EXPECT_EQ(r.value("member_id", std::uint64_t{0}), new_a);
  ASSERT_NE(member(new_a), nullptr);
  EXPECT_FALSE(member(new_a)->restored);
  EXPECT_EQ(assigned(*m, two.ra), two.a_parts);
  EXPECT_EQ(gens(*m), two.gens_before);

  // Within the grace nothing moves, even though B has not rejoined.
  polled(*m, two.ra);
  step(5'000 * kMs);
  ASSERT_NE(member(new_b), nullptr);
  EXPECT_TRUE(member(new_b)->restored);
  EXPECT_EQ(assigned(*m, two.rb), two.b_parts);
  EXPECT_EQ(gens(*m), two.gens_before);

  // Past the grace: B did not come back, its partitions go to A.
  polled(*m, two.ra);
  step(5'500 * kMs);
  EXPECT_EQ(member(new_b), nullptr);
  EXPECT_TRUE(assigned(*m, two.rb).empty()) << "B (alive, but not a member any more) is told it owns nothing";
  EXPECT_EQ(assigned(*m, two.ra), all_partitions(4));
  for (std::uint32_t p : two.b_parts) EXPECT_EQ(gen(*m, p), two.gens_before[p] + 1) << "partition " << p;
  for (std::uint32_t p : two.a_parts) EXPECT_EQ(gen(*m, p), two.gens_before[p]) << "partition " << p;
}

TEST_F(DaemonRestartTest, RejoinAfterTheGraceIsAFreshJoin) {
  auto m = create_topic("t");
  const std::uint32_t ra = reader(*m);
  join(1, "t", "g", ra);
  const auto gens_before = gens(*m);
  d_.reset();
  daemon::Config c = config();
  c.rejoin_grace_ns = 1'000 * kMs;
  open_daemon(c);
  step(1'500 * kMs);  // the grace passes without A
  EXPECT_TRUE(d_->members().empty());
  EXPECT_TRUE(assigned(*m, ra).empty());
  // A comes back late: a plain join; it gets everything with new generations.
  nlohmann::json r = ok(5, {{"op", "rejoin"}, {"topic", "t"}, {"group", "g"}, {"reader", ra}});
  EXPECT_NE(r.value("member_id", std::uint64_t{0}), 0u);
  EXPECT_EQ(assigned(*m, ra), all_partitions(4));
  for (std::uint32_t p = 0; p < 4; ++p) EXPECT_GT(gen(*m, p), gens_before[p]);
}

TEST_F(DaemonRestartTest, DeadOwnersAreNotRestored) {
  auto m = create_topic("t");
  const std::uint32_t ra = reader(*m);
  join(1, "t", "g", ra);
  d_.reset();
  // The owner "died" while no daemon ran: its slot names a process that no
  // longer exists (this pid with another start time).
  m->reader(ra)->start_time.store(shm::self_start_time() + 777);
  open_daemon();
  EXPECT_TRUE(d_->members().empty());
  for (std::uint32_t p = 0; p < 4; ++p) EXPECT_EQ(owner_reader(*m, p), 0u) << "partition " << p;
}

// An owner that died while no daemon ran: its partitions go to the live
// members once the daemon is back (they were read by no one until another
// member joined; on a lossless topic the producers stalled).
TEST_F(DaemonRestartTest, PartitionsOfAnOwnerThatDiedWhileNoDaemonRanGoToTheLiveMembers) {
  auto m = create_topic("t");
  TwoMembers two;
  ASSERT_NO_FATAL_FAILURE(two_members(*m, &two));
  d_.reset();
  m->reader(two.rb)->start_time.store(shm::self_start_time() + 777);  // B died meanwhile
  daemon::Config c = config();
  c.rejoin_grace_ns = 10'000 * kMs;
  open_daemon(c);
  ASSERT_EQ(d_->members().size(), 1u);
  polled(*m, two.ra);
  step(100 * kMs);
  // Well within the grace: A keeps its partitions and generations and gets B's.
  EXPECT_EQ(assigned(*m, two.ra), all_partitions(4)) << describe_groups(*m);
  for (std::uint32_t p : two.a_parts) EXPECT_EQ(gen(*m, p), two.gens_before[p]) << "partition " << p;
  for (std::uint32_t p : two.b_parts) EXPECT_GT(gen(*m, p), two.gens_before[p]) << "partition " << p;
}

}  // namespace
}  // namespace herald::test
