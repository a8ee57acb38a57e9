// Retries, dead letters and redrive through the public API (one process).
#include <gtest/gtest.h>

#include <algorithm>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "herald/herald.hpp"
#include "tests/support/bus_fixture.hpp"
#include "tests/support/test_env.hpp"

namespace herald {
namespace {

class DeliveryTest : public test::BusFixture<> {
 protected:
  void SetUp() override {
    BusFixture::SetUp();
    if (HasFatalFailure()) return;
    ASSERT_TRUE(bus_->create_topic("orders", {.partitions = 1, .ring_bytes = 1 << 16, .max_event = 4096}));
  }
  ConsumerOptions opts(std::string group) {
    ConsumerOptions o;
    o.group = std::move(group);
    o.retry = {std::chrono::milliseconds(0), 1.0, std::chrono::milliseconds(0)};
    o.max_deliveries = 3;
    return o;
  }
  std::vector<std::string> drain(Consumer& c, std::vector<std::string>* seen) {
    std::vector<std::string> handled;
    for (int i = 0; i < 50; ++i) {
      auto n = c.poll(
          [&](const EventView& e) -> HandlerResult {
            seen->emplace_back(e.payload_text());
            if (e.payload_text() == "poison") return nack("cannot parse order");
            handled.emplace_back(e.payload_text());
            return {};
          },
          16);
      EXPECT_TRUE(n) << n.error().message();
    }
    return handled;
  }
};

TEST_F(DeliveryTest, PoisonEventIsRetriedThenDeadLetteredAndOrderKept) {
  auto producer = bus_->producer("orders").value();
  const Header h[] = {{"tenant", "acme"}};
  for (const char* p : {"a", "b", "poison", "c"})
    ASSERT_TRUE(producer.publish({.key = "k", .type = "OrderPlaced", .payload = p, .correlation_id = "corr-1", .headers = h}));
  auto consumer = bus_->consumer("orders", opts("shipping")).value();
  std::vector<std::string> seen;
  const auto handled = drain(consumer, &seen);
  EXPECT_EQ(handled, (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(std::count(seen.begin(), seen.end(), "poison"), 3);
  EXPECT_EQ(consumer.stats().dead_lettered, 1u);
  auto dls = bus_->dead_letters("orders", "shipping");
  ASSERT_TRUE(dls) << dls.error().message();
  ASSERT_EQ(dls->size(), 1u);
  const DeadLetter& d = dls->front();
  EXPECT_EQ(d.event.payload_text(), "poison");
  EXPECT_EQ(d.event.type(), "OrderPlaced");
  EXPECT_EQ(d.event.correlation_id(), "corr-1");
  EXPECT_EQ(d.event.header("tenant").value_or(""), "acme");
  EXPECT_EQ(d.reason, "cannot parse order");
  EXPECT_EQ(d.deliveries, 3u);
  EXPECT_EQ(d.group, "shipping");
  EXPECT_EQ(d.topic, "orders");

  // Another group is not affected, and does not see the redrive.
  auto audit = bus_->consumer("orders", {.group = "audit", .max_deliveries = 0}).value();
  std::size_t audit_seen = 0;
  ASSERT_TRUE(audit.poll([&](const EventView&) { ++audit_seen; }, 100));
  EXPECT_EQ(audit_seen, 4u);

  auto rr = bus_->redrive("orders", "shipping");
  ASSERT_TRUE(rr) << rr.error().message();
  EXPECT_EQ(rr->redriven, 1u);
  EXPECT_TRUE(bus_->dead_letters("orders", "shipping")->empty());
  // shipping sees it again (its handler now accepts it: nothing is special
  // about the payload for a fixed consumer), audit skips it.
  std::vector<std::string> again;
  ASSERT_TRUE(consumer.poll([&](const EventView& e) {
    again.emplace_back(e.payload_text());
    EXPECT_TRUE(e.header("herald.redriven-from").has_value());
  }, 16));
  EXPECT_EQ(again, (std::vector<std::string>{"poison"}));
  std::size_t audit_again = 0;
  ASSERT_TRUE(audit.poll([&](const EventView&) { ++audit_again; }, 100));
  EXPECT_EQ(audit_again, 0u);
  EXPECT_EQ(audit.stats().skipped_redrives, 1u);
}

// A poll's max bounds the events it finishes, dead-lettered ones included:
// `herald consume --count 2` with a failing --exec dead-lettered the whole
// backlog, since only handled events counted.
TEST_F(DeliveryTest, DeadLetteredEventsCountAgainstAPollsMax) {
  auto producer = bus_->producer("orders").value();
  for (int i = 0; i < 6; ++i) ASSERT_TRUE(producer.publish({.payload = "bad-" + std::to_string(i)}));
  ConsumerOptions o = opts("strict");
  o.max_deliveries = 1;  // the first failure dead-letters
  auto consumer = bus_->consumer("orders", o).value();
  std::vector<std::string> seen;
  auto fails = [&](const EventView& e) -> HandlerResult {
    seen.emplace_back(e.payload_text());
    return nack("rejected");
  };
  // Returns at once (no timeout wait) once it has dead-lettered its max.
  auto n = consumer.poll(fails, 2, std::chrono::seconds(30));
  ASSERT_TRUE(n) << n.error().message();
  EXPECT_EQ(*n, 0u);
  EXPECT_EQ(consumer.stats().dead_lettered, 2u);
  EXPECT_EQ(seen, (std::vector<std::string>{"bad-0", "bad-1"}));
  n = consumer.poll(fails, 3);
  ASSERT_TRUE(n) << n.error().message();
  EXPECT_EQ(consumer.stats().dead_lettered, 5u);
  EXPECT_EQ(seen.size(), 5u);
  auto dls = bus_->dead_letters("orders", "strict");
  ASSERT_TRUE(dls) << dls.error().message();
  EXPECT_EQ(dls->size(), 5u);
}

// A DLQ has no DLQ: a group reading a dead-letter topic retries a failing
// dead letter past max_deliveries (it failed the poll, for good, looking
// for a DLQ of the DLQ), and takes it once its handler does.
TEST_F(DeliveryTest, AGroupReadingADlqRetriesAFailingDeadLetterUntilItIsTaken) {
  auto producer = bus_->producer("orders").value();
  ASSERT_TRUE(producer.publish({.payload = "poison"}));
  ASSERT_TRUE(producer.publish({.payload = "fine"}));
  auto consumer = bus_->consumer("orders", opts("g")).value();
  std::vector<std::string> seen;
  EXPECT_EQ(drain(consumer, &seen), (std::vector<std::string>{"fine"}));
  ASSERT_EQ(bus_->dead_letters("orders", "g")->size(), 1u);

  auto reader = bus_->consumer("orders.dlq.g", opts("r")).value();  // max_deliveries = 3
  std::uint32_t last_delivery = 0;
  for (int i = 0; i < 10; ++i) {
    auto n = reader.poll([&](const EventView& e) -> bool {
      last_delivery = e.delivery();
      return false;
    }, 16);
    ASSERT_TRUE(n) << "poll " << i << ": " << n.error().message();
    EXPECT_EQ(*n, 0u);
  }
  EXPECT_EQ(last_delivery, 10u);
  EXPECT_EQ(reader.stats().failures, 10u);
  std::string taken;
  auto n = reader.poll([&](const EventView& e) { taken = std::string(e.payload_text()); }, 16);
  ASSERT_TRUE(n) << n.error().message();
  EXPECT_EQ(*n, 1u);
  EXPECT_EQ(taken, "poison");
}

TEST_F(DeliveryTest, FailingThenSucceedingHandlerHasNoDeadLetter) {
  auto producer = bus_->producer("orders").value();
  for (const char* p : {"a", "flaky", "b"}) ASSERT_TRUE(producer.publish({.payload = p}));
  auto consumer = bus_->consumer("orders", opts("g")).value();
  int flaky_failures = 0;
  std::vector<std::string> ok;
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(consumer.poll([&](const EventView& e) -> bool {
      if (e.payload_text() == "flaky" && flaky_failures < 2) {
        ++flaky_failures;
        return false;
      }
      ok.emplace_back(e.payload_text());
      return true;
    }, 16));
  }
  EXPECT_EQ(ok, (std::vector<std::string>{"a", "flaky", "b"}));
  EXPECT_TRUE(bus_->dead_letters("orders", "g")->empty());
}

// Each way a handler can fail names its reason in the dead letter, and a
// reason is the failing event's own: an event that failed once and then
// succeeded leaves nothing behind for the next failure (the consumer keeps
// one reason string and empties it once a failure is recorded).
TEST_F(DeliveryTest, DeadLetterReasonNamesHowTheHandlerFailed) {
  auto producer = bus_->producer("orders").value();
  for (const char* p : {"flaky", "false", "throws", "throws-int", "nack", "ok"})
    ASSERT_TRUE(producer.publish({.payload = p}));
  auto consumer = bus_->consumer("orders", opts("g")).value();
  bool flaky_failed = false;
  std::vector<std::string> ok;
  for (int i = 0; i < 50; ++i) {
    auto n = consumer.poll(
        [&](const EventView& e) -> HandlerResult {
          const std::string_view p = e.payload_text();
          if (p == "flaky" && !flaky_failed) {
            flaky_failed = true;
            return nack("flaky once");
          }
          if (p == "throws") throw std::runtime_error("boom");
          if (p == "throws-int") throw 7;
          if (p == "nack") return nack("refused");
          if (p == "false") return HandlerResult::failure("");
          ok.emplace_back(p);
          return HandlerResult::success();
        },
        16);
    ASSERT_TRUE(n) << n.error().message();
  }
  EXPECT_EQ(ok, (std::vector<std::string>{"flaky", "ok"}));
  // A bool handler's false, through the same consumer.
  ASSERT_TRUE(producer.publish({.payload = "bool-false"}));
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(consumer.poll([](const EventView&) { return false; }, 16));

  auto dls = bus_->dead_letters("orders", "g");
  ASSERT_TRUE(dls) << dls.error().message();
  std::vector<std::pair<std::string, std::string>> got;
  for (const DeadLetter& d : *dls) got.emplace_back(d.event.payload_text(), d.reason);
  // A failure with no reason says so (not "consumer crashed", which is
  // what a delivery that never returned leaves).
  const std::vector<std::pair<std::string, std::string>> want = {
      {"false", "handler failed without a reason"},
      {"throws", "handler threw: boom"},
      {"throws-int", "handler threw a non-standard exception"},
      {"nack", "refused"},
      {"bool-false", "handler returned false"},
  };
  EXPECT_EQ(got, want);
}

}  // namespace
}  // namespace herald
