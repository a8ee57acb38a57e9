// `herald demo` and its two hidden child roles.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace herald::tools {

struct DemoOptions {
  std::uint64_t events = 2'000'000;  // throughput phase
  std::size_t size = 64;             // payload bytes
  std::uint64_t rate = 100'000;      // latency phase, events/s
  std::uint64_t seconds = 2;         // latency phase length
  bool json = false;
};

struct DemoChildOptions {
  std::string bus, topic, group;
  std::uint64_t events = 0;
  std::size_t size = 64;
  std::uint64_t rate = 0;  // 0: as fast as possible
};

int run_demo(const DemoOptions& o);
int demo_producer(const DemoChildOptions& o);
int demo_consumer(const DemoChildOptions& o);

}  // namespace herald::tools
