// Event notification with correlation and causation ids (docs/PATTERNS.md).
// Checkout announces OrderPlaced and knows nothing of who listens. Payments
// and notifications each react in their own group; payments announces
// PaymentCaptured, shipping reacts with OrderShipped. Every event a request
// leads to carries the request's correlation id, and names the event that
// caused it (its causation id), so one request can be traced across topics
// afterwards: here by reading the logs, with the CLI by `herald trace ID`.
// Run: ./correlation [bus]
#include <cstdio>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <herald/herald.hpp>

#include "make_topic.hpp"

namespace {

// A service that reacts to one topic and may announce on another. What it
// publishes keeps the correlation id and names its cause.
class Service {
 public:
  Service(herald::Bus& bus, const char* name, const char* in, const char* out)
      : name_(name),
        in_(bus.consumer(in, {.group = name}).value()),
        out_(out != nullptr ? std::optional(bus.producer(out, {.source = name}).value()) : std::nullopt) {}

  template <class React>
  void run(React react) {
    while (in_.poll([&](const herald::EventView& e) { react(e, *this); }, 256).value() > 0) {
    }
  }
  void announce(const herald::EventView& cause, const char* type, const std::string& payload) {
    const std::string cause_id = cause.id().to_string();
    out_->publish({.key = cause.key(),
                  .type = type,
                  .payload = payload,
                  .correlation_id = cause.correlation_id(),
                  .causation_id = cause_id})
        .value();
  }
  const char* name() const { return name_; }

 private:
  const char* name_;
  herald::Consumer in_;
  std::optional<herald::Producer> out_;
};

// Everything retained on `topics` with this correlation id, in causal order.
void trace(herald::Bus& bus, const std::vector<const char*>& topics, std::string_view correlation) {
  std::vector<herald::Event> found;
  for (const char* t : topics) {
    auto reader = bus.consumer(t, {}).value();  // group-less: holds nothing back
    while (reader.poll([&](const herald::EventView& e) {
      if (e.correlation_id() == correlation) found.push_back(e.to_event());
    }, 1024).value() > 0) {
    }
  }
  // Children by cause; roots are the events with no cause among those found.
  std::map<std::string, std::vector<const herald::Event*>, std::less<>> children;
  std::map<std::string, const herald::Event*, std::less<>> by_id;
  for (const herald::Event& e : found) by_id[e.id().to_string()] = &e;
  std::vector<const herald::Event*> roots;
  for (const herald::Event& e : found)
    (by_id.contains(e.causation_id()) ? children[std::string(e.causation_id())] : roots).push_back(&e);
  std::printf("trace %.*s:\n", static_cast<int>(correlation.size()), correlation.data());
  auto show = [&](auto& self, const herald::Event* e, int depth, std::uint64_t t0) -> void {
    std::printf("%*s%.*s on %.*s by %.*s (+%llu us)\n", 2 + depth * 2, "", static_cast<int>(e->type().size()),
                e->type().data(), static_cast<int>(e->topic().size()), e->topic().data(),
                static_cast<int>(e->source().size()), e->source().data(),
                static_cast<unsigned long long>((e->time_ns() - t0) / 1000));
    for (const herald::Event* c : children[e->id().to_string()]) self(self, c, depth + 1, t0);
  };
  for (const herald::Event* r : roots) show(show, r, 0, r->time_ns());
}

}  // namespace

int main(int argc, char** argv) {
  auto bus = herald::Bus::attach(argc > 1 ? argv[1] : "").value();
  for (const char* t : {"orders", "payments", "shipments"})
    if (!make_topic(bus, t, {.partitions = 2})) return 1;

  Service payments(bus, "payments", "orders", "payments");
  Service notifications(bus, "notifications", "orders", nullptr);
  Service shipping(bus, "shipping", "payments", "shipments");

  // Checkout: one request, one correlation id, carried by all that follows.
  auto checkout = bus.producer("orders", {.source = "checkout"}).value();
  for (const char* request : {"req-1", "req-2"})
    checkout.publish({.key = "cust-7", .type = "OrderPlaced", .payload = request, .correlation_id = request}).value();

  // Each group sees every OrderPlaced (fan-out); they never meet.
  payments.run([](const herald::EventView& e, Service& s) { s.announce(e, "PaymentCaptured", "paid"); });
  notifications.run([](const herald::EventView& e, Service&) {
    std::printf("notify: order %.*s placed\n", static_cast<int>(e.correlation_id().size()), e.correlation_id().data());
  });
  shipping.run([](const herald::EventView& e, Service& s) { s.announce(e, "OrderShipped", "parcel 1Z999"); });

  trace(bus, {"orders", "payments", "shipments"}, "req-2");
  return 0;
}
