// PidWatch (daemon/pid_watch.cpp) out of file descriptors: a live process
// whose pidfd cannot be opened is polled, never taken for dead. heraldd
// started under a small RLIMIT_NOFILE took a live producer for dead,
// repaired its slot and gave it to a newcomer: two producers in one slot
// (found by an exploratory pass).
#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "daemon/pid_watch.hpp"
#include "shm/clock.hpp"
#include "tests/support/fd_exhaustion.hpp"

namespace herald::daemon {
namespace {

// A child that lives until the parent closes the write end of its pipe
// (returned; -1 if the fork failed).
pid_t gated_child(int* release_fd) {
  int gate[2];
  if (::pipe2(gate, O_CLOEXEC) != 0) return -1;
  const pid_t child = ::fork();
  if (child == 0) {
    ::close(gate[1]);
    char c;
    (void)::read(gate[0], &c, 1);  // until the parent closes its end
    ::_exit(0);
  }
  ::close(gate[0]);
  *release_fd = gate[1];
  return child;
}

TEST(PidWatchTest, ALiveProcessWithoutAPidfdIsPolledNotDead) {
  int release = -1;
  const pid_t child = gated_child(&release);
  ASSERT_GT(child, 0);
  const std::uint64_t start = shm::process_start_time(child).value_or(0);
  ASSERT_NE(start, 0u);
  PidWatch watch;
  {
    test::FdExhaustion full;
    EXPECT_EQ(::open("/dev/null", O_RDONLY), -1) << "the fds are not exhausted";
    EXPECT_EQ(watch.add(child, start), PidWatch::Added::kPolling) << "a live process taken for dead";
    EXPECT_TRUE(watch.watching(child));
    EXPECT_TRUE(watch.exited().empty());
  }
  // Fds to spare again, and the child still alive: still watched, not gone.
  EXPECT_TRUE(watch.exited().empty());
  EXPECT_TRUE(watch.watching(child));
  ::close(release);  // the child exits
  int status = 0;
  // Not reaped yet: a zombie's /proc state says it is gone.
  std::vector<std::pair<pid_t, std::uint64_t>> gone;
  const std::uint64_t deadline = shm::monotonic_ns() + 30'000'000'000ull;
  while (gone.empty() && shm::monotonic_ns() < deadline) {
    gone = watch.exited();
    std::this_thread::yield();
  }
  ASSERT_EQ(gone.size(), 1u) << "the child's exit was never reported; watching=" << watch.watching(child);
  EXPECT_EQ(gone[0].first, child);
  EXPECT_EQ(gone[0].second, start);
  EXPECT_FALSE(watch.watching(child));
  EXPECT_EQ(::waitpid(child, &status, 0), child);
}

TEST(PidWatchTest, AGoneProcessIsGoneWithOrWithoutFds) {
  int release = -1;
  const pid_t child = gated_child(&release);
  ASSERT_GT(child, 0);
  // Its start time, so a reuse of the pid meanwhile is not taken for it.
  const std::uint64_t start = shm::process_start_time(child).value_or(0);
  ::close(release);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  PidWatch watch;
  EXPECT_EQ(watch.add(child, start), PidWatch::Added::kGone);
  test::FdExhaustion full;
  EXPECT_EQ(watch.add(child, start), PidWatch::Added::kGone);
}

}  // namespace
}  // namespace herald::daemon
