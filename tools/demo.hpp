// `herald demo` (the mission: tools/demo.cpp) and `herald demo --bench` (two
// processes, throughput and paced latency: tools/demo_bench.cpp), with their
// hidden child roles.
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

int run_demo_bench(const DemoOptions& o);
int demo_producer(const DemoChildOptions& o);
int demo_consumer(const DemoChildOptions& o);

struct MissionOptions {
  double seconds = 12;   // how long the order service publishes
  double rate = 4000;    // orders per second
  bool keep = false;     // keep the bus (named "demo") and its daemon to explore afterwards
  bool json = false;
};

struct MissionChildOptions {
  std::string bus, name;
  double rate = 0, seconds = 0;
  std::uint64_t poison_at = 0;
};

int run_mission(const MissionOptions& o);
int mission_orders(const MissionChildOptions& o);
int mission_service(const MissionChildOptions& o);

}  // namespace herald::tools
