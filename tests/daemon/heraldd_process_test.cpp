// heraldd as a process (label mp): one daemon per bus, SIGTERM, autostart
// by the runtime, and clients that outlive a killed daemon and re-register
// with its successor. Daemons are started with posix_spawn and stopped by
// pid; an autostarted one is found through the registry and killed by pid
// if a test leaves it running.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <thread>
#include <optional>

#include "herald/herald.hpp"
#include "runtime/src/daemon_client.hpp"
#include "runtime/src/groups.hpp"
#include "runtime/src/run_dir.hpp"
#include "shm/clock.hpp"
#include "shm/mapping.hpp"
#include "shm/names.hpp"
#include "shm/registry.hpp"
#include "shm/ring_log.hpp"
#include "tests/support/daemon_harness.hpp"
#include "tests/support/test_env.hpp"

namespace herald::test {
namespace {

using namespace std::chrono_literals;

std::string link_of(const std::string& path) {
  char buf[4096];
  const ssize_t n = ::readlink(path.c_str(), buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
}

pid_t parent_of(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto close = all.rfind(')');
  if (close == std::string::npos) return -1;
  char state = 0;
  int ppid = -1;
  std::sscanf(all.c_str() + close + 1, " %c %d", &state, &ppid);
  return ppid;
}

// Kills (by pid, if it is still that process) a daemon this test did not start itself.
class DaemonByPid {
 public:
  DaemonByPid(pid_t pid, std::uint64_t start) : pid_(pid), start_(start) {}
  ~DaemonByPid() {
    if (pid_ > 0 && shm::process_alive(pid_, start_)) ::kill(pid_, SIGKILL);
  }
  DaemonByPid(const DaemonByPid&) = delete;
  DaemonByPid& operator=(const DaemonByPid&) = delete;

 private:
  pid_t pid_;
  std::uint64_t start_;
};

class HeralddMultiProcessTest : public ::testing::Test {
 protected:
  // For the autostart tests only: autostart on, with the heraldd under
  // test; HERALD_NO_AUTOSTART=1 again when it goes.
  struct Autostart {
    Autostart() {
      ::unsetenv("HERALD_NO_AUTOSTART");
      ::setenv("HERALD_DAEMON", heraldd_path().c_str(), 1);
    }
    ~Autostart() {
      ::setenv("HERALD_NO_AUTOSTART", "1", 1);
      ::unsetenv("HERALD_DAEMON");
    }
    Autostart(const Autostart&) = delete;
    Autostart& operator=(const Autostart&) = delete;
  };
  // The bus's daemon as its registry records it: (pid, start time); pid 0
  // when there is no registry or no daemon.
  std::pair<pid_t, std::uint64_t> registry_daemon() const {
    auto reg = shm::Registry::open(guard_.bus());
    if (!reg) return {0, 0};
    return {static_cast<pid_t>(reg->header()->daemon_pid.load()), reg->header()->daemon_start_time.load()};
  }

  std::vector<std::string> bus_files() const {
    std::vector<std::string> out;
    for (const std::string& f : {detail::socket_path(guard_.run_dir(), guard_.bus()),
                                 detail::daemon_lock_path(guard_.run_dir(), guard_.bus()),
                                 detail::admin_lock_path(guard_.run_dir(), guard_.bus()),
                                 detail::daemon_log_path(guard_.run_dir(), guard_.bus())})
      if (::access(f.c_str(), F_OK) == 0) out.push_back(f);
    for (const std::string& s : shm::Segment::list(shm::bus_segment_prefix(guard_.bus()))) out.push_back("/dev/shm/" + s);
    return out;
  }

  BusGuard guard_;
};

TEST_F(HeralddMultiProcessTest, SecondDaemonForTheSameBusExitsNonZeroNamingTheRunningPid) {
  auto first = Heraldd::start(guard_.bus(), guard_.run_dir());
  ASSERT_TRUE(first->wait_ready(20)) << first->log();
  auto second = Heraldd::start(guard_.bus(), guard_.run_dir());
  const auto st = second->child().wait(20);
  ASSERT_TRUE(st.has_value()) << "the second heraldd did not exit; log:\n" << second->log();
  EXPECT_TRUE(exited_with(st, 1)) << describe_status(*st);
  const std::string msg = second->log();
  EXPECT_NE(msg.find("pid " + std::to_string(first->pid())), std::string::npos) << msg;
  EXPECT_NE(msg.find(guard_.bus()), std::string::npos) << msg;
  // The first one is still the daemon of the bus.
  EXPECT_TRUE(first->child().running());
  auto c = detail::DaemonClient::connect(detail::socket_path(guard_.run_dir(), guard_.bus()));
  ASSERT_TRUE(c) << c.error().message();
  EXPECT_EQ((*c)->daemon_pid(), first->pid());
  const auto stopped = first->stop();
  EXPECT_TRUE(exited_with(stopped, 0)) << (stopped ? describe_status(*stopped) : "still running") << first->log();
}

TEST_F(HeralddMultiProcessTest, SigtermExitsZeroAndLeavesTheBusStateInSharedMemory) {
  auto h = Heraldd::start(guard_.bus(), guard_.run_dir());
  ASSERT_TRUE(h->wait_ready(20)) << h->log();
  {
    auto bus = Bus::attach(guard_.bus());
    ASSERT_TRUE(bus) << bus.error().message();
    ASSERT_TRUE(bus->create_topic("t", {.partitions = 1, .ring_bytes = 1 << 16, .max_event = 4096}));
    auto prod = bus->producer("t");
    ASSERT_TRUE(prod) << prod.error().message();
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(prod->publish({.payload = "kept-" + std::to_string(i)}));
  }
  const auto st = h->stop();
  ASSERT_TRUE(exited_with(st, 0)) << (st ? describe_status(*st) : "still running") << "\n" << h->log();
  EXPECT_NE(h->log().find("the bus state stays in shared memory"), std::string::npos) << h->log();
  EXPECT_NE(::access(detail::socket_path(guard_.run_dir(), guard_.bus()).c_str(), F_OK), 0) << "socket removed";
  // The registry, the topic and its events are still there.
  auto reg = shm::Registry::open(guard_.bus());
  ASSERT_TRUE(reg) << reg.error().message();
  EXPECT_EQ(reg->header()->daemon_pid.load(), 0u) << "the daemon said it is gone";
  auto m = attach_topic(guard_.bus(), "t");
  ASSERT_NE(m, nullptr);
  EXPECT_GT(shm::load_tail(m->partition(0)), 0u);
  // A new daemon serves the same bus state.
  auto again = Heraldd::start(guard_.bus(), guard_.run_dir());
  ASSERT_TRUE(again->wait_ready(20)) << again->log();
  {
    auto bus = Bus::attach(guard_.bus());
    ASSERT_TRUE(bus);
    auto c = bus->consumer("t", {.group = "g"});
    ASSERT_TRUE(c) << c.error().message();
    std::vector<std::string> got;
    ASSERT_TRUE(wait_until(
        [&] {
          auto n = c->poll([&](const EventView& e) { got.emplace_back(e.payload_text()); }, 16, 1ms);
          return n && got.size() >= 3;
        },
        20));
    EXPECT_EQ(got, (std::vector<std::string>{"kept-0", "kept-1", "kept-2"}));
  }
  EXPECT_TRUE(exited_with(again->stop(), 0)) << again->log();
  // The test destroys the bus (BusGuard), as an operator would.
}

TEST_F(HeralddMultiProcessTest, AutostartStartsADetachedDaemonThatBusDestroyStops) {
  const Autostart autostart;
  auto bus = Bus::attach(guard_.bus());
  ASSERT_TRUE(bus) << bus.error().message();
  const auto [pid, start] = registry_daemon();
  DaemonByPid cleanup(pid, start);
  ASSERT_GT(pid, 0);
  ASSERT_NE(pid, ::getpid());
  EXPECT_TRUE(shm::process_alive(pid, start));
  // Detached: its own session, not our child, stdio on /dev/null and its log.
  EXPECT_EQ(::getsid(pid), pid);
  EXPECT_NE(parent_of(pid), ::getpid());
  EXPECT_EQ(link_of("/proc/" + std::to_string(pid) + "/fd/0"), "/dev/null");
  EXPECT_EQ(link_of("/proc/" + std::to_string(pid) + "/fd/1"), detail::daemon_log_path(guard_.run_dir(), guard_.bus()));
  // It serves the bus.
  ASSERT_TRUE(bus->create_topic("t", {.partitions = 2, .ring_bytes = 1 << 16, .max_event = 4096}));
  auto c = bus->consumer("t", {.group = "g"});
  ASSERT_TRUE(c) << c.error().message();
  c = fail(Errc::kClosed, "done");
  bus = fail(Errc::kClosed, "done");

  auto d = Bus::destroy(guard_.bus());
  ASSERT_TRUE(d) << d.error().message();
  EXPECT_TRUE(wait_until([&] { return !shm::process_alive(pid, start); }, 20,
                         [&] { return "heraldd pid " + std::to_string(pid) + " still running"; }));
  EXPECT_EQ(bus_files(), std::vector<std::string>{}) << "Bus::destroy leaves nothing of the bus";
}

// Two clients autostarting at once: the loser's heraldd exits on the lock
// the winner's holds, and the loser must then use the winner's rather than
// fail (it did, ~3 % of attaches racing after a daemon died). Here the test
// is the winner: it holds the lock while the client's daemon gives up, then
// starts the heraldd that listens.
TEST_F(HeralddMultiProcessTest, AnAutostartThatLosesTheLockToAnotherDaemonUsesThatOne) {
  const Autostart autostart;
  auto lock = detail::FileLock::try_acquire(detail::daemon_lock_path(guard_.run_dir(), guard_.bus()));
  ASSERT_TRUE(lock) << lock.error().message();
  const std::string log = detail::daemon_log_path(guard_.run_dir(), guard_.bus());
  std::optional<Result<Bus>> attached;
  std::thread client([&] { attached.emplace(Bus::attach(guard_.bus())); });
  const bool gave_up = wait_until([&] { return read_file(log).find("already has a running heraldd") != std::string::npos; },
                                  20, [&] { return "heraldd log: " + read_file(log); });
  lock = fail(Errc::kClosed, "released");
  std::unique_ptr<Heraldd> winner;
  if (gave_up) winner = Heraldd::start(guard_.bus(), guard_.run_dir());
  client.join();
  ASSERT_TRUE(gave_up);
  ASSERT_TRUE(attached.has_value());
  ASSERT_TRUE(*attached) << attached->error().message() << "\n" << read_file(log);
  EXPECT_EQ(registry_daemon().first, winner->pid());
  // Made through heraldd, an unset max_event is reported as what it became.
  auto t = (*attached)->create_topic("t", {.partitions = 1, .ring_bytes = 64 << 10});
  ASSERT_TRUE(t) << t.error().message();
  EXPECT_EQ(t->max_event, 16u << 10);
  attached.reset();
  EXPECT_TRUE(exited_with(winner->stop(), 0)) << winner->log();
}

// A bus destroyed while a member is still attached stays destroyed: the
// member's goodbye to heraldd (on its way out) must not autostart a new
// daemon, which would create the bus again.
TEST_F(HeralddMultiProcessTest, AMemberLeavingADestroyedBusDoesNotStartItsDaemonAgain) {
  const Autostart autostart;
  auto bus = Bus::attach(guard_.bus());
  ASSERT_TRUE(bus) << bus.error().message();
  const auto [pid, start] = registry_daemon();
  DaemonByPid cleanup(pid, start);
  ASSERT_GT(pid, 0);
  ASSERT_TRUE(bus->create_topic("t", {.partitions = 1, .ring_bytes = 1 << 16, .max_event = 4096}));
  auto c = bus->consumer("t", {.group = "g"});
  ASSERT_TRUE(c) << c.error().message();

  ASSERT_TRUE(Bus::destroy(guard_.bus()));
  ASSERT_TRUE(wait_until([&] { return !shm::process_alive(pid, start); }, 20,
                         [&] { return "heraldd pid " + std::to_string(pid) + " still running"; }));
  // The member sees the topic closed, then leaves (its destructor tells the
  // daemon it is going, or tries to).
  auto n = c->poll([](const EventView&) {}, 1, 10ms);
  EXPECT_FALSE(n && *n > 0);
  c = fail(Errc::kClosed, "done");
  bus = fail(Errc::kClosed, "done");

  const std::vector<std::string> left = bus_files();
  // Should a daemon have been started, stop it by pid before failing.
  if (auto d = detail::DaemonClient::connect(detail::socket_path(guard_.run_dir(), guard_.bus()))) {
    const auto again = static_cast<pid_t>((*d)->daemon_pid());
    ADD_FAILURE() << "a heraldd (pid " << again << ") was started for the destroyed bus";
    if (again > 0) ::kill(again, SIGKILL);
  }
  EXPECT_EQ(left, std::vector<std::string>{}) << "the destroyed bus came back";
}

TEST_F(HeralddMultiProcessTest, ClientsOfAKilledDaemonKeepWorkingAndRejoinItsSuccessorWithinTheGrace) {
  auto h1 = Heraldd::start(guard_.bus(), guard_.run_dir(), {"--rejoin-grace", "30"});
  ASSERT_TRUE(h1->wait_ready(20)) << h1->log();
  auto bus = Bus::attach(guard_.bus());
  ASSERT_TRUE(bus) << bus.error().message();
  ASSERT_TRUE(bus->create_topic("t", {.partitions = 2, .ring_bytes = 1 << 18, .max_event = 4096}));
  std::vector<std::vector<std::uint32_t>> revoked, lost;
  auto c = bus->consumer("t", {.group = "g",
                               .policy = Policy::kLossless,
                               .on_revoked = [&](std::span<const std::uint32_t> p) { revoked.emplace_back(p.begin(), p.end()); },
                               .on_lost = [&](std::span<const std::uint32_t> p) { lost.emplace_back(p.begin(), p.end()); }});
  ASSERT_TRUE(c) << c.error().message();
  auto prod = bus->producer("t");
  ASSERT_TRUE(prod) << prod.error().message();
  auto m = attach_topic(guard_.bus(), "t");
  ASSERT_NE(m, nullptr);
  const std::uint32_t g = detail::find_group(*m, "g")->slot;

  std::map<std::string, int> seen;
  int published = 0;
  auto publish = [&](int n) {
    for (int i = 0; i < n; ++i, ++published)
      ASSERT_TRUE(prod->publish({.key = std::to_string(published), .payload = std::to_string(published)}));
  };
  auto pump = [&](const std::function<bool()>& done, const std::string& what) {
    return wait_until(
        [&] {
          auto r = c->poll([&](const EventView& e) { ++seen[std::string(e.payload_text())]; }, 256, 1ms);
          EXPECT_TRUE(r) << r.error().message();
          return done();
        },
        30, [&] { return what + ": seen " + std::to_string(seen.size()) + " of " + std::to_string(published) + "\n" +
                         describe_groups(*m); });
  };
  auto gens = [&] {
    std::vector<std::uint32_t> v;
    for (std::uint32_t p = 0; p < 2; ++p) v.push_back(shm::cursor_gen(m->group_partition(g, p)->cursor.load()));
    return v;
  };

  publish(100);
  ASSERT_TRUE(pump([&] { return seen.size() == 100 && c->assignment().size() == 2; }, "before the kill"));
  const auto gens_before = gens();

  // heraldd dies: the data plane does not notice.
  h1->child().kill_now();
  publish(100);
  ASSERT_TRUE(pump([&] { return seen.size() == 200; }, "while no daemon runs"));
  EXPECT_EQ(c->assignment(), (std::vector<std::uint32_t>{0, 1}));

  // Its successor keeps the assignment for the grace; the member rejoins.
  auto h2 = Heraldd::start(guard_.bus(), guard_.run_dir(), {"--rejoin-grace", "30"});
  ASSERT_TRUE(h2->wait_ready(20)) << h2->log();
  publish(100);
  ASSERT_TRUE(pump([&] { return seen.size() == 300 && h2->log().find("rejoined after the restart") != std::string::npos; },
                   "after the restart"))
      << h2->log();
  EXPECT_EQ(gens(), gens_before) << "no member was fenced";
  EXPECT_TRUE(revoked.empty());
  EXPECT_TRUE(lost.empty());
  EXPECT_EQ(c->assignment(), (std::vector<std::uint32_t>{0, 1}));
  for (const auto& [k, n] : seen) EXPECT_EQ(n, 1) << "event " << k;

  // The successor runs the group: a second member gets a partition.
  auto c2 = bus->consumer("t", {.group = "g"});
  ASSERT_TRUE(c2) << c2.error().message();
  ASSERT_TRUE(wait_until(
      [&] {
        (void)c->poll([&](const EventView& e) { ++seen[std::string(e.payload_text())]; }, 64, 1ms);
        (void)c2->poll([&](const EventView&) {}, 64, 1ms);
        return c->assignment().size() == 1 && c2->assignment().size() == 1;
      },
      30, [&] { return describe_groups(*m) + h2->log(); }));
  c2 = fail(Errc::kClosed, "done");
  c = fail(Errc::kClosed, "done");
  const auto st = h2->stop();
  EXPECT_TRUE(exited_with(st, 0)) << h2->log();
}

}  // namespace
}  // namespace herald::test
