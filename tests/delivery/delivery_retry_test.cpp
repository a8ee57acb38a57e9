// A handler that fails N < max_deliveries times, then succeeds
// (DELIVERY.md "Failures, retries, dead letters"): it is retried on the same
// event (order kept) with backoff, the event is handled successfully once and
// never dead-lettered, delivery() counts 1..N+1, and while that partition
// waits out its backoff the member's other partition goes on. No timing is
// asserted: the poll budget makes the interleaving deterministic (a poll
// that meets the failure gives the rest of its budget to the other
// partition, before any retry can happen).
#include <gtest/gtest.h>

#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "herald/herald.hpp"
#include "tests/support/bus_fixture.hpp"
#include "tests/support/test_env.hpp"

namespace herald {
namespace {

enum class FailBy { kNack, kFalse, kThrow };

struct Call {
  std::uint32_t partition;
  std::string payload;
  std::uint32_t delivery;
  bool ok;
};

class DeliveryRetryTest : public test::BusFixture<::testing::TestWithParam<FailBy>> {
 protected:
  void SetUp() override {
    BusFixture::SetUp();
    if (HasFatalFailure()) return;
    ASSERT_TRUE(bus_->create_topic("t", {.partitions = 2, .ring_bytes = 1 << 20, .max_event = 4096}));
  }
};

TEST_P(DeliveryRetryTest, HandlerFailingFewerThanMaxDeliveriesTimesSucceedsOnceInOrderWithoutDeadLetter) {
  constexpr std::uint32_t kFailures = 3;
  constexpr std::uint32_t kMaxDeliveries = 5;
  static_assert(kFailures < kMaxDeliveries);
  const std::uint64_t others = std::max<std::uint64_t>(test::scaled(200), 40);
  auto prod = bus_->producer("t");
  ASSERT_TRUE(prod) << prod.error().message();
  const std::vector<std::string> p0 = {"A0", "A1", "FLAKY", "A3", "A4"};
  for (const std::string& s : p0) ASSERT_TRUE(prod->publish({.payload = s, .partition = 0}));
  for (std::uint64_t i = 0; i < others; ++i)
    ASSERT_TRUE(prod->publish({.payload = "B" + std::to_string(i), .partition = 1}));

  ConsumerOptions o;
  o.group = "g";
  o.max_deliveries = kMaxDeliveries;
  o.retry = {std::chrono::milliseconds(1), 2.0, std::chrono::milliseconds(100)};  // small, not zero
  std::optional<Consumer> c;
  {
    auto made = bus_->consumer("t", o);
    ASSERT_TRUE(made) << made.error().message();
    c.emplace(std::move(made).value());
  }
  ASSERT_EQ(c->assignment().size(), 2u);

  std::vector<Call> calls;
  std::uint32_t flaky_failures = 0;
  const std::uint64_t total = p0.size() + others;
  std::uint64_t ok = 0;
  auto handler = [&](const EventView& e) -> HandlerResult {
    const std::string pl(e.payload_text());
    if (pl == "FLAKY" && flaky_failures < kFailures) {
      ++flaky_failures;
      calls.push_back({e.partition(), pl, e.delivery(), false});
      switch (GetParam()) {
        case FailBy::kNack: return nack("not yet");
        case FailBy::kFalse: return HandlerResult::failure("handler returned false");
        case FailBy::kThrow: throw std::runtime_error("not yet");
      }
      return nack("unreachable");
    }
    calls.push_back({e.partition(), pl, e.delivery(), true});
    ++ok;
    return {};
  };
  ASSERT_TRUE(test::wait_until(
      [&] {
        // A budget of 8, no waiting: one pass over the partitions per poll.
        auto n = c->poll(handler, 8);
        EXPECT_TRUE(n) << n.error().message();
        return !n || ok == total;
      },
      30, [&] { return std::to_string(ok) + " of " + std::to_string(total) + " handled"; }));

  // FLAKY: delivered N+1 times (delivery() counts), one success, last.
  std::vector<std::uint32_t> flaky_deliveries;
  std::size_t first_failure = SIZE_MAX, success = SIZE_MAX;
  std::uint32_t successes = 0;
  for (std::size_t i = 0; i < calls.size(); ++i) {
    if (calls[i].payload != "FLAKY") {
      EXPECT_TRUE(calls[i].ok);
      EXPECT_EQ(calls[i].delivery, 1u) << calls[i].payload << " was never failed, so never redelivered";
      continue;
    }
    flaky_deliveries.push_back(calls[i].delivery);
    if (!calls[i].ok && first_failure == SIZE_MAX) first_failure = i;
    if (calls[i].ok) {
      ++successes;
      success = i;
    }
  }
  EXPECT_EQ(flaky_deliveries, (std::vector<std::uint32_t>{1, 2, 3, 4}));
  EXPECT_EQ(successes, 1u);
  // Partition 0's order is kept: nothing after FLAKY before it succeeded.
  std::vector<std::string> p0_done;
  for (const Call& k : calls)
    if (k.partition == 0 && k.ok) p0_done.push_back(k.payload);
  EXPECT_EQ(p0_done, p0);
  // Every event once.
  EXPECT_EQ(calls.size(), total + kFailures);
  // While FLAKY's partition waited out its backoff, the other partition of
  // the same member went on: some of its events were handled after the first
  // failure and before the success.
  ASSERT_LT(first_failure, success);
  std::uint64_t meanwhile = 0;
  for (std::size_t i = first_failure + 1; i < success; ++i) meanwhile += calls[i].partition == 1 ? 1u : 0u;
  EXPECT_GT(meanwhile, 0u) << "partition 1 waited for partition 0's retries";
  // No dead letter.
  const ConsumerStats st = c->stats();
  EXPECT_EQ(st.failures, kFailures);
  EXPECT_EQ(st.dead_lettered, 0u);
  auto dls = bus_->dead_letters("t", "g");
  ASSERT_TRUE(dls) << dls.error().message();
  EXPECT_TRUE(dls->empty());
  // Committed to the end: a new member of the group has nothing left.
  c.reset();
  auto again = bus_->consumer("t", o);
  ASSERT_TRUE(again) << again.error().message();
  std::size_t extra = 0;
  ASSERT_TRUE(again->poll([&](const EventView&) { ++extra; }, 1000));
  EXPECT_EQ(extra, 0u);
  std::fprintf(stderr, "[herald] %llu events of partition 1 were handled while FLAKY backed off\n",
               static_cast<unsigned long long>(meanwhile));
}

// A member that leaves gracefully while an event is being retried counts no
// delivery for leaving (DELIVERY.md "What redelivered means exactly"): the
// next owner continues the event's count from its failed deliveries, and
// dead-letters it at max_deliveries deliveries in all.
TEST(DeliveryRetryLeaveTest, GracefulLeaveAddsNoDeliveryAndTheCountCarriesOver) {
  test::BusGuard guard;
  auto bus = Bus::attach(guard.bus());
  ASSERT_TRUE(bus) << bus.error().message();
  ASSERT_TRUE(bus->create_topic("t", {.partitions = 1, .ring_bytes = 1 << 20, .max_event = 4096}));
  auto prod = bus->producer("t");
  ASSERT_TRUE(prod);
  for (const char* p : {"a", "bad", "b"}) ASSERT_TRUE(prod->publish({.payload = p}));
  ConsumerOptions o;
  o.group = "g";
  o.max_deliveries = 3;
  o.retry = {std::chrono::milliseconds(0), 1.0, std::chrono::milliseconds(0)};
  std::vector<std::pair<std::string, std::uint32_t>> calls;  // payload, delivery
  auto handler = [&](const EventView& e) -> HandlerResult {
    calls.emplace_back(e.payload_text(), e.delivery());
    if (e.payload_text() == "bad") return nack("still bad");
    return {};
  };
  {
    auto first = bus->consumer("t", o);
    ASSERT_TRUE(first) << first.error().message();
    // a, then bad fails once: the poll stops there (its backoff is 0, but
    // one poll delivers an event once).
    ASSERT_TRUE(first->poll(handler, 2));
  }  // leaves gracefully
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[1], (std::pair<std::string, std::uint32_t>("bad", 1)));
  auto second = bus->consumer("t", o);
  ASSERT_TRUE(second) << second.error().message();
  ASSERT_TRUE(test::wait_until(
      [&] {
        auto n = second->poll(handler, 16);
        EXPECT_TRUE(n) << n.error().message();
        return !n || second->stats().dead_lettered == 1;
      },
      10, [&] { return std::to_string(calls.size()) + " calls"; }));
  ASSERT_TRUE(second->poll(handler, 16));
  const std::vector<std::pair<std::string, std::uint32_t>> expect = {
      {"a", 1}, {"bad", 1}, {"bad", 2}, {"bad", 3}, {"b", 1}};
  EXPECT_EQ(calls, expect) << "the leave added no delivery; the count went on from 1";
  auto dls = bus->dead_letters("t", "g");
  ASSERT_TRUE(dls);
  ASSERT_EQ(dls->size(), 1u);
  EXPECT_EQ(dls->front().deliveries, 3u);
  EXPECT_EQ(dls->front().reason, "still bad");
}

INSTANTIATE_TEST_SUITE_P(FailureKinds, DeliveryRetryTest,
                         ::testing::Values(FailBy::kNack, FailBy::kFalse, FailBy::kThrow),
                         [](const ::testing::TestParamInfo<FailBy>& i) {
                           switch (i.param) {
                             case FailBy::kNack: return std::string("Nack");
                             case FailBy::kFalse: return std::string("ReturnsFailure");
                             case FailBy::kThrow: return std::string("Throws");
                           }
                           return std::string("?");
                         });

}  // namespace
}  // namespace herald
