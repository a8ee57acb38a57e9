#include "shm/crash_point.hpp"

#ifdef HERALD_TESTING
#include <signal.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>

namespace herald::shm {

namespace {
struct Armed {
  std::string name;
  long at = 1;
  std::atomic<long> hits{0};
  Armed() {
    const char* env = std::getenv("HERALD_CRASH_AT");
    if (env == nullptr || *env == '\0') return;
    name = env;
    if (const auto colon = name.find(':'); colon != std::string::npos) {
      at = std::strtol(name.c_str() + colon + 1, nullptr, 10);
      name.resize(colon);
      if (at < 1) at = 1;
    }
  }
};
Armed& armed() {
  static Armed a;
  return a;
}
}  // namespace

bool g_crash_armed = [] {
  const char* env = std::getenv("HERALD_CRASH_AT");
  return env != nullptr && *env != '\0';
}();

void crash_point_hit(const char* name) noexcept {
  Armed& a = armed();
  if (a.name != name) return;
  if (a.hits.fetch_add(1) + 1 == a.at) ::raise(SIGKILL);
}

}  // namespace herald::shm
#endif
