// herald_micro_bench: Google Benchmark's main with herald's set-up (private
// buses removed on any exit, --pin=P,C) and the ratio table at the end.
#include <benchmark/benchmark.h>

#include "bench/support/bench_env.hpp"

int main(int argc, char** argv) {
  herald::bench::init(&argc, argv);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  auto reporter = herald::bench::make_reporter(argc, argv);
  if (reporter) {
    benchmark::RunSpecifiedBenchmarks(reporter.get());
  } else {
    benchmark::RunSpecifiedBenchmarks();
  }
  benchmark::Shutdown();
  herald::bench::cleanup_all();
  return 0;
}
