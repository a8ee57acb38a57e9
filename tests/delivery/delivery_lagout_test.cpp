// A lag-out group whose cursor was overwritten while it had no member
// (DELIVERY.md "When a group falls behind"): heraldd (a child process) demotes
// it after its grace, producers lap the ring, and a member that joins again
// reads what is left per on_overrun — the earliest retained event, the tail,
// or an error until it seeks — with the exact gap reported.
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "herald/herald.hpp"
#include "runtime/src/groups.hpp"
#include "tests/support/bus_fixture.hpp"
#include "tests/support/daemon_harness.hpp"
#include "tests/support/test_env.hpp"

namespace herald {
namespace {

using namespace std::chrono_literals;

class DeliveryLagOutTest : public test::BusFixture<::testing::TestWithParam<OffsetReset>> {
 protected:
  void SetUp() override {
    daemon_ = test::Heraldd::start(guard_.bus(), guard_.run_dir());
    ASSERT_TRUE(daemon_->wait_ready(20)) << daemon_->log();
    BusFixture::SetUp();
  }
  void TearDown() override {
    if (HasFailure()) std::fprintf(stderr, "[herald] heraldd log:\n%s\n", daemon_->log().c_str());
    bus_.reset();
    const auto st = daemon_->stop();
    EXPECT_TRUE(test::exited_with(st, 0)) << (st ? test::describe_status(*st) : "did not stop");
  }
  std::unique_ptr<test::Heraldd> daemon_;
};

TEST_P(DeliveryLagOutTest, DemotedGroupThatWasLappedResumesPerOnOverrunWithTheExactGap) {
  const OffsetReset reset = GetParam();
  ASSERT_TRUE(bus_->create_topic("t", {.partitions = 1, .ring_bytes = 64 << 10, .max_event = 4096,
                                       .default_policy = Policy::kLagOut, .lagout_grace = 100ms}));
  std::vector<GapReport> gaps;
  ConsumerOptions o;
  o.group = "g";
  o.on_overrun = reset;
  o.on_gap = [&](const GapReport& g) { gaps.push_back(g); };
  auto prod = bus_->producer("t", {.deadline = 0ns});
  ASSERT_TRUE(prod) << prod.error().message();
  std::vector<std::uint64_t> positions;
  auto publish = [&](std::uint64_t count) {
    for (std::uint64_t i = 0; i < count; ++i) {
      const std::string body = "e" + std::to_string(positions.size()) + ";" + std::string(200, '.');
      auto r = prod->publish({.payload = body, .partition = 0});
      ASSERT_TRUE(r) << r.error().message();
      positions.push_back(r->position);
    }
  };
  std::vector<std::uint64_t> handled;
  auto collect = [&](const EventView& e) { handled.push_back(e.position()); };
  ASSERT_NO_FATAL_FAILURE(publish(10));
  {
    auto c = bus_->consumer("t", o);
    ASSERT_TRUE(c) << c.error().message();
    ASSERT_TRUE(test::wait_until(
        [&] {
          auto n = c->poll(collect, 3 - handled.size(), 10ms);
          return !n || handled.size() == 3;
        },
        20, [] { return "the member got its partition"; }));
  }  // the member leaves: after the grace heraldd demotes the group
  const std::uint64_t from = positions[3];
  auto map = test::attach_topic(guard_.bus(), "t");
  ASSERT_NE(map, nullptr);
  const std::uint32_t slot = detail::find_group(*map, "g")->slot;
  ASSERT_EQ(shm::cursor_pos(map->group_partition(slot, 0)->cursor.load()), from);
  ASSERT_TRUE(test::wait_until([&] { return (map->group(slot)->flags.load() & shm::kGroupGating) == 0; }, 20,
                               [&] { return "group not demoted\n" + test::describe_groups(*map); }));
  // Producers no longer wait for it: they lap the ring.
  ASSERT_NO_FATAL_FAILURE(publish(test::scaled(1000) + 1000));
  const PartitionInfo before = bus_->describe_topic("t")->partition_info[0];
  ASSERT_GT(before.beginning, from);

  // A member joins again (the group is promoted: it gates from the tail on)
  // and reads what is left of its history by copy, per on_overrun.
  auto c = bus_->consumer("t", o);
  ASSERT_TRUE(c) << c.error().message();
  handled.clear();
  std::optional<Error> error;
  ASSERT_TRUE(test::wait_until(
      [&] {
        auto n = c->poll(collect, 100000, 10ms);
        if (!n) error = n.error();
        return error || !handled.empty() || !gaps.empty();
      },
      20, [&] { return "the member never read\n" + test::describe_groups(*map); }));
  EXPECT_NE(map->group(slot)->flags.load() & shm::kGroupGating, 0u) << "promoted again";
  if (reset == OffsetReset::kError) {
    ASSERT_TRUE(error.has_value()) << "on_overrun=kError: the poll fails";
    EXPECT_NE(error->message().find("position " + std::to_string(from) + " was overwritten"), std::string::npos)
        << error->message();
    EXPECT_TRUE(handled.empty());
    ASSERT_TRUE(c->seek(0, Offset::earliest()));
    ASSERT_TRUE(test::wait_until([&] { return c->poll(collect, 100000, 10ms) && !handled.empty(); }, 20));
    EXPECT_EQ(handled.front(), before.beginning);
    return;
  }
  ASSERT_FALSE(error.has_value()) << error->message();
  const std::uint64_t to = reset == OffsetReset::kEarliest ? before.beginning : before.tail;
  ASSERT_EQ(gaps.size(), 1u);
  EXPECT_EQ(gaps[0].from, from);
  EXPECT_EQ(gaps[0].to, to);
  EXPECT_EQ(gaps[0].bytes, to - from);
  EXPECT_EQ(c->stats().gap_bytes, to - from);
  // Drain: what is handled is exactly what was published at or after `to`.
  ASSERT_TRUE(test::wait_until([&] { return !c->poll(collect, 100000, 1ms) || c->position(0) >= before.tail; }, 20));
  std::vector<std::uint64_t> expect;
  for (std::uint64_t q : positions)
    if (q >= to) expect.push_back(q);
  EXPECT_EQ(handled, expect);
}

INSTANTIATE_TEST_SUITE_P(OnOverrun, DeliveryLagOutTest,
                         ::testing::Values(OffsetReset::kEarliest, OffsetReset::kLatest, OffsetReset::kError),
                         [](const ::testing::TestParamInfo<OffsetReset>& i) {
                           switch (i.param) {
                             case OffsetReset::kEarliest: return std::string("Earliest");
                             case OffsetReset::kLatest: return std::string("Latest");
                             case OffsetReset::kError: return std::string("Error");
                           }
                           return std::string("?");
                         });

}  // namespace
}  // namespace herald
