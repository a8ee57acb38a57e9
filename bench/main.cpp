// herald_micro_bench: Google Benchmark's main with herald's set-up (private
// buses removed on any exit, --pin=P,C) and the ratio table at the end.
#include <benchmark/benchmark.h>

#include <string>

#include "bench/support/bench_env.hpp"

int main(int argc, char** argv) {
  herald::bench::init(&argc, argv);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  const double rtt = herald::bench::core_round_trip_ns();
  benchmark::AddCustomContext("core_round_trip_ns", std::to_string(static_cast<long>(rtt)));
  auto reporter = herald::bench::make_reporter(argc, argv);
  if (auto* r = dynamic_cast<herald::bench::RatioReporter*>(reporter.get())) r->set_round_trip_before(rtt);
  if (reporter) {
    benchmark::RunSpecifiedBenchmarks(reporter.get());
  } else {
    benchmark::RunSpecifiedBenchmarks();
  }
  benchmark::Shutdown();
  herald::bench::cleanup_all();
  return 0;
}
