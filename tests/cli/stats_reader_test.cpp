// herald::read_stats over a live bus and over forged, inconsistent shared
// memory: values are validated (clamped or skipped), never trusted.
#include <gtest/gtest.h>

#include "herald/herald.hpp"
#include <time.h>
#include <unistd.h>

#include "shm/clock.hpp"
#include "shm/names.hpp"
#include "shm/registry.hpp"
#include "shm/state_layout.hpp"
#include "shm/topic_map.hpp"
#include "tests/support/bus_fixture.hpp"
#include "tests/support/test_env.hpp"

namespace herald {
namespace {

using std::chrono::milliseconds;

class StatsReaderTest : public test::BusFixture<> {
 protected:
  void SetUp() override {
    BusFixture::SetUp();
    if (HasFatalFailure()) return;
    ASSERT_TRUE(bus_->create_topic("t", {.partitions = 2, .ring_bytes = 1 << 16, .max_event = 4096}));
  }
  shm::TopicMap map_rw() {
    auto rec = shm::Registry::open(guard_.bus())->find("t");
    return std::move(shm::TopicMap::attach(guard_.bus(), "t", rec->incarnation, shm::Access::kReadWrite,
                                           shm::Access::kReadWrite))
        .value();
  }
};

TEST_F(StatsReaderTest, ReportsTopicsPartitionsGroupsMembersAndProducers) {
  auto p = bus_->producer("t").value();
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(p.publish({.key = "k", .payload = "0123456789"}));
  auto c = bus_->consumer("t", {.group = "g"}).value();
  ASSERT_EQ(*c.poll([](const EventView&) {}, 4), 4u);
  auto s = read_stats(guard_.bus());
  ASSERT_TRUE(s) << s.error().message();
  EXPECT_FALSE(s->daemon.alive);  // daemonless
  const TopicStats* t = nullptr;
  for (const TopicStats& x : s->topics)
    if (x.name == "t") t = &x;
  ASSERT_NE(t, nullptr);
  EXPECT_TRUE(t->error.empty()) << t->error;
  EXPECT_EQ(t->events, 10u);
  EXPECT_EQ(t->partition_stats.size(), 2u);
  ASSERT_EQ(t->groups.size(), 1u);
  const GroupStats& g = t->groups[0];
  EXPECT_EQ(g.name, "g");
  EXPECT_EQ(g.members, 1u);
  EXPECT_EQ(g.lag_events, 6u);
  EXPECT_EQ(g.dlq_topic, "t.dlq.g");
  EXPECT_GT(g.lag_seconds, 0.0);
  ASSERT_EQ(t->members.size(), 1u);
  EXPECT_EQ(t->members[0].pid, ::getpid());
  EXPECT_EQ(t->members[0].group, "g");
  EXPECT_EQ(t->members[0].partitions.size(), 2u);
  ASSERT_EQ(t->producers.size(), 1u);
  EXPECT_EQ(t->producers[0].events, 10u);
  EXPECT_TRUE(t->producers[0].alive);
}

// A lossless group a full ring behind has lost nothing: no claim passes its
// cursor. It was reported with a max_event of overwritten bytes (stats took
// `beginning`, which keeps a margin for the next claim, for the oldest
// byte still there; found by an exploratory pass).
TEST_F(StatsReaderTest, ALosslessGroupAFullRingBehindHasNothingOverwritten) {
  ASSERT_TRUE(bus_->create_topic("full", {.partitions = 1, .ring_bytes = 4096, .max_event = 1024,
                                          .default_policy = Policy::kLossless}));
  auto c = bus_->consumer("full", {.group = "slow"}).value();
  auto p = bus_->producer("full", {.deadline = std::chrono::nanoseconds(0)}).value();
  std::uint64_t published = 0;
  for (int i = 0; i < 1000; ++i) {
    auto r = p.publish({.payload = "0123456789"});
    if (!r) {
      ASSERT_EQ(r.error().code, Errc::kBackPressured) << r.error().message();
      break;
    }
    ++published;
  }
  ASSERT_EQ(published, 4096u / 64) << "the ring holds 64 records of 64 bytes";
  auto s = read_stats(guard_.bus());
  ASSERT_TRUE(s) << s.error().message();
  const TopicStats* t = nullptr;
  for (const TopicStats& x : s->topics)
    if (x.name == "full") t = &x;
  ASSERT_NE(t, nullptr);
  ASSERT_EQ(t->groups.size(), 1u);
  const GroupStats& g = t->groups[0];
  EXPECT_TRUE(g.gating);
  EXPECT_EQ(g.lag_bytes, 4096u);
  EXPECT_EQ(g.overwritten_bytes, 0u) << "nothing a gating group has not read can be overwritten";
  std::size_t read = 0;
  for (int i = 0; i < 10; ++i) read += c.poll([](const EventView&) {}, 1000).value_or(0);
  EXPECT_EQ(read, published) << "and it reads every event";
}

// A producer slot reused by a later producer: the partition totals keep
// every event, and the producer row counts only its current owner's (it
// showed the sum of every owner's, as if the live producer had sent them).
TEST_F(StatsReaderTest, AReusedProducerSlotShowsItsOwnersOwnCounts) {
  {
    auto first = bus_->producer("t").value();
    for (int i = 0; i < 5; ++i) ASSERT_TRUE(first.publish({.payload = "0123456789"}));
  }
  auto second = bus_->producer("t").value();
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(second.publish({.payload = "0123456789"}));
  EXPECT_EQ(second.stats().events, 2u);
  auto s = read_stats(guard_.bus());
  ASSERT_TRUE(s) << s.error().message();
  const TopicStats* t = nullptr;
  for (const TopicStats& x : s->topics)
    if (x.name == "t") t = &x;
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->events, 7u);
  ASSERT_EQ(t->producers.size(), 1u);  // the one live slot (the first producer's, reused)
  EXPECT_EQ(t->producers[0].events, 2u);
  EXPECT_EQ(t->producers[0].claims, 2u);
  EXPECT_EQ(t->producers[0].bytes, second.stats().bytes);
}

// since_last_poll_ns comes from the reader slot's last_poll_ns: stamped when
// a poll begins, and again on its way out only when it waited (a poll that
// finds its events at once keeps the entry's stamp).
TEST_F(StatsReaderTest, AMembersLastPollIsStampedWhenAPollBeginsAndAfterItWaited) {
  auto c = bus_->consumer("t", {.group = "g", .wait = Wait::kBusySpin}).value();
  shm::TopicMap m = map_rw();
  shm::ReaderLayout* me = nullptr;
  for (std::uint32_t r = 0; r < m.state_geometry().reader_slots && me == nullptr; ++r)
    if (m.reader(r)->owner.load() == static_cast<std::uint64_t>(::getpid())) me = m.reader(r);
  ASSERT_NE(me, nullptr) << "no reader slot owned by this process";

  // Found at once: the entry's stamp, not the sentinel.
  auto p = bus_->producer("t").value();
  ASSERT_TRUE(p.publish({.payload = "x", .partition = 0}));
  me->last_poll_ns.store(1);
  ASSERT_EQ(*c.poll([](const EventView&) {}, 1, milliseconds(0)), 1u);
  EXPECT_GT(me->last_poll_ns.load(), 1u);

  // A busy-spinning poll that waits its whole timeout never parks, so only
  // its exit can stamp the end of the wait.
  timespec res{};
  ASSERT_EQ(::clock_getres(CLOCK_MONOTONIC_COARSE, &res), 0);
  const std::uint64_t tick = static_cast<std::uint64_t>(res.tv_sec) * 1'000'000'000u +
                             static_cast<std::uint64_t>(res.tv_nsec);
  const std::uint64_t before = shm::coarse_monotonic_ns();
  constexpr std::uint64_t kWaitNs = 50'000'000;
  ASSERT_EQ(*c.poll([](const EventView&) {}, 1, std::chrono::nanoseconds(kWaitNs)), 0u);
  const std::uint64_t after = me->last_poll_ns.load();
  EXPECT_GE(after + 2 * tick, before + kWaitNs) << "before " << before << " after " << after << " tick " << tick;
}

TEST_F(StatsReaderTest, AClaimHeldByALiveProducerIsReportedWithHowLongItWasHeld) {
  // A zero-copy claim notes its event time in the claim slot (won_ns); stat
  // and doctor report a live producer's claim once it is held past a second
  // (before, won_ns was never written and such a claim never showed).
  auto p = bus_->producer("t").value();
  const std::uint64_t before = shm::realtime_ns();
  auto claim = p.claim(16, Message{.partition = 1});
  ASSERT_TRUE(claim) << claim.error().message();
  const std::uint64_t after = shm::realtime_ns();
  auto map = map_rw();
  std::uint64_t won = 0;
  for (std::uint32_t s = 0; s < map.geometry().producer_slots; ++s)
    if (const std::uint64_t w = map.partition(1).claims[s].won_ns.load(); w != 0) won = w;
  // The event clock follows CLOCK_REALTIME to within microseconds.
  EXPECT_GE(won + 1'000'000, before);
  EXPECT_LE(won, after + 1'000'000);
  // Bounded wait: the report comes once the claim is a second old.
  const StalledClaim* seen = nullptr;
  Result<BusStats> s = fail(Errc::kIo, "not read yet");
  for (int i = 0; i < 1000 && seen == nullptr; ++i) {
    s = read_stats(guard_.bus());
    ASSERT_TRUE(s) << s.error().message();
    for (const TopicStats& t : s->topics) {
      if (t.name != "t") continue;
      for (const PartitionStats& ps : t.partition_stats)
        for (const StalledClaim& c : ps.stalled) seen = &c;
    }
    if (seen == nullptr) ::usleep(10'000);
  }
  ASSERT_NE(seen, nullptr) << "no stalled claim reported after 10 s (won_ns " << won << ")";
  EXPECT_TRUE(seen->owner_alive);
  EXPECT_EQ(seen->pid, ::getpid());
  EXPECT_EQ(seen->partition, 1u);
  EXPECT_EQ(seen->position, claim->position());
  EXPECT_GT(seen->held_ns, 1'000'000'000u);
  ASSERT_TRUE(claim->commit());
  s = read_stats(guard_.bus());
  ASSERT_TRUE(s) << s.error().message();
  for (const TopicStats& t : s->topics) {
    if (t.name != "t") continue;
    for (const PartitionStats& ps : t.partition_stats) EXPECT_TRUE(ps.stalled.empty()) << "partition " << ps.partition;
  }
}

TEST_F(StatsReaderTest, ForgedValuesAreClampedOrSkipped) {
  auto p = bus_->producer("t").value();
  ASSERT_TRUE(p.publish({.payload = "x", .partition = 0}));
  { auto c = bus_->consumer("t", {.group = "g"}).value(); }
  shm::TopicMap m = map_rw();
  // A cursor far past the tail, an owner reader slot out of range, an
  // in-flight word with deliveries, and a second group slot with a garbage name.
  m.group_partition(0, 0)->cursor.store(shm::pack_cursor(1, 1ull << 40));
  m.group_partition(0, 1)->owner_reader.store(100000);
  shm::GroupLayout* bad = m.group(5);
  bad->state.store(shm::kGroupActive);
  bad->name_len.store(250);
  shm::GroupLayout* empty = m.group(6);
  empty->state.store(shm::kGroupActive);
  empty->name_len.store(0);
  // A reader slot of a dead pid naming a group slot that does not exist.
  m.reader(7)->owner.store(0x7ffffff0);
  m.reader(7)->group.store(99);
  m.state_header()->reader_slots_hw.store(1000);  // beyond the table
  auto s = read_stats(guard_.bus());
  ASSERT_TRUE(s) << s.error().message();
  const TopicStats& t = s->topics[0];
  ASSERT_EQ(t.name, "t");
  ASSERT_EQ(t.groups.size(), 1u) << "garbage group slots are skipped";
  const GroupStats& g = t.groups[0];
  EXPECT_LE(g.partitions[0].committed, t.partition_stats[0].tail);
  EXPECT_EQ(g.partitions[0].lag_bytes, 0u);
  EXPECT_EQ(g.partitions[1].owner_reader, 0u);
  EXPECT_EQ(g.partitions[1].owner_pid, 0);
  bool saw_dead = false;
  for (const MemberStats& ms : t.members)
    if (ms.reader_slot == 7) {
      saw_dead = true;
      EXPECT_FALSE(ms.alive);
      EXPECT_EQ(ms.group, "?");
    }
  EXPECT_TRUE(saw_dead);
}

TEST_F(StatsReaderTest, MissingSegmentsAreReportedNotFatal) {
  auto rec = shm::Registry::open(guard_.bus())->find("t");
  ASSERT_TRUE(rec);
  (void)shm::Segment::remove(shm::state_segment_name(guard_.bus(), "t", rec->incarnation));
  auto s = read_stats(guard_.bus());
  ASSERT_TRUE(s) << s.error().message();
  ASSERT_EQ(s->topics.size(), 1u);
  EXPECT_FALSE(s->topics[0].error.empty());
  auto segs = bus_segments(guard_.bus());
  ASSERT_TRUE(segs);
  bool missing = false;
  for (const SegmentInfo& si : *segs) missing = missing || (si.name.empty() && si.topic == "t" && si.kind == "state");
  EXPECT_TRUE(missing);
}

TEST_F(StatsReaderTest, ARegistryEntryLeftMidWriteDoesNotHangReaders) {
  // A writer killed between its odd and even seq stores leaves the entry
  // odd: readers give up on it (bounded) instead of spinning forever.
  auto reg = shm::Registry::open(guard_.bus()).value();
  const auto rec = reg.find("t");
  ASSERT_TRUE(rec);
  auto* entries = reinterpret_cast<shm::TopicEntryLayout*>(reinterpret_cast<std::byte*>(reg.header()) +
                                                           shm::RegistryGeometry{}.topics_off);
  std::atomic<std::uint32_t>& seq = entries[rec->slot].seq;
  const std::uint32_t before = seq.load();
  seq.store(before | 1);
  auto s = read_stats(guard_.bus());
  ASSERT_TRUE(s) << s.error().message();
  for (const TopicStats& t : s->topics) EXPECT_NE(t.name, "t") << "a half-written entry is not reported";
  EXPECT_FALSE(reg.find("t"));
  seq.store(before);
  EXPECT_TRUE(reg.find("t"));
}

TEST(StatsReaderNoBusTest, AMissingBusIsNotFound) {
  test::BusGuard guard;
  auto s = read_stats(guard.bus());
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code, Errc::kNotFound);
}

}  // namespace
}  // namespace herald
