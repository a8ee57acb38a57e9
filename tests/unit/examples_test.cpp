// The README's and docs/PATTERNS.md's examples run as written (each on its
// own bus) and print what the docs say they print.
#include <gtest/gtest.h>

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

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

// Runs an example on a bus of its own; its output must hold every line.
std::string expect_lines(const char* path, const std::vector<std::string>& lines) {
  herald::test::BusGuard guard;
  int status = -1;
  const std::string out = run(path, guard.bus(), &status);
  EXPECT_EQ(status, 0) << out;
  for (const std::string& line : lines) EXPECT_NE(out.find(line + "\n"), std::string::npos) << line << "\n" << out;
  return out;
}

TEST(ExamplesTest, EventSourcingReplaysTravelsInTimeAndResumesFromASnapshot) {
  (void)expect_lines(HERALD_EXAMPLE_EVENT_SOURCING,
               {"balances now: alice=75 (3 events) bob=30 (2 events) carol=500 (1 events)",
                "balances at the end of Nov 3: alice=70 (2 events) bob=50 (1 events) carol=500 (1 events)",
                "alice's history: Deposited 100 Withdrawn 30 Deposited 5",
                "resumed from the snapshot: replayed 2 events instead of 8",
                "balances after the restart: alice=75 (3 events) bob=100 (3 events) carol=375 (2 events)"});
}

TEST(ExamplesTest, CqrsReadModelsCatchUpAndALateOneBuildsFromHistory) {
  (void)expect_lines(HERALD_EXAMPLE_CQRS,
               {"summary of ada: 0 orders, 0.00 spent", "summary of ada: 2 orders, 57.00 spent",
                "summary of grace: 1 orders, 25.00 spent", "label: o-1 to ada, 12 Analytical Row, London",
                "label: o-4 to ada, 12 Analytical Row, London", "label: o-2 to grace, 1 Compiler Way, Arlington",
                "units sold: kettle=1 mug=6 teapot=1"});
}

TEST(ExamplesTest, CorrelationTracesOneRequestAcrossThreeTopics) {
  const std::string out = expect_lines(HERALD_EXAMPLE_CORRELATION,
                                       {"notify: order req-1 placed", "notify: order req-2 placed", "trace req-2:"});
  // The causal chain, indented by depth (times vary).
  const auto placed = out.find("\n  OrderPlaced on orders by checkout (+0 us)");
  const auto paid = out.find("\n    PaymentCaptured on payments by payments (+");
  const auto shipped = out.find("\n      OrderShipped on shipments by shipping (+");
  EXPECT_TRUE(placed != std::string::npos && placed < paid && paid < shipped && shipped != std::string::npos) << out;
}

TEST(ExamplesTest, EffectivelyOnceStageAndSinkSurviveACrashWithoutDuplicates) {
  (void)expect_lines(HERALD_EXAMPLE_EFFECTIVELY_ONCE,
               {"stage: handled 4, then 4 again after its crash; 4 outputs not written twice",
                "sink: handled 4, then 4 again after its crash; 4 redeliveries had no effect",
                "payments-eur holds 4 events; ledger: acct-1=18400 acct-2=9200 acct-3=9200"});
}

}  // namespace
