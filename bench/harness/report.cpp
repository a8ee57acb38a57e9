#include "bench/harness/report.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "tools/common/units.hpp"

namespace herald::bench {

namespace {

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// Text for one markdown table cell: a failed row's error may be the tail of
// a peer's log, with newlines, '|' and terminal colours, which split the
// row (found by an exploratory pass). Escape sequences are dropped,
// newlines become spaces, '|' is escaped, and it is cut at 300 bytes.
std::string cell(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size() && out.size() < 300; ++i) {
    const char c = s[i];
    if (c == '\x1b') {  // CSI: ESC [ ... final byte in @..~
      if (i + 1 < s.size() && s[i + 1] == '[') {
        i += 2;
        while (i < s.size() && (s[i] < '@' || s[i] > '~')) ++i;
      }
      continue;
    }
    if (c == '\n' || c == '\r' || c == '\t') {
      if (!out.empty() && out.back() != ' ') out += ' ';
    } else if (c == '|') {
      out += "\\|";
    } else if (static_cast<unsigned char>(c) >= 0x20) {
      out += c;
    }
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

std::string fmt_ns(double ns) { return tools::format_ns(static_cast<std::uint64_t>(std::llround(ns))); }

std::string fmt_ratio(double r) {
  if (r <= 0) return "–";
  char b[32];
  std::snprintf(b, sizeof b, "%.2f", r);
  return b;
}

std::string size_text(std::size_t s) {
  if (s >= 1024 && s % 1024 == 0) return std::to_string(s / 1024) + "K";
  return std::to_string(s);
}

// The block a row's ratios are computed in.
std::pair<Scenario, std::size_t> block_of(const Row& r) { return {r.spec.scenario, r.spec.size}; }

bool usable(const Row& r) { return !r.skipped() && !r.failed() && !r.reps.empty(); }

double headline(const Row& r) { return r.latency_row() ? r.pct_median[0] : r.eps_median; }

// One repetition's headline figure (0 if it has none).
double rep_headline(const Row& r, const RepResult& rep) {
  if (!rep.ok) return 0;
  if (!r.latency_row()) return rep.events_per_s;
  return rep.latency ? static_cast<double>(rep.latency->percentile(kPercentiles[0])) : 0;
}

}  // namespace

std::string Row::name() const {
  std::string n = label;
  if (!spec.mode.empty()) n += " " + spec.mode;
  n += " " + std::string(wait_name(spec.wait));
  if (comparison) n += " (1 group)";
  return n;
}

void summarize(std::vector<Row>& rows) {
  for (Row& r : rows) {
    if (r.skipped() || r.reps.empty()) continue;
    for (const RepResult& rep : r.reps)
      if (!rep.ok && r.error.empty()) r.error = rep.error.empty() ? "failed" : rep.error;
    if (r.failed()) continue;
    std::vector<double> eps;
    std::vector<std::vector<double>> pct(kPercentiles.size());
    std::vector<std::vector<double>> groups;
    for (const RepResult& rep : r.reps) {
      eps.push_back(rep.events_per_s);
      if (groups.size() < rep.consumer_rates.size()) groups.resize(rep.consumer_rates.size());
      for (std::size_t g = 0; g < rep.consumer_rates.size(); ++g) groups[g].push_back(rep.consumer_rates[g]);
      if (rep.latency) {
        if (!r.merged) r.merged = std::make_shared<tools::Histogram>();
        r.merged->merge(*rep.latency);
        for (std::size_t i = 0; i < kPercentiles.size(); ++i)
          pct[i].push_back(static_cast<double>(rep.latency->percentile(kPercentiles[i])));
        r.lat_max = std::max(r.lat_max, static_cast<double>(rep.latency->max()));
      }
    }
    r.eps_median = median(eps);
    r.eps_min = *std::min_element(eps.begin(), eps.end());
    r.eps_max = *std::max_element(eps.begin(), eps.end());
    for (std::size_t i = 0; i < kPercentiles.size(); ++i) r.pct_median[i] = median(pct[i]);
    for (auto& g : groups) r.group_rates_median.push_back(median(g));
  }
  // Ratios of medians within each (scenario, size) block.
  std::map<std::pair<Scenario, std::size_t>, const Row*> best;
  for (const Row& r : rows) {
    if (!r.herald || r.comparison || !usable(r)) continue;
    auto [it, fresh] = best.try_emplace(block_of(r), &r);
    if (fresh) continue;
    const bool better = r.latency_row() ? headline(r) < headline(*it->second) : headline(r) > headline(*it->second);
    if (better) it->second = &r;
  }
  for (Row& r : rows) {
    if (!usable(r)) continue;
    auto it = best.find(block_of(r));
    if (it == best.end() || headline(*it->second) <= 0 || headline(r) <= 0) continue;
    r.best_herald = it->second->name();
    r.vs_best_herald = headline(r) / headline(*it->second);
    if (r.herald) continue;
    const Row& b = *it->second;
    r.herald_over_peer = headline(b) / headline(r);
    std::vector<double> paired;
    for (std::size_t i = 0; i < std::min(b.reps.size(), r.reps.size()); ++i) {
      const double hb = rep_headline(b, b.reps[i]), hr = rep_headline(r, r.reps[i]);
      if (hb > 0 && hr > 0) paired.push_back(hb / hr);
    }
    r.herald_over_peer_paired = median(paired);
  }
  for (Row& r : rows) {
    if (r.spec.scenario != Scenario::kFanout || r.comparison || !usable(r)) continue;
    for (const Row& c : rows)
      // The same mode only: the one-group row is a single publish, and a
      // batch row divided by it read "÷ 1 group 3.08" (found by an
      // exploratory pass).
      if (c.comparison && usable(c) && c.label == r.label && c.spec.size == r.spec.size && c.spec.wait == r.spec.wait &&
          c.spec.mode == r.spec.mode && c.eps_median > 0)
        r.single_group_ratio = r.eps_median / c.eps_median;
  }
}

std::string markdown(const std::vector<Row>& rows, const Extras& x, const RunInfo& info) {
  std::ostringstream o;
  std::map<std::string, int> notes;  // describe text -> footnote number
  o << "herald-bench: " << info.command << "\n";
  o << "(" << info.cpus << " cores usable, " << info.reps << " repetitions per row, interleaved; " << info.method
    << ")\n";
  if (info.round_trip_before_ns >= 0)
    o << "(a cache line's round trip between two threads: " << static_cast<long>(info.round_trip_before_ns)
      << " ns before the rows, " << static_cast<long>(info.round_trip_after_ns)
      << " ns after; ~100 ns: the two vCPUs are close, ~500 ns: far apart, and every ratio moves with it)\n";
  o << "\n";
  o << "| scenario | size | transport / mode / wait | events/s median (min–max) | MB/s | p50 | p90 | p99 | p99.9 | "
       "p99.99 | max | ÷ best herald | herald/peer | notes |\n";
  o << "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n";
  for (const Row& r : rows) {
    auto [it, fresh] = notes.try_emplace(r.describe, static_cast<int>(notes.size()) + 1);
    (void)fresh;
    o << "| " << scenario_name(r.spec.scenario) << " | " << size_text(r.spec.size) << " | " << r.name() << " ["
      << it->second << "] | ";
    if (r.skipped()) {
      o << "skipped | | | | | | | | | | " << cell(r.skip) << " |\n";
      continue;
    }
    if (r.failed()) {
      o << "**FAILED** | | | | | | | | | | " << cell(r.error) << " |\n";
      continue;
    }
    if (r.reps.empty()) {
      o << "not run | | | | | | | | | | interrupted |\n";
      continue;
    }
    o << tools::format_count(r.eps_median) << " (" << tools::format_count(r.eps_min) << "–"
      << tools::format_count(r.eps_max) << ") | ";
    char mb[32];
    std::snprintf(mb, sizeof mb, "%.1f", r.eps_median * static_cast<double>(r.spec.size) / 1e6);
    o << (r.spec.scenario == Scenario::kPingPong ? "–" : mb) << " | ";
    for (std::size_t i = 0; i < kPercentiles.size(); ++i) o << (r.merged ? fmt_ns(r.pct_median[i]) : "–") << " | ";
    o << (r.merged ? fmt_ns(r.lat_max) : "–") << " | ";
    o << fmt_ratio(r.vs_best_herald) << " | " << fmt_ratio(r.herald_over_peer) << " | ";
    std::string n;
    if (r.spec.oversubscribed) n += "oversubscribed; ";
    if (r.herald_over_peer_paired > 0) n += "paired " + fmt_ratio(r.herald_over_peer_paired) + "; ";
    if (r.spec.scenario == Scenario::kFanout && r.group_rates_median.size() > 1) {
      n += "per group:";
      for (double g : r.group_rates_median) n += " " + tools::format_count(g);
      n += "; ";
      if (r.single_group_ratio > 0) n += "÷ 1 group " + fmt_ratio(r.single_group_ratio) + "; ";
    }
    if (!n.empty()) n.resize(n.size() - 2);
    o << n << " |\n";
  }
  o << "\nevents/s: per consumer (fanout: the slowest group; mpsc: both producers together; pingpong: round trips). "
       "Latency: latency rows one-way from the intended send time (paced, so coordinated omission is counted), "
       "pingpong rows round trip / 2 (echoed from inside the receive handler, timed to the echo's handler). "
       "Ratios are of medians within the same scenario and size, of events/s (throughput, fanout, mpsc) or of "
       "p50 (latency, pingpong: below 1 is faster); ÷ best herald compares with the best herald row, "
       "herald/peer is that best herald row over this one. paired (notes): the median over repetitions of the "
       "same ratio taken within each repetition (herald's rep i against this row's rep i, seconds apart), "
       "which a change of vCPU placement between repetitions does not skew.\n\n";
  std::vector<const std::string*> by_number(notes.size());
  for (const auto& [text, n] : notes) by_number[static_cast<std::size_t>(n - 1)] = &text;
  for (std::size_t i = 0; i < by_number.size(); ++i) o << "[" << i + 1 << "] " << *by_number[i] << "\n";
  if (x.ran) {
    o << "\n### heraldd: repair of a killed producer, idle consumer\n\n";
    if (!x.repair_error.empty()) {
      o << "- repair latency: **FAILED**: " << x.repair_error << "\n";
    } else {
      o << "- repair latency (SIGKILL of a producer holding a claim → a consumer reads past it; goal < 100 ms): "
           "median "
        << fmt_ns(median(x.repair_ms) * 1e6) << ", max "
        << fmt_ns(x.repair_ms.empty() ? 0 : *std::max_element(x.repair_ms.begin(), x.repair_ms.end()) * 1e6)
        << " over " << x.repair_ms.size() << " kills; heraldd's own (death noticed → repaired): last "
        << fmt_ns(x.daemon_last_repair_ms * 1e6) << ", max " << fmt_ns(x.daemon_max_repair_ms * 1e6) << "\n";
    }
    if (!x.idle_error.empty()) {
      o << "- idle parked consumer: **FAILED**: " << x.idle_error << "\n";
    } else {
      char b[96];
      std::snprintf(b, sizeof b, "%.2f %% CPU over %.2f s with no events (Wait::kPark)", x.idle_cpu_percent,
                    x.idle_seconds);
      o << "- idle parked consumer: " << b << "\n";
    }
  }
  return o.str();
}

nlohmann::json to_json(const std::vector<Row>& rows, const Extras& x, const RunInfo& info) {
  using nlohmann::json;
  json out;
  out["tool"] = "herald-bench";
  out["command"] = info.command;
  out["cpus"] = info.cpus;
  out["date"] = info.date;
  out["quick"] = info.quick;
  out["reps"] = info.reps;
  out["method"] = info.method;
  if (info.round_trip_before_ns >= 0)
    out["cache_line_round_trip_ns"] = {{"before", info.round_trip_before_ns}, {"after", info.round_trip_after_ns}};
  json arr = json::array();
  for (const Row& r : rows) {
    json j;
    j["scenario"] = scenario_name(r.spec.scenario);
    j["size"] = r.spec.size;
    j["transport"] = r.label;
    j["mode"] = r.spec.mode;
    j["wait"] = wait_name(r.spec.wait);
    j["name"] = r.name();
    j["describe"] = r.describe;
    j["producers"] = r.spec.producers;
    j["consumers"] = r.spec.consumers;
    j["comparison"] = r.comparison;
    j["oversubscribed"] = r.spec.oversubscribed;
    j["skipped"] = r.skipped();
    if (r.skipped()) j["skip_reason"] = r.skip;
    j["failed"] = r.failed() || (!r.skipped() && r.reps.empty());
    if (r.failed()) j["error"] = r.error;
    if (!r.skipped() && r.reps.empty()) j["error"] = "not run (interrupted)";
    j["verified"] = !r.skipped() && !r.failed() && !r.reps.empty();
    if (r.skipped()) {
      arr.push_back(j);
      continue;
    }
    json reps = json::array();
    for (const RepResult& rep : r.reps) {
      json e;
      e["ok"] = rep.ok;
      if (!rep.ok) e["error"] = rep.error;
      e["events"] = rep.events;
      e["seconds"] = rep.seconds;
      e["events_per_s"] = rep.events_per_s;
      e["mb_per_s"] = rep.events_per_s * static_cast<double>(r.spec.size) / 1e6;
      e["consumer_rates"] = rep.consumer_rates;
      if (rep.latency) {
        json l;
        for (std::size_t i = 0; i < kPercentiles.size(); ++i) l[kPercentileNames[i]] = rep.latency->percentile(kPercentiles[i]);
        l["max"] = rep.latency->max();
        l["count"] = rep.latency->count();
        e["latency_ns"] = l;
      }
      reps.push_back(e);
    }
    j["reps"] = reps;
    if (!r.failed()) {
      j["events_per_s"] = {{"median", r.eps_median}, {"min", r.eps_min}, {"max", r.eps_max}};
      j["mb_per_s_median"] = r.eps_median * static_cast<double>(r.spec.size) / 1e6;
      if (r.merged) {
        json l;
        for (std::size_t i = 0; i < kPercentiles.size(); ++i) l[kPercentileNames[i]] = r.pct_median[i];
        l["max"] = r.lat_max;
        j["latency_ns_median"] = l;
      }
      if (!r.group_rates_median.empty()) j["group_rates_median"] = r.group_rates_median;
      if (r.vs_best_herald > 0) j["ratio_to_best_herald"] = r.vs_best_herald;
      if (r.herald_over_peer > 0) j["herald_over_peer"] = r.herald_over_peer;
      if (r.herald_over_peer_paired > 0) j["herald_over_peer_paired"] = r.herald_over_peer_paired;
      if (!r.best_herald.empty()) j["best_herald_row"] = r.best_herald;
      if (r.single_group_ratio > 0) j["ratio_to_single_group"] = r.single_group_ratio;
    }
    arr.push_back(j);
  }
  out["rows"] = arr;
  if (x.ran) {
    json e;
    if (x.repair_error.empty()) {
      e["repair_latency_ms"] = x.repair_ms;
      e["repair_latency_ms_median"] = median(x.repair_ms);
      e["daemon_last_repair_ms"] = x.daemon_last_repair_ms;
      e["daemon_max_repair_ms"] = x.daemon_max_repair_ms;
    } else {
      e["repair_error"] = x.repair_error;
    }
    if (x.idle_error.empty()) {
      e["idle_consumer_cpu_percent"] = x.idle_cpu_percent;
      e["idle_seconds"] = x.idle_seconds;
    } else {
      e["idle_error"] = x.idle_error;
    }
    out["heraldd"] = e;
  }
  return out;
}

int check_json_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    std::fprintf(stderr, "herald-bench: --check: cannot open %s\n", path.c_str());
    return 1;
  }
  nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("rows") || !j["rows"].is_array()) {
    std::fprintf(stderr, "herald-bench: --check: %s is not a herald-bench JSON document\n", path.c_str());
    return 1;
  }
  int run = 0, skipped = 0, bad = 0;
  // Blocks (scenario, size) where a herald row ran: their peer rows that ran
  // must carry both ratios (of medians, and paired).
  std::set<std::pair<std::string, int>> herald_ran;
  for (const auto& r : j["rows"])
    if (r.value("transport", "") == "herald" && r.value("verified", false) && !r.value("comparison", false))
      herald_ran.insert({r.value("scenario", ""), r.value("size", 0)});
  for (const auto& r : j["rows"]) {
    const std::string name = r.value("scenario", "?") + " " + std::to_string(r.value("size", 0)) + " " +
                             r.value("name", "?");
    if (r.value("skipped", false)) {
      ++skipped;
      continue;
    }
    ++run;
    if (!r.value("verified", false) || r.value("failed", true)) {
      ++bad;
      std::fprintf(stderr, "herald-bench: --check: %s: not verified: %s\n", name.c_str(),
                   r.value("error", std::string("no error recorded")).c_str());
      continue;
    }
    if (r.value("transport", "") != "herald" && herald_ran.count({r.value("scenario", ""), r.value("size", 0)}) != 0 &&
        (r.value("herald_over_peer", 0.0) <= 0 || r.value("herald_over_peer_paired", 0.0) <= 0)) {
      ++bad;
      std::fprintf(stderr, "herald-bench: --check: %s: no herald/peer ratio (of medians and paired)\n", name.c_str());
    }
  }
  if (j.contains("heraldd")) {
    for (const char* k : {"repair_error", "idle_error"})
      if (j["heraldd"].contains(k)) {
        ++bad;
        std::fprintf(stderr, "herald-bench: --check: heraldd: %s\n", j["heraldd"][k].get<std::string>().c_str());
      }
  }
  if (run == 0) {
    std::fprintf(stderr, "herald-bench: --check: no row ran\n");
    return 1;
  }
  std::printf("herald-bench --check: %d rows ran and verified, %d skipped, %d failed\n", run - bad, skipped, bad);
  return bad == 0 ? 0 : 1;
}

// ---- SVG ---------------------------------------------------------------------

namespace {

const char* kColors[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
                         "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

std::string esc(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '<') o += "&lt;";
    else if (c == '>') o += "&gt;";
    else if (c == '&') o += "&amp;";
    else o += c;
  }
  return o;
}

}  // namespace

std::string svg(const std::vector<Row>& rows) {
  std::vector<const Row*> lat, thr;
  for (const Row& r : rows) {
    if (!usable(r)) continue;
    if (r.merged && r.merged->count() > 0) lat.push_back(&r);
    else if (!r.latency_row()) thr.push_back(&r);
  }
  const double W = 1000, left = 80, right = 330, plot_w = W - left - right;
  const double lat_h = lat.empty() ? 0 : 360, bar_h = 18;
  const double thr_top = lat_h + (lat.empty() ? 20 : 70);
  const double H = thr_top + 30 + bar_h * static_cast<double>(thr.size()) + 30;
  std::ostringstream o;
  char b[512];
  std::snprintf(b, sizeof b,
                "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" font-family=\"sans-serif\" "
                "font-size=\"11\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
                W, H);
  o << b;
  if (!lat.empty()) {
    // x: log10(1/(1-p)), 0 .. 5 (p = 0 .. 99.999%); y: log10(ns).
    const double top = 40, h = lat_h - 80, xmax = 5;
    double lo = 1e18, hi = 1;
    for (const Row* r : lat) {
      lo = std::min(lo, std::max(1.0, static_cast<double>(r->merged->percentile(0.0))));
      hi = std::max(hi, static_cast<double>(r->merged->max()));
    }
    const double ylo = std::floor(std::log10(lo)), yhi = std::max(ylo + 1, std::ceil(std::log10(hi)));
    auto X = [&](double v) { return left + plot_w * v / xmax; };
    auto Y = [&](double ns) { return top + h - h * (std::log10(std::max(ns, 1.0)) - ylo) / (yhi - ylo); };
    o << "<text x=\"" << left << "\" y=\"20\" font-size=\"14\">Latency by percentile (log scales; one-way, "
         "pingpong: round trip / 2)</text>\n";
    const char* ticks[] = {"0%", "90%", "99%", "99.9%", "99.99%", "99.999%"};
    for (int i = 0; i <= 5; ++i) {
      std::snprintf(b, sizeof b,
                    "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/><text x=\"%.1f\" "
                    "y=\"%.1f\" text-anchor=\"middle\">%s</text>\n",
                    X(i), top, X(i), top + h, X(i), top + h + 15, ticks[i]);
      o << b;
    }
    for (double e = ylo; e <= yhi; e += 1) {
      const double ns = std::pow(10.0, e);
      std::snprintf(b, sizeof b,
                    "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/><text x=\"%.1f\" "
                    "y=\"%.1f\" text-anchor=\"end\">%s</text>\n",
                    left, Y(ns), left + plot_w, Y(ns), left - 5, Y(ns) + 4, tools::format_ns(static_cast<std::uint64_t>(ns)).c_str());
      o << b;
    }
    for (std::size_t k = 0; k < lat.size(); ++k) {
      const Row& r = *lat[k];
      const char* color = kColors[k % 10];
      o << "<polyline fill=\"none\" stroke=\"" << color << "\" stroke-width=\"1.5\" points=\"";
      for (int s = 0; s <= 250; ++s) {
        const double v = xmax * s / 250.0;
        const double p = 100.0 * (1.0 - std::pow(10.0, -v));
        std::snprintf(b, sizeof b, "%.1f,%.1f ", X(v), Y(static_cast<double>(r.merged->percentile(p))));
        o << b;
      }
      o << "\"/>\n";
      std::snprintf(b, sizeof b,
                    "<rect x=\"%.1f\" y=\"%.1f\" width=\"12\" height=\"3\" fill=\"%s\"/><text x=\"%.1f\" "
                    "y=\"%.1f\">%s</text>\n",
                    left + plot_w + 15, top + 14.0 * static_cast<double>(k) + 2, color, left + plot_w + 32,
                    top + 14.0 * static_cast<double>(k) + 7,
                    esc(std::string(scenario_name(r.spec.scenario)) + " " + size_text(r.spec.size) + " " + r.name())
                        .c_str());
      o << b;
    }
  }
  if (!thr.empty()) {
    double mx = 0;
    for (const Row* r : thr) mx = std::max(mx, r->eps_max);
    o << "<text x=\"" << left << "\" y=\"" << thr_top << "\" font-size=\"14\">Throughput, events/s (median; "
      << "whisker: min–max over repetitions)</text>\n";
    for (std::size_t k = 0; k < thr.size(); ++k) {
      const Row& r = *thr[k];
      const double y = thr_top + 15 + bar_h * static_cast<double>(k);
      const double bx = left + 170, bw = plot_w + right - 170 - 90;
      auto L = [&](double v) { return bw * v / mx; };
      std::snprintf(b, sizeof b,
                    "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text><rect x=\"%.1f\" y=\"%.1f\" "
                    "width=\"%.1f\" height=\"%.1f\" fill=\"%s\"/><line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" "
                    "y2=\"%.1f\" stroke=\"black\"/><text x=\"%.1f\" y=\"%.1f\">%s</text>\n",
                    bx - 5, y + 12,
                    esc(std::string(scenario_name(r.spec.scenario)) + " " + size_text(r.spec.size) + " " + r.name())
                        .c_str(),
                    bx, y + 2, L(r.eps_median), bar_h - 4, r.herald ? "#1f77b4" : "#ff7f0e", bx + L(r.eps_min),
                    y + bar_h / 2, bx + L(r.eps_max), y + bar_h / 2, bx + L(r.eps_max) + 5, y + 12,
                    tools::format_count(r.eps_median).c_str());
      o << b;
    }
  }
  o << "</svg>\n";
  return o.str();
}

}  // namespace herald::bench
