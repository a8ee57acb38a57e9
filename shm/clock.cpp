#include "shm/clock.hpp"

#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace herald::shm {

namespace {

// Reads /proc/<pid>/stat; returns field 22 (starttime) and the state letter.
bool read_stat(pid_t pid, std::uint64_t* start, char* state) noexcept {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[1024];
  ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return false;
  buf[n] = '\0';
  // The command name (field 2) is in parentheses and may hold spaces or ')':
  // fields after it start past the LAST ')'.
  char* p = std::strrchr(buf, ')');
  if (p == nullptr || p[1] == '\0') return false;
  p += 2;  // now at field 3 (state)
  *state = *p;
  for (int field = 3; field < 22; ++field) {
    p = std::strchr(p, ' ');
    if (p == nullptr) return false;
    ++p;
  }
  char* end = nullptr;
  errno = 0;
  unsigned long long v = std::strtoull(p, &end, 10);
  if (errno != 0 || end == p) return false;
  *start = v;
  return true;
}

}  // namespace

std::optional<std::uint64_t> process_start_time(pid_t pid) noexcept {
  std::uint64_t start = 0;
  char state = 0;
  if (!read_stat(pid, &start, &state)) return std::nullopt;
  return start;
}

std::uint64_t self_start_time() noexcept {
  static std::atomic<std::uint64_t> cached_pid{0};
  static std::atomic<std::uint64_t> cached_start{0};
  const auto me = static_cast<std::uint64_t>(::getpid());
  if (cached_pid.load(std::memory_order_acquire) == me) return cached_start.load(std::memory_order_relaxed);
  const std::uint64_t start = process_start_time(::getpid()).value_or(0);
  cached_start.store(start, std::memory_order_relaxed);
  cached_pid.store(me, std::memory_order_release);
  return start;
}

bool process_alive(pid_t pid, std::uint64_t start_time) noexcept {
  if (pid <= 0) return false;
  std::uint64_t start = 0;
  char state = 0;
  if (!read_stat(pid, &start, &state)) {
    // No readable /proc entry: ask the kernel whether the pid exists at all
    // (EPERM: it exists but is not ours). Without /proc we cannot check the
    // start time, so an existing pid counts as alive: the safe answer.
    if (::kill(pid, 0) == 0) return true;
    return errno == EPERM;
  }
  if (state == 'Z' || state == 'X') return false;
  return start_time == 0 || start == start_time;
}

}  // namespace herald::shm
