// runtime/src/consumer.cpp (and groups.cpp): reading through the public API.
// Lossless backpressure, lossy gaps, commit modes, seeks, resume at the
// committed cursor, fan-out to groups, redelivery after a failed handler,
// and the figures describe_topic reports.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "herald/herald.hpp"
#include "shm/record_layout.hpp"
#include "tests/support/bus_fixture.hpp"
#include "tests/support/payload.hpp"
#include "tests/support/test_env.hpp"

namespace herald {
namespace {
using namespace std::chrono_literals;

using std::chrono::milliseconds;

class ConsumerTest : public test::BusFixture<> {
 protected:
  // Tails, beginnings, cursors and gaps of a topic, for failure messages.
  std::string state_of(const std::string& topic) const {
    auto info = bus_->describe_topic(topic);
    if (!info) return "describe_topic failed: " + info.error().message();
    std::string s;
    for (const auto& p : info->partition_info)
      s += " p" + std::to_string(p.partition) + "{tail=" + std::to_string(p.tail) +
           " beginning=" + std::to_string(p.beginning) + " events=" + std::to_string(p.events) + "}";
    for (const auto& g : info->groups)
      for (const auto& gp : g.partitions)
        s += " " + g.name + "/p" + std::to_string(gp.partition) + "{committed=" + std::to_string(gp.committed) +
             " lag=" + std::to_string(gp.lag_bytes) + " gap=" + std::to_string(gp.gap_bytes) + "}";
    return s;
  }

  // Publishes `n` stamped events (producer id 1, consecutive seqs from
  // *seq) on partition `p`, optionally with given times.
  static void publish_n(Producer& producer, int n, std::uint64_t* seq, std::int32_t p = 0,
                        std::uint64_t time_base = 0) {
    for (int i = 0; i < n; ++i) {
      const std::string payload = test::make_payload(40, {1, 0, *seq});
      auto r = producer.publish(
          {.payload = payload, .time_ns = time_base == 0 ? 0 : time_base * (*seq + 1), .partition = p});
      ASSERT_TRUE(r) << r.error().message();
      ++*seq;
    }
  }

  // Polls (timeout 0) until nothing is left; returns the seqs seen.
  static std::vector<std::uint64_t> drain(Consumer& c, std::size_t max = 256) {
    std::vector<std::uint64_t> out;
    for (;;) {
      auto n = c.poll(
          [&](const EventView& e) {
            auto s = test::check_payload(e.payload());
            EXPECT_TRUE(s) << "corrupt payload at position " << e.position();
            if (s) out.push_back(s->seq);
          },
          max);
      EXPECT_TRUE(n) << n.error().message();
      if (!n || *n == 0) return out;
    }
  }
};

std::vector<std::uint64_t> iota(std::uint64_t from, std::uint64_t to) {
  std::vector<std::uint64_t> v;
  for (std::uint64_t i = from; i < to; ++i) v.push_back(i);
  return v;
}

// ---------------------------------------------------------------------------
// Lossless and lossy
// ---------------------------------------------------------------------------

// fork() with live handles: the child's copies are the parent's slots and
// membership. Destroying them in the child (its exit) used to release the
// parent's reader slot and partitions and its producer slot, so another
// member took the partition the parent still read, and the parent was
// fenced (found by an exploratory pass). Now only the process that made a
// handle gives its slots back.
TEST_F(ConsumerTest, AForkedChildLeavesTheParentsSlotsAlone) {
  ASSERT_TRUE(bus_->create_topic("t", {.partitions = 1, .ring_bytes = 64 * 1024, .max_event = 4096,
                                       .single_producer = true}));
  std::optional<Producer> producer(bus_->producer("t").value());
  std::optional<Consumer> member(bus_->consumer("t", {.group = "g"}).value());
  std::uint64_t seq = 0;
  ASSERT_NO_FATAL_FAILURE(publish_n(*producer, 1, &seq));
  EXPECT_EQ(drain(*member), iota(0, 1));
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    member.reset();
    producer.reset();
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child status " << status;
  // The parent's producer slot is still held: the topic takes no second.
  EXPECT_FALSE(bus_->producer("t")) << "the child released the parent's producer slot";
  // And its partition: a second member gets none of it.
  auto second = bus_->consumer("t", {.group = "g"});
  ASSERT_TRUE(second) << second.error().message();
  ASSERT_NO_FATAL_FAILURE(publish_n(*producer, 3, &seq));
  EXPECT_TRUE(drain(*second).empty()) << "the child handed the parent's partition over";
  EXPECT_EQ(drain(*member), iota(1, 4)) << "the parent still owns it;" << state_of("t");
  auto committed = member->commit();
  EXPECT_TRUE(committed) << committed.error().message();
}

// A Consumer is used by one thread at a time. A commit from a second thread
// while the first polled raced the poll's cursor CAS, was taken for a fence,
// and the member dropped its partition (found by an exploratory pass); now
// it is refused, naming the rule, and the poll goes on undisturbed.
TEST_F(ConsumerTest, ACommitFromAnotherThreadWhilePollRunsIsRefused) {
  ASSERT_TRUE(bus_->create_topic("t", {.partitions = 1, .ring_bytes = 64 * 1024, .max_event = 4096}));
  auto producer = bus_->producer("t").value();
  auto member = bus_->consumer("t", {.group = "g"}).value();
  std::uint64_t seq = 0;
  ASSERT_NO_FATAL_FAILURE(publish_n(producer, 2, &seq));
  std::atomic<int> stage{0};  // 1: the handler runs; 2: the other thread is done
  Result<void> other_commit = fail(Errc::kIo, "not called");
  Result<void> other_seek = fail(Errc::kIo, "not called");
  std::thread other([&] {
    for (int i = 0; i < 20'000'000 && stage.load() != 1; ++i) std::this_thread::yield();
    other_commit = member.commit();
    other_seek = member.seek(0, Offset::earliest());
    stage.store(2);
  });
  std::vector<std::uint64_t> seen;
  auto n = member.poll(
      [&](const EventView& e) {
        if (seen.empty()) {
          stage.store(1);
          for (int i = 0; i < 20'000'000 && stage.load() != 2; ++i) std::this_thread::yield();
        }
        seen.push_back(test::check_payload(e.payload())->seq);
      },
      16);
  other.join();
  ASSERT_EQ(stage.load(), 2) << "the other thread never ran while the handler waited";
  ASSERT_TRUE(n) << n.error().message();
  EXPECT_EQ(seen, iota(0, 2));
  ASSERT_FALSE(other_commit);
  EXPECT_EQ(other_commit.error().code, Errc::kInvalidArgument);
  EXPECT_NE(other_commit.error().detail.find("another thread"), std::string::npos) << other_commit.error().message();
  ASSERT_FALSE(other_seek);
  EXPECT_NE(other_seek.error().detail.find("another thread"), std::string::npos) << other_seek.error().message();
  // The member kept its partition and commits from its own thread.
  auto c = member.commit();
  EXPECT_TRUE(c) << c.error().message();
  ASSERT_NO_FATAL_FAILURE(publish_n(producer, 1, &seq));
  EXPECT_EQ(drain(member), iota(2, 3)) << state_of("t");
}

// A group deleted (with force) under a live member: the member's next poll
// says so, busy (its commit is fenced) or idle (nothing assigned), and so
// do commit() and a later poll; a group made again under the same name
// (the same slot) is a new group, not the old one back.
TEST_F(ConsumerTest, AMemberOfADeletedGroupIsToldItsGroupIsGone) {
  ASSERT_TRUE(bus_->create_topic("t", {.partitions = 1, .ring_bytes = 64 * 1024, .max_event = 4096}));
  auto producer = bus_->producer("t").value();
  auto member = bus_->consumer("t", {.group = "g"}).value();
  std::uint64_t seq = 0;
  publish_n(producer, 2, &seq);
  ASSERT_EQ(drain(member).size(), 2u);
  // Waiting on a live group is no error (the check after a park).
  auto idle = member.poll([](const EventView&) {}, 16, milliseconds(20));
  ASSERT_TRUE(idle) << idle.error().message();
  EXPECT_EQ(*idle, 0u);
  ASSERT_TRUE(bus_->delete_group("t", "g", /*force=*/true));
  ASSERT_TRUE(bus_->create_topic("u", {.partitions = 1, .ring_bytes = 64 * 1024, .max_event = 4096}));
  // Busy: an event to handle, whose commit is fenced.
  publish_n(producer, 1, &seq);
  auto n = member.poll([](const EventView&) {}, 16);
  ASSERT_FALSE(n) << "polled " << *n;
  EXPECT_EQ(n.error().code, Errc::kNotFound) << n.error().message();
  EXPECT_NE(n.error().detail.find("group 'g' of topic 't' was deleted"), std::string::npos) << n.error().message();
  // Idle (nothing assigned now), waiting or not, and commit().
  n = member.poll([](const EventView&) {}, 16, milliseconds(50));
  ASSERT_FALSE(n);
  EXPECT_EQ(n.error().code, Errc::kNotFound) << n.error().message();
  auto e = member.next();
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error().code, Errc::kNotFound) << e.error().message();
  // The same name again: the old member is still told its group is gone,
  // and a new member reads from the new group's start.
  auto again = bus_->consumer("t", {.group = "g", .start = Offset::earliest()}).value();
  n = member.poll([](const EventView&) {}, 16);
  ASSERT_FALSE(n);
  EXPECT_EQ(n.error().code, Errc::kNotFound) << n.error().message();
  EXPECT_EQ(drain(again).size(), 3u);
  idle = again.poll([](const EventView&) {}, 16, milliseconds(20));
  ASSERT_TRUE(idle) << idle.error().message();
  // The old member stays out of the new group: no partition taken back
  // (the new group's members leave its partitions free when they go), no
  // commit into it, no count in it.
  { auto gone = std::move(again); }
  n = member.poll([](const EventView&) {}, 16);
  ASSERT_FALSE(n);
  EXPECT_EQ(n.error().code, Errc::kNotFound) << n.error().message();
  EXPECT_TRUE(member.assignment().empty());
  auto c = member.commit();
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, Errc::kNotFound) << c.error().message();
  EXPECT_FALSE(member.committed(0));
  auto reset = bus_->reset_group("t", "g", Offset::earliest());  // no live member: allowed
  ASSERT_TRUE(reset) << reset.error().message();
  member = std::move(bus_->consumer("t", {.group = "h"}).value());  // the old member goes
  auto info = bus_->describe_topic("t");
  ASSERT_TRUE(info) << info.error().message();
  for (const auto& g : info->groups) {
    if (g.name != "g") continue;
    EXPECT_EQ(g.members, 0u) << "the old member's exit counted against the new group";
  }
}

// A member that spins (kBusySpin) through a long poll on a quiet topic
// learns its group was deleted during that poll, as a parked one does
// after its next wake (a spinning poll never parks).
// A member whose group is deleted and made again (same name, same slot)
// while its handler runs must not leave its "handled up to here" (or, for
// a failed event, a dead letter) to the new group: a new member resumed
// past an event nobody had read there (found by an exploratory pass).
TEST_F(ConsumerTest, AMemberOfADeletedGroupLeavesNothingToTheGroupMadeAgainInItsSlot) {
  for (const bool handler_fails : {false, true}) {
    SCOPED_TRACE(handler_fails ? "the handler fails (a dead letter)" : "the handler succeeds");
    const std::string topic = handler_fails ? "tf" : "ts";
    ASSERT_TRUE(bus_->create_topic(topic, {.partitions = 1, .ring_bytes = 1 << 16}));
    auto prod = bus_->producer(topic).value();
    const ConsumerOptions o{.group = "g", .max_deliveries = 1, .retry = {0ms, 2.0, 0ms}};
    auto old_member = bus_->consumer(topic, o).value();
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(prod.publish({.payload = "ev-" + std::to_string(i), .partition = 0}));
    auto r = old_member.poll(
        [&](const EventView&) {
          EXPECT_TRUE(bus_->delete_group(topic, "g", /*force=*/true));
          auto made_again = bus_->consumer(topic, o);  // a new group g, from the earliest event
          EXPECT_TRUE(made_again) << made_again.error().message();
          return !handler_fails;
        },
        1);
    ASSERT_FALSE(r) << "the old member learns its group is gone";
    EXPECT_EQ(r.error().code, Errc::kNotFound) << r.error().message();
    std::vector<std::string> got;
    auto member = bus_->consumer(topic, o).value();
    ASSERT_TRUE(member.poll([&](const EventView& e) { got.emplace_back(e.payload_text()); }, 16));
    EXPECT_EQ(got, (std::vector<std::string>{"ev-0", "ev-1", "ev-2"}));
    EXPECT_TRUE(bus_->dead_letters(topic, "g").value().empty()) << "the old group's dead letter went to the new one";
  }
}

// A member of a topic deleted and made again drains what it retained; an
// event it fails must not be dead-lettered into the new topic's DLQ of the
// same name (redrive then put old events into the new topic).
TEST_F(ConsumerTest, AMemberOfADeletedTopicDeadLettersNothingIntoTheTopicMadeAgain) {
  ASSERT_TRUE(bus_->create_topic("t", {.partitions = 1, .ring_bytes = 1 << 16}));
  auto prod = bus_->producer("t").value();
  const ConsumerOptions o{.group = "g", .max_deliveries = 1, .retry = {0ms, 2.0, 0ms}};
  auto old_member = bus_->consumer("t", o).value();
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(prod.publish({.payload = "old-" + std::to_string(i)}));
  ASSERT_TRUE(bus_->delete_topic("t", {.force = true}));
  ASSERT_TRUE(bus_->create_topic("t", {.partitions = 1, .ring_bytes = 1 << 16}));
  auto new_member = bus_->consumer("t", o).value();  // makes g and its DLQ anew
  Result<std::size_t> r = std::size_t{0};
  for (int i = 0; i < 10 && r; ++i) r = old_member.poll([](const EventView&) { return false; }, 16);
  ASSERT_FALSE(r) << "the old member's failing events have nowhere to go";
  EXPECT_EQ(r.error().code, Errc::kClosed) << r.error().message();
  EXPECT_TRUE(bus_->dead_letters("t", "g").value().empty());
}

// A group whose dead-letter topic went missing (deleted with --force, or
// never made when its creation failed half-way) gets it again when a
// member joins: its first failing event used to fail every poll for good.
TEST_F(ConsumerTest, AJoinMakesAMissingDeadLetterTopicAgain) {
  ASSERT_TRUE(bus_->create_topic("t", {.partitions = 1, .ring_bytes = 1 << 16}));
  const ConsumerOptions o{.group = "g", .max_deliveries = 1, .retry = {0ms, 2.0, 0ms}};
  { auto first = bus_->consumer("t", o).value(); }
  ASSERT_TRUE(bus_->describe_topic("t.dlq.g"));
  ASSERT_TRUE(bus_->delete_topic("t.dlq.g", {.force = true}));
  ASSERT_FALSE(bus_->describe_topic("t.dlq.g"));
  auto c = bus_->consumer("t", o).value();
  ASSERT_TRUE(bus_->describe_topic("t.dlq.g")) << "the join made it again";
  auto prod = bus_->producer("t").value();
  ASSERT_TRUE(prod.publish({.payload = "poison"}));
  auto n = c.poll([](const EventView&) { return false; }, 16);
  ASSERT_TRUE(n) << n.error().message();
  EXPECT_EQ(c.stats().dead_lettered, 1u);
  EXPECT_EQ(bus_->dead_letters("t", "g").value().size(), 1u);
}

// At most once, a lease gates the event a handler reads. A member fenced
// while its handler ran (here: its group deleted and made again in the
// same slot) must not clear the new owner's lease when it returns: it did,
// and a producer then overwrote the event under the new owner's handler
// (found by an adversarial pass).
TEST_F(ConsumerTest, AFencedAtMostOnceMemberLeavesTheNewOwnersLeaseAlone) {
  ASSERT_TRUE(bus_->create_topic("t", {.partitions = 1, .ring_bytes = 64 << 10, .default_policy = Policy::kLossless}));
  auto prod = bus_->producer("t", {.deadline = 0ns}).value();
  ASSERT_TRUE(prod.publish({.payload = std::string(1000, 'A'), .partition = 0}));
  const ConsumerOptions o{.group = "g", .policy = Policy::kLossless, .commit_mode = CommitMode::kBeforeHandle};
  auto m1 = bus_->consumer("t", o).value();
  std::atomic<bool> m1_in{false}, m1_go{false};
  Result<std::size_t> r1 = std::size_t{0};
  std::thread t1([&] {
    r1 = m1.poll([&](const EventView&) {
      m1_in = true;
      EXPECT_TRUE(test::wait_until([&] { return m1_go.load(); }, 20));
    }, 1);
  });
  ASSERT_TRUE(test::wait_until([&] { return m1_in.load(); }, 20));
  ASSERT_TRUE(bus_->delete_group("t", "g", /*force=*/true));
  ConsumerOptions o2 = o;
  o2.start = Offset::latest();
  auto m2 = bus_->consumer("t", o2).value();
  ASSERT_TRUE(prod.publish({.payload = std::string(1000, 'B'), .partition = 0}));
  std::string before, after;
  ASSERT_EQ(m2.poll(
                [&](const EventView& e) {
                  before.assign(e.payload_text());
                  // The lease holds the producers back; then m1 returns.
                  while (prod.publish({.payload = std::string(1000, 'C'), .partition = 0})) {
                  }
                  m1_go = true;
                  t1.join();
                  // Nothing more fits while the lease holds.
                  EXPECT_FALSE(prod.publish({.payload = std::string(1000, 'D'), .partition = 0}))
                      << "the producer got past the lease of the event being handled";
                  after.assign(e.payload_text());
                },
                1)
                .value(),
            1u);
  EXPECT_EQ(before, std::string(1000, 'B'));
  EXPECT_EQ(after, before) << "the event changed under its handler";
  // m1 handled its event (at most once, counted): it read a copy, which
  // nothing overwrites, so its poll reports no overwrite (it did, for a
  // while: found by an adversarial pass). It learns its group is gone at
  // its next call.
  EXPECT_TRUE(r1) << r1.error().message();
  auto again = m1.poll([](const EventView&) {}, 1);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, Errc::kNotFound) << again.error().message();
}

// A member that has dead-lettered before keeps a producer on its DLQ; after
// the DLQ topic is deleted and made again (by a join), it writes into the
// new one rather than failing every poll on its closed producer.
TEST_F(ConsumerTest, AMemberDeadLettersIntoItsDlqMadeAgain) {
  ASSERT_TRUE(bus_->create_topic("t", {.partitions = 1, .ring_bytes = 1 << 16}));
  const ConsumerOptions o{.group = "g", .max_deliveries = 1, .retry = {0ms, 2.0, 0ms}};
  auto m1 = bus_->consumer("t", o).value();
  auto prod = bus_->producer("t").value();
  auto refuse = [](const EventView&) { return false; };
  ASSERT_TRUE(prod.publish({.payload = "poison-1"}));
  ASSERT_TRUE(m1.poll(refuse, 16));
  ASSERT_EQ(m1.stats().dead_lettered, 1u);
  ASSERT_TRUE(bus_->delete_topic("t.dlq.g", {.force = true}));
  { auto m2 = bus_->consumer("t", o).value(); }  // its join makes the DLQ again
  ASSERT_TRUE(prod.publish({.payload = "poison-2"}));
  auto n = m1.poll(refuse, 16);
  ASSERT_TRUE(n) << n.error().message();
  EXPECT_EQ(m1.stats().dead_lettered, 2u);
  const auto letters = bus_->dead_letters("t", "g").value();
  ASSERT_EQ(letters.size(), 1u);
  EXPECT_EQ(letters[0].event.payload_text(), "poison-2");
}

TEST_F(ConsumerTest, ASpinningMemberLearnsItsGroupWasDeletedDuringItsPoll) {
  ASSERT_TRUE(bus_->create_topic("t", {.partitions = 1, .ring_bytes = 64 * 1024, .max_event = 4096}));
  auto member = bus_->consumer("t", {.group = "g", .wait = Wait::kBusySpin}).value();
  std::atomic<bool> polling{false};
  Result<std::size_t> n = std::size_t{0};
  std::thread poller([&] {
    polling.store(true);
    n = member.poll([](const EventView&) {}, 16, std::chrono::seconds(60));
  });
  ASSERT_TRUE(test::wait_until([&] { return polling.load(); }, 20));
  ASSERT_TRUE(bus_->delete_group("t", "g", /*force=*/true));
  poller.join();
  ASSERT_FALSE(n) << "the poll returned " << *n << " instead of learning its group was deleted";
  EXPECT_EQ(n.error().code, Errc::kNotFound) << n.error().message();
}

TEST_F(ConsumerTest, LosslessGroupBackPressuresThenReadsEveryAcceptedEvent) {
  constexpr std::uint64_t kRing = 1 << 16;
  constexpr std::uint64_t kMaxEvent = 4096;
  ASSERT_TRUE(bus_->create_topic("t", {.partitions = 1, .ring_bytes = kRing, .max_event = kMaxEvent}));
  auto group = bus_->consumer("t", {.group = "audit", .policy = Policy::kLossless, .commit_mode = CommitMode::kManual})
                   .value();
  auto producer = bus_->producer("t", {.deadline = milliseconds(10)}).value();
  test::SplitMix rng(test::seed("lossless sizes"));
  std::uint64_t accepted = 0, accepted_bytes = 0;
  std::size_t refused_len = 0;  // a payload this long does not fit in what is left
  for (;;) {
    const std::size_t len = rng.in(test::kStampBytes, 1000);
    const std::string payload = test::make_payload(len, {1, 0, accepted});
    auto r = producer.publish({.payload = payload});
    if (!r) {
      ASSERT_EQ(r.error().code, Errc::kBackPressured) << r.error().message();
      EXPECT_NE(r.error().detail.find("partition 0"), std::string::npos) << r.error().message();
      refused_len = len;
      break;
    }
    EXPECT_EQ(r->position, accepted_bytes);
    accepted_bytes += (48 + len + 63) / 64 * 64;
    ++accepted;
    ASSERT_LE(accepted_bytes, kRing) << state_of("t");
  }
  EXPECT_LE(accepted_bytes, kRing);
  const std::uint64_t failed_size = shm::claim_bytes(shm::record_size(0, 0, refused_len));  // what it would have claimed
  EXPECT_GT(accepted_bytes + failed_size, kRing) << "refused although the event fit";
  EXPECT_GT(producer.stats().backpressure_waits, 0u);
  // Still full: nobody has committed. (Asked again with the refused size: a
  // smaller event could fit in the room the refused one did not.)
  auto again = producer.publish({.payload = std::string(refused_len, 'x')});
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, Errc::kBackPressured);

  // The group reads every accepted event intact, in order (zero-copy).
  EXPECT_EQ(drain(group), iota(0, accepted)) << state_of("t");
  // Reading alone does not free the ring (kManual); one commit does.
  ASSERT_FALSE(producer.publish({.payload = std::string(refused_len, 'x')}));
  ASSERT_TRUE(group.commit());
  auto after = producer.publish({.payload = test::make_payload(100, {1, 0, accepted})});
  ASSERT_TRUE(after) << after.error().message() << state_of("t");
  EXPECT_EQ(drain(group), iota(accepted, accepted + 1));
}

// A lossless group created at "earliest" reads the history before it by
// copy (nothing gated it); everything published after the group existed is
// gated. When the history is overwritten under the reader, it resumes at the
// group's floor, where the gated events start, not at beginning(), which
// can be up to max_event past it.
TEST_F(ConsumerTest, LosslessGroupLappedInItsHistoryResumesAtItsFloorAndLosesNothingAfter) {
  constexpr std::uint64_t kRing = 1 << 16;
  constexpr std::uint64_t kMaxEvent = 4096;
  ASSERT_TRUE(bus_->create_topic("t", {.partitions = 1, .ring_bytes = kRing, .max_event = kMaxEvent}));
  auto producer = bus_->producer("t", {.deadline = milliseconds(10)}).value();
  std::uint64_t seq = 0;
  publish_n(producer, 10, &seq, 0);  // history: seqs 0..9, 128 bytes each
  std::vector<GapReport> gaps;
  auto group = bus_->consumer("t", {.group = "audit",
                                    .policy = Policy::kLossless,
                                    .start = Offset::earliest(),
                                    .on_gap = [&](const GapReport& g) { gaps.push_back(g); }})
                   .value();
  std::vector<std::uint64_t> first;
  ASSERT_EQ(group.poll([&](const EventView& e) { first.push_back(test::check_payload(e.payload())->seq); }, 1).value(),
            1u);  // reads seq 0 and commits past it
  ASSERT_EQ(first, iota(0, 1));
  // Fill the ring: the group gates at its floor (the tail when it was
  // created, 1280), so the producer stops there, one ring later.
  const std::uint64_t first_after = seq;
  for (;;) {
    const std::string payload = test::make_payload(40, {1, 0, seq});
    auto r = producer.publish({.payload = payload, .partition = 0});
    if (!r) {
      ASSERT_EQ(r.error().code, Errc::kBackPressured) << r.error().message() << state_of("t");
      break;
    }
    ++seq;
    ASSERT_LT(seq, 10 + kRing / 128 + 1) << "the group did not gate" << state_of("t");
  }
  // Seqs 1..9 (history, below the floor) were overwritten; every event
  // published after the group existed arrives.
  const std::vector<std::uint64_t> got = drain(group);
  EXPECT_EQ(got, iota(first_after, seq)) << state_of("t");
  ASSERT_EQ(gaps.size(), 1u) << state_of("t");
  EXPECT_EQ(gaps[0].from, 128u);
  EXPECT_EQ(gaps[0].to, 10u * 128) << "resumed past the floor";
}

TEST_F(ConsumerTest, LossyReadersCountExactGapsAfterBeingLappedTwice) {
  constexpr std::uint64_t kRing = 1 << 16;
  constexpr std::uint64_t kMaxEvent = 4096;
  ASSERT_TRUE(bus_->create_topic("t", {.partitions = 1, .ring_bytes = kRing, .max_event = kMaxEvent}));
  auto lossy = bus_->consumer("t", {.group = "dash", .policy = Policy::kLossy}).value();
  auto tail_reader = bus_->consumer("t", {.start = Offset::earliest()}).value();
  auto producer = bus_->producer("t", {.deadline = milliseconds(10)}).value();
  test::SplitMix rng(test::seed("lossy sizes"));

  // Both readers stop at position 0 while the producer laps them twice: wait
  // on the tail (describe_topic), not on time. A lossy group never gates, so
  // every publish succeeds.
  std::uint64_t seq = 0;
  while (bus_->describe_topic("t").value().partition_info[0].tail < 2 * kRing) {
    const std::string payload = test::make_payload(rng.in(test::kStampBytes, 2000), {1, 0, seq});
    auto r = producer.publish({.payload = payload});
    ASSERT_TRUE(r) << r.error().message() << state_of("t");
    ++seq;
  }
  const auto info = bus_->describe_topic("t").value();
  const std::uint64_t tail = info.partition_info[0].tail;
  const std::uint64_t beginning = info.partition_info[0].beginning;
  ASSERT_GE(beginning, tail - kRing + kMaxEvent);

  for (Consumer* c : {&lossy, &tail_reader}) {
    SCOPED_TRACE(c == &lossy ? "lossy group" : "group-less reader");
    std::uint64_t delivered_bytes = 0, first_pos = UINT64_MAX;
    std::int64_t last_seq = -1;
    std::uint64_t bad = 0, n = 0;
    for (;;) {
      auto got = c->poll(
          [&](const EventView& e) {
            auto s = test::check_payload(e.payload());
            if (!s) {
              ++bad;
              return;
            }
            if (first_pos == UINT64_MAX) first_pos = e.position();
            EXPECT_GT(static_cast<std::int64_t>(s->seq), last_seq) << "order or duplicate at " << e.position();
            last_seq = static_cast<std::int64_t>(s->seq);
            delivered_bytes += e.next_position() - e.position();
            ++n;
          },
          256);
      ASSERT_TRUE(got) << got.error().message();
      if (*got == 0) break;
    }
    const ConsumerStats st = c->stats();
    EXPECT_EQ(bad, 0u) << "events failing their checksum";
    EXPECT_GT(n, 0u);
    EXPECT_EQ(first_pos, beginning) << "resynchronised at the oldest retained boundary";
    EXPECT_EQ(last_seq, static_cast<std::int64_t>(seq) - 1) << "read up to the tail";
    EXPECT_GE(st.gap_bytes, kRing - kMaxEvent);
    EXPECT_EQ(st.gaps, 1u);
    // Exact in bytes: everything below the tail was either delivered or
    // counted as lost.
    EXPECT_EQ(delivered_bytes + st.gap_bytes, tail) << state_of("t");
    EXPECT_EQ(st.events, n);
  }
  // The lossy group's gap is visible in describe_topic too; it never gated.
  const auto after = bus_->describe_topic("t").value();
  ASSERT_EQ(after.groups.size(), 1u);
  EXPECT_EQ(after.groups[0].policy, Policy::kLossy);
  EXPECT_FALSE(after.groups[0].gating);
  EXPECT_EQ(after.groups[0].partitions[0].gap_bytes, lossy.stats().gap_bytes);
  EXPECT_EQ(after.groups[0].partitions[0].gaps, 1u);
  EXPECT_EQ(after.groups[0].partitions[0].committed, tail);
}

// ---------------------------------------------------------------------------
// Commit modes
// ---------------------------------------------------------------------------

// IdempotentConsumer::once remembers an id only after its effect succeeded:
// with first_time() (the header's old pattern) an event whose handler failed
// once was remembered, and its retry was taken for a redelivery and acked
// without its effect (found by an exploratory pass: 9 effects of 10).
TEST_F(ConsumerTest, IdempotentOnceRetriesAFailedEffectAndSkipsARedelivery) {
  ASSERT_TRUE(bus_->create_topic("t", {.partitions = 1, .ring_bytes = 1 << 16}));
  auto prod = bus_->producer("t").value();
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(prod.publish({.payload = std::to_string(i)}));
  auto c = bus_->consumer("t", {.group = "g", .retry = {1ms, 2.0, 1ms}}).value();
  IdempotentConsumer seen;
  std::vector<std::string> effects;
  int calls = 0;
  bool failed_once = false, thrown_once = false;
  for (int round = 0; round < 50 && effects.size() < 10; ++round) {
    auto n = c.poll(
        [&](const EventView& e) {
          return seen.once(e, [&]() -> HandlerResult {
            ++calls;
            if (e.payload_text() == "4" && !failed_once) {
              failed_once = true;
              return nack("the sink was busy");
            }
            if (e.payload_text() == "7" && !thrown_once) {
              thrown_once = true;
              throw std::runtime_error("the sink threw");
            }
            effects.emplace_back(e.payload_text());
            return {};
          });
        },
        256, 10ms);
    ASSERT_TRUE(n) << n.error().message();
  }
  EXPECT_EQ(effects, (std::vector<std::string>{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}));
  EXPECT_EQ(calls, 12);
  EXPECT_EQ(c.stats().failures, 2u);
  EXPECT_EQ(c.stats().dead_lettered, 0u);
  // A redelivery (the same ids again, as after a rebalance back to this
  // process) has no second effect.
  ASSERT_TRUE(c.seek(0, Offset::earliest()));
  ASSERT_EQ(c.poll([&](const EventView& e) { return seen.once(e, [&] { effects.emplace_back("again"); }); }, 256)
                .value(),
            10u);
  EXPECT_EQ(effects.size(), 10u);
  EXPECT_EQ(seen.size(0), 10u);
}

TEST_F(ConsumerTest, AfterHandleCommitsEachPolledBatchAfterItsHandlers) {
  ASSERT_TRUE(bus_->create_topic("t", {.partitions = 1, .ring_bytes = 1 << 16, .max_event = 1024}));
  auto producer = bus_->producer("t").value();
  std::uint64_t seq = 0;
  publish_n(producer, 10, &seq);
  auto c = bus_->consumer("t", {.group = "g"}).value();  // kAfterHandle is the default
  std::uint64_t last_next = 0;
  auto n = c.poll(
      [&](const EventView& e) {
        // Not yet committed while the batch is being handled.
        EXPECT_EQ(c.committed(0).value(), 0u);
        last_next = e.next_position();
      },
      4);
  ASSERT_TRUE(n);
  EXPECT_EQ(*n, 4u);
  EXPECT_EQ(c.committed(0).value(), last_next);
  EXPECT_EQ(c.position(0), last_next);
}

// burst_settle: after a drain of 16 or more, the next poll that finds
// nothing pauses (at most its timeout) before it looks again. Nothing is
// lost or held back by it: the empty poll times out with 0, the events
// published after it are delivered in order, and with burst_settle = 0 the
// same sequence behaves the same.
TEST_F(ConsumerTest, AnEmptyPollAfterABurstSettlesAndLosesNothing) {
  ASSERT_TRUE(bus_->create_topic("t", {.partitions = 1, .ring_bytes = 1 << 16, .max_event = 1024}));
  auto producer = bus_->producer("t").value();
  std::uint64_t seq = 0;
  for (const auto settle : {std::chrono::nanoseconds(1500), std::chrono::nanoseconds(50'000'000),
                            std::chrono::nanoseconds(0)}) {
    const std::string group = "g" + std::to_string(settle.count());
    auto c = bus_->consumer("t", {.group = group, .wait = Wait::kBusySpin, .burst_settle = settle}).value();
    std::uint64_t expect = 0, bad = 0;
    auto check = [&](const EventView& e) {
      auto s = test::check_payload(e.payload());
      bad += !s || s->seq != expect++;
    };
    const std::uint64_t before = seq;
    publish_n(producer, 40, &seq);  // everything this group has not read: the ones before, then 40
    std::size_t got = 0;
    while (got < seq) {  // a burst (every event from the first one on)
      auto n = c.poll(check, 256);
      ASSERT_TRUE(n) << n.error().message();
      ASSERT_GT(*n, 0u) << "events left: " << seq - got << state_of("t");
      got += *n;
    }
    // Empty: settles (the 50 ms one only up to the 2 ms timeout), then times out.
    auto empty = c.poll(check, 256, std::chrono::milliseconds(2));
    ASSERT_TRUE(empty) << empty.error().message();
    EXPECT_EQ(*empty, 0u);
    publish_n(producer, 20, &seq);
    while (got < seq) {
      auto n = c.poll(check, 256, std::chrono::seconds(5));
      ASSERT_TRUE(n) << n.error().message();
      ASSERT_GT(*n, 0u) << "events left: " << seq - got << state_of("t");
      got += *n;
    }
    EXPECT_EQ(bad, 0u) << "burst_settle " << settle.count() << " ns (from " << before << ")";
    EXPECT_EQ(expect, seq);
  }
}

TEST_F(ConsumerTest, ManualCommitMovesTheCursorOnlyWhenAsked) {
  ASSERT_TRUE(bus_->create_topic("t", {.partitions = 1, .ring_bytes = 1 << 16, .max_event = 1024}));
  auto producer = bus_->producer("t").value();
  std::uint64_t seq = 0;
  publish_n(producer, 10, &seq);
  auto c = bus_->consumer("t", {.group = "g", .commit_mode = CommitMode::kManual}).value();
  std::vector<std::uint64_t> next_positions;
  ASSERT_EQ(c.poll([&](const EventView& e) { next_positions.push_back(e.next_position()); }, 6).value(), 6u);
  EXPECT_EQ(c.committed(0).value(), 0u);
  // An explicit position of a handled event.
  ASSERT_TRUE(c.commit(0, next_positions[1]));
  EXPECT_EQ(c.committed(0).value(), next_positions[1]);
  // Not past what was read, not backwards, not between boundaries.
  auto past = c.commit(0, next_positions[5] + 64);
  ASSERT_FALSE(past);
  EXPECT_EQ(past.error().code, Errc::kInvalidArgument);
  EXPECT_NE(past.error().detail.find(std::to_string(next_positions[5] + 64)), std::string::npos);
  EXPECT_FALSE(c.commit(0, 0));
  EXPECT_FALSE(c.commit(0, next_positions[2] + 8));
  EXPECT_FALSE(c.commit(7, next_positions[2])) << "partition 7 does not exist";
  // commit() commits everything handled.
  ASSERT_TRUE(c.commit());
  EXPECT_EQ(c.committed(0).value(), next_positions[5]);
  ASSERT_TRUE(c.commit());  // nothing pending: a no-op
  EXPECT_EQ(c.committed(0).value(), next_positions[5]);
}

TEST_F(ConsumerTest, BeforeHandleCommitsFirstAndNeverRedelivers) {
  ASSERT_TRUE(bus_->create_topic("t", {.partitions = 1, .ring_bytes = 1 << 16, .max_event = 1024}));
  auto producer = bus_->producer("t").value();
  std::uint64_t seq = 0;
  publish_n(producer, 5, &seq);
  auto c = bus_->consumer("t", {.group = "g", .commit_mode = CommitMode::kBeforeHandle}).value();
  std::vector<std::uint64_t> seen;
  for (int round = 0; round < 10; ++round) {
    auto n = c.poll(
        [&](const EventView& e) {
          // At-most-once: the cursor is already past this event.
          EXPECT_EQ(c.committed(0).value(), e.next_position());
          EXPECT_EQ(e.delivery(), 1u);
          seen.push_back(test::check_payload(e.payload())->seq);
          return seen.size() != 2;  // the second event's handler fails
        },
        256);
    ASSERT_TRUE(n) << n.error().message();
    if (*n == 0) break;
  }
  EXPECT_EQ(seen, iota(0, 5)) << "the failed event is not delivered again";
  EXPECT_EQ(c.committed(0).value(), bus_->describe_topic("t").value().partition_info[0].tail);
  // stats: events counts the handled ones only, failures the other.
  EXPECT_EQ(c.stats().events, 4u);
  EXPECT_EQ(c.stats().failures, 1u);
}

// ---------------------------------------------------------------------------
// Seek, resume, fan-out, redelivery
// ---------------------------------------------------------------------------

TEST_F(ConsumerTest, SeekToEarliestLatestPositionAndTime) {
  ASSERT_TRUE(bus_->create_topic("t", {.partitions = 1, .ring_bytes = 1 << 16, .max_event = 1024}));
  auto producer = bus_->producer("t").value();
  std::uint64_t seq = 0;
  publish_n(producer, 10, &seq, 0, /*time_base=*/1000);  // event i at time 1000 * (i + 1)
  auto group = bus_->consumer("t", {.group = "g", .commit_mode = CommitMode::kManual}).value();
  auto reader = bus_->consumer("t", {.start = Offset::latest()}).value();
  std::vector<std::uint64_t> positions;
  {
    auto scout = bus_->consumer("t").value();
    ASSERT_TRUE(scout.poll([&](const EventView& e) { positions.push_back(e.position()); }, 100));
  }
  ASSERT_EQ(positions.size(), 10u);
  const std::uint64_t tail = bus_->describe_topic("t").value().partition_info[0].tail;

  for (Consumer* c : {&group, &reader}) {
    SCOPED_TRACE(c == &group ? "group member" : "group-less reader");
    ASSERT_TRUE(c->seek(Offset::latest()));
    EXPECT_EQ(c->position(0), tail);
    EXPECT_TRUE(drain(*c).empty());
    if (c == &group) {
      EXPECT_EQ(c->committed(0).value(), tail);
    }

    ASSERT_TRUE(c->seek(Offset::earliest()));  // a group seeking back lowers its gate
    EXPECT_EQ(drain(*c), iota(0, 10));

    ASSERT_TRUE(c->seek(0, Offset::at(positions[5])));
    EXPECT_EQ(drain(*c), iota(5, 10));
    if (c == &group) {
      EXPECT_EQ(c->committed(0).value(), positions[5]);
    }

    ASSERT_TRUE(c->seek(Offset::at_time(5500)));  // the first event at or after 5500 ns: time 6000
    EXPECT_EQ(drain(*c), iota(5, 10));
    ASSERT_TRUE(c->seek(Offset::at_time(1000)));
    EXPECT_EQ(drain(*c), iota(0, 10));
    ASSERT_TRUE(c->seek(Offset::at_time(1'000'000)));  // after every event: the tail
    EXPECT_EQ(c->position(0), tail);
    EXPECT_TRUE(drain(*c).empty());
    ASSERT_TRUE(c->seek(0, Offset::at(tail)));  // the tail itself is a boundary
  }
  ASSERT_TRUE(group.seek(Offset::earliest()));
  EXPECT_EQ(group.committed(0).value(), 0u) << "a seek moves a group's committed cursor";
}

TEST_F(ConsumerTest, ResumesAtTheCommittedCursorAfterRecreation) {
  ASSERT_TRUE(bus_->create_topic("t", {.partitions = 2, .ring_bytes = 1 << 16, .max_event = 1024}));
  auto producer = bus_->producer("t").value();
  std::uint64_t seq = 0;
  publish_n(producer, 10, &seq, 0);
  publish_n(producer, 10, &seq, 1);
  std::vector<std::uint64_t> first;
  {
    auto c = bus_->consumer("t", {.group = "g", .commit_mode = CommitMode::kManual}).value();
    ASSERT_EQ(c.assignment().size(), 2u);
    ASSERT_EQ(c.poll([&](const EventView& e) { first.push_back(test::check_payload(e.payload())->seq); }, 7).value(),
              7u);
    ASSERT_TRUE(c.commit());
    // Read further but do not commit: those are read again after the restart.
    ASSERT_EQ(c.poll([](const EventView&) {}, 3).value(), 3u);
  }
  // A new member of the same group (its start option applies to new groups
  // only) resumes at the committed cursors.
  auto c = bus_->consumer("t", {.group = "g", .start = Offset::latest()}).value();
  std::vector<std::uint64_t> rest = drain(c);
  std::vector<std::uint64_t> all = first;
  all.insert(all.end(), rest.begin(), rest.end());
  std::sort(all.begin(), all.end());
  EXPECT_EQ(all, iota(0, 20)) << "nothing lost or duplicated across the restart";
  // ...and its own batches were committed (kAfterHandle).
  const auto info = bus_->describe_topic("t").value();
  for (const auto& gp : info.groups[0].partitions) EXPECT_EQ(gp.lag_bytes, 0u) << "partition " << gp.partition;
}

// publish_batch packs its records 16-byte aligned, so a group may stop
// between two records at a position that is not a multiple of 64: a poll's
// max, a reset, a new group's start. Its cursor must name that boundary
// exactly (cursors were once kept in units of 64, which rounded 240 down to
// 192, inside a record: the group never read the partition again).
TEST_F(ConsumerTest, AGroupStopsBetweenTwoRecordsOfABatchAndResumesThere) {
  ASSERT_TRUE(bus_->create_topic("t", {.partitions = 1, .ring_bytes = 1 << 16, .max_event = 1024}));
  auto producer = bus_->producer("t").value();
  std::vector<std::string> payloads;
  for (std::uint64_t i = 0; i < 10; ++i) payloads.push_back(test::make_payload(test::kStampBytes, {1, 0, i}));
  std::vector<Message> batch;
  for (const std::string& p : payloads) batch.push_back({.payload = p, .partition = 0});
  auto sent = producer.publish_batch(batch);
  ASSERT_TRUE(sent) << sent.error().message();
  ASSERT_EQ(sent->published, 10u);

  std::vector<std::uint64_t> positions;  // of each seq
  {
    auto c = bus_->consumer("t", {.group = "g"}).value();  // kAfterHandle: commits after the poll
    ASSERT_EQ(c.poll([&](const EventView& e) { positions.push_back(e.position()); }, 3).value(), 3u);
  }
  // The records are 80 bytes (a 48-byte header and 32 bytes), packed.
  ASSERT_EQ(positions, (std::vector<std::uint64_t>{0, 80, 160}));
  // A new member resumes at 240, not at 192.
  {
    auto c = bus_->consumer("t", {.group = "g"}).value();
    EXPECT_EQ(drain(c), iota(3, 10)) << state_of("t");
  }
  // A reset to a packed boundary (seq 5 at 400) delivers from there.
  auto plan = bus_->reset_group("t", "g", 0, Offset::at(5 * 80));
  ASSERT_TRUE(plan) << plan.error().message();
  {
    auto c = bus_->consumer("t", {.group = "g"}).value();
    EXPECT_EQ(drain(c), iota(5, 10)) << state_of("t");
  }
  // So does a new group that starts at one (seq 7 at 560).
  auto h = bus_->consumer("t", {.group = "h", .start = Offset::at(7 * 80)}).value();
  EXPECT_EQ(drain(h), iota(7, 10)) << state_of("t");
  // And an explicit commit of one, read back by the next member.
  {
    auto c = bus_->consumer("t", {.group = "k", .commit_mode = CommitMode::kManual}).value();
    ASSERT_EQ(c.poll([](const EventView&) {}, 1).value(), 1u);
    ASSERT_TRUE(c.commit(0, 80));
  }
  auto k = bus_->consumer("t", {.group = "k"}).value();
  EXPECT_EQ(drain(k), iota(1, 10)) << state_of("t");
}

// next() returns an owned copy that the caller handles after the call, so
// in an at-least-once group its event is committed only once the caller
// comes back (the next next(), poll(), commit() or seek(), or a normal
// destruction). Committed when next() returned, an event whose process died
// before handling it was never delivered again (found by an exploratory
// pass).
TEST_F(ConsumerTest, NextCommitsItsEventOnlyOnceTheCallerComesBack) {
  ASSERT_TRUE(bus_->create_topic("t", {.partitions = 1, .ring_bytes = 1 << 16, .max_event = 1024}));
  auto producer = bus_->producer("t").value();
  std::uint64_t seq = 0;
  publish_n(producer, 5, &seq, 0);
  std::vector<std::uint64_t> next_positions;
  {
    auto c = bus_->consumer("t", {.group = "g"}).value();
    auto e0 = c.next();
    ASSERT_TRUE(e0) << e0.error().message();
    EXPECT_EQ(test::check_payload(e0->payload())->seq, 0u);
    EXPECT_EQ(c.committed(0).value(), 0u) << "not handled yet: the caller has it";
    auto e1 = c.next();
    ASSERT_TRUE(e1) << e1.error().message();
    EXPECT_EQ(c.committed(0).value(), e0->next_position()) << "the caller came back for e1: e0 is handled";
    ASSERT_TRUE(c.commit());
    EXPECT_EQ(c.committed(0).value(), e1->next_position()) << "commit() covers the event the caller has";
    auto e2 = c.next();
    ASSERT_TRUE(e2) << e2.error().message();
    auto n = c.poll([&](const EventView&) {}, 1);
    ASSERT_TRUE(n) << n.error().message();
    EXPECT_EQ(*n, 1u);
    next_positions = {e2->next_position()};
    auto e4 = c.next();
    ASSERT_TRUE(e4) << e4.error().message();
    EXPECT_EQ(test::check_payload(e4->payload())->seq, 4u);
    next_positions.push_back(e4->next_position());
  }  // a normal destruction: e4 was handled
  auto again = bus_->consumer("t", {.group = "g"}).value();
  EXPECT_EQ(again.committed(0).value(), next_positions.back()) << state_of("t");
  EXPECT_TRUE(drain(again).empty());
}

// A second thread's next(), refused while the first thread is inside
// next(), must not change how the first one's event is handled: it cleared
// the pull mark, and the first thread's event was committed before next()
// returned (found by an adversarial pass).
TEST_F(ConsumerTest, ARefusedNextFromAnotherThreadLeavesTheFirstOnesEventInFlight) {
  ASSERT_TRUE(bus_->create_topic("t", {.partitions = 1, .ring_bytes = 1 << 16, .max_event = 1024}));
  auto producer = bus_->producer("t").value();
  auto c = bus_->consumer("t", {.group = "g", .wait = Wait::kSpinYield}).value();
  Result<Event> first = fail(Errc::kIo, "not called");
  std::thread t([&] {
    // Refused itself while the main thread's probe below holds the consumer:
    // again, until it is the one inside.
    do {
      first = c.next(std::chrono::seconds(20));
    } while (!first && first.error().code == Errc::kInvalidArgument);
  });
  // Refused once the first thread holds the consumer (a next() before that
  // finds nothing and times out at once).
  std::string refusal;
  EXPECT_TRUE(test::wait_until(
      [&] {
        auto second = c.next();
        if (second || second.error().code != Errc::kInvalidArgument) return false;
        refusal = second.error().message();
        return true;
      },
      20, [] { return std::string("the second thread's next() was never refused"); }));
  std::uint64_t seq = 0;
  publish_n(producer, 1, &seq, 0);
  t.join();
  ASSERT_TRUE(first) << first.error().message();
  EXPECT_NE(refusal.find("one thread at a time"), std::string::npos) << refusal;
  EXPECT_EQ(c.committed(0).value(), 0u) << "the event the first thread has is not handled yet";
  ASSERT_TRUE(c.commit());
  EXPECT_EQ(c.committed(0).value(), first->next_position());
}

// The event next() returned last is not committed when the consumer is
// destroyed by an exception (its handling may be what threw): the next
// member gets it again, as a second delivery. kManual is the caller's.
TEST_F(ConsumerTest, NextEventIsDeliveredAgainWhenAnExceptionEndsTheConsumer) {
  ASSERT_TRUE(bus_->create_topic("t", {.partitions = 1, .ring_bytes = 1 << 16, .max_event = 1024}));
  auto producer = bus_->producer("t").value();
  std::uint64_t seq = 0;
  publish_n(producer, 3, &seq, 0);
  std::uint64_t first_next = 0;
  try {
    auto c = bus_->consumer("t", {.group = "g"}).value();
    auto e0 = c.next();
    ASSERT_TRUE(e0) << e0.error().message();
    auto e1 = c.next();
    ASSERT_TRUE(e1) << e1.error().message();
    first_next = e0->next_position();
    throw std::runtime_error("handling e1 failed");
  } catch (const std::runtime_error&) {
  }
  auto again = bus_->consumer("t", {.group = "g"}).value();
  EXPECT_EQ(again.committed(0).value(), first_next) << state_of("t");
  auto e1 = again.next();
  ASSERT_TRUE(e1) << e1.error().message();
  EXPECT_EQ(test::check_payload(e1->payload())->seq, 1u);
  EXPECT_EQ(e1->delivery(), 2u) << "its first delivery ended in the caller's exception";
  ASSERT_TRUE(again.commit());

  // kManual: next() moves nothing; commit() is the caller's, as with poll().
  auto m = bus_->consumer("t", {.group = "m", .commit_mode = CommitMode::kManual}).value();
  ASSERT_TRUE(m.next());
  ASSERT_TRUE(m.next());
  EXPECT_EQ(m.committed(0).value(), 0u);
}

// poll(), next() and seek() from inside the consumer's own handler are
// refused: a nested poll delivered the event being handled again (and the
// outer poll then delivered the nested poll's events a second time), and a
// seek was undone by the poll when the handler returned.
TEST_F(ConsumerTest, PollNextAndSeekFromInsideAHandlerAreRefused) {
  ASSERT_TRUE(bus_->create_topic("t", {.partitions = 1, .ring_bytes = 1 << 16, .max_event = 1024}));
  auto producer = bus_->producer("t").value();
  std::uint64_t seq = 0;
  publish_n(producer, 4, &seq, 0);
  auto c = bus_->consumer("t", {.group = "g"}).value();
  std::vector<std::uint64_t> seen;
  std::vector<std::string> nested;  // the error code of each nested call ("ok" if it succeeded)
  auto n = c.poll(
      [&](const EventView& e) {
        seen.push_back(test::check_payload(e.payload())->seq);
        auto inner = c.poll([&](const EventView&) { ADD_FAILURE() << "nested delivery"; }, 2);
        nested.push_back(inner ? "ok" : std::string(to_string(inner.error().code)));
        auto one = c.next();
        nested.push_back(one ? "ok" : std::string(to_string(one.error().code)));
        auto s = c.seek(0, Offset::earliest());
        nested.push_back(s ? "ok" : std::string(to_string(s.error().code)));
        auto all = c.seek(Offset::earliest());
        nested.push_back(all ? "ok" : std::string(to_string(all.error().code)));
      },
      2);
  ASSERT_TRUE(n) << n.error().message();
  EXPECT_EQ(*n, 2u);
  EXPECT_EQ(seen, iota(0, 2));
  EXPECT_EQ(nested, std::vector<std::string>(8, std::string(to_string(Errc::kInvalidArgument))));
  // After the poll, all of them work again, and nothing was delivered twice.
  EXPECT_EQ(drain(c), iota(2, 4));
  ASSERT_TRUE(c.seek(0, Offset::earliest()));
  EXPECT_EQ(drain(c), iota(0, 4));
}

// Without heraldd, a member takes free partitions itself (at creation, and
// a departed member's later); on_assigned hears of both, as it does of
// heraldd's assignments.
TEST_F(ConsumerTest, DaemonlessMembersAreToldOfThePartitionsTheyTake) {
  ASSERT_TRUE(bus_->create_topic("t", {.partitions = 2, .ring_bytes = 1 << 16, .max_event = 1024}));
  std::vector<std::vector<std::uint32_t>> a_calls, b_calls;
  auto opts = [](std::vector<std::vector<std::uint32_t>>* calls) {
    ConsumerOptions o;
    o.group = "g";
    o.on_assigned = [calls](std::span<const std::uint32_t> ps) { calls->emplace_back(ps.begin(), ps.end()); };
    return o;
  };
  auto a = bus_->consumer("t", opts(&a_calls));
  ASSERT_TRUE(a) << a.error().message();
  EXPECT_EQ(a_calls, (std::vector<std::vector<std::uint32_t>>{{0, 1}}));
  auto b = bus_->consumer("t", opts(&b_calls)).value();
  EXPECT_TRUE(b_calls.empty()) << "nothing was free";
  a = fail(Errc::kClosed, "left");
  ASSERT_TRUE(test::wait_until(
      [&] {
        (void)b.poll([](const EventView&) {}, 16, milliseconds(10));
        return b.assignment().size() == 2;
      },
      20, [&] { return "b owns " + std::to_string(b.assignment().size()) + " partitions"; }));
  EXPECT_EQ(b_calls, (std::vector<std::vector<std::uint32_t>>{{0, 1}}));
}

TEST_F(ConsumerTest, EveryGroupSeesEveryEvent) {
  ASSERT_TRUE(bus_->create_topic("t", {.partitions = 4, .ring_bytes = 1 << 16, .max_event = 1024}));
  auto shipping = bus_->consumer("t", {.group = "shipping", .policy = Policy::kLossless}).value();
  auto billing = bus_->consumer("t", {.group = "billing"}).value();
  auto producer = bus_->producer("t").value();
  std::vector<std::string> keys, payloads;
  for (int i = 0; i < 200; ++i) {
    const std::string key = "k" + std::to_string(i % 17);
    const std::string payload = test::make_payload(64, {1, 0, std::uint64_t(i)});
    ASSERT_TRUE(producer.publish({.key = key, .payload = payload}));
  }
  // A third group created afterwards from the earliest position sees them too.
  auto late = bus_->consumer("t", {.group = "late", .start = Offset::earliest()}).value();
  for (Consumer* c : {&shipping, &billing, &late}) {
    auto seqs = drain(*c);
    std::sort(seqs.begin(), seqs.end());
    EXPECT_EQ(seqs, iota(0, 200)) << c->group();
  }
}

TEST_F(ConsumerTest, FailedHandlerRedeliversTheSameEventInOrder) {
  ASSERT_TRUE(bus_->create_topic("t", {.partitions = 1, .ring_bytes = 1 << 16, .max_event = 1024}));
  auto producer = bus_->producer("t").value();
  std::uint64_t seq = 0;
  publish_n(producer, 6, &seq);
  // No backoff between deliveries (the default waits 100 ms, then 200 ms).
  auto c = bus_->consumer("t", {.group = "g", .retry = {std::chrono::milliseconds(0), 1.0, std::chrono::milliseconds(0)}})
               .value();
  struct Delivery {
    std::uint64_t seq;
    std::uint32_t delivery;
  };
  std::vector<Delivery> log;
  int calls_on_2 = 0;
  for (int round = 0; round < 20; ++round) {
    auto n = c.poll(
        [&](const EventView& e) -> HandlerResult {
          const std::uint64_t s = test::check_payload(e.payload())->seq;
          log.push_back({s, e.delivery()});
          if (s == 2) {
            ++calls_on_2;
            if (calls_on_2 == 1) return HandlerResult::failure("not yet");
            if (calls_on_2 == 2) throw std::runtime_error("handler blew up");
          }
          if (s == 4 && e.delivery() == 1) return HandlerResult{false, "once more"};
          return HandlerResult::success();
        },
        256);
    ASSERT_TRUE(n) << n.error().message();
    if (*n == 0 && log.size() >= 9) break;
  }
  const std::vector<std::pair<std::uint64_t, std::uint32_t>> want = {{0, 1}, {1, 1}, {2, 1}, {2, 2}, {2, 3},
                                                                     {3, 1}, {4, 1}, {4, 2}, {5, 1}};
  ASSERT_EQ(log.size(), want.size());
  for (std::size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(log[i].seq, want[i].first) << "delivery " << i;
    EXPECT_EQ(log[i].delivery, want[i].second) << "delivery " << i;
  }
  EXPECT_EQ(c.committed(0).value(), bus_->describe_topic("t").value().partition_info[0].tail);

  // bool handlers: false is a failure too, redelivered with delivery() + 1.
  publish_n(producer, 1, &seq);
  std::vector<std::uint32_t> deliveries;
  for (int round = 0; round < 5 && deliveries.size() < 3; ++round) {
    ASSERT_TRUE(c.poll(
        [&](const EventView& e) {
          deliveries.push_back(e.delivery());
          return e.delivery() >= 3;
        },
        256));
  }
  EXPECT_EQ(deliveries, (std::vector<std::uint32_t>{1, 2, 3}));
}

TEST_F(ConsumerTest, NextPullsOneEventOrTimesOut) {
  ASSERT_TRUE(bus_->create_topic("t", {.partitions = 1, .ring_bytes = 1 << 16, .max_event = 1024}));
  auto c = bus_->consumer("t", {.group = "g", .wait = Wait::kSpinYield}).value();
  auto none = c.next(milliseconds(1));
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code, Errc::kTimeout);
  auto producer = bus_->producer("t").value();
  ASSERT_TRUE(producer.publish({.type = "One", .payload = "1"}));
  ASSERT_TRUE(producer.publish({.type = "Two", .payload = "2"}));
  auto one = c.next();
  ASSERT_TRUE(one) << one.error().message();
  EXPECT_EQ(one->type(), "One");
  auto two = c.next();
  ASSERT_TRUE(two) << two.error().message();
  EXPECT_EQ(two->type(), "Two");
  // The caller handles `two` after next() returned: only `one` is committed.
  EXPECT_EQ(c.committed(0).value(), one->next_position());
  ASSERT_TRUE(c.commit());
  EXPECT_EQ(c.committed(0).value(), two->next_position());
}

// ---------------------------------------------------------------------------
// describe_topic
// ---------------------------------------------------------------------------

TEST_F(ConsumerTest, DescribeTopicReportsTailsBeginningsEventsGroupsAndLag) {
  constexpr std::uint64_t kRing = 1 << 14;
  ASSERT_TRUE(bus_->create_topic("t", {.partitions = 2, .ring_bytes = kRing, .max_event = 1024,
                                       .default_policy = Policy::kLossless}));
  auto audit = bus_->consumer("t", {.group = "audit", .commit_mode = CommitMode::kManual}).value();
  auto dash = bus_->consumer("t", {.group = "dash", .policy = Policy::kLossy}).value();
  auto producer = bus_->producer("t").value();
  std::uint64_t seq = 0;
  publish_n(producer, 3, &seq, 0, 1000);  // 128-byte records (48-byte header + 40-byte payload, padded)
  publish_n(producer, 2, &seq, 1, 1000);
  const std::uint64_t rec = (48 + 40 + 63) / 64 * 64;

  std::vector<std::uint64_t> p0_next;
  ASSERT_EQ(audit.poll(
                  [&](const EventView& e) {
                    if (e.partition() == 0) p0_next.push_back(e.next_position());
                  },
                  100)
                .value(),
            5u);
  ASSERT_EQ(p0_next.size(), 3u);
  ASSERT_TRUE(audit.commit(0, p0_next[1]));  // two of partition 0's three events

  auto info = bus_->describe_topic("t");
  ASSERT_TRUE(info) << info.error().message();
  EXPECT_EQ(info->name, "t");
  EXPECT_GT(info->incarnation, 0u);
  EXPECT_EQ(info->partitions, 2u);
  EXPECT_EQ(info->ring_bytes, kRing);
  EXPECT_EQ(info->max_event, 1024u);
  EXPECT_EQ(info->default_policy, Policy::kLossless);
  EXPECT_GT(info->created_ns, 0u);
  ASSERT_EQ(info->partition_info.size(), 2u);
  EXPECT_EQ(info->partition_info[0].tail, 3 * rec);
  EXPECT_EQ(info->partition_info[1].tail, 2 * rec);
  EXPECT_EQ(info->partition_info[0].events, 3u);
  EXPECT_EQ(info->partition_info[1].events, 2u);
  EXPECT_EQ(info->partition_info[0].bytes, 3 * rec);
  EXPECT_EQ(info->partition_info[0].beginning, 0u);
  EXPECT_EQ(info->partition_info[0].beginning_time_ns, 1000u);  // event seq 0
  EXPECT_EQ(info->partition_info[1].beginning_time_ns, 4000u);  // event seq 3
  EXPECT_EQ(info->partition_info[0].aborted_records, 0u);
  ASSERT_EQ(info->groups.size(), 2u);
  const GroupInfo& a = info->groups[0].name == "audit" ? info->groups[0] : info->groups[1];
  const GroupInfo& d = info->groups[0].name == "audit" ? info->groups[1] : info->groups[0];
  EXPECT_EQ(a.name, "audit");
  EXPECT_EQ(a.policy, Policy::kLossless);  // the topic's default
  EXPECT_TRUE(a.gating);
  EXPECT_EQ(a.members, 1u);
  ASSERT_EQ(a.partitions.size(), 2u);
  EXPECT_EQ(a.partitions[0].committed, 2 * rec);
  EXPECT_EQ(a.partitions[0].lag_bytes, rec);
  EXPECT_EQ(a.partitions[1].committed, 0u);
  EXPECT_EQ(a.partitions[1].lag_bytes, 2 * rec);
  EXPECT_EQ(d.name, "dash");
  EXPECT_EQ(d.policy, Policy::kLossy);
  EXPECT_FALSE(d.gating);
  EXPECT_EQ(d.partitions[0].lag_bytes, 3 * rec);

  // The member leaves: the group stays, with no members.
  {
    auto leaving = std::move(audit);
  }
  auto lossy_only = bus_->describe_topic("t").value();
  EXPECT_EQ(lossy_only.groups[0].name == "audit" ? lossy_only.groups[0].members : lossy_only.groups[1].members, 0u);

  // The topic, and the dead-letter topics made with its two groups.
  auto list = bus_->list_topics();
  ASSERT_TRUE(list);
  ASSERT_EQ(list->size(), 3u);
  std::vector<std::string> dlqs;
  for (const TopicInfo& t : *list) {
    if (t.dead_letter) {
      dlqs.push_back(t.name);
      continue;
    }
    EXPECT_EQ(t.name, "t");
    EXPECT_EQ(t.partitions, 2u);
  }
  std::sort(dlqs.begin(), dlqs.end());
  EXPECT_EQ(dlqs, (std::vector<std::string>{"t.dlq.audit", "t.dlq.dash"}));
}

TEST_F(ConsumerTest, DescribeTopicBeginningAfterTheRingWraps) {
  constexpr std::uint64_t kRing = 1 << 14;
  constexpr std::uint64_t kMaxEvent = 1024;
  ASSERT_TRUE(bus_->create_topic("t", {.partitions = 1, .ring_bytes = kRing, .max_event = kMaxEvent}));
  auto producer = bus_->producer("t").value();
  std::uint64_t seq = 0;
  const std::uint64_t rec = (48 + 40 + 63) / 64 * 64;
  publish_n(producer, static_cast<int>(3 * kRing / rec), &seq, 0, 1000);
  const auto info = bus_->describe_topic("t").value();
  const PartitionInfo& p = info.partition_info[0];
  EXPECT_EQ(p.tail, seq * rec);
  // The first record boundary at or after tail - ring + max_event.
  const std::uint64_t floor = p.tail - kRing + kMaxEvent;
  EXPECT_EQ(p.beginning, (floor + rec - 1) / rec * rec);
  EXPECT_EQ(p.beginning_time_ns, 1000 * (p.beginning / rec + 1));
  EXPECT_EQ(p.events, seq);
  // The earliest offset is that beginning.
  auto reader = bus_->consumer("t", {.start = Offset::earliest()}).value();
  EXPECT_EQ(reader.position(0), p.beginning);
}

TEST_F(ConsumerTest, BeginningIsTheFirstBoundaryAtOrAfterTheRetentionFloor) {
  // DESIGN: "Beginning = the first committed boundary at or after
  // tail - N + max_event". With 448-byte records that floor usually falls
  // inside a record (N - max_event is not a multiple of 448), and the next
  // boundary is rarely at a 4 KiB boundary-index page.
  constexpr std::uint64_t kRing = 1 << 14;
  constexpr std::uint64_t kRec = 448;
  const std::string payload = test::make_payload(kRec - 48, {1, 0, 0});
  // Exact when max_event >= the 4 KiB index page (the page holding the floor
  // is still indexed for this lap); with a smaller max_event its entry may
  // already be the next lap's, and the beginning is then the first boundary
  // the next page's entry names: never below the floor, never more than a
  // page (plus a record) above it.
  for (const std::uint64_t max_event : {std::uint64_t{4096}, std::uint64_t{1024}}) {
    SCOPED_TRACE("max_event " + std::to_string(max_event));
    const std::string topic = "t" + std::to_string(max_event);
    ASSERT_TRUE(bus_->create_topic(topic, {.partitions = 1, .ring_bytes = kRing, .max_event = max_event}));
    auto producer = bus_->producer(topic).value();
    int checked = 0;
    for (int i = 0; i < 300; ++i) {
      ASSERT_TRUE(producer.publish({.payload = payload}));
      const PartitionInfo p = bus_->describe_topic(topic).value().partition_info[0];
      if (p.tail + max_event <= kRing) {
        EXPECT_EQ(p.beginning, 0u);
        continue;
      }
      const std::uint64_t floor = p.tail - kRing + max_event;
      const std::uint64_t first = (floor + kRec - 1) / kRec * kRec;
      ++checked;
      if (max_event >= 4096) {
        EXPECT_EQ(p.beginning, first) << "tail " << p.tail << " floor " << floor;
      } else {
        EXPECT_GE(p.beginning, first) << "tail " << p.tail << " floor " << floor;
        EXPECT_EQ(p.beginning % kRec, 0u) << "tail " << p.tail << " floor " << floor;
        EXPECT_LE(p.beginning, (floor | 4095) + 1 + kRec) << "tail " << p.tail << " floor " << floor;
      }
      // The earliest offset is exactly that beginning, and it reads.
      auto reader = bus_->consumer(topic, {.start = Offset::earliest()});
      ASSERT_TRUE(reader) << reader.error().message();
      EXPECT_EQ(reader->position(0), p.beginning);
      auto e = reader->next();
      ASSERT_TRUE(e) << e.error().message();
      EXPECT_TRUE(test::check_payload(e->payload()));
    }
    EXPECT_GT(checked, 200);
  }
}

}  // namespace
}  // namespace herald
