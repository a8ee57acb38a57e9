#include "bench/support/bench_env.hpp"

#include "bench/support/round_trip.hpp"

#include <dirent.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>

namespace herald::bench {

namespace {

// Live buses, in a fixed table so the signal handler needs no lock.
struct LiveSlot {
  std::atomic<bool> used{false};
  char name[80] = {};
};
LiveSlot g_live[64];
char g_run_dir[64] = {};
std::atomic<int> g_counter{0};
int g_producer_cpu = -1;
int g_consumer_cpu = -1;
std::uint64_t g_ring_bytes = 16ull << 20;

void remove_run_dir() noexcept {
  if (g_run_dir[0] == '\0') return;
  if (DIR* d = ::opendir(g_run_dir)) {
    while (dirent* e = ::readdir(d)) {
      if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
      char path[sizeof g_run_dir + 300];
      std::snprintf(path, sizeof path, "%s/%s", g_run_dir, e->d_name);
      ::unlink(path);
    }
    ::closedir(d);
  }
  ::rmdir(g_run_dir);
}

void on_signal(int sig) {
  // Best effort on the way out: readdir is not async-signal-safe, but a
  // leaked 32 MiB /dev/shm segment per interrupted run is worse.
  cleanup_all();
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

}  // namespace

void cleanup_all() noexcept {
  for (LiveSlot& s : g_live) {
    if (s.used.load(std::memory_order_acquire)) {
      remove_bus_objects(s.name);
      s.used.store(false, std::memory_order_release);
    }
  }
  remove_run_dir();
  g_run_dir[0] = '\0';
}

void init(int* argc, char** argv) {
  // Our own flags first; Google Benchmark rejects what it does not know.
  int out = 1;
  for (int i = 1; i < *argc; ++i) {
    if (std::strncmp(argv[i], "--pin=", 6) == 0) {
      if (std::sscanf(argv[i] + 6, "%d,%d", &g_producer_cpu, &g_consumer_cpu) != 2) {
        std::fprintf(stderr, "herald_micro_bench: --pin=P,C takes two CPU numbers (producer, consumer)\n");
        std::exit(2);
      }
      continue;
    }
    if (std::strncmp(argv[i], "--ring_bytes=", 13) == 0) {
      g_ring_bytes = std::strtoull(argv[i] + 13, nullptr, 0);
      if (g_ring_bytes < 65536 || (g_ring_bytes & (g_ring_bytes - 1)) != 0) {
        std::fprintf(stderr, "herald_micro_bench: --ring_bytes=N takes a power of two >= 65536\n");
        std::exit(2);
      }
      continue;
    }
    argv[out++] = argv[i];
  }
  *argc = out;
  argv[out] = nullptr;

  ::setenv("HERALD_NO_AUTOSTART", "1", 1);
  std::snprintf(g_run_dir, sizeof g_run_dir, "/tmp/herald-bench-XXXXXX");
  if (::mkdtemp(g_run_dir) == nullptr) {
    std::perror("herald_micro_bench: mkdtemp");
    std::exit(1);
  }
  ::setenv("HERALD_RUN_DIR", g_run_dir, 1);
  std::atexit([] { cleanup_all(); });
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::signal(SIGHUP, on_signal);
  pin_this_thread(g_producer_cpu);
}

std::uint64_t ring_bytes_option() noexcept { return g_ring_bytes; }

double core_round_trip_ns() { return cache_line_round_trip_ns(g_producer_cpu, g_consumer_cpu); }
int producer_cpu() noexcept { return g_producer_cpu; }
int consumer_cpu() noexcept { return g_consumer_cpu; }

void pin_this_thread(int cpu) noexcept {
  if (cpu < 0) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(static_cast<unsigned>(cpu), &set);
  if (::pthread_setaffinity_np(::pthread_self(), sizeof set, &set) != 0)
    std::fprintf(stderr, "herald_micro_bench: cannot pin to CPU %d\n", cpu);
}

void remove_bus_objects(const std::string& bus) noexcept {
  const std::string prefix = "herald." + bus + ".";
  if (DIR* d = ::opendir("/dev/shm")) {
    while (dirent* e = ::readdir(d)) {
      if (std::strncmp(e->d_name, prefix.c_str(), prefix.size()) == 0) {
        char name[300];
        std::snprintf(name, sizeof name, "/%s", e->d_name);
        ::shm_unlink(name);
      }
    }
    ::closedir(d);
  }
}

BenchBus::BenchBus(const std::string& tag) {
  name_ = "b" + std::to_string(::getpid()) + "-" + std::to_string(g_counter.fetch_add(1)) + "-";
  for (char c : tag) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                    c == '_';
    name_ += ok ? c : '_';
  }
  if (name_.size() > 64) name_.resize(64);
  bool registered = false;
  for (LiveSlot& s : g_live) {
    bool expect = false;
    if (s.used.load(std::memory_order_relaxed)) continue;
    std::snprintf(s.name, sizeof s.name, "%s", name_.c_str());
    if (s.used.compare_exchange_strong(expect, true, std::memory_order_acq_rel)) {
      registered = true;
      break;
    }
  }
  if (!registered) {
    error_ = "more than 64 benchmark buses alive at once";
    return;
  }
  remove_bus_objects(name_);  // a previous run with the same pid (unlikely) left something
  auto b = Bus::attach(name_);
  if (!b) {
    error_ = "attach bus '" + name_ + "': " + b.error().message();
    return;
  }
  bus_ = std::make_unique<Bus>(std::move(b).value());
}

BenchBus::~BenchBus() {
  bus_.reset();
  (void)Bus::destroy(name_);
  remove_bus_objects(name_);
  for (LiveSlot& s : g_live) {
    if (s.used.load(std::memory_order_acquire) && name_ == s.name) {
      s.used.store(false, std::memory_order_release);
      break;
    }
  }
}

std::vector<std::byte> make_payload(std::size_t n) {
  std::vector<std::byte> p(n < 8 ? 8 : n);
  for (std::size_t i = 0; i < p.size(); ++i) p[i] = static_cast<std::byte>(i * 131 + 7);
  return p;
}

// ---------------------------------------------------------------------------
// RatioReporter
// ---------------------------------------------------------------------------

RatioReporter::RatioReporter(std::unique_ptr<benchmark::BenchmarkReporter> inner, bool table_to_stderr)
    : inner_(std::move(inner)), to_stderr_(table_to_stderr) {}

bool RatioReporter::ReportContext(const Context& context) {
  inner_->SetOutputStream(&GetOutputStream());
  inner_->SetErrorStream(&GetErrorStream());
  return inner_->ReportContext(context);
}

void RatioReporter::ReportRuns(const std::vector<Run>& reports) {
  inner_->ReportRuns(reports);
  for (const Run& r : reports) {
    if (r.error_occurred) continue;
    const bool agg = r.run_type == Run::RT_Aggregate;
    if (agg && r.aggregate_name != "median") continue;
    auto it = r.counters.find("items_per_second");
    if (it == r.counters.end()) continue;
    // "<scenario>/<variant>/<size>[/...]"
    const std::string name = r.run_name.function_name + (r.run_name.args.empty() ? "" : "/" + r.run_name.args);
    const auto a = name.find('/');
    const auto b = a == std::string::npos ? a : name.find('/', a + 1);
    if (b == std::string::npos) continue;
    Row row;
    row.scenario = name.substr(0, a);
    row.variant = name.substr(a + 1, b - a - 1);
    row.size = name.substr(b + 1);
    row.items_per_second = it->second.value;
    row.ns_per_item = row.items_per_second > 0 ? 1e9 / row.items_per_second : 0;
    row.aggregate = agg;
    // A median replaces the repetitions it summarises.
    std::erase_if(rows_, [&](const Row& o) {
      return o.scenario == row.scenario && o.variant == row.variant && o.size == row.size &&
             (agg || !o.aggregate);
    });
    if (!agg && std::any_of(rows_.begin(), rows_.end(), [&](const Row& o) {
          return o.scenario == row.scenario && o.variant == row.variant && o.size == row.size;
        }))
      continue;
    rows_.push_back(row);
  }
}

void RatioReporter::Finalize() {
  inner_->Finalize();
  std::ostream& out = to_stderr_ ? std::cerr : GetOutputStream();
  if (rows_.empty()) return;
  // Baseline per (scenario, size): the first "ring*" variant.
  std::map<std::pair<std::string, std::string>, const Row*> base;
  for (const Row& r : rows_) {
    if (r.variant.rfind("ring", 0) == 0) base.try_emplace({r.scenario, r.size}, &r);
  }
  char line[256];
  out << "\nherald / baseline ring, same run (items/s ratio; medians when repeated):\n";
  if (rtt_before_ > 0) {
    char rtt[160];
    std::snprintf(rtt, sizeof rtt,
                  "core-to-core cache line round trip: %.0f ns before, %.0f ns after the run "
                  "(~100: vCPUs close; ~500: far apart, cross-thread numbers ~3x worse)\n",
                  rtt_before_, core_round_trip_ns());
    out << rtt;
  }
  std::snprintf(line, sizeof line, "%-12s %-26s %6s %12s %9s %14s\n", "scenario", "variant", "size", "Mevents/s",
                "ns/event", "x baseline");
  out << line;
  for (const Row& r : rows_) {
    auto it = base.find({r.scenario, r.size});
    std::string ratio = "-";
    if (it != base.end() && it->second != &r && it->second->items_per_second > 0) {
      char buf[64];
      std::snprintf(buf, sizeof buf, "%.2fx %s", r.items_per_second / it->second->items_per_second,
                    it->second->variant.c_str());
      ratio = buf;
    } else if (it != base.end() && it->second == &r) {
      ratio = "(baseline)";
    }
    std::snprintf(line, sizeof line, "%-12s %-26s %6s %12.2f %9.1f %14s\n", r.scenario.c_str(), r.variant.c_str(),
                  r.size.c_str(), r.items_per_second / 1e6, r.ns_per_item, ratio.c_str());
    out << line;
  }
  out.flush();
}

std::unique_ptr<benchmark::BenchmarkReporter> make_reporter(int argc, char** argv) {
  std::string format = "console";
  bool color = ::isatty(STDOUT_FILENO) != 0;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--benchmark_format=", 19) == 0) format = argv[i] + 19;
    if (std::strcmp(argv[i], "--benchmark_color=false") == 0) color = false;
  }
  if (format == "json")
    return std::make_unique<RatioReporter>(std::make_unique<benchmark::JSONReporter>(), true);
  if (format != "console") return nullptr;  // csv: Google Benchmark's own reporter, no table
  return std::make_unique<RatioReporter>(
      std::make_unique<benchmark::ConsoleReporter>(color ? benchmark::ConsoleReporter::OO_Color
                                                         : benchmark::ConsoleReporter::OO_None),
      false);
}

}  // namespace herald::bench
