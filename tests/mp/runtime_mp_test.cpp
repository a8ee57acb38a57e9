// Multi-process: producers and consumers in separate processes (the
// herald_test_peer helper, started with posix_spawn — never fork after
// threads exist). Children inherit HERALD_NO_AUTOSTART and HERALD_RUN_DIR
// from the test's BusGuard; the parent waits for them with a bound and
// kills them (by pid) if they do not finish, printing what they said.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "herald/herald.hpp"
#include "tests/support/bus_fixture.hpp"
#include "tests/support/test_env.hpp"

extern char** environ;

namespace herald {
namespace {

// One spawned peer: its pid, the read end of its stdout, what it printed.
struct Child {
  std::string name;
  pid_t pid = -1;
  int out = -1;
  std::string output;
  bool exited = false;
  int status = 0;
};

Child spawn_peer(const std::string& name, const std::vector<std::string>& args) {
  Child c;
  c.name = name;
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    ADD_FAILURE() << "pipe2: " << std::strerror(errno);
    return c;
  }
  std::vector<std::string> argv_s = {HERALD_TEST_PEER};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& s : argv_s) argv.push_back(s.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[1], STDOUT_FILENO);  // dup2 clears O_CLOEXEC on fd 1
  const int rc = ::posix_spawn(&c.pid, argv[0], &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  ::close(fds[1]);
  if (rc != 0) {
    ADD_FAILURE() << "posix_spawn " << argv[0] << ": " << std::strerror(rc);
    ::close(fds[0]);
    c.pid = -1;
    return c;
  }
  c.out = fds[0];
  ::fcntl(c.out, F_SETFL, O_NONBLOCK);
  return c;
}

// Reads what the children printed and reaps those that exited, until all
// have or `seconds` pass. On timeout, kills the rest (SIGKILL, by pid) and
// reaps them. Returns true if all exited by themselves.
bool wait_children(std::vector<Child>& children, double seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  auto drain = [](Child& c) {
    if (c.out < 0) return;
    char buf[4096];
    for (;;) {
      const ssize_t n = ::read(c.out, buf, sizeof buf);
      if (n > 0) {
        c.output.append(buf, static_cast<std::size_t>(n));
        continue;
      }
      if (n == 0) {  // EOF: the child closed stdout (it exited)
        ::close(c.out);
        c.out = -1;
      }
      return;
    }
  };
  for (;;) {
    bool all = true;
    std::vector<pollfd> pfds;
    for (Child& c : children) {
      drain(c);
      if (!c.exited && c.pid > 0) {
        const pid_t r = ::waitpid(c.pid, &c.status, WNOHANG);
        if (r == c.pid) {
          c.exited = true;
          drain(c);
        }
      }
      if (!c.exited && c.pid > 0) all = false;
      if (c.out >= 0) pfds.push_back({c.out, POLLIN, 0});
    }
    if (all) return true;
    if (std::chrono::steady_clock::now() > deadline) break;
    // Block on the children's output (or 50 ms): polling a condition, not synchronising.
    ::poll(pfds.data(), pfds.size(), 50);
  }
  for (Child& c : children) {
    if (c.exited || c.pid <= 0) continue;
    std::fprintf(stderr, "[herald] killing %s (pid %d): no exit within %.0fs\n", c.name.c_str(), c.pid, seconds);
    ::kill(c.pid, SIGKILL);
    ::waitpid(c.pid, &c.status, 0);
    c.exited = true;
    drain(c);
  }
  return false;
}

// The last "key=value ..." line a child printed.
std::map<std::string, std::string> summary(const Child& c) {
  std::map<std::string, std::string> kv;
  std::string last;
  std::istringstream in(c.output);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) last = line;
  std::istringstream words(last);
  for (std::string w; words >> w;) {
    const auto eq = w.find('=');
    if (eq != std::string::npos) kv[w.substr(0, eq)] = w.substr(eq + 1);
  }
  return kv;
}

class RuntimeMultiProcessTest : public test::BusFixture<> {
 protected:
  void SetUp() override {
    if (test::under_tsan()) GTEST_SKIP() << "TSan cannot see across processes; the mp suite runs in Debug and ASan";
    BusFixture::SetUp();
  }
  void TearDown() override {
    // Children that are still alive (an ASSERT returned early) are killed by pid.
    for (Child& c : children_) {
      if (!c.exited && c.pid > 0) {
        ::kill(c.pid, SIGKILL);
        ::waitpid(c.pid, nullptr, 0);
      }
      if (c.out >= 0) ::close(c.out);
    }
  }

  std::string state_of(const std::string& topic) const {
    auto info = bus_->describe_topic(topic);
    if (!info) return "describe_topic failed: " + info.error().message();
    std::ostringstream s;
    for (const auto& p : info->partition_info)
      s << " p" << p.partition << "{tail=" << p.tail << " events=" << p.events << "}";
    for (const auto& g : info->groups) {
      s << " " << g.name << "(members=" << g.members << ")";
      for (const auto& gp : g.partitions) s << " p" << gp.partition << "{committed=" << gp.committed << "}";
    }
    return s.str();
  }

  std::vector<Child> children_;
};

TEST_F(RuntimeMultiProcessTest, TwoProducersTwoGroupsFourPartitionsKeyedNothingLostOrDuplicated) {
  const std::uint64_t seed = test::seed("TwoProducersTwoGroupsFourPartitions");
  const std::uint64_t per_producer = test::scaled(100'000);
  const std::uint64_t keys = 64;
  const std::string topic = "orders";
  // A small ring, so lossless groups hold the producers back many times.
  ASSERT_TRUE(bus_->create_topic(topic, {.partitions = 4, .ring_bytes = 1 << 15, .max_event = 4096,
                                         .default_policy = Policy::kLossless}));
  // Both groups exist (cursors at 0) before any producer starts.
  for (const char* g : {"shipping", "billing"}) ASSERT_TRUE(bus_->consumer(topic, {.group = g}));

  const double timeout_s = 240;
  const std::string common = "--bus=" + guard_.bus();
  auto args = [&](std::vector<std::string> extra) {
    extra.insert(extra.begin(), {common, "--topic=" + topic, "--events=" + std::to_string(per_producer),
                                 "--keys=" + std::to_string(keys), "--seed=" + std::to_string(seed),
                                 "--timeout-ms=" + std::to_string(static_cast<int>(timeout_s * 1000 - 10'000))});
    return extra;
  };
  children_.push_back(spawn_peer("consumer shipping", args({"--scenario=consume", "--group=shipping", "--producers=2"})));
  children_.push_back(spawn_peer("consumer billing", args({"--scenario=consume", "--group=billing", "--producers=2"})));
  children_.push_back(spawn_peer("producer 0", args({"--scenario=produce", "--producer=0"})));
  children_.push_back(spawn_peer("producer 1 (batches)", args({"--scenario=produce", "--producer=1", "--batch=1"})));
  for (const Child& c : children_) ASSERT_GT(c.pid, 0) << c.name;

  const bool all_exited = wait_children(children_, timeout_s);
  std::ostringstream said;
  for (const Child& c : children_) said << "\n  " << c.name << " (pid " << c.pid << "): " << c.output;
  said << "\n  topic:" << state_of(topic);
  EXPECT_TRUE(all_exited) << said.str();
  std::fprintf(stderr, "[herald] peers:%s\n", said.str().c_str());

  for (const Child& c : children_) {
    SCOPED_TRACE(c.name);
    EXPECT_TRUE(WIFEXITED(c.status) && WEXITSTATUS(c.status) == 0) << "status " << c.status << said.str();
    auto kv = summary(c);
    EXPECT_EQ(kv["result"], "ok") << said.str();
    if (kv["scenario"] == "produce") {
      EXPECT_EQ(kv["published"], std::to_string(per_producer));
    } else {
      EXPECT_EQ(kv["scenario"], "consume") << said.str();
      EXPECT_EQ(kv["events"], std::to_string(2 * per_producer)) << said.str();
      for (const char* zero : {"duplicates", "out_of_order", "missing", "bad_checksum", "wrong_partition", "extras"})
        EXPECT_EQ(kv[zero], "0") << zero << said.str();
    }
  }
  // What the topic says agrees: every event published once, every group at the tail.
  const auto info = bus_->describe_topic(topic).value();
  std::uint64_t events = 0;
  for (const auto& p : info.partition_info) {
    events += p.events;
    EXPECT_GT(p.events, 0u) << "keys spread over every partition";
  }
  EXPECT_EQ(events, 2 * per_producer);
  for (const auto& g : info.groups)
    for (const auto& gp : g.partitions) EXPECT_EQ(gp.lag_bytes, 0u) << g.name << " p" << gp.partition;
}

}  // namespace
}  // namespace herald
