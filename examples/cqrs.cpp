// CQRS and event-carried state transfer (docs/PATTERNS.md). The write side
// checks commands against its own model (the stock) and publishes facts that
// carry what readers need (customer, address, lines, total). Each read side
// is a consumer group that folds those facts into a model made for its
// queries; shipping prints labels from the events alone, without calling
// back. A read model added later builds itself from the retained history.
// Run: ./cqrs [bus]
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <herald/herald.hpp>

#include "make_topic.hpp"

using nlohmann::json;

namespace {

struct Line {
  std::string sku;
  int quantity;
};
struct PlaceOrder {  // a command: a request that may be refused
  std::string order, customer, address;
  std::vector<Line> lines;
};

// The write side: the stock is its model; its output is facts.
class OrderService {
 public:
  explicit OrderService(herald::Bus& bus) : out_(bus.producer("orders", {.source = "order-service"}).value()) {}

  void handle(const PlaceOrder& c) {
    json lines = json::array();
    double total = 0;
    for (const Line& l : c.lines) {
      auto it = stock_.find(l.sku);
      if (it == stock_.end() || it->second.quantity < l.quantity) {
        publish(c.customer, "OrderRejected", {{"order", c.order}, {"reason", "out of stock: " + l.sku}});
        return;
      }
      total += it->second.price * l.quantity;
      lines.push_back({{"sku", l.sku}, {"quantity", l.quantity}, {"price", it->second.price}});
    }
    for (const Line& l : c.lines) stock_[l.sku].quantity -= l.quantity;
    // Event-carried state: everything a reader needs, so none calls back.
    publish(c.customer, "OrderPlaced",
            {{"order", c.order}, {"customer", c.customer}, {"address", c.address}, {"lines", lines}, {"total", total}});
  }

 private:
  void publish(const std::string& customer, const char* type, const json& body) {
    const std::string payload = body.dump();
    out_.publish({.key = customer, .type = type, .payload = payload, .content_type = "application/json"}).value();
  }
  struct Item {
    int quantity;
    double price;
  };
  std::map<std::string, Item> stock_{{"kettle", {2, 30.0}}, {"mug", {10, 4.5}}, {"teapot", {1, 25.0}}};
  herald::Producer out_;
};

// A read side: a group with its own cursor, its own pace, its own model.
// Call catch_up() to fold in what is new; queries read the model only.
class CustomerSummary {
 public:
  explicit CustomerSummary(herald::Bus& bus) : in_(bus.consumer("orders", {.group = "customer-summary"}).value()) {}
  void catch_up() {
    while (in_.poll([this](const herald::EventView& e) {
      if (e.type() != "OrderPlaced") return;
      const json o = json::parse(e.payload_text());
      Row& r = rows_[o["customer"].get<std::string>()];
      ++r.orders;
      r.spent += o["total"].get<double>();
    }, 256).value() > 0) {
    }
  }
  void query(const std::string& customer) const {
    auto it = rows_.find(customer);
    const Row r = it == rows_.end() ? Row{} : it->second;
    std::printf("summary of %s: %d orders, %.2f spent\n", customer.c_str(), r.orders, r.spent);
  }

 private:
  struct Row {
    int orders = 0;
    double spent = 0;
  };
  herald::Consumer in_;
  std::map<std::string, Row> rows_;
};

// Another read side, made after the fact: a new group starts at the earliest
// retained event, so it sees the whole history the first one saw.
std::map<std::string, int> units_sold(herald::Bus& bus) {
  auto in = bus.consumer("orders", {.group = "units-sold", .start = herald::Offset::earliest()}).value();
  std::map<std::string, int> units;
  while (in.poll([&](const herald::EventView& e) {
    if (e.type() != "OrderPlaced") return;
    const json o = json::parse(e.payload_text());
    for (const json& l : o["lines"]) units[l["sku"].get<std::string>()] += l["quantity"].get<int>();
  }, 256).value() > 0) {
  }
  return units;
}

}  // namespace

int main(int argc, char** argv) {
  auto bus = herald::Bus::attach(argc > 1 ? argv[1] : "").value();
  if (!make_topic(bus, "orders", {.partitions = 4})) return 1;
  OrderService orders(bus);
  CustomerSummary summary(bus);

  // Shipping reads the address from the event: no call to a customer service.
  auto shipping = bus.consumer("orders", {.group = "shipping"}).value();

  orders.handle({"o-1", "ada", "12 Analytical Row, London", {{"kettle", 1}, {"mug", 2}}});
  orders.handle({"o-2", "grace", "1 Compiler Way, Arlington", {{"teapot", 1}}});
  orders.handle({"o-3", "ada", "12 Analytical Row, London", {{"teapot", 1}}});  // refused: none left
  orders.handle({"o-4", "ada", "12 Analytical Row, London", {{"mug", 4}}});

  // Read models are eventually consistent: until it catches up, a query
  // answers from what the model has folded in so far.
  summary.query("ada");
  summary.catch_up();
  summary.query("ada");
  summary.query("grace");

  while (shipping.poll([](const herald::EventView& e) {
    if (e.type() == "OrderRejected") return;
    const json o = json::parse(e.payload_text());
    std::printf("label: %s to %s, %s\n", o["order"].get<std::string>().c_str(),
                o["customer"].get<std::string>().c_str(), o["address"].get<std::string>().c_str());
  }, 256).value() > 0) {
  }

  std::printf("units sold:");
  for (const auto& [sku, n] : units_sold(bus)) std::printf(" %s=%d", sku.c_str(), n);
  std::printf("\n");
  return 0;
}
