#include "tools/common/spawn.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <climits>

extern char** environ;

namespace herald::tools {

std::string self_exe() {
  char buf[PATH_MAX];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return {};
  return std::string(buf, static_cast<std::size_t>(n));
}

Child spawn(const std::string& path, const std::vector<std::string>& args, bool capture_stdout) {
  Child c;
  int fds[2] = {-1, -1};
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  if (capture_stdout && ::pipe2(fds, O_CLOEXEC) == 0) {
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
  }
  std::vector<char*> argv;
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = -1;
  const int r = ::posix_spawn(&pid, path.c_str(), &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (fds[1] >= 0) ::close(fds[1]);
  if (r != 0) {
    if (fds[0] >= 0) ::close(fds[0]);
    return c;
  }
  c.pid = pid;
  c.out_fd = fds[0];
  return c;
}

int wait_child(Child& c, int timeout_ms) {
  if (c.pid <= 0) return -1;
  timespec start{};
  clock_gettime(CLOCK_MONOTONIC, &start);
  for (;;) {
    int status = 0;
    const pid_t r = ::waitpid(c.pid, &status, WNOHANG);
    if (r == c.pid) {
      c.pid = -1;
      return status;
    }
    timespec now{};
    clock_gettime(CLOCK_MONOTONIC, &now);
    const long elapsed = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1'000'000;
    if (elapsed > timeout_ms) {
      ::kill(c.pid, SIGKILL);
      ::waitpid(c.pid, &status, 0);
      c.pid = -1;
      return -1;
    }
    ::usleep(2000);  // polling a child's exit, not synchronising data
  }
}

std::string read_all(Child& c, int timeout_ms) {
  std::string out;
  if (c.out_fd < 0) return out;
  timespec start{};
  clock_gettime(CLOCK_MONOTONIC, &start);
  char buf[4096];
  for (;;) {
    timespec now{};
    clock_gettime(CLOCK_MONOTONIC, &now);
    const long elapsed = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1'000'000;
    if (elapsed >= timeout_ms) break;
    pollfd pfd{c.out_fd, POLLIN, 0};
    const int pr = ::poll(&pfd, 1, static_cast<int>(timeout_ms - elapsed));
    if (pr < 0 && errno == EINTR) continue;
    if (pr <= 0) break;
    const ssize_t n = ::read(c.out_fd, buf, sizeof buf);
    if (n > 0) {
      out.append(buf, static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    break;  // EOF: the child closed its stdout (exited)
  }
  ::close(c.out_fd);
  c.out_fd = -1;
  return out;
}

}  // namespace herald::tools
