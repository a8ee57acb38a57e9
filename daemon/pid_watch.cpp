#include "daemon/pid_watch.hpp"

#include <sys/epoll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "shm/clock.hpp"

namespace herald::daemon {

int open_pidfd(pid_t pid) noexcept { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

PidWatch::PidWatch() : epfd_(::epoll_create1(EPOLL_CLOEXEC)) {}

PidWatch::~PidWatch() {
  for (auto& [pid, e] : by_pid_) ::close(e.pidfd);
  if (epfd_ >= 0) ::close(epfd_);
}

bool PidWatch::add(pid_t pid, std::uint64_t start_time) {
  if (by_pid_.count(pid) != 0) return true;
  const int fd = open_pidfd(pid);
  if (fd < 0) return false;  // no such process
  // The pid might have been recycled between the owner's death and now:
  // check the start time AFTER opening the pidfd (which pins the process).
  if (!shm::process_alive(pid, start_time)) {
    ::close(fd);
    return false;
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = static_cast<std::uint64_t>(pid);
  if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
    ::close(fd);
    return shm::process_alive(pid, start_time);
  }
  by_pid_[pid] = Entry{fd, start_time};
  return true;
}

void PidWatch::remove(pid_t pid) {
  auto it = by_pid_.find(pid);
  if (it == by_pid_.end()) return;
  ::epoll_ctl(epfd_, EPOLL_CTL_DEL, it->second.pidfd, nullptr);
  ::close(it->second.pidfd);
  by_pid_.erase(it);
}

std::vector<std::pair<pid_t, std::uint64_t>> PidWatch::exited() {
  std::vector<std::pair<pid_t, std::uint64_t>> out;
  epoll_event evs[64];
  for (;;) {
    const int n = ::epoll_wait(epfd_, evs, 64, 0);
    if (n <= 0) break;
    for (int i = 0; i < n; ++i) {
      const auto pid = static_cast<pid_t>(evs[i].data.u64);
      auto it = by_pid_.find(pid);
      if (it == by_pid_.end()) continue;
      out.emplace_back(pid, it->second.start_time);
      remove(pid);
    }
    if (n < 64) break;
  }
  return out;
}

}  // namespace herald::daemon
