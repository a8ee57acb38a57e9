// The package test's program: uses only an installed herald (its public
// headers and herald::runtime). On the bus named by argv[1] it creates a
// topic, publishes one event, reads it back in a consumer group, and
// destroys the bus. Exit 0 on success; errors print error().message().
#include <herald/herald.hpp>

#include <chrono>
#include <cstdio>
#include <string>

namespace {

int fail(const char* what, const herald::Error& error) {
  std::fprintf(stderr, "herald_package_test: %s: %s\n", what, error.message().c_str());
  return 1;
}

// Every handle (bus, producer, consumer) is closed when this returns.
int round_trip(const std::string& bus_name) {
  auto bus = herald::Bus::attach(bus_name);
  if (!bus) return fail("attach", bus.error());

  auto topic = bus->create_topic("t", {.partitions = 1, .ring_bytes = 1 << 16, .max_event = 4096});
  if (!topic) return fail("create_topic", topic.error());

  auto consumer = bus->consumer("t", {.group = "g"});
  if (!consumer) return fail("consumer", consumer.error());

  auto producer = bus->producer("t");
  if (!producer) return fail("producer", producer.error());
  auto published = producer->publish({.key = "k", .type = "T", .payload = "hello"});
  if (!published) return fail("publish", published.error());

  std::string key, type, payload;
  std::size_t seen = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (seen == 0 && std::chrono::steady_clock::now() < deadline) {
    auto polled = consumer->poll(
        [&](const herald::EventView& e) {
          key = e.key();
          type = e.type();
          payload = e.payload_text();
        },
        1, std::chrono::milliseconds(500));
    if (polled) {
      seen = *polled;
    } else if (polled.error().code != herald::Errc::kTimeout) {
      return fail("poll", polled.error());
    }
  }
  if (seen == 0) {
    std::fprintf(stderr, "herald_package_test: no event within 10 s\n");
    return 1;
  }
  if (key != "k" || type != "T" || payload != "hello") {
    std::fprintf(stderr, "herald_package_test: got key='%s' type='%s' payload='%s', want k, T, hello\n",
                 key.c_str(), type.c_str(), payload.c_str());
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: herald_package_test <bus name>\n");
    return 2;
  }
  const std::string bus_name = argv[1];
  int rc = round_trip(bus_name);
  if (auto destroyed = herald::Bus::destroy(bus_name); !destroyed) rc = fail("destroy", destroyed.error());
  if (rc == 0) std::printf("herald_package_test: ok (bus %s)\n", bus_name.c_str());
  return rc;
}
