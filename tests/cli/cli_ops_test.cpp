// The herald CLI as a subprocess: --exec consumers and the DLQ commands,
// stat (with the daemon stopped), metrics over loopback, doctor, daemon and
// bus commands, and the demo.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <sstream>
#include <string>

#include <httplib.h>

#include "shm/clock.hpp"
#include "tests/cli/cli_harness.hpp"

namespace herald::test {
namespace {

class CliOpsTest : public CliTest {
 protected:
  std::string tmp_file(const std::string& name) { return guard_->run_dir() + "/" + name; }
};

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST_F(CliOpsTest, ExecConsumerFailingOneEventSendsItToTheDlq) {
  ASSERT_EQ(h({"topic", "create", "jobs", "--partitions", "2", "--ring", "64K", "--max-event", "4K"}).status, 0);
  for (const char* job : {"job-1", "job-2", "job-3"})
    ASSERT_EQ(h({"publish", "jobs", "--key", job, "--type", "Job", "--header", "tenant=acme", "--header",
                 "x-trace.id=t7", "--correlation-id", "corr", job}).status, 0);
  ASSERT_EQ(h({"publish", "jobs", "--key", "job-2", "--type", "Job", "poison"}).status, 0);
  // The script records its environment and fails on the poison payload.
  const std::string log = tmp_file("exec.log");
  const std::string script = "read p; echo \"$p|$HERALD_TOPIC|$HERALD_PARTITION|$HERALD_POSITION|$HERALD_TYPE|"
                             "$HERALD_KEY|$HERALD_SOURCE|$HERALD_CORRELATION_ID|$HERALD_DELIVERY|$HERALD_H_TENANT|"
                             "$HERALD_H_X_TRACE_ID|${HERALD_ID:+id}|${HERALD_TIME:+time}\" >> " + log +
                             "; test \"$p\" != poison";
  CliRun r = h({"consume", "jobs", "--group", "workers", "--exec", script, "--max-deliveries", "3", "--retry-backoff",
             "10ms", "--count", "4", "--timeout", "20s"});
  ASSERT_EQ(r.status, 0) << r.describe();
  EXPECT_NE(r.err.find("moved to the dead-letter topic"), std::string::npos) << r.describe();
  const std::string seen = slurp(log);
  EXPECT_NE(seen.find("job-1|jobs|"), std::string::npos) << seen;
  EXPECT_NE(seen.find("|Job|job-1|herald-cli|corr|1|acme|t7|id|time"), std::string::npos) << seen;
  EXPECT_NE(seen.find("poison|jobs|"), std::string::npos) << seen;
  EXPECT_NE(seen.find("|3|||id|time"), std::string::npos) << "third delivery of the poison: " << seen;

  r = h({"dlq", "list", "jobs", "--json"});
  ASSERT_EQ(r.status, 0) << r.describe();
  const auto letters = r.json()["dead_letters"];
  ASSERT_EQ(letters.size(), 1u) << r.out;
  EXPECT_EQ(letters[0]["group"], "workers");
  EXPECT_EQ(letters[0]["deliveries"], 3);
  EXPECT_NE(letters[0]["reason"].get<std::string>().find("exit status 1"), std::string::npos) << letters[0];
  const std::string where =
      std::to_string(letters[0]["partition"].get<int>()) + ":" + std::to_string(letters[0]["position"].get<int>());
  r = h({"dlq", "list", "jobs"});
  EXPECT_NE(r.out.find(where), std::string::npos) << r.out;
  r = h({"dlq", "show", "jobs", where, "--json"});
  ASSERT_EQ(r.status, 0) << r.describe();
  EXPECT_EQ(r.json()["event"]["data"], "poison");
  EXPECT_EQ(r.json()["event"]["key"], "job-2");
  r = h({"dlq", "show", "jobs", where});
  EXPECT_NE(r.out.find("exit status 1"), std::string::npos) << r.out;
  r = h({"dlq", "show", "jobs", "0:999936"});
  EXPECT_EQ(r.status, 1) << r.describe();
  r = h({"groups", "jobs", "--json"});
  EXPECT_EQ(r.json()["topics"][0]["groups"][0]["dlq_depth"], 1);

  // Redrive it for that group: a consumer that accepts everything gets it.
  r = h({"dlq", "redrive", "jobs", "--position", where, "--json"});
  ASSERT_EQ(r.status, 0) << r.describe();
  EXPECT_EQ(r.json()["redriven"], 1);
  EXPECT_TRUE(h({"dlq", "list", "jobs", "--json"}).json()["dead_letters"].empty());
  r = h({"consume", "jobs", "--group", "workers", "--count", "1", "--timeout", "10s"});
  EXPECT_EQ(r.out, "poison\n") << r.describe();

  // Purge: a second poison, dead-lettered, then dropped.
  ASSERT_EQ(h({"publish", "jobs", "poison"}).status, 0);
  r = h({"consume", "jobs", "--group", "workers", "--exec", "exit 3", "--max-deliveries", "1", "--count", "1",
         "--timeout", "10s"});
  ASSERT_EQ(r.status, 0) << r.describe();
  r = h({"dlq", "purge", "jobs", "--group", "workers", "--json"});
  ASSERT_EQ(r.status, 0) << r.describe();
  EXPECT_EQ(r.json()["purged"], 1);
  EXPECT_TRUE(h({"dlq", "list", "jobs", "--json"}).json()["dead_letters"].empty());
}

TEST_F(CliOpsTest, ExecTimeoutAndSignalAreFailures) {
  ASSERT_EQ(h({"topic", "create", "t", "--partitions", "1", "--ring", "64K", "--max-event", "4K"}).status, 0);
  ASSERT_EQ(h({"publish", "t", "slow"}).status, 0);
  CliRun r = h({"consume", "t", "--group", "g", "--exec", "sleep 30", "--exec-timeout", "200ms", "--max-deliveries", "1",
             "--count", "1", "--timeout", "20s"});
  ASSERT_EQ(r.status, 0) << r.describe();
  auto letters = h({"dlq", "list", "t", "--json"}).json()["dead_letters"];
  ASSERT_EQ(letters.size(), 1u);
  EXPECT_NE(letters[0]["reason"].get<std::string>().find("timed out"), std::string::npos) << letters[0];
  ASSERT_EQ(h({"publish", "t", "killed"}).status, 0);
  r = h({"consume", "t", "--group", "g", "--exec", "kill -9 $$", "--max-deliveries", "1", "--count", "1", "--timeout",
         "20s"});
  ASSERT_EQ(r.status, 0) << r.describe();
  letters = h({"dlq", "list", "t", "--json"}).json()["dead_letters"];
  ASSERT_EQ(letters.size(), 2u);
  EXPECT_NE(letters[1]["reason"].get<std::string>().find("signal 9"), std::string::npos) << letters[1];
}

// A command still running when `herald consume` is SIGKILLed dies with it
// (a parent-death signal through setpriv): it lived on, with nobody left to
// time it out, while the next owner ran the same event again.
TEST_F(CliOpsTest, AnExecCommandDiesWithAKilledConsume) {
  if (::access("/usr/bin/setpriv", X_OK) != 0) GTEST_SKIP() << "no /usr/bin/setpriv";
  ASSERT_EQ(h({"topic", "create", "t", "--partitions", "1", "--ring", "64K", "--max-event", "4K"}).status, 0);
  ASSERT_EQ(h({"publish", "t", "long"}).status, 0);
  const std::string pid_file = guard_->run_dir() + "/exec.pid";
  // The shell writes its pid, then execs sleep in its place (same pid).
  Background consumer = hb({"consume", "t", "--group", "g", "--exec", "echo $$ > " + pid_file + "; exec sleep 600"});
  long pid = 0;
  ASSERT_TRUE(wait_until(
      [&] {
        std::ifstream in(pid_file);
        return static_cast<bool>(in >> pid) && pid > 0;
      },
      20, [&] {
        consumer.drain();
        return "the command never started\n" + consumer.err;
      }));
  ASSERT_EQ(::kill(consumer.pid, SIGKILL), 0);
  EXPECT_GE(consumer.wait_exit(20), 0) << "herald consume did not die";
  // Gone, or a zombie its new parent has not reaped yet.
  auto gone = [&] {
    if (::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) return true;
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string comm_and_state;
    std::getline(stat, comm_and_state);
    const auto close = comm_and_state.rfind(')');
    return close != std::string::npos && close + 2 < comm_and_state.size() && comm_and_state[close + 2] == 'Z';
  };
  EXPECT_TRUE(wait_until(gone, 20,
                         [&] { return "the command (pid " + std::to_string(pid) + ") outlived its consume"; }))
      << (::kill(static_cast<pid_t>(pid), SIGKILL), "");
}

TEST_F(CliOpsTest, StatReportsWhileTheDaemonIsStopped) {
  ASSERT_EQ(h({"daemon", "start"}).status, 0);
  ASSERT_EQ(h({"topic", "create", "t", "--partitions", "2", "--ring", "64K", "--max-event", "4K"}).status, 0);
  ASSERT_EQ(h({"publish", "t", "--key", "a"}, "1\n2\n3\n").status, 0);
  ASSERT_EQ(h({"consume", "t", "--group", "g", "--count", "1", "--timeout", "5s"}).status, 0);
  CliRun r = h({"stat", "--json"});
  ASSERT_EQ(r.status, 0) << r.describe();
  EXPECT_EQ(r.json()["daemon"]["alive"], true);
  const long pid = daemon_pid();
  ASSERT_GT(pid, 0);
  stop_daemon();
  r = h({"daemon", "status"});
  EXPECT_EQ(r.status, 1) << r.describe();
  EXPECT_NE(r.err.find("not running"), std::string::npos) << r.describe();
  r = h({"stat", "--json"});
  ASSERT_EQ(r.status, 0) << r.describe();
  const auto s = r.json();
  EXPECT_EQ(s["daemon"]["alive"], false);
  ASSERT_GE(s["topics"].size(), 1u);
  const auto& t = s["topics"][0];
  EXPECT_EQ(t["name"], "t");
  EXPECT_EQ(t["events"], 3);
  ASSERT_EQ(t["groups"].size(), 1u);
  EXPECT_EQ(t["groups"][0]["name"], "g");
  EXPECT_EQ(t["groups"][0]["lag_events"], 2) << t["groups"][0];
  // Plain tables, repeated (not a terminal), with rates from the second on.
  r = h({"stat", "--watch", "--interval", "50ms", "--iterations", "2"});
  ASSERT_EQ(r.status, 0) << r.describe();
  EXPECT_NE(r.out.find("heraldd not running"), std::string::npos) << r.out;
  std::size_t headers = 0;
  for (std::size_t at = 0; (at = r.out.find("herald stat", at)) != std::string::npos; ++at) ++headers;
  EXPECT_EQ(headers, 2u) << r.out;
  r = h({"stat", "--json", "--watch", "--interval", "50ms", "--iterations", "3"});
  EXPECT_EQ(r.json_lines().size(), 3u) << r.out;
  // groups and topic describe read shared memory too.
  EXPECT_EQ(h({"groups", "t"}).status, 0);
  EXPECT_EQ(h({"topic", "describe", "t"}).status, 0);
}

TEST_F(CliOpsTest, MetricsScrapedOverLoopbackOnAPortTheDaemonPicked) {
  CliRun r = h({"daemon", "start", "--metrics", "127.0.0.1:0", "--json"});
  ASSERT_EQ(r.status, 0) << r.describe();
  const auto started = r.json();
  ASSERT_TRUE(started.contains("metrics")) << r.out;
  const std::string url = started["metrics"];
  ASSERT_EQ(url.rfind("http://127.0.0.1:", 0), 0u) << url;
  const int port = std::stoi(url.substr(17));
  EXPECT_GT(port, 0);
  ASSERT_EQ(h({"topic", "create", "t", "--partitions", "2", "--ring", "64K", "--max-event", "4K"}).status, 0);
  ASSERT_EQ(h({"publish", "t", "--key", "a"}, "1\n2\n").status, 0);
  ASSERT_EQ(h({"consume", "t", "--group", "g", "--count", "1", "--timeout", "5s"}).status, 0);
  httplib::Client cli("127.0.0.1", port);
  cli.set_connection_timeout(5, 0);
  cli.set_read_timeout(5, 0);
  auto res = cli.Get("/metrics");
  ASSERT_TRUE(res) << "no answer from " << url;
  EXPECT_EQ(res->status, 200);
  const std::string& body = res->body;
  EXPECT_NE(body.find("# TYPE herald_group_lag_bytes gauge"), std::string::npos) << body.substr(0, 2000);
  EXPECT_NE(body.find("herald_daemon_up{bus=\"" + bus() + "\"} 1"), std::string::npos);
  EXPECT_NE(body.find("herald_partition_events_total{bus=\"" + bus() + "\",topic=\"t\""), std::string::npos);
  EXPECT_NE(body.find("herald_group_lag_events{bus=\"" + bus() + "\",topic=\"t\",group=\"g\""), std::string::npos);
  EXPECT_NE(body.find("herald_group_members{bus=\"" + bus() + "\",topic=\"t\",group=\"g\"} 0"), std::string::npos);
  // The URL is in the daemon's log too, and a second start names it.
  EXPECT_NE(slurp(guard_->run_dir() + "/" + bus() + ".log").find("metrics on " + url), std::string::npos);
  r = h({"daemon", "start", "--metrics", "127.0.0.1:0"});
  EXPECT_EQ(r.status, 0) << r.describe();
  EXPECT_NE(r.out.find("already running") , std::string::npos) << r.describe();
  EXPECT_NE(r.out.find("metrics on " + url), std::string::npos) << r.describe();
}

// --metrics asked of a running heraldd that serves none (one a client
// autostarted) used to print "already running" and exit 0 with no metrics.
TEST_F(CliOpsTest, MetricsAskedOfARunningDaemonWithoutThemIsAnError) {
  ASSERT_EQ(h({"daemon", "start"}).status, 0);
  const CliRun r = h({"daemon", "start", "--metrics", "127.0.0.1:0"});
  EXPECT_EQ(r.status, 1) << r.describe();
  EXPECT_NE(r.err.find("without --metrics, which applies when it starts"), std::string::npos) << r.describe();
}

TEST_F(CliOpsTest, DaemonStartStatusStopAndBusDestroy) {
  CliRun r = h({"daemon", "status", "--json"});
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.json()["running"], false);
  r = h({"daemon", "start"});
  ASSERT_EQ(r.status, 0) << r.describe();
  EXPECT_NE(r.out.find("started heraldd"), std::string::npos) << r.out;
  r = h({"daemon", "start"});
  EXPECT_EQ(r.status, 0);
  EXPECT_NE(r.out.find("already running"), std::string::npos) << r.out;
  r = h({"daemon", "status", "--json"});
  ASSERT_EQ(r.status, 0) << r.describe();
  EXPECT_EQ(r.json()["running"], true);
  const long pid = r.json()["pid"];
  r = h({"daemon", "stop"});
  ASSERT_EQ(r.status, 0) << r.describe();
  EXPECT_NE(r.out.find(std::to_string(pid)), std::string::npos);
  EXPECT_EQ(h({"daemon", "status"}).status, 1);
  EXPECT_EQ(h({"daemon", "stop"}).status, 0);  // idempotent
  // A daemon that cannot start says why at once (here: an address that is
  // not this host's), not after the wait for its socket.
  r = h({"daemon", "start", "--metrics", "192.0.2.1:9"});
  EXPECT_EQ(r.status, 1) << r.describe();
  EXPECT_NE(r.err.find("heraldd failed to start: --metrics: cannot listen on 192.0.2.1:9"), std::string::npos)
      << r.describe();
  EXPECT_EQ(h({"daemon", "status"}).status, 1);

  ASSERT_EQ(h({"daemon", "start"}).status, 0);
  ASSERT_EQ(h({"topic", "create", "t", "--ring", "64K", "--max-event", "4K"}).status, 0);
  r = h({"bus", "destroy", "--json"});
  ASSERT_EQ(r.status, 0) << r.describe();
  EXPECT_EQ(r.json()["destroyed"], true);
  EXPECT_EQ(h({"daemon", "status"}).status, 1);
  r = h({"doctor", "--json"});
  EXPECT_EQ(r.status, 0) << r.describe();
  for (const auto& c : r.json()["checks"])
    if (c["check"] == "segments") {
      EXPECT_NE(c["detail"].get<std::string>().find("0 segments"), std::string::npos) << c;
    }
}

// A daemon that lives but does not answer (here: stopped) holds every new
// producer and consumer; doctor says so instead of "running".
TEST_F(CliOpsTest, DoctorNamesADaemonThatDoesNotAnswer) {
  ASSERT_EQ(h({"daemon", "start"}).status, 0);
  const long pid = daemon_pid();
  ASSERT_GT(pid, 0);
  CliRun r = h({"doctor"});
  EXPECT_EQ(r.status, 0) << r.describe();
  EXPECT_NE(r.out.find("is running and answers"), std::string::npos) << r.out;
  ASSERT_EQ(::kill(static_cast<pid_t>(pid), SIGSTOP), 0);
  struct Resume {
    pid_t pid;
    ~Resume() { ::kill(pid, SIGCONT); }
  } resume{static_cast<pid_t>(pid)};
  // Stopped as /proc shows it (the signal lands asynchronously).
  for (int i = 0; i < 100000 && !shm::process_stopped(static_cast<pid_t>(pid)); ++i) ::sched_yield();
  ASSERT_TRUE(shm::process_stopped(static_cast<pid_t>(pid)));
  r = h({"doctor"}, "", 60);
  EXPECT_EQ(r.status, 1) << r.describe();
  EXPECT_NE(r.out.find("heraldd pid " + std::to_string(pid) + " is stopped"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("'kill -CONT " + std::to_string(pid) + "'"), std::string::npos) << r.out;
  ::kill(static_cast<pid_t>(pid), SIGCONT);
  r = h({"doctor"});
  EXPECT_EQ(r.status, 0) << r.describe();
}

// A stopped member of a lossless group holds its producers back. stat and
// groups showed it "waiting in poll" and doctor found nothing (found by an
// exploratory pass); now each says it is stopped, and doctor names the
// group and the reader that hold the waiting producers.
TEST_F(CliOpsTest, DoctorNamesAStoppedMemberAndTheProducersItHoldsBack) {
  ASSERT_EQ(h({"topic", "create", "ss", "--partitions", "1", "--ring", "4K", "--policy", "lossless"}).status, 0);
  Background member = hb({"consume", "ss", "--group", "g"});
  CliRun r;
  for (int i = 0; i < 200; ++i) {
    r = h({"groups", "ss"});
    if (r.out.find("pid " + std::to_string(member.pid)) != std::string::npos) break;
  }
  ASSERT_NE(r.out.find("pid " + std::to_string(member.pid)), std::string::npos) << "the member never joined: " << r.describe();
  ASSERT_EQ(::kill(member.pid, SIGSTOP), 0);
  struct Resume {
    pid_t pid;
    ~Resume() { ::kill(pid, SIGCONT); }
  } resume{member.pid};
  for (int i = 0; i < 100000 && !shm::process_stopped(member.pid); ++i) ::sched_yield();
  ASSERT_TRUE(shm::process_stopped(member.pid));
  // 64 records of 64 bytes fill the 4 KiB ring; one more waits for room.
  std::string lines;
  for (int i = 0; i < 64; ++i) lines += std::to_string(i) + "\n";
  ASSERT_EQ(h({"publish", "ss"}, lines).status, 0);
  Background pub = hb({"publish", "ss", "one-more", "--deadline", "60s"});
  r = h({"stat", "ss"});
  EXPECT_NE(r.out.find("stopped"), std::string::npos) << r.describe();
  r = h({"groups", "ss"});
  EXPECT_NE(r.out.find("(stopped: 'kill -CONT " + std::to_string(member.pid) + "')"), std::string::npos)
      << r.describe();
  // Until the publisher parks (bounded), then doctor names who holds it.
  for (int i = 0; i < 100; ++i) {
    r = h({"doctor"});
    if (r.out.find("back-pressure") != std::string::npos) break;
  }
  EXPECT_EQ(r.status, 1) << r.describe();
  EXPECT_NE(r.out.find("stopped member"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("'kill -CONT " + std::to_string(member.pid) + "'"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("wait for room in partition 0: group 'g' is 4.0 KiB behind there; its reader, pid " +
                       std::to_string(member.pid) + ", is stopped"),
            std::string::npos)
      << r.out;
  ::kill(member.pid, SIGCONT);
  EXPECT_EQ(pub.wait_exit(60), 0) << "the publisher goes on once the member does";
}

// A daemon that lives but does not answer (SIGSTOP) still owns the bus:
// every client that needs it fails within the hello timeout with an error
// naming its pid and state, and none starts a second daemon, goes on
// without it, or destroys the bus under it.
TEST_F(CliOpsTest, ClientsOfADaemonThatDoesNotAnswerFailNamingItAndChangeNothing) {
  ASSERT_EQ(h({"daemon", "start"}).status, 0);
  ASSERT_EQ(h({"topic", "create", "t", "--ring", "64K", "--max-event", "4K"}).status, 0);
  const long pid = daemon_pid();
  ASSERT_GT(pid, 0);
  ASSERT_EQ(::kill(static_cast<pid_t>(pid), SIGSTOP), 0);
  struct Resume {
    pid_t pid;
    ~Resume() { ::kill(pid, SIGCONT); }
  } resume{static_cast<pid_t>(pid)};
  const std::string named = "(pid " + std::to_string(pid) + ", stopped)";
  const std::string resume_hint = "'kill -CONT " + std::to_string(pid) + "'";
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"publish", "t", "x"}, {"daemon", "status"}, {"daemon", "start"}, {"bus", "destroy"}}) {
    const CliRun r = h(args, "", 60);
    EXPECT_EQ(r.status, 1) << r.describe();
    EXPECT_NE(r.err.find(named), std::string::npos) << r.describe();
    EXPECT_NE(r.err.find(resume_hint), std::string::npos) << r.describe();
  }
  ::kill(static_cast<pid_t>(pid), SIGCONT);
  // Still the one daemon, and the bus with its topic is intact.
  EXPECT_EQ(daemon_pid(), pid);
  const CliRun r = h({"stat", "t", "--json"});
  ASSERT_EQ(r.status, 0) << r.describe();
  EXPECT_EQ(h({"publish", "t", "after"}).status, 0);
  const CliRun s = h({"daemon", "status", "--json"});
  ASSERT_EQ(s.status, 0) << s.describe();
  EXPECT_EQ(s.json()["pid"], pid);
  EXPECT_EQ(s.json()["answers"], true);
}

// `groups delete --force` with a member attached: the member learns that
// its group is gone and exits 1 saying so (it used to sit on, fenced, with
// nothing assigned, and exit 0 at its --timeout, or never).
TEST_F(CliOpsTest, ConsumeExitsWhenItsGroupIsDeleted) {
  ASSERT_EQ(h({"daemon", "start"}).status, 0);
  ASSERT_EQ(h({"topic", "create", "t", "--partitions", "2", "--ring", "64K", "--max-event", "4K"}).status, 0);
  Background consumer = hb({"consume", "t", "--group", "g"});
  ASSERT_EQ(h({"publish", "t", "--partition", "0", "first"}).status, 0);
  ASSERT_TRUE(wait_until(
      [&] {
        consumer.drain();
        return consumer.out.find("first") != std::string::npos;
      },
      30, [&] { return "the consumer did not print the first event; stderr: " + consumer.err; }));
  CliRun r = h({"groups", "delete", "t", "g", "--force"});
  ASSERT_EQ(r.status, 0) << r.describe();
  ASSERT_EQ(h({"publish", "t", "--partition", "0", "after"}).status, 0);
  const int status = consumer.wait_exit(30);
  EXPECT_EQ(status, 1) << "stdout: " << consumer.out << "\nstderr: " << consumer.err;
  EXPECT_NE(consumer.err.find("group 'g' of topic 't' was deleted"), std::string::npos) << consumer.err;
  EXPECT_EQ(consumer.out.find("after"), std::string::npos) << consumer.out;
}

// Another user on a bus (its socket is 0666; what a user may do is decided
// per request): stopping the daemon, creating topics and destroying the bus
// are the owner's or root's, and each refusal says so (exit 1) rather than
// report a success that did nothing. Needs root, to run as nobody.
TEST_F(CliOpsTest, AnotherUserMayNotStopTheDaemonCreateTopicsOrDestroyTheBus) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to run a client as another user";
  ASSERT_EQ(h({"daemon", "start"}).status, 0);
  ASSERT_EQ(h({"topic", "create", "t", "--ring", "64K", "--max-event", "4K"}).status, 0);
  const long pid = daemon_pid();
  ASSERT_GT(pid, 0);
  ASSERT_EQ(::chmod(guard_->run_dir().c_str(), 01777), 0);  // a shared run directory, as /tmp/herald
  constexpr unsigned kNobody = 65534;
  CliRun r = herald_as(kNobody, {"--bus", bus(), "daemon", "stop"});
  EXPECT_EQ(r.status, 1) << r.describe();
  EXPECT_NE(r.err.find("only the daemon's user or root"), std::string::npos) << r.describe();
  r = herald_as(kNobody, {"--bus", bus(), "topic", "create", "evil", "--ring", "64K", "--max-event", "4K"});
  EXPECT_EQ(r.status, 1) << r.describe();
  EXPECT_NE(r.err.find("may not create topics"), std::string::npos) << r.describe();
  r = herald_as(kNobody, {"--bus", bus(), "bus", "destroy"});
  EXPECT_EQ(r.status, 1) << r.describe();
  EXPECT_NE(r.err.find("refused to destroy"), std::string::npos) << r.describe();
  // Nothing changed: the same daemon, the topic, no 'evil'.
  EXPECT_EQ(daemon_pid(), pid);
  r = h({"topic", "list", "--json"});
  ASSERT_EQ(r.status, 0) << r.describe();
  EXPECT_NE(r.out.find("\"t\""), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("evil"), std::string::npos) << r.out;
}

TEST_F(CliOpsTest, DoctorFindsAndFixesLeftoverSegments) {
  ASSERT_EQ(h({"topic", "create", "t", "--ring", "64K", "--max-event", "4K"}).status, 0);
  CliRun r = h({"doctor"});
  EXPECT_EQ(r.status, 0) << r.describe();
  EXPECT_NE(r.out.find("0 problem(s)"), std::string::npos) << r.out;
  // A leftover: named for the bus, unknown to the registry, mapped by nobody.
  const std::string junk = "herald." + bus() + ".ghost.00000000000000aa.log";
  const int fd = ::shm_open(("/" + junk).c_str(), O_CREAT | O_RDWR, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, 4096), 0);
  ::close(fd);
  r = h({"doctor", "--json"});
  EXPECT_EQ(r.status, 1) << r.describe();
  EXPECT_EQ(r.err.rfind("herald: error: doctor found 1 problem", 0), 0u) << r.describe();
  const auto j = r.json();
  EXPECT_EQ(j["problems"], 1);
  bool named = false;
  for (const auto& c : j["checks"]) named = named || c["detail"].get<std::string>().find(junk) != std::string::npos;
  EXPECT_TRUE(named) << r.out;
  r = h({"doctor", "--fix"});
  EXPECT_EQ(r.status, 0) << r.describe();
  EXPECT_NE(r.out.find("removed /dev/shm/" + junk), std::string::npos) << r.out;
  EXPECT_NE(::access(("/dev/shm/" + junk).c_str(), F_OK), 0);
}

TEST_F(CliOpsTest, DemoRunsToTheEndAndLeavesNothingBehind) {
  CliRun r = h({"demo", "--quick"}, "", 110);
  ASSERT_EQ(r.status, 0) << r.describe();
  for (const char* want : {"killed the notification service", "the poison order", "has no items: nothing to ship",
                           "summary", "orders published", "caught up", "dead letters         1", "explore further"})
    EXPECT_NE(r.out.find(want), std::string::npos) << want << "\n" << r.describe();
  const auto at = r.out.find("on bus '");
  ASSERT_NE(at, std::string::npos);
  const std::string demo_bus = r.out.substr(at + 8, r.out.find('\'', at + 8) - at - 8);
  EXPECT_NE(::access(("/dev/shm/herald." + demo_bus + ".registry").c_str(), F_OK), 0) << demo_bus << " left behind";
  EXPECT_EQ(herald({"--bus", demo_bus, "daemon", "status"}).status, 1) << "the demo's daemon is still running";
}

}  // namespace
}  // namespace herald::test
