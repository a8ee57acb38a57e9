#include "daemon/pid_watch.hpp"

#include <sys/epoll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

#include "shm/clock.hpp"

namespace herald::daemon {

int open_pidfd(pid_t pid) noexcept { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

PidWatch::PidWatch() : epfd_(::epoll_create1(EPOLL_CLOEXEC)) {}

PidWatch::~PidWatch() {
  for (auto& [pid, e] : by_pid_)
    if (e.pidfd >= 0) ::close(e.pidfd);
  if (epfd_ >= 0) ::close(epfd_);
}

int PidWatch::open_watched(pid_t pid) {
  const int fd = open_pidfd(pid);
  if (fd < 0) return -1;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = static_cast<std::uint64_t>(pid);
  if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

PidWatch::Added PidWatch::add(pid_t pid, std::uint64_t start_time) {
  if (by_pid_.count(pid) != 0) return by_pid_[pid].pidfd >= 0 ? Added::kWatching : Added::kPolling;
  const int fd = open_watched(pid);
  const int err = errno;
  if (fd < 0 && err == ESRCH) return Added::kGone;
  // The pid might have been recycled between the owner's death and now:
  // check the start time AFTER opening the pidfd (which pins the process).
  // Without a pidfd (EMFILE, ENFILE, ENOMEM) the check is all there is.
  if (!shm::process_alive(pid, start_time)) {
    if (fd >= 0) {
      ::epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr);
      ::close(fd);
    }
    return Added::kGone;
  }
  by_pid_[pid] = Entry{fd, start_time};
  if (fd >= 0) return Added::kWatching;
  ++polled_;
  return Added::kPolling;
}

void PidWatch::remove(pid_t pid) {
  auto it = by_pid_.find(pid);
  if (it == by_pid_.end()) return;
  if (it->second.pidfd >= 0) {
    ::epoll_ctl(epfd_, EPOLL_CTL_DEL, it->second.pidfd, nullptr);
    ::close(it->second.pidfd);
  } else {
    --polled_;
  }
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
  // The polled ones, every kPollNs: gone, or (fds to spare again) watched.
  if (polled_ == 0) return out;
  const std::uint64_t now = shm::monotonic_ns();
  if (now < next_poll_ns_) return out;
  next_poll_ns_ = now + kPollNs;
  std::vector<pid_t> polled;
  for (const auto& [pid, e] : by_pid_)
    if (e.pidfd < 0) polled.push_back(pid);
  for (pid_t pid : polled) {
    Entry& e = by_pid_[pid];
    const int fd = open_watched(pid);
    if (!shm::process_alive(pid, e.start_time)) {
      if (fd >= 0) {
        ::epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr);
        ::close(fd);
      }
      out.emplace_back(pid, e.start_time);
      remove(pid);
    } else if (fd >= 0) {
      e.pidfd = fd;
      --polled_;
    }
  }
  return out;
}

}  // namespace herald::daemon
