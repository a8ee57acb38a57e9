// Watching processes for exit with pidfds (Linux >= 5.3): a pidfd becomes
// readable when its process exits, and an epoll fd over all of them lets the
// supervisor sleep until one does. Processes are (pid, start time): a pid
// whose start time no longer matches was recycled, so its owner is gone.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <utility>
#include <vector>

namespace herald::daemon {

// pidfd_open(2) by syscall: glibc 2.36's <sys/pidfd.h> lacks C linkage.
int open_pidfd(pid_t pid) noexcept;

class PidWatch {
 public:
  PidWatch();
  ~PidWatch();
  PidWatch(const PidWatch&) = delete;
  PidWatch& operator=(const PidWatch&) = delete;

  [[nodiscard]] int fd() const noexcept { return epfd_; }
  enum class Added : std::uint8_t {
    kWatching,  // by a pidfd: exited() reports its exit as soon as it happens
    kPolling,   // alive, but no pidfd could be opened (out of fds): exited()
                // checks it at most every kPollNs (heraldd calls it at least
                // every scan interval), and tries a pidfd again
    kGone,      // already gone (or the pid recycled)
  };
  // Starts watching. Only a process that is gone is kGone: running out of
  // fds never makes a live process look dead (it did, and heraldd repaired
  // a live producer's slot for a newcomer; found by an exploratory pass).
  Added add(pid_t pid, std::uint64_t start_time);
  static constexpr std::uint64_t kPollNs = 10'000'000;
  [[nodiscard]] bool watching(pid_t pid) const { return by_pid_.count(pid) != 0; }
  // The start time of the process watched under `pid` (0: none or unknown).
  [[nodiscard]] std::uint64_t start_time(pid_t pid) const {
    auto it = by_pid_.find(pid);
    return it == by_pid_.end() ? 0 : it->second.start_time;
  }
  void remove(pid_t pid);
  // Watched processes that exited since the last call; never blocks.
  std::vector<std::pair<pid_t, std::uint64_t>> exited();

 private:
  struct Entry {
    int pidfd = -1;  // -1: polled (see Added::kPolling)
    std::uint64_t start_time = 0;
  };
  // A pidfd for pid, in the epoll set; -1 when none could be had.
  int open_watched(pid_t pid);
  int epfd_ = -1;
  std::map<pid_t, Entry> by_pid_;
  std::size_t polled_ = 0;        // entries with pidfd -1
  std::uint64_t next_poll_ns_ = 0;
};

}  // namespace herald::daemon
