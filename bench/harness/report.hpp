// herald-bench's results: rows with their repetitions, the summary of each
// (medians, min–max, ratios), and their renderings: the markdown table, the
// JSON document (--json / --out), the SVG plot (--plot), and the checker of
// a JSON file (--check, the smoke test's second step).
#pragma once

#include <array>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench/harness/runner.hpp"

namespace herald::bench {

inline constexpr std::array<double, 5> kPercentiles = {50, 90, 99, 99.9, 99.99};
inline constexpr std::array<const char*, 5> kPercentileNames = {"p50", "p90", "p99", "p99.9", "p99.99"};

struct Row {
  RowSpec spec;
  bool herald = false;      // a herald row (ratios are to the best of these)
  bool comparison = false;  // fanout's 1-group herald row: the reference for the 3-group rows
  std::string label;        // "herald publish", "ring", "zeromq"
  std::string describe;     // what one message includes (footnote)
  std::string skip;         // non-empty: not run, and why
  std::vector<RepResult> reps;
  std::string error;        // the first failed repetition's reason: the row is FAILED

  // Filled by summarize().
  double eps_median = 0, eps_min = 0, eps_max = 0;
  std::array<double, kPercentiles.size()> pct_median{};  // ns, median over repetitions
  double lat_max = 0;                                    // ns, over every repetition
  std::shared_ptr<tools::Histogram> merged;              // every repetition's latencies
  std::vector<double> group_rates_median;                // fanout: per group
  double vs_best_herald = 0;    // this row's headline / the best herald row's
  double herald_over_peer = 0;  // non-herald rows: best herald / this row
  // Non-herald rows: the median over repetitions i of (best herald's rep i
  // / this row's rep i). The two reps ran seconds apart, so a change of
  // vCPU placement between repetitions moves both: unlike the ratio of
  // medians, it does not compare a herald rep in one placement with a peer
  // rep in the other.
  double herald_over_peer_paired = 0;
  double single_group_ratio = 0;  // fanout: per-group rate / the 1-group row's rate
  std::string best_herald;        // the label of that best herald row

  [[nodiscard]] bool skipped() const { return !skip.empty(); }
  [[nodiscard]] bool failed() const { return !skipped() && !error.empty(); }
  [[nodiscard]] bool latency_row() const {
    return spec.scenario == Scenario::kLatency || spec.scenario == Scenario::kPingPong;
  }
  [[nodiscard]] std::string name() const;  // "herald publish spin (1 group)"
};

// Repair latency of a killed producer and an idle consumer's CPU, measured
// with heraldd running (extras.cpp).
struct Extras {
  bool ran = false;
  std::string repair_error;
  std::vector<double> repair_ms;  // kill -> a consumer reads past the killed claim, per trial
  double daemon_last_repair_ms = 0, daemon_max_repair_ms = 0;  // heraldd's own: noticed -> repaired
  std::string idle_error;
  double idle_cpu_percent = -1;
  double idle_seconds = 0;
};

struct RunInfo {
  std::string command;
  unsigned cpus = 0;
  std::string date;
  bool quick = false;
  int reps = 0;
  std::string method;  // how counts / durations were chosen
  // cache_line_round_trip_ns (bench/support/round_trip.hpp) before the
  // first row and after the last, -1 when not measured (fewer than 2 CPUs):
  // tells the reader where the host put the vCPUs (every ratio moves with it).
  double round_trip_before_ns = -1, round_trip_after_ns = -1;
};

void summarize(std::vector<Row>& rows);
std::string markdown(const std::vector<Row>& rows, const Extras& x, const RunInfo& info);
nlohmann::json to_json(const std::vector<Row>& rows, const Extras& x, const RunInfo& info);
std::string svg(const std::vector<Row>& rows);
// 0 when the file is valid JSON whose every non-skipped row verified.
int check_json_file(const std::string& path);

}  // namespace herald::bench
