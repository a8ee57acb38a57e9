#include "tests/support/test_env.hpp"

#include <dirent.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <thread>

#include <gtest/gtest.h>

namespace herald::test {

namespace {
std::atomic<int> g_counter{0};

std::string sanitize(const std::string& s) {
  std::string out;
  for (char c : s) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_')
      out += c;
  }
  return out;
}
}  // namespace

std::string unique_bus(const std::string& tag) {
  std::string t = tag;
  if (t.empty()) {
    if (const auto* info = ::testing::UnitTest::GetInstance()->current_test_info()) t = info->name();
  }
  std::string name = "t" + std::to_string(::getpid()) + "-" + std::to_string(g_counter.fetch_add(1)) + "-" +
                     sanitize(t);
  if (name.size() > 64) name.resize(64);
  return name;
}

std::uint64_t seed(const char* what) {
  std::uint64_t s = 0;
  if (const char* env = std::getenv("HERALD_SEED"); env != nullptr && *env != '\0') {
    s = std::strtoull(env, nullptr, 0);
  } else {
    s = std::random_device{}();
    s = s << 32 | std::random_device{}();
  }
  std::fprintf(stderr, "[herald] %s seed = %llu (replay with HERALD_SEED=%llu)\n", what ? what : "test",
               static_cast<unsigned long long>(s), static_cast<unsigned long long>(s));
  return s;
}

double stress_scale() {
  if (const char* env = std::getenv("HERALD_STRESS_SCALE"); env != nullptr && *env != '\0') {
    const double v = std::strtod(env, nullptr);
    if (v > 0) return v;
  }
  return 1.0;
}

std::uint64_t scaled(std::uint64_t n) {
  const double v = static_cast<double>(n) * stress_scale();
  return v < 1.0 ? 1 : static_cast<std::uint64_t>(v);
}

bool under_tsan() {
#if defined(__SANITIZE_THREAD__)
  return true;
#else
  return false;
#endif
}

bool under_asan() {
#if defined(__SANITIZE_ADDRESS__)
  return true;
#else
  return false;
#endif
}

long rss_kb(const void* addr) {
  std::ifstream smaps("/proc/self/smaps");
  const auto want = reinterpret_cast<std::uintptr_t>(addr);
  std::string line;
  bool in = false;
  while (std::getline(smaps, line)) {
    unsigned long lo = 0, hi = 0;
    if (std::sscanf(line.c_str(), "%lx-%lx ", &lo, &hi) == 2) {  // a mapping's first line
      in = lo == want;
      continue;
    }
    long kb = 0;
    if (in && std::sscanf(line.c_str(), "Rss: %ld kB", &kb) == 1) return kb;
  }
  return -1;
}

void remove_bus_objects(const std::string& bus) {
  const std::string prefix = "herald." + bus + ".";
  if (DIR* d = ::opendir("/dev/shm")) {
    while (dirent* e = ::readdir(d)) {
      if (std::strncmp(e->d_name, prefix.c_str(), prefix.size()) == 0) ::shm_unlink(("/" + std::string(e->d_name)).c_str());
    }
    ::closedir(d);
  }
}

BusGuard::BusGuard(std::string bus) : bus_(std::move(bus)) {
  ::setenv("HERALD_NO_AUTOSTART", "1", 1);
  char tmpl[] = "/tmp/herald-test-XXXXXX";
  if (char* d = ::mkdtemp(tmpl)) run_dir_ = d;
  ::setenv("HERALD_RUN_DIR", run_dir_.c_str(), 1);
  remove_bus_objects(bus_);
}

BusGuard::~BusGuard() {
  remove_bus_objects(bus_);
  if (!run_dir_.empty()) {
    if (DIR* d = ::opendir(run_dir_.c_str())) {
      while (dirent* e = ::readdir(d)) {
        if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0)
          ::unlink((run_dir_ + "/" + e->d_name).c_str());
      }
      ::closedir(d);
    }
    ::rmdir(run_dir_.c_str());
  }
}

bool wait_until(const std::function<bool()>& pred, double seconds, const std::function<std::string()>& describe) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  std::uint64_t spins = 0;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) {
      std::fprintf(stderr, "[herald] wait_until: gave up after %.1fs%s%s\n", seconds, describe ? ": " : "",
                   describe ? describe().c_str() : "");
      return false;
    }
    if (++spins < 64) {
      sched_yield();
    } else {
      std::this_thread::sleep_for(std::chrono::microseconds(200));  // polling a condition, not synchronising
    }
  }
  return true;
}

}  // namespace herald::test
