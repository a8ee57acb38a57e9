// Support for herald's micro benches: a private bus per benchmark run that is
// removed even when the run ends early, CPU pinning from the command line,
// and the reporter that prints herald-to-baseline ratios measured in the
// same run.
#pragma once

#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "herald/herald.hpp"

namespace herald::bench {

// Called by main() before any benchmark: HERALD_NO_AUTOSTART=1, a private
// HERALD_RUN_DIR, and cleanup of every live bus on exit, SIGINT and SIGTERM.
// Removes its own arguments (--pin=P,C, --ring_bytes=N) from argv.
void init(int* argc, char** argv);
// Removes every bus still registered and the run dir (also run at exit).
void cleanup_all() noexcept;

// Ring bytes per partition (herald) and of the baseline ring: --ring_bytes=N
// (a power of two), default 16 MiB, herald's default.
std::uint64_t ring_bytes_option() noexcept;

// CPUs from --pin=P,C (producer / main thread, consumer thread); -1: not pinned.
int producer_cpu() noexcept;
int consumer_cpu() noexcept;
// Pins the calling thread to cpu (a no-op for cpu < 0).
void pin_this_thread(int cpu) noexcept;

// cache_line_round_trip_ns (round_trip.hpp) between the producer and
// consumer CPUs.
double core_round_trip_ns();

// A bus of its own for one benchmark run: "b<pid>-<n>-<tag>". Its
// /dev/shm objects are removed by the destructor, by cleanup_all() on
// early exit, and by a prefix scan as a last resort.
class BenchBus {
 public:
  explicit BenchBus(const std::string& tag);
  ~BenchBus();
  BenchBus(const BenchBus&) = delete;
  BenchBus& operator=(const BenchBus&) = delete;

  // Null (and error() says why) when the bus could not be attached.
  Bus* bus() noexcept { return bus_ ? bus_.get() : nullptr; }
  const std::string& name() const noexcept { return name_; }
  const std::string& error() const noexcept { return error_; }

 private:
  std::string name_;
  std::string error_;
  std::unique_ptr<Bus> bus_;
};

// Removes every /dev/shm object whose name starts with "herald.<bus>.".
void remove_bus_objects(const std::string& bus) noexcept;

// A payload of n bytes whose first 8 bytes the benches overwrite with a
// sequence number (consumers check it: a verified transfer, not a guess).
std::vector<std::byte> make_payload(std::size_t n);

// Wraps the display reporter chosen by --benchmark_format and, at the end,
// prints a table of herald/baseline throughput ratios. Benchmarks are named
// "<scenario>/<variant>/<size>"; the baseline of a scenario is the variant
// named "ring" (or "ring_…", the first one seen), and every other variant
// of the same scenario and size is divided by it.
class RatioReporter : public benchmark::BenchmarkReporter {
 public:
  explicit RatioReporter(std::unique_ptr<benchmark::BenchmarkReporter> inner, bool table_to_stderr);
  bool ReportContext(const Context& context) override;
  // The core round trip measured before the run (printed with the table).
  void set_round_trip_before(double ns) { rtt_before_ = ns; }
  void ReportRuns(const std::vector<Run>& reports) override;
  void Finalize() override;

 private:
  struct Row {
    std::string scenario, variant, size;
    double items_per_second = 0;
    double ns_per_item = 0;
    bool aggregate = false;
  };
  std::unique_ptr<benchmark::BenchmarkReporter> inner_;
  bool to_stderr_;
  double rtt_before_ = 0;
  std::vector<Row> rows_;
};

// The display reporter --benchmark_format asks for (console or json),
// wrapped in a RatioReporter (the table goes to stderr under json).
std::unique_ptr<benchmark::BenchmarkReporter> make_reporter(int argc, char** argv);

// Sets items_per_second / bytes_per_second from the events moved.
inline void report_throughput(benchmark::State& state, std::uint64_t events, std::uint64_t payload_bytes) {
  state.SetItemsProcessed(static_cast<std::int64_t>(events));
  state.SetBytesProcessed(static_cast<std::int64_t>(events * payload_bytes));
}

}  // namespace herald::bench
