// The public API end to end in one process: topics, publish, poll, commit,
// group-less readers, backpressure, zero-copy claims.
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <optional>
#include <thread>
#include <string>
#include <vector>

#include "herald/herald.hpp"
#include "shm/registry.hpp"
#include "shm/topic_map.hpp"
#include "tests/support/bus_fixture.hpp"
#include "tests/support/test_env.hpp"

namespace herald {
namespace {

class BusTest : public test::BusFixture<> {};

TEST_F(BusTest, PublishPollCommitResume) {
  ASSERT_TRUE(bus_->create_topic("orders", {.partitions = 4, .ring_bytes = 1 << 16, .max_event = 4096}));
  auto producer = bus_->producer("orders").value();
  const Header hs[] = {{"tenant", "acme"}, {"trace", "t-1"}};
  for (int i = 0; i < 100; ++i) {
    const std::string key = "customer-" + std::to_string(i % 7);
    const std::string payload = "order-" + std::to_string(i);
    auto r = producer.publish({.key = key, .type = "OrderPlaced", .payload = payload, .correlation_id = "c-1",
                               .content_type = "text/plain", .headers = hs});
    ASSERT_TRUE(r) << r.error().message();
    EXPECT_EQ(r->partition, producer.partition_for(key));
  }
  {
    auto consumer = bus_->consumer("orders", {.group = "shipping", .commit_mode = CommitMode::kManual}).value();
    std::vector<std::string> seen;
    auto n = consumer.poll(
        [&](const EventView& e) {
          seen.emplace_back(e.payload_text());
          EXPECT_EQ(e.type(), "OrderPlaced");
          EXPECT_EQ(e.correlation_id(), "c-1");
          EXPECT_EQ(e.content_type(), "text/plain");
          EXPECT_EQ(e.header("tenant").value_or(""), "acme");
          EXPECT_EQ(e.header_count(), 2u);
          EXPECT_FALSE(e.id().empty());
          EXPECT_GT(e.time_ns(), 0u);
        },
        60);
    ASSERT_TRUE(n) << n.error().message();
    EXPECT_EQ(*n, 60u);
    ASSERT_TRUE(consumer.commit());
  }
  auto consumer = bus_->consumer("orders", {.group = "shipping"}).value();
  std::size_t total = 0;
  while (true) {
    auto n = consumer.poll([](const EventView&) {}, 256);
    ASSERT_TRUE(n) << n.error().message();
    if (*n == 0) break;
    total += *n;
  }
  EXPECT_EQ(total, 40u);  // resumed at the committed cursor
  // A second group sees everything.
  auto audit = bus_->consumer("orders", {.group = "audit"}).value();
  std::size_t audit_total = 0;
  while (auto n = audit.poll([](const EventView&) {}, 256)) {
    if (*n == 0) break;
    audit_total += *n;
  }
  EXPECT_EQ(audit_total, 100u);
}

TEST_F(BusTest, LosslessBackpressureThenCommitFrees) {
  ASSERT_TRUE(bus_->create_topic("t", {.partitions = 1, .ring_bytes = 1 << 16, .max_event = 4096,
                                       .default_policy = Policy::kLossless}));
  auto consumer = bus_->consumer("t", {.group = "g", .commit_mode = CommitMode::kManual}).value();
  auto producer = bus_->producer("t", {.deadline = std::chrono::milliseconds(10)}).value();
  std::string payload(200, 'x');
  std::size_t accepted = 0;
  std::uint64_t bytes = 0;
  for (;;) {
    auto r = producer.publish({.payload = payload});
    if (!r) {
      ASSERT_EQ(r.error().code, Errc::kBackPressured) << r.error().message();
      break;
    }
    ++accepted;
    bytes += 256;
  }
  EXPECT_LE(bytes, 1u << 16);
  std::size_t read = 0;
  auto n = consumer.poll([&](const EventView& e) { read += e.payload().size() == 200; }, 1 << 20);
  ASSERT_TRUE(n);
  EXPECT_EQ(read, accepted);
  ASSERT_TRUE(consumer.commit());
  EXPECT_TRUE(producer.publish({.payload = payload}));
}

TEST_F(BusTest, ZeroCopyClaimCommitAndAbort) {
  ASSERT_TRUE(bus_->create_topic("z", {.partitions = 1, .ring_bytes = 1 << 16, .max_event = 4096}));
  auto producer = bus_->producer("z").value();
  {
    auto c = producer.claim(10, {.type = "Z"}).value();
    std::memcpy(c.payload().data(), "0123456789", 10);
    ASSERT_TRUE(c.commit(4));
  }
  { auto c = producer.claim(10).value(); }  // dropped: aborted
  {
    auto c = producer.claim(3).value();
    std::memcpy(c.payload().data(), "abc", 3);
    ASSERT_TRUE(c.commit());
  }
  auto reader = bus_->consumer("z", {.start = Offset::earliest()}).value();
  std::vector<std::string> got;
  ASSERT_TRUE(reader.poll([&](const EventView& e) { got.emplace_back(e.payload_text()); }, 10));
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0], "0123");
  EXPECT_EQ(got[1], "abc");
  EXPECT_EQ(reader.stats().aborted_skipped, 1u);
}

TEST_F(BusTest, DeleteClosesAttachedClients) {
  ASSERT_TRUE(bus_->create_topic("d", {.partitions = 1, .ring_bytes = 1 << 16, .max_event = 4096}));
  auto producer = bus_->producer("d").value();
  auto consumer = bus_->consumer("d", {.group = "g"}).value();
  auto busy = bus_->delete_topic("d");
  ASSERT_FALSE(busy);
  EXPECT_EQ(busy.error().code, Errc::kBusy);
  ASSERT_TRUE(bus_->delete_topic("d", {.force = true}));
  auto r = producer.publish({.payload = "x"});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kClosed);
  auto n = consumer.poll([](const EventView&) {}, 1);
  ASSERT_FALSE(n);
  EXPECT_EQ(n.error().code, Errc::kClosed);
}

// A delete whose closer died after it set the closed bits but before its
// wake-ups (simulated: the test stores what TopicMap::close stores up to
// there, and nothing after). A consumer already waiting in a spinning poll
// sees no wake-up; it learns of the close from the log header's
// close_started word, which it checks every 1024 empty reads, and only then
// reads the tails. Without that check it would spin until its timeout.
TEST_F(BusTest, SpinningConsumerLearnsOfADeleteWhoseCloserDiedBeforeTheWakeUps) {
  ASSERT_TRUE(bus_->create_topic("c", {.partitions = 2, .ring_bytes = 1 << 16, .max_event = 4096}));
  auto consumer = bus_->consumer("c", {.group = "g", .wait = Wait::kBusySpin}).value();
  std::atomic<bool> waiting{false}, done{false};
  std::optional<Errc> code;
  std::thread t([&] {
    // One empty poll first: the wake word is sampled (and tail read) on the
    // first empty read; the close below must be learnt some other way.
    auto first = consumer.poll([](const EventView&) {}, 1, std::chrono::milliseconds(0));
    if (!first) code = first.error().code;
    waiting.store(true, std::memory_order_release);
    if (first) {
      auto n = consumer.poll([](const EventView&) {}, 1, std::chrono::seconds(60));
      if (!n) code = n.error().code;
    }
    done.store(true, std::memory_order_release);
  });
  EXPECT_TRUE(test::wait_until([&] { return waiting.load(std::memory_order_acquire); }, 20,
                               [] { return std::string("the first poll did not return"); }));
  auto rec = shm::Registry::open(guard_.bus())->find("c");
  ASSERT_TRUE(rec);
  auto map = shm::TopicMap::attach(guard_.bus(), "c", rec->incarnation, shm::Access::kReadWrite,
                                   shm::Access::kReadWrite);
  ASSERT_TRUE(map) << map.error().message();
  map->log_header()->close_started.store(1, std::memory_order_seq_cst);
  for (std::uint32_t p = 0; p < 2; ++p) map->partition(p).part->tail.fetch_or(shm::kTailClosedBit);
  EXPECT_TRUE(test::wait_until([&] { return done.load(std::memory_order_acquire); }, 20, [&] {
    return std::string("the spinning poll did not learn of the close; close_started ") +
           std::to_string(map->log_header()->close_started.load()) + ", tail of partition 0 " +
           std::to_string(map->partition(0).part->tail.load());
  }));
  if (!done.load()) {
    // Let the poll end so the thread can be joined: the wake-ups the dead
    // closer never did.
    map->close();
  }
  t.join();
  ASSERT_TRUE(code.has_value()) << "the poll returned without an error";
  EXPECT_EQ(*code, Errc::kClosed);
}

// A single-producer topic's claims move tail with a plain store; a delete
// racing with them must still leave the closed bit in place (C1 in
// ring_log.hpp), so the producer stops with kClosed instead of publishing
// into a deleted topic forever.
TEST_F(BusTest, ForcedDeleteStopsAProducerPublishingToASingleProducerTopic) {
  ASSERT_TRUE(bus_->create_topic("s", {.partitions = 1, .ring_bytes = 1 << 16, .max_event = 4096,
                                       .single_producer = true}));
  auto second = bus_->producer("s");
  auto producer = std::move(second).value();
  second = bus_->producer("s");
  ASSERT_FALSE(second) << "a single-producer topic refuses a second producer";
  EXPECT_EQ(second.error().code, Errc::kBusy);
  std::atomic<std::uint64_t> published{0};
  std::atomic<bool> done{false}, quit{false};
  std::optional<Errc> code;
  std::thread t([&] {
    while (!quit.load(std::memory_order_relaxed)) {
      auto r = producer.publish({.payload = "event"});
      if (!r) {
        code = r.error().code;
        break;
      }
      published.fetch_add(1, std::memory_order_relaxed);
    }
    done.store(true, std::memory_order_release);
  });
  // No group gates the topic: the producer laps its ring freely.
  EXPECT_TRUE(test::wait_until([&] { return published.load() > 1000 || done.load(); }, 20,
                               [&] { return "published " + std::to_string(published.load()); }));
  const auto del = bus_->delete_topic("s", {.force = true});
  EXPECT_TRUE(del) << del.error().message();
  EXPECT_TRUE(test::wait_until([&] { return done.load(std::memory_order_acquire); }, 20, [&] {
    return "the producer still publishes after the delete: " + std::to_string(published.load()) + " events";
  }));
  quit.store(true);
  t.join();
  ASSERT_TRUE(code.has_value()) << "the producer never failed";
  EXPECT_EQ(*code, Errc::kClosed);
}

}  // namespace
}  // namespace herald
