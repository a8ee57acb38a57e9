// The README's examples run as written (each on its own bus).
#include <gtest/gtest.h>

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "tests/support/test_env.hpp"

extern char** environ;

namespace {

std::string run(const char* path, const std::string& bus, int* status) {
  int fds[2];
  EXPECT_EQ(::pipe(fds), 0);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
  posix_spawn_file_actions_addclose(&fa, fds[0]);
  std::string b = bus;
  char* argv[] = {const_cast<char*>(path), b.data(), nullptr};
  pid_t pid = -1;
  EXPECT_EQ(::posix_spawn(&pid, path, &fa, nullptr, argv, environ), 0);
  posix_spawn_file_actions_destroy(&fa);
  ::close(fds[1]);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fds[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(n));
  ::close(fds[0]);
  ::waitpid(pid, status, 0);
  return out;
}

TEST(ExamplesTest, QuickstartShipsTheOrder) {
  herald::test::BusGuard guard;
  int status = -1;
  const std::string out = run(HERALD_EXAMPLE_QUICKSTART, guard.bus(), &status);
  EXPECT_EQ(status, 0) << out;
  EXPECT_NE(out.find(R"(ship {"total":99.5} to customer-42)"), std::string::npos) << out;
}

TEST(ExamplesTest, DeadLettersExampleDeadLettersTheRefusedPayment) {
  herald::test::BusGuard guard;
  int status = -1;
  const std::string out = run(HERALD_EXAMPLE_DEAD_LETTERS, guard.bus(), &status);
  EXPECT_EQ(status, 0) << out;
  EXPECT_NE(out.find("ledger refused it after 5 deliveries"), std::string::npos) << out;
}

}  // namespace
