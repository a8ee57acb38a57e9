// `herald demo --bench`: a producer process and a consumer process on a fresh bus,
// exchanging events through herald; prints events/s and one-way latency
// percentiles measured in the consumer.
//
// Phase 1 (throughput): the producer publishes N events as fast as it can;
// the consumer (a lossless group, so nothing is dropped) verifies the
// sequence and reports events/s from its first to its last event.
// Phase 2 (latency): the producer publishes at a fixed rate, stamping each
// event with its INTENDED send time (CLOCK_MONOTONIC); the consumer records
// now - stamp, so a stalled producer shows up as latency (no coordinated
// omission).
#include "tools/demo.hpp"

#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "herald/herald.hpp"
#include "tools/common/histogram.hpp"
#include "tools/common/spawn.hpp"

namespace herald::tools {

namespace {

std::uint64_t mono_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<std::uint64_t>(ts.tv_nsec);
}

struct Stamp {
  std::uint64_t seq;
  std::uint64_t sent_ns;
};

std::string fmt_rate(double v) {
  char buf[32];
  if (v >= 1e6) std::snprintf(buf, sizeof buf, "%.2f M", v / 1e6);
  else if (v >= 1e3) std::snprintf(buf, sizeof buf, "%.1f k", v / 1e3);
  else std::snprintf(buf, sizeof buf, "%.0f ", v);
  return buf;
}

int fail_msg(const std::string& what) {
  std::fprintf(stderr, "herald: error: %s\n", what.c_str());
  return 1;
}

}  // namespace

// ---- the two child roles -------------------------------------------------

int demo_producer(const DemoChildOptions& o) {
  auto bus = Bus::attach(o.bus);
  if (!bus) return fail_msg(bus.error().message());
  auto producer = bus->producer(o.topic, {.deadline = std::chrono::seconds(30)});
  if (!producer) return fail_msg(producer.error().message());
  std::vector<std::byte> payload(std::max<std::size_t>(o.size, sizeof(Stamp)));
  const std::uint64_t interval = o.rate > 0 ? 1'000'000'000ull / o.rate : 0;
  const std::uint64_t start = mono_ns();
  for (std::uint64_t i = 0; i < o.events; ++i) {
    std::uint64_t intended = 0;
    if (interval != 0) {
      intended = start + i * interval;
      while (mono_ns() < intended) {
      }
    }
    const Stamp s{i, interval != 0 ? intended : mono_ns()};
    std::memcpy(payload.data(), &s, sizeof s);
    auto r = producer->publish({.type = "demo.Tick", .payload = Bytes(payload.data(), o.size)});
    if (!r) return fail_msg("publish " + std::to_string(i) + ": " + r.error().message());
  }
  const double secs = static_cast<double>(mono_ns() - start) / 1e9;
  std::printf("{\"events\":%" PRIu64 ",\"seconds\":%.6f}\n", o.events, secs);
  return 0;
}

int demo_consumer(const DemoChildOptions& o) {
  auto bus = Bus::attach(o.bus);
  if (!bus) return fail_msg(bus.error().message());
  const bool spin = std::thread::hardware_concurrency() >= 2 && o.rate > 0;
  auto consumer = bus->consumer(o.topic, {.group = o.group, .wait = spin ? Wait::kBusySpin : Wait::kPark});
  if (!consumer) return fail_msg(consumer.error().message());
  Histogram hist;
  std::uint64_t got = 0, next_seq = 0, first_ns = 0, last_ns = 0, bad = 0;
  const std::uint64_t deadline = mono_ns() + 120'000'000'000ull;
  while (got < o.events) {
    auto n = consumer->poll(
        [&](const EventView& e) {
          Stamp s{};
          if (e.payload().size() < sizeof s) {
            ++bad;
            return;
          }
          std::memcpy(&s, e.payload().data(), sizeof s);
          const std::uint64_t now = mono_ns();
          if (first_ns == 0) first_ns = now;
          last_ns = now;
          if (s.seq != next_seq) ++bad;
          next_seq = s.seq + 1;
          hist.record(now > s.sent_ns ? now - s.sent_ns : 0);
          ++got;
        },
        1024, std::chrono::milliseconds(100));
    if (!n) return fail_msg(n.error().message());
    if (mono_ns() > deadline) return fail_msg("consumer timed out after " + std::to_string(got) + " events");
  }
  const double secs = static_cast<double>(last_ns - first_ns) / 1e9;
  std::printf("{\"events\":%" PRIu64 ",\"out_of_order\":%" PRIu64 ",\"seconds\":%.6f,\"p50\":%" PRIu64
              ",\"p90\":%" PRIu64 ",\"p99\":%" PRIu64 ",\"p999\":%" PRIu64 ",\"max\":%" PRIu64 "}\n",
              got, bad, secs, hist.percentile(50), hist.percentile(90), hist.percentile(99), hist.percentile(99.9),
              hist.max());
  return bad == 0 ? 0 : 1;
}

// ---- the parent ----------------------------------------------------------

namespace {

struct PhaseResult {
  bool ok = false;
  double producer_secs = 0, consumer_secs = 0;
  std::uint64_t events = 0, p50 = 0, p90 = 0, p99 = 0, p999 = 0, max = 0, out_of_order = 0;
  std::string error;
};

std::uint64_t json_u64(const std::string& s, const char* key) {
  const std::string k = std::string("\"") + key + "\":";
  const auto at = s.find(k);
  return at == std::string::npos ? 0 : std::strtoull(s.c_str() + at + k.size(), nullptr, 10);
}
double json_f64(const std::string& s, const char* key) {
  const std::string k = std::string("\"") + key + "\":";
  const auto at = s.find(k);
  return at == std::string::npos ? 0 : std::strtod(s.c_str() + at + k.size(), nullptr);
}

// Each phase has its own topic: a lossless group left behind by one phase
// (its consumer gone) would rightly hold the next phase's producer back.
PhaseResult run_phase(Bus& bus, const DemoOptions& o, const std::string& topic, std::uint64_t events,
                      std::uint64_t rate) {
  PhaseResult res;
  const std::string group = "demo";
  if (auto t = bus.create_topic(topic, {.partitions = 1, .ring_bytes = 16ull << 20, .max_event = 64 << 10}); !t) {
    res.error = t.error().message();
    return res;
  }
  // The group exists before either process starts, so the consumer sees
  // every event of this phase.
  {
    auto c = bus.consumer(topic, {.group = group, .policy = Policy::kLossless, .start = Offset::earliest()});
    if (!c) {
      res.error = c.error().message();
      return res;
    }
  }
  const std::string exe = self_exe();
  const std::vector<std::string> common = {"--bus",    bus.name(),          "--topic", topic,
                                           "--events", std::to_string(events), "--size", std::to_string(o.size),
                                           "--rate",   std::to_string(rate), "--group", group};
  std::vector<std::string> cargs = {exe, "__demo-consumer"};
  cargs.insert(cargs.end(), common.begin(), common.end());
  std::vector<std::string> pargs = {exe, "__demo-producer"};
  pargs.insert(pargs.end(), common.begin(), common.end());
  Child consumer = spawn(exe, cargs, true);
  Child producer = spawn(exe, pargs, true);
  if (consumer.pid < 0 || producer.pid < 0) {
    res.error = "could not start the demo processes";
    return res;
  }
  const std::string pout = read_all(producer, 120'000);
  const int pst = wait_child(producer, 5'000);
  const std::string cout = read_all(consumer, 120'000);
  const int cst = wait_child(consumer, 5'000);
  if (pst != 0 || cst != 0 || pout.empty() || cout.empty()) {
    res.error = "demo processes failed (producer status " + std::to_string(pst) + ", consumer status " +
                std::to_string(cst) + ")";
    return res;
  }
  res.ok = true;
  res.events = json_u64(cout, "events");
  res.out_of_order = json_u64(cout, "out_of_order");
  res.producer_secs = json_f64(pout, "seconds");
  res.consumer_secs = json_f64(cout, "seconds");
  res.p50 = json_u64(cout, "p50");
  res.p90 = json_u64(cout, "p90");
  res.p99 = json_u64(cout, "p99");
  res.p999 = json_u64(cout, "p999");
  res.max = json_u64(cout, "max");
  return res;
}

}  // namespace

int run_demo_bench(const DemoOptions& o) {
  const std::string bus_name = "demo-" + std::to_string(::getpid());
  (void)Bus::destroy(bus_name);
  auto bus = Bus::attach(bus_name);
  if (!bus) return fail_msg(bus.error().message());
  struct Cleanup {
    std::string name;
    ~Cleanup() { (void)Bus::destroy(name); }
  } cleanup{bus_name};
  if (!o.json) {
    std::printf("herald demo: bus '%s', one topic per phase (1 partition, 16 MiB ring), a producer and a consumer "
                "process\n\n",
                bus_name.c_str());
    std::printf("  throughput: %" PRIu64 " events of %zu B, as fast as they go ...\n", o.events, o.size);
    std::fflush(stdout);
  }
  const PhaseResult tp = run_phase(*bus, o, "demo.throughput", o.events, 0);
  if (!tp.ok) return fail_msg("throughput phase: " + tp.error);
  const double prod_rate = static_cast<double>(o.events) / tp.producer_secs;
  const double cons_rate = static_cast<double>(tp.events) / std::max(tp.consumer_secs, 1e-9);
  const std::uint64_t lat_events = o.rate * o.seconds;
  if (!o.json) {
    std::printf("    producer %sevents/s, consumer %sevents/s (%.0f MB/s), %" PRIu64 " received in order\n\n",
                fmt_rate(prod_rate).c_str(), fmt_rate(cons_rate).c_str(),
                cons_rate * static_cast<double>(o.size) / 1e6, tp.events - tp.out_of_order);
    std::printf("  latency: %" PRIu64 " events paced at %s/s, one-way, stamped with the intended send time ...\n",
                lat_events, fmt_rate(static_cast<double>(o.rate)).c_str());
    std::fflush(stdout);
  }
  const PhaseResult lt = run_phase(*bus, o, "demo.latency", lat_events, o.rate);
  if (!lt.ok) return fail_msg("latency phase: " + lt.error);
  if (o.json) {
    std::printf("{\"bus\":\"%s\",\"size\":%zu,\"throughput\":{\"events\":%" PRIu64
                ",\"producer_events_per_s\":%.0f,\"consumer_events_per_s\":%.0f},\"latency\":{\"rate\":%" PRIu64
                ",\"events\":%" PRIu64 ",\"p50_ns\":%" PRIu64 ",\"p90_ns\":%" PRIu64 ",\"p99_ns\":%" PRIu64
                ",\"p999_ns\":%" PRIu64 ",\"max_ns\":%" PRIu64 "}}\n",
                bus_name.c_str(), o.size, tp.events, prod_rate, cons_rate, o.rate, lt.events, lt.p50, lt.p90, lt.p99,
                lt.p999, lt.max);
  } else {
    std::printf("    p50 %s  p90 %s  p99 %s  p99.9 %s  max %s\n\n", format_ns(lt.p50).c_str(),
                format_ns(lt.p90).c_str(), format_ns(lt.p99).c_str(), format_ns(lt.p999).c_str(),
                format_ns(lt.max).c_str());
    std::printf("  Both figures were measured just now on this machine (%u cores).\n",
                std::thread::hardware_concurrency());
  }
  return tp.out_of_order == 0 && lt.out_of_order == 0 ? 0 : 1;
}

}  // namespace herald::tools
