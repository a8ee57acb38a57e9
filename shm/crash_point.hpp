// Named crash points for the kill -9 tests. Compiled only with
// HERALD_TESTING; armed by the environment of the process under test:
//
//   HERALD_CRASH_AT=<name>[:<n>]   raise(SIGKILL) at the n-th hit (default 1)
//
// Disarmed, a crash point is one predictable branch on a global flag. The
// names are listed in docs/ARCHITECTURE.md ("Crash points").
#pragma once

namespace herald::shm {

#ifdef HERALD_TESTING
extern bool g_crash_armed;
void crash_point_hit(const char* name) noexcept;
#define HERALD_CRASH_POINT(name)                                            \
  do {                                                                      \
    if (__builtin_expect(::herald::shm::g_crash_armed, 0)) ::herald::shm::crash_point_hit(name); \
  } while (0)
#else
#define HERALD_CRASH_POINT(name) ((void)0)
#endif

}  // namespace herald::shm
