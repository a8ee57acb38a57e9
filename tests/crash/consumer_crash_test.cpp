// Group members killed with SIGKILL (at consume.* crash points, and while
// parked in poll()) while heraldd watches: their partitions go to the
// surviving member, which resumes at the committed cursor — at-least-once:
// every event is seen, and only the ones the dead member had not committed
// are seen twice. The dead member's waiter bits and reader slot are freed.
#include <gtest/gtest.h>

#include <fstream>
#include <set>
#include <sstream>

#include "tests/crash/crash_fixture.hpp"

namespace herald::test {
namespace {

using namespace std::chrono_literals;

class ConsumerCrashTest : public CrashFixture {
 protected:
  // Starts the child member; returns its reader slot once it owns every
  // partition (it joined first).
  std::optional<std::uint32_t> start_child(const std::string& crash_at) {
    Child& c = peer({"consume", "--group=g", "--record=" + path("child.rec")}, crash_at, "child");
    child_ = &c;
    std::optional<std::uint32_t> reader;
    const bool ok = wait_until(
        [&] {
          auto g = detail::find_group(*map_, "g");
          if (!g) return false;
          group_ = g->slot;
          for (std::uint32_t p = 0; p < map_->partitions(); ++p) {
            const std::uint32_t o = map_->group_partition(group_, p)->owner_reader.load();
            if (o == 0) return false;
            reader = o - 1;
          }
          return !c.running() ||
                 (map_->reader(*reader)->owner.load() & 0xffffffffu) == static_cast<std::uint64_t>(c.pid());
        },
        20, [&] { return "the child member (pid " + std::to_string(c.pid()) + ") owns everything\n" + state(); });
    if (!ok || !c.running()) {
      ADD_FAILURE() << "child: " << (c.status() ? describe_status(*c.status()) : "running") << "\n"
                    << read_file(path("child.stderr"));
      return std::nullopt;
    }
    return reader;
  }

  void join_survivor() {
    auto c = bus_->consumer("t", {.group = "g", .policy = Policy::kLossless});
    ASSERT_TRUE(c) << c.error().message();
    member_ = std::make_unique<Consumer>(std::move(c).value());
  }

  std::vector<std::uint32_t> assigned_to(std::uint32_t r) const {
    std::vector<std::uint32_t> out;
    for (std::uint32_t p = 0; p < map_->partitions(); ++p)
      if ((map_->reader(r)->assigned[0].load() >> p & 1) != 0) out.push_back(p);
    return out;
  }

  // The child's record: (partition, position) -> seq of each event it handled.
  std::map<std::pair<std::uint32_t, std::uint64_t>, std::uint64_t> child_handled() const {
    std::map<std::pair<std::uint32_t, std::uint64_t>, std::uint64_t> out;
    std::istringstream in(read_file(path("child.rec")));
    std::string line;
    while (std::getline(in, line)) {
      std::istringstream ls(line);
      std::uint32_t p = 0;
      std::uint64_t pos = 0;
      std::string id;
      ls >> p >> pos >> id;
      out[{p, pos}] = std::stoull(id.substr(id.rfind(':') + 1));
    }
    return out;
  }

  Child* child_ = nullptr;
  std::uint32_t group_ = 0;
};

struct ConsumePoint {
  const char* point;
  int hit;
};

class ConsumerCrashPointTest : public ConsumerCrashTest, public ::testing::WithParamInterface<ConsumePoint> {};

TEST_P(ConsumerCrashPointTest, SurvivorResumesWhereTheDeadMemberWasAndOnlyItsInFlightEventIsSeenTwice) {
  const std::string crash_at = std::string(GetParam().point) + ":" + std::to_string(GetParam().hit);
  ASSERT_NO_FATAL_FAILURE(make_topic(4, /*with_member=*/false));
  const auto r_child = start_child(crash_at);
  ASSERT_TRUE(r_child);
  ASSERT_NO_FATAL_FAILURE(join_survivor());
  // The cooperative split: the child acknowledges, both own two.
  ASSERT_TRUE(pump([&] { return member_->assignment().size() == 2 && assigned_to(*r_child).size() == 2; }, 20,
                   "the group splits"));
  const std::vector<std::uint32_t> child_parts = assigned_to(*r_child);

  constexpr int kEvents = 400;
  auto prod = bus_->producer("t");
  ASSERT_TRUE(prod) << prod.error().message();
  for (int i = 0; i < kEvents; ++i) {
    const std::string body = "E:0:" + std::to_string(i) + ";";
    ASSERT_TRUE(prod->publish({.key = "k" + std::to_string(i), .payload = body}));
  }
  // Wait for the death WITHOUT polling the survivor: once heraldd hands it
  // the dead member's partitions, its next poll would move their cursors.
  ASSERT_TRUE(child_->wait(30).has_value()) << "the child did not die at " << crash_at << "\n" << state();
  ASSERT_TRUE(killed_by(child_->status(), SIGKILL)) << describe_status(*child_->status()) << "\n"
                                                    << read_file(path("child.stderr"));
  // What the dead member had committed (only the survivor's polls move
  // these now).
  std::map<std::uint32_t, std::uint64_t> committed;
  for (std::uint32_t p : child_parts) committed[p] = shm::cursor_pos(map_->group_partition(group_, p)->cursor.load());

  // Its partitions go to the survivor, which reads them to the end.
  std::string why;
  ASSERT_TRUE(pump([&] { return member_->assignment().size() == 4 && drained(&why); }, 30,
                   "the survivor takes over: " + why));
  // Its reader slot and waiter bits are freed.
  ASSERT_TRUE(wait_until(
      [&] {
        if (map_->reader(*r_child)->owner.load() != 0) return false;
        for (std::uint32_t p = 0; p < 4; ++p)
          if ((map_->partition(p).state->waiters.load() >> *r_child & 1) != 0) return false;
        return true;
      },
      20, [&] { return state(); }));

  const auto handled = child_handled();
  const Ledger::Stream* s = ledger_.stream("E");
  ASSERT_NE(s, nullptr);
  std::set<std::uint64_t> by_child;
  for (const auto& [where, seq] : handled) by_child.insert(seq);
  std::uint64_t twice = 0;
  for (std::uint64_t seq = 0; seq < kEvents; ++seq) {
    const bool survivor = seq < s->count.size() && s->count[seq] != 0;
    const bool child = by_child.count(seq) != 0;
    EXPECT_TRUE(survivor || child) << "event " << seq << " was lost";
    if (!survivor) continue;
    const auto [p, pos] = s->where[seq];
    if (committed.count(p) != 0) {
      EXPECT_GE(pos, committed[p]) << "event " << seq << " at " << pos << " on partition " << p
                                   << " was committed by the dead member, yet redelivered";
    }
    if (child) {
      ++twice;
      EXPECT_TRUE(committed.count(p) != 0 && pos >= committed[p]) << "event " << seq << " seen twice";
    }
  }
  // The survivor resumed where the dead member was (its in-flight slot):
  // of what the dead member handled, only the event it was inside (or had
  // just finished, not yet recorded) can be seen again.
  EXPECT_LE(twice, 1u) << "only the in-flight event may be seen twice";
  EXPECT_EQ(ledger_.duplicates(), 0u) << "the survivor itself sees each event once";
  if (std::string(GetParam().point) == "consume.after_handler") {
    EXPECT_EQ(twice, 1u) << "its last event was handled but not recorded as handled";
  }
  std::fprintf(stderr, "[herald] %s: the dead member handled %zu events, %llu of them uncommitted and seen again\n",
               crash_at.c_str(), handled.size(), static_cast<unsigned long long>(twice));
}

INSTANTIATE_TEST_SUITE_P(EveryPoint, ConsumerCrashPointTest,
                         ::testing::Values(ConsumePoint{"consume.before_handler", 100},
                                           ConsumePoint{"consume.after_handler", 100},
                                           ConsumePoint{"consume.after_commit", 3}),
                         [](const ::testing::TestParamInfo<ConsumePoint>& i) {
                           std::string n = i.param.point;
                           std::replace(n.begin(), n.end(), '.', '_');
                           return n;
                         });

// Killed while parked inside poll() (no crash point: a plain kill -9 once
// its waiter bits are seen set while it is stopped). The bit stays set in shared memory after the
// death, until heraldd clears it with the reader slot.
TEST_F(ConsumerCrashTest, MemberKilledWhileParkedHasItsWaiterBitsAndReaderSlotFreed) {
  ASSERT_NO_FATAL_FAILURE(make_topic(2, /*with_member=*/false));
  for (int attempt = 0; attempt < 5; ++attempt) {
    const auto r = start_child("");
    ASSERT_TRUE(r);
    const std::uint64_t bit = 1ull << *r;
    auto parked_on = [&] {
      std::uint64_t n = 0;
      for (std::uint32_t p = 0; p < 2; ++p) n += (map_->partition(p).state->waiters.load() & bit) != 0;
      return n;
    };
    ASSERT_TRUE(wait_until([&] { return parked_on() == 2; }, 20, [&] { return state(); }));
    // Frozen, it cannot wake and clear its bits; checked after the kill
    // instead, a bit seen clear could as well be heraldd's repair.
    ASSERT_TRUE(child_->freeze());
    const bool parked = parked_on() == 2;
    child_->kill_now();
    if (!parked) continue;  // it woke between the first check and the freeze: again
    ASSERT_TRUE(wait_until(
        [&] { return parked_on() == 0 && map_->reader(*r)->owner.load() == 0; }, 20,
        [&] { return "waiter bits / reader slot " + std::to_string(*r) + " not freed\n" + state(); }));
    for (std::uint32_t p = 0; p < 2; ++p)
      EXPECT_EQ(map_->group_partition(group_, p)->owner_reader.load(), 0u) << "partition " << p << " freed";
    return;
  }
  GTEST_FAIL() << "the child was never caught parked in 5 attempts";
}

}  // namespace
}  // namespace herald::test
