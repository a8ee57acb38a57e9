// A poison event that crashes every consumer reading it (DELIVERY.md
// "Failures, retries, dead letters"): a group member PROCESS abort()s on
// one event in a batch of many and is restarted each time it dies. Each
// death counts one delivery of that event only (the in-flight slot); after
// max_deliveries of them the next member dead-letters it without calling
// the handler, with reason "consumer crashed". The events before and after
// it are handled once, in order: a restarted member resumes at the poison
// event (the in-flight slot), not at the committed cursor, which the dead
// member never moved past the events it handled in the batch.
#include <gtest/gtest.h>

#include <functional>
#include <set>

#include "tests/crash/delivery_fixture.hpp"

namespace herald::test {
namespace {

class DeliveryPoisonCrashTest : public DeliveryCrashFixture, public ::testing::WithParamInterface<bool> {
 protected:
  // Runs members (args + --tag=c<run>) one after the other until the group
  // has committed everything with one dead letter in its DLQ; each member
  // before that must die by SIGABRT (on the poison event), and after_death
  // runs after each death. *aborts counts the deaths.
  void run_until_dead_lettered(const std::vector<std::string>& args, std::uint32_t max_deliveries,
                               std::uint32_t* aborts, const std::function<void()>& after_death = {}) {
    *aborts = 0;
    for (std::uint32_t run = 0;; ++run) {
      ASSERT_LE(run, max_deliveries + 1) << "the poison event was not dead-lettered after " << *aborts
                                         << " aborts\n" << state();
      std::vector<std::string> a = args;
      a.push_back("--tag=c" + std::to_string(run));
      Child& c = peer("consume", a, "", "member" + std::to_string(run));
      // Done when the group committed everything with the poison in the
      // DLQ; else the member aborted on it.
      bool done = false;
      ASSERT_TRUE(wait_until(
          [&] {
            if (!c.running()) return true;
            if (!all_committed("t", "g")) return false;
            auto dl = bus_->dead_letters("t", "g");
            done = dl && dl->size() == 1;
            return done;
          },
          60, [&] { return "member " + std::to_string(run) + " neither died nor finished\n" + state(); }));
      if (done) {
        stop(c, "member" + std::to_string(run) + ".stderr");
        return;
      }
      ASSERT_TRUE(killed_by(c.status(), SIGABRT))
          << "member " << run << ": " << describe_status(*c.status()) << "\n"
          << read_file(path("member" + std::to_string(run) + ".stderr"));
      ++*aborts;
      if (after_death) after_death();
    }
  }
};

TEST_P(DeliveryPoisonCrashTest, MemberAbortingOnAPoisonEventIsRestartedUntilOnlyThatEventIsDeadLettered) {
  const bool with_daemon = GetParam();
  ASSERT_NO_FATAL_FAILURE(start(with_daemon));
  ASSERT_NO_FATAL_FAILURE(make_topic("t", 2));
  constexpr std::uint32_t kMaxDeliveries = 5;
  // Events i -> partition i % 2; the poison is partition 0's event in the
  // middle. The member polls with a budget above the whole backlog, so its
  // first poll handles every partition-0 event before the poison in one
  // batch and dies before committing any of them.
  const std::uint64_t n = 2 * std::max<std::uint64_t>(scaled(200), 20);
  const std::uint64_t poison_index = n / 2 - (n / 2) % 2;
  std::uint64_t poison_position = 0;
  {
    auto prod = bus_->producer("t");
    ASSERT_TRUE(prod) << prod.error().message();
    const Header tenant[] = {{"tenant", "acme"}};
    for (std::uint64_t i = 0; i < n; ++i) {
      const bool poison = i == poison_index;
      const std::string body = (poison ? "poison" : "E") + std::to_string(i) + ";";
      auto r = prod->publish({.type = poison ? "Poison" : "Plain", .payload = body, .headers = tenant,
                              .partition = static_cast<std::int32_t>(i % 2)});
      ASSERT_TRUE(r) << r.error().message();
      if (poison) poison_position = r->position;
    }
  }
  const std::string record = path("handled.rec");
  std::vector<std::string> args = {"--topic=t", "--group=g", "--record=" + record, "--on-poison=abort",
                                   "--max-deliveries=" + std::to_string(kMaxDeliveries), "--batch=100000"};

  std::uint32_t aborts = 0;
  std::optional<std::uint64_t> committed_at_first_death;
  std::size_t handled_at_first_death = 0;
  ASSERT_NO_FATAL_FAILURE(run_until_dead_lettered(args, kMaxDeliveries, &aborts, [&] {
    if (committed_at_first_death) return;
    committed_at_first_death = committed("t", "g", 0);
    handled_at_first_death = read_handled(record).size();
  }));
  EXPECT_EQ(aborts, kMaxDeliveries) << "each abort counted one delivery of the poison event";

  // Only the poison event is in the DLQ, as "consumer crashed" after
  // max_deliveries deliveries, its envelope intact.
  auto dls = bus_->dead_letters("t", "g");
  ASSERT_TRUE(dls) << dls.error().message();
  ASSERT_EQ(dls->size(), 1u);
  const DeadLetter& d = dls->front();
  EXPECT_EQ(d.event.payload_text(), "poison" + std::to_string(poison_index) + ";");
  EXPECT_EQ(d.event.type(), "Poison");
  EXPECT_EQ(d.event.header("tenant").value_or(""), "acme");
  EXPECT_EQ(d.reason, "consumer crashed");
  EXPECT_EQ(d.deliveries, kMaxDeliveries);
  EXPECT_EQ(d.partition, 0u);
  EXPECT_EQ(d.position, poison_position);
  EXPECT_EQ(d.group, "g");
  EXPECT_EQ(d.topic, "t");

  // Every other event handled exactly once, in partition order, on its
  // first delivery; the poison event never completed a handler.
  const std::vector<Handled> hs = read_handled(record);
  std::map<std::string, std::uint32_t> count;
  std::map<std::uint32_t, std::uint64_t> last_pos;
  for (const Handled& h : hs) {
    EXPECT_EQ(h.id.rfind("poison", 0), std::string::npos) << "the poison event's handler never returns";
    EXPECT_EQ(h.delivery, 1u) << h.id << " was redelivered (by " << h.tag << ")";
    if (++count[h.id] > 1) ADD_FAILURE() << h.id << " handled twice (the second time by " << h.tag << ")";
    auto [it, fresh] = last_pos.try_emplace(h.partition, h.position);
    if (!fresh) {
      EXPECT_GT(h.position, it->second) << h.id << " out of order on partition " << h.partition;
      it->second = h.position;
    }
  }
  for (std::uint64_t i = 0; i < n; ++i)
    if (i != poison_index) {
      EXPECT_EQ(count["E" + std::to_string(i)], 1u) << "E" << i;
    }
  EXPECT_EQ(hs.size(), n - 1);
  // The first member handled partition 0's events before the poison in the
  // batch it died in and committed none of them: only the in-flight slot
  // kept the restarted members from handling them again.
  ASSERT_TRUE(committed_at_first_death.has_value());
  std::uint64_t uncommitted_handled = 0;
  for (std::size_t i = 0; i < handled_at_first_death; ++i)
    if (hs[i].partition == 0 && hs[i].position >= *committed_at_first_death) ++uncommitted_handled;
  EXPECT_EQ(uncommitted_handled, poison_index / 2)
      << "partition 0 committed at " << *committed_at_first_death << " when the first member died\n"
      << describe_handled(hs);
  if (HasFailure()) std::fprintf(stderr, "[herald] handled:\n%s", describe_handled(hs, 40).c_str());
}

// The same with manual commits (DELIVERY.md: a crash inside the handler
// counts one delivery in every mode that tracks them). A restarted member
// resumes at the committed cursor, before the poison event, and handles
// the events in between again; the poison event's count must survive that
// (it restarted at 1 every time: an event that crashed every consumer was
// never dead-lettered).
TEST_P(DeliveryPoisonCrashTest, ManualCommitMemberAbortingOnAPoisonEventStillReachesTheDlq) {
  const bool with_daemon = GetParam();
  ASSERT_NO_FATAL_FAILURE(start(with_daemon));
  ASSERT_NO_FATAL_FAILURE(make_topic("t", 1));
  constexpr std::uint32_t kMaxDeliveries = 3;
  const std::uint64_t n = std::max<std::uint64_t>(scaled(40), 8);
  const std::uint64_t poison_index = n / 2;
  {
    auto prod = bus_->producer("t");
    ASSERT_TRUE(prod) << prod.error().message();
    for (std::uint64_t i = 0; i < n; ++i) {
      const bool poison = i == poison_index;
      auto r = prod->publish({.payload = (poison ? "poison" : "E") + std::to_string(i) + ";", .partition = 0});
      ASSERT_TRUE(r) << r.error().message();
    }
  }
  const std::string record = path("handled.rec");
  const std::vector<std::string> args = {"--topic=t", "--group=g", "--record=" + record, "--on-poison=abort",
                                         "--max-deliveries=" + std::to_string(kMaxDeliveries), "--batch=100000",
                                         "--commit=manual"};
  std::uint32_t aborts = 0;
  ASSERT_NO_FATAL_FAILURE(run_until_dead_lettered(args, kMaxDeliveries, &aborts));
  EXPECT_EQ(aborts, kMaxDeliveries) << "each abort counted one delivery of the poison event";
  auto dls = bus_->dead_letters("t", "g");
  ASSERT_TRUE(dls) << dls.error().message();
  ASSERT_EQ(dls->size(), 1u);
  EXPECT_EQ(dls->front().event.payload_text(), "poison" + std::to_string(poison_index) + ";");
  EXPECT_EQ(dls->front().reason, "consumer crashed");
  EXPECT_EQ(dls->front().deliveries, kMaxDeliveries);
  // Every other event handled at least once (the ones before the poison
  // once per member that reached it: nothing was committed before it).
  std::set<std::string> seen;
  for (const Handled& h : read_handled(record)) seen.insert(h.id);
  for (std::uint64_t i = 0; i < n; ++i) {
    if (i == poison_index) continue;
    EXPECT_EQ(seen.count("E" + std::to_string(i)), 1u) << "E" << i << " never handled";
  }
}

// A member stopped (SIGSTOP) while parked in poll() keeps the in-poll flag
// set for as long as it is stopped; heraldd must still take it for stuck
// once its poll count has not moved for max_poll_interval, and give its
// partitions to the live member (it kept them for good: a lossless topic's
// producers stalled with a healthy member idle beside it).
class DeliveryStoppedMemberTest : public DeliveryCrashFixture {};

TEST_F(DeliveryStoppedMemberTest, AMemberStoppedInsidePollLosesItsPartitionsToTheLiveOne) {
  ASSERT_NO_FATAL_FAILURE(start(/*with_daemon=*/true));
  ASSERT_NO_FATAL_FAILURE(make_topic("t", 2));
  const std::string rec_a = path("a.rec"), rec_b = path("b.rec");
  auto args = [](const std::string& rec, const std::string& tag) {
    return std::vector<std::string>{"--topic=t", "--group=g", "--record=" + rec, "--tag=" + tag, "--max-poll-ms=500"};
  };
  Child& a = peer("consume", args(rec_a, "a"), "", "a");
  Child& b = peer("consume", args(rec_b, "b"), "", "b");
  // No waiting under backpressure: the group is lossless, and a partition
  // the stopped member keeps fills up.
  auto prod = bus_->producer("t", {.deadline = std::chrono::nanoseconds(0)});
  ASSERT_TRUE(prod) << prod.error().message();
  std::uint64_t sent = 0;
  auto publish_round = [&] {
    for (std::int32_t p = 0; p < 2; ++p) {
      auto r = prod->publish({.payload = "E" + std::to_string(sent++) + ";", .partition = p});
      if (r) continue;
      EXPECT_EQ(r.error().code, Errc::kBackPressured) << r.error().message();
    }
  };
  // Both members own a partition once each has handled events and the
  // group has committed everything.
  ASSERT_TRUE(wait_until(
      [&] {
        publish_round();
        return !read_handled(rec_a).empty() && !read_handled(rec_b).empty() && all_committed("t", "g");
      },
      30, [&] { return "the two members did not share the topic\n" + state(); }));
  ASSERT_TRUE(a.freeze()) << "member a did not stop";
  // b ends up handling new events of both partitions: a's moved to it.
  std::set<std::uint32_t> b_parts_after;
  const std::size_t b_before = read_handled(rec_b).size();
  const bool moved = wait_until(
      [&] {
        publish_round();
        const std::vector<Handled> hs = read_handled(rec_b);
        for (std::size_t i = b_before; i < hs.size(); ++i) b_parts_after.insert(hs[i].partition);
        return b_parts_after.size() == 2;
      },
      30, [&] { return "the stopped member kept its partition\n" + state(); });
  a.signal(SIGCONT);
  EXPECT_TRUE(moved);
  stop(a, "a.stderr");
  stop(b, "b.stderr");
}

INSTANTIATE_TEST_SUITE_P(Modes, DeliveryPoisonCrashTest, ::testing::Values(true, false),
                         [](const ::testing::TestParamInfo<bool>& i) { return i.param ? "heraldd" : "daemonless"; });

}  // namespace
}  // namespace herald::test
