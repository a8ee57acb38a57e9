// The README's first example, as a program: publish keyed orders, consume
// them in a group, commit. Run: ./quickstart [bus]
#include <cstdio>
#include <string>

#include <herald/herald.hpp>

namespace {
void ship(std::string_view customer, std::string_view order) {
  std::printf("ship %.*s to %.*s\n", static_cast<int>(order.size()), order.data(), static_cast<int>(customer.size()),
              customer.data());
}
}  // namespace

int main(int argc, char** argv) {
  auto bus = herald::Bus::attach(argc > 1 ? argv[1] : "").value();  // starts heraldd if none runs
  if (auto t = bus.create_topic("orders", {.partitions = 4, .ring_bytes = 16 << 20});
      !t && t.error().code != herald::Errc::kAlreadyExists) {
    std::fprintf(stderr, "%s\n", t.error().message().c_str());
    return 1;
  }
  auto producer = bus.producer("orders").value();
  producer.publish({.key = "customer-42", .type = "OrderPlaced", .payload = R"({"total":99.5})"}).value();

  auto consumer = bus.consumer("orders", {.group = "shipping"}).value();
  auto n = consumer.poll([](const herald::EventView& e) { ship(e.key(), e.payload_text()); }, /*max*/ 256);
  if (!n) {
    std::fprintf(stderr, "%s\n", n.error().message().c_str());
    return 1;
  }
  consumer.commit().value();  // at-least-once: the default commits after each poll's handlers anyway
  return 0;
}
