// At-least-once with a dead-letter topic (the README's second example):
// a handler that refuses one order; after max_deliveries the order is in
// "payments.dlq.ledger" with the reason, and the partition moved on.
// Run: ./dead_letters [bus]
#include <cstdio>
#include <string_view>

#include <herald/herald.hpp>

namespace {
bool post_to_ledger(std::string_view /*account*/, std::string_view payment) {
  return payment.find("\"amount\":-") == std::string_view::npos;  // refuses negative amounts
}
}  // namespace

int main(int argc, char** argv) {
  auto bus = herald::Bus::attach(argc > 1 ? argv[1] : "").value();
  (void)bus.create_topic("payments", {.partitions = 4});
  auto producer = bus.producer("payments").value();
  for (const char* p : {R"({"amount":10})", R"({"amount":-5})", R"({"amount":7})"})
    producer.publish({.key = "acct-1", .type = "PaymentReceived", .payload = p}).value();

  auto consumer = bus.consumer("payments", {.group = "ledger", .max_deliveries = 5,
                                            .retry = {std::chrono::milliseconds(10), 2.0, std::chrono::seconds(1)}})
                      .value();
  for (int round = 0; round < 100; ++round) {
    // A failing handler is retried on the same event (order kept, with backoff);
    // after 5 deliveries the event goes to "payments.dlq.ledger" and the partition moves on.
    auto n = consumer.poll([](const herald::EventView& e) -> herald::HandlerResult {
      if (!post_to_ledger(e.key(), e.payload_text())) return herald::nack("ledger refused it");
      return {};  // handled: committed after this poll (at-least-once)
    }, 256, std::chrono::milliseconds(50));
    if (!n) return 1;
    if (consumer.stats().dead_lettered > 0) break;
  }
  for (const auto& d : bus.dead_letters("payments", "ledger").value())
    std::printf("dead letter %s: %s after %u deliveries\n", d.event.id().to_string().c_str(), d.reason.c_str(),
                d.deliveries);
  // bus.redrive("payments", "ledger") puts them back, for this group only.
  return 0;
}
