// The herald CLI as a subprocess: usage errors, topics, publish, consume,
// tail and groups, with real output checks and --json parsed.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <csignal>
#include <string>
#include <vector>

#include "herald/herald.hpp"
#include "tests/cli/cli_harness.hpp"

namespace herald::test {
namespace {

class CliDataTest : public CliTest {};

// Every usage error: exit 2 and exactly one line "herald: error: ..." on stderr.
TEST_F(CliDataTest, UsageErrorsExitTwoWithOneErrorLine) {
  const std::vector<std::vector<std::string>> cases = {
      {},
      {"frobnicate"},
      {"--no-such-flag", "topic", "list"},
      {"topic"},
      {"topic", "create"},
      {"topic", "create", "bad/name"},
      {"topic", "create", "t", "--ring", "12Q"},
      {"topic", "create", "t", "--partitions", "0"},
      {"topic", "create", "t", "--policy", "sometimes"},
      {"topic", "create", "t", "--ring", "64K", "--max-event", "1M"},
      {"topic", "create", "t", "--lagout-grace", "5"},
      {"publish"},
      {"publish", "t", "--deadline", "1x"},
      {"publish", "t", "--header", "novalue", "data"},
      {"publish", "t", "--jsonl", "data"},
      {"consume", "t"},
      {"consume", "t", "--group", "g", "--from", "yesterday"},
      {"consume", "t", "--group", "g", "--timeout", "5"},
      {"consume", "t", "--group", "g", "--exec-timeout", "1s"},
      {"consume", "t", "--group", "g", "--from", "1:abc"},
      {"tail", "t", "--last", "0"},
      {"consume", "t", "--group", "g", "--count", "-1"},
      {"consume", "t", "--group", "g", "--count", "99999999999999999999"},
      {"consume", "t", "--group", "g", "--count", "1.5"},
      {"publish", "t", "--header", "k=1", "--header", "k=2", "data"},
      {"topic", "create", "t", "--ring", "1000"},
      {"stat", "--watch", "--iterations", "0"},
      {"tail", "t", "--last", "3", "--from", "latest"},
      {"groups", "reset", "t", "g"},
      {"groups", "reset", "t", "g", "--to", "2024-13-40T00:00:00Z"},
      {"dlq"},
      {"dlq", "redrive", "t"},
      {"dlq", "redrive", "t", "--all", "--filter", "bogus"},
      {"dlq", "redrive", "t", "--all", "--position", "0:0"},
      {"dlq", "show", "t", "not-a-position"},
      {"dlq", "redrive", "t", "--all", "--rate", "fast"},
      {"stat", "--iterations", "3"},
      {"stat", "--watch", "--interval", "1ms"},
      {"daemon"},
      {"daemon", "start", "--metrics", "bogus"},
      {"consume", "t", "--group", "g", "--exec", ""},
      {"topic", "create", "t", "--unix-group", ""},
      {"topic", "delete", ""},
      {"daemon", "start", "--metrics", "127.0.0.1:99999"},
      {"bus"},
  };
  for (const auto& args : cases) {
    const CliRun r = h(args);
    std::string cmd;
    for (const auto& a : args) cmd += a + " ";
    EXPECT_EQ(r.status, 2) << cmd << "\n" << r.describe();
    EXPECT_EQ(r.err.rfind("herald: error: ", 0), 0u) << cmd << "\n" << r.describe();
    EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "not one line: " << cmd << "\n" << r.describe();
  }
}

TEST_F(CliDataTest, AnUnknownCommandIsNamed) {
  const CliRun r = h({"frobnicate"});
  EXPECT_EQ(r.status, 2) << r.describe();
  EXPECT_EQ(r.err, "herald: error: unknown command 'frobnicate' (see 'herald --help')\n") << r.describe();
}

TEST_F(CliDataTest, ABadBusNameIsAUsageError) {
  const CliRun r = herald({"--bus", "no spaces", "topic", "list"});
  EXPECT_EQ(r.status, 2) << r.describe();
  EXPECT_NE(r.err.find("herald: error: --bus: bus name 'no spaces'"), std::string::npos) << r.describe();
}

TEST_F(CliDataTest, HelpOnEveryCommand) {
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{{"--help"}, {"topic", "create", "--help"}, {"topic", "list", "--help"},
                                             {"publish", "--help"}, {"consume", "--help"}, {"tail", "--help"}, {"trace", "--help"},
                                             {"groups", "--help"}, {"groups", "reset", "--help"},
                                             {"dlq", "redrive", "--help"}, {"stat", "--help"},
                                             {"daemon", "start", "--help"}, {"doctor", "--help"},
                                             {"bus", "destroy", "--help"}, {"demo", "--help"}}) {
    const CliRun r = h(args);
    EXPECT_EQ(r.status, 0) << args[0] << r.describe();
    EXPECT_NE(r.out.find("Usage:"), std::string::npos) << r.describe();
  }
}

TEST_F(CliDataTest, TopicLifecycle) {
  CliRun r = h({"topic", "create", "orders", "--partitions", "3", "--ring", "64K", "--max-event", "4K", "--policy",
             "lossless"});
  ASSERT_EQ(r.status, 0) << r.describe();
  EXPECT_NE(r.out.find("created topic 'orders'"), std::string::npos) << r.describe();
  r = h({"topic", "create", "orders"});
  EXPECT_EQ(r.status, 1) << r.describe();
  EXPECT_EQ(r.err.rfind("herald: error: ", 0), 0u);
  EXPECT_NE(r.err.find("already exists"), std::string::npos) << r.describe();
  EXPECT_EQ(h({"topic", "create", "orders", "--exist-ok"}).status, 0);
  EXPECT_EQ(h({"topic", "create", "orders", "--partitions", "3", "--policy", "lossless", "--exist-ok"}).status, 0);
  // --exist-ok accepts the topic only as asked: an option given that
  // differs is an error naming it.
  r = h({"topic", "create", "orders", "--partitions", "8", "--ring", "64K", "--max-event", "4K", "--exist-ok"});
  EXPECT_EQ(r.status, 1) << r.describe();
  EXPECT_NE(r.err.find("3 partitions (asked 8)"), std::string::npos) << r.describe();
  EXPECT_EQ(r.err.find("ring"), std::string::npos) << "the ring is as asked: " << r.describe();
  EXPECT_EQ(r.err.find("max event"), std::string::npos) << "the max event is as asked: " << r.describe();
  r = h({"topic", "create", "audit", "--json"});
  ASSERT_EQ(r.status, 0) << r.describe();
  EXPECT_EQ(r.json()["partitions"], 4);
  EXPECT_EQ(r.json()["ring_bytes"], 16u << 20);
  // Without --max-event, a small ring gets a quarter of itself.
  r = h({"topic", "create", "small", "--ring", "64K", "--json"});
  ASSERT_EQ(r.status, 0) << r.describe();
  EXPECT_EQ(r.json()["max_event"], 16u << 10);
  ASSERT_EQ(h({"topic", "delete", "small"}).status, 0);

  r = h({"topic", "list", "--json"});
  ASSERT_EQ(r.status, 0) << r.describe();
  const auto list = r.json();
  ASSERT_EQ(list["topics"].size(), 2u) << r.out;
  EXPECT_EQ(list["topics"][1]["name"], "orders");
  EXPECT_EQ(list["topics"][1]["partitions"], 3);
  EXPECT_EQ(list["topics"][1]["ring_bytes"], 65536);
  EXPECT_EQ(list["topics"][1]["max_event"], 4096);
  EXPECT_EQ(list["topics"][1]["default_policy"], "lossless");
  r = h({"topic", "list"});
  EXPECT_NE(r.out.find("orders"), std::string::npos);
  EXPECT_NE(r.out.find("64.0 KiB"), std::string::npos) << r.out;

  ASSERT_EQ(h({"publish", "orders", "--key", "k", "hello"}).status, 0);
  r = h({"topic", "describe", "orders", "--json"});
  ASSERT_EQ(r.status, 0) << r.describe();
  const auto d = r.json();
  EXPECT_EQ(d["partition_stats"].size(), 3u);
  std::uint64_t events = 0;
  for (const auto& p : d["partition_stats"]) {
    events += p["events"].get<std::uint64_t>();
    if (p["events"] == 1) {
      EXPECT_EQ(p["tail"], 128) << p;  // one small record
      EXPECT_EQ(p["beginning"], 0);
      EXPECT_GT(p["beginning_time_ns"].get<std::uint64_t>(), 0u);
    }
  }
  EXPECT_EQ(events, 1u);
  r = h({"topic", "describe", "orders"});
  EXPECT_NE(r.out.find("3 partitions"), std::string::npos) << r.out;

  r = h({"topic", "describe", "nope"});
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("does not exist"), std::string::npos) << r.describe();
  r = h({"stat", "nope"});
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("topic 'nope' does not exist"), std::string::npos) << r.describe();
  ASSERT_EQ(h({"topic", "delete", "orders"}).status, 0);
  ASSERT_EQ(h({"topic", "delete", "audit", "--json"}).json()["deleted"], true);
  r = h({"topic", "list", "--json"});
  EXPECT_TRUE(r.json()["topics"].empty()) << r.out;
}

TEST_F(CliDataTest, PublishConsumeTailAndGroups) {
  ASSERT_EQ(h({"topic", "create", "orders", "--partitions", "2", "--ring", "1M", "--max-event", "64K"}).status, 0);
  // One event with DATA: partition and position.
  CliRun r = h({"publish", "orders", "--key", "cust-1", "--type", "OrderPlaced", "--source", "shop", "--header",
             "tenant=acme", "--header", "trace=t1", "--correlation-id", "c-1", "--causation-id", "x-0", "--json",
             "{\"order\":1}"});
  ASSERT_EQ(r.status, 0) << r.describe();
  const auto one = r.json();
  EXPECT_EQ(one["position"], 0);
  const auto first_partition = one["partition"].get<std::uint32_t>();
  r = h({"publish", "orders", "--key", "cust-1", "plain"});
  ASSERT_EQ(r.status, 0) << r.describe();
  EXPECT_EQ(r.out.rfind("partition " + std::to_string(first_partition) + " position ", 0), 0u) << r.out;

  // Stdin lines, then JSON lines with every field.
  r = h({"publish", "orders", "--type", "Line"}, "l1\nl2\r\nl3");
  ASSERT_EQ(r.status, 0) << r.describe();
  EXPECT_NE(r.out.find("published 3 events"), std::string::npos) << r.out;
  r = h({"publish", "orders", "--jsonl", "--json"},
        "{\"key\":\"k9\",\"type\":\"T\",\"source\":\"s\",\"headers\":{\"h\":\"v\"},\"data\":\"utf8 ✓\"}\n"
        "\n"
        "{\"key\":\"k9\",\"data_base64\":\"AAEC/w==\"}\n");
  ASSERT_EQ(r.status, 0) << r.describe();
  EXPECT_EQ(r.json()["published"], 2);
  r = h({"publish", "orders", "--jsonl"}, "not json\n");
  EXPECT_EQ(r.status, 1) << r.describe();
  EXPECT_NE(r.err.find("line 1"), std::string::npos) << r.describe();

  // Consume everything as JSON lines.
  r = h({"consume", "orders", "--group", "g1", "--count", "7", "--timeout", "10s", "--json"});
  ASSERT_EQ(r.status, 0) << r.describe();
  const auto events = r.json_lines();
  ASSERT_EQ(events.size(), 7u) << r.out;
  int seen_envelope = 0, seen_binary = 0, seen_utf8 = 0;
  for (const auto& e : events) {
    for (const char* k : {"topic", "partition", "position", "id", "time", "type", "source", "key", "correlation_id",
                          "causation_id", "headers", "delivery"})
      EXPECT_TRUE(e.contains(k)) << k << " missing in " << e;
    if (e.value("correlation_id", "") == "c-1") {
      ++seen_envelope;
      EXPECT_EQ(e["type"], "OrderPlaced");
      EXPECT_EQ(e["source"], "shop");
      EXPECT_EQ(e["key"], "cust-1");
      EXPECT_EQ(e["causation_id"], "x-0");
      EXPECT_EQ(e["headers"]["tenant"], "acme");
      EXPECT_EQ(e["headers"]["trace"], "t1");
      EXPECT_EQ(e["data"], "{\"order\":1}");
      EXPECT_EQ(e["delivery"], 1);
    }
    if (e.contains("data_base64")) {
      ++seen_binary;
      EXPECT_EQ(e["data_base64"], "AAEC/w==");
    }
    if (e.value("data", "") == "utf8 ✓") {
      ++seen_utf8;
      EXPECT_EQ(e["headers"]["h"], "v");
      EXPECT_EQ(e["type"], "T");
    }
  }
  EXPECT_EQ(seen_envelope, 1);
  EXPECT_EQ(seen_binary, 1);
  EXPECT_EQ(seen_utf8, 1);

  // Nothing left: the group is at the tail; the next consume times out with nothing.
  r = h({"groups", "orders", "--json"});
  ASSERT_EQ(r.status, 0) << r.describe();
  const auto g = r.json()["topics"][0]["groups"][0];
  EXPECT_EQ(g["name"], "g1");
  EXPECT_EQ(g["lag_bytes"], 0) << g;
  r = h({"consume", "orders", "--group", "g1", "--timeout", "300ms"});
  EXPECT_EQ(r.status, 0) << r.describe();
  EXPECT_TRUE(r.out.empty()) << r.out;

  // Lag shows up in bytes, estimated events (bytes / average record size:
  // exact here, every record has the same size) and time.
  ASSERT_EQ(h({"topic", "create", "lag", "--partitions", "1", "--ring", "64K", "--max-event", "4K"}).status, 0);
  ASSERT_EQ(h({"publish", "lag"}, "a\n").status, 0);
  ASSERT_EQ(h({"consume", "lag", "--group", "slow", "--count", "1", "--timeout", "5s"}).status, 0);
  ASSERT_EQ(h({"publish", "lag"}, "b\nc\nd\n").status, 0);
  r = h({"groups", "lag", "--json"});
  const auto p0 = r.json()["topics"][0]["groups"][0]["partitions"][0];
  EXPECT_EQ(p0["lag_bytes"], 192) << p0;
  EXPECT_EQ(p0["lag_events"], 3) << p0;
  EXPECT_GT(p0["lag_seconds"].get<double>(), 0.0) << p0;
  r = h({"groups"});
  EXPECT_NE(r.out.find("LAG EVENTS"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("slow"), std::string::npos) << r.out;

  // tail: everything retained, the last N, a partition from a position.
  r = h({"tail", "lag", "--last", "2"});
  ASSERT_EQ(r.status, 0) << r.describe();
  EXPECT_EQ(r.out, "c\nd\n");
  r = h({"tail", "lag"});
  EXPECT_EQ(r.out, "a\nb\nc\nd\n");
  r = h({"tail", "orders", "--json"});
  EXPECT_EQ(r.json_lines().size(), 7u) << r.out;
  r = h({"tail", "orders", "--from", "1:0", "--json"});
  for (const auto& e : r.json_lines()) EXPECT_EQ(e["partition"], 1);
  r = h({"tail", "orders", "--from", "1:100"});  // not an event boundary
  EXPECT_EQ(r.status, 1) << r.describe();
  EXPECT_NE(r.err.find("not a committed event boundary"), std::string::npos) << r.describe();
}

TEST_F(CliDataTest, ConsumeFromAndResetAndGroupAdministration) {
  ASSERT_EQ(h({"topic", "create", "t", "--partitions", "1", "--ring", "64K", "--max-event", "4K"}).status, 0);
  ASSERT_EQ(h({"publish", "t"}, "e0\ne1\ne2\ne3\n").status, 0);
  // A new group from latest sees nothing old; from a position, from there.
  CliRun r = h({"consume", "t", "--group", "late", "--from", "end", "--timeout", "300ms"});
  EXPECT_EQ(r.status, 0) << r.describe();
  EXPECT_EQ(r.out, "");
  r = h({"consume", "t", "--group", "mid", "--from", "0:128", "--count", "2", "--timeout", "5s"});
  ASSERT_EQ(r.status, 0) << r.describe();
  EXPECT_EQ(r.out, "e2\ne3\n");
  r = h({"consume", "t", "--group", "recent", "--from", "-1h", "--count", "4", "--timeout", "5s"});
  ASSERT_EQ(r.status, 0) << r.describe();
  EXPECT_EQ(r.out, "e0\ne1\ne2\ne3\n");
  // --count not reached before --timeout: an error naming both.
  r = h({"consume", "t", "--group", "recent", "--count", "1", "--timeout", "200ms"});
  EXPECT_EQ(r.status, 1) << r.describe();
  EXPECT_NE(r.err.find("got 0 of 1"), std::string::npos) << r.describe();

  // reset: the plan changes nothing; --execute moves the cursor.
  r = h({"groups", "reset", "t", "mid", "--to", "earliest", "--json"});
  ASSERT_EQ(r.status, 0) << r.describe();
  auto plan = r.json();
  EXPECT_EQ(plan["executed"], false);
  EXPECT_EQ(plan["plan"][0]["from"], 256);
  EXPECT_EQ(plan["plan"][0]["to"], 0);
  r = h({"groups", "reset", "t", "mid", "--to", "earliest"});
  EXPECT_NE(r.out.find("add --execute"), std::string::npos) << r.out;
  r = h({"consume", "t", "--group", "mid", "--timeout", "300ms"});
  EXPECT_EQ(r.out, "") << "a plan must not move the cursor";
  r = h({"groups", "reset", "t", "mid", "--to", "0:100", "--execute"});
  EXPECT_EQ(r.status, 1) << r.describe();  // not a boundary
  ASSERT_EQ(h({"groups", "reset", "t", "mid", "--to", "0:192", "--execute"}).status, 0);
  r = h({"consume", "t", "--group", "mid", "--count", "1", "--timeout", "5s"});
  EXPECT_EQ(r.out, "e3\n") << r.describe();
  // consume --reset moves an existing group first.
  r = h({"consume", "t", "--group", "mid", "--from", "beginning", "--reset", "--count", "4", "--timeout", "5s"});
  EXPECT_EQ(r.out, "e0\ne1\ne2\ne3\n") << r.describe();

  // groups delete (and its DLQ topic goes with it).
  ASSERT_EQ(h({"groups", "delete", "t", "late"}).status, 0);
  r = h({"groups", "t", "--json"});
  for (const auto& g : r.json()["topics"][0]["groups"]) EXPECT_NE(g["name"], "late");
  r = h({"topic", "list", "--json"});
  for (const auto& t : r.json()["topics"]) EXPECT_NE(t["name"], "t.dlq.late");
  r = h({"groups", "delete", "t", "nope"});
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.err.rfind("herald: error: ", 0), 0u);

  // A refused --from makes no group (on a lossless topic it would gate).
  r = h({"consume", "t", "--group", "typo", "--from", "0:100", "--count", "1", "--timeout", "1s"});
  EXPECT_EQ(r.status, 1) << r.describe();
  EXPECT_NE(r.err.find("not a committed event boundary"), std::string::npos) << r.describe();
  r = h({"consume", "t", "--group", "typo", "--from", "5:0", "--count", "1", "--timeout", "1s"});
  EXPECT_EQ(r.status, 1) << r.describe();
  EXPECT_NE(r.err.find("partition 5 does not exist"), std::string::npos) << r.describe();
  r = h({"groups", "t", "--json"});
  for (const auto& g : r.json()["topics"][0]["groups"]) EXPECT_NE(g["name"], "typo") << r.out;
  // A live group's dead-letter topic goes with its group, not on its own.
  r = h({"topic", "delete", "t.dlq.mid"});
  EXPECT_EQ(r.status, 1) << r.describe();
  EXPECT_NE(r.err.find("dead-letter topic of group 'mid'"), std::string::npos) << r.describe();
}

TEST_F(CliDataTest, TailFollowPrintsWhatArrives) {
  ASSERT_EQ(h({"topic", "create", "t", "--partitions", "2", "--ring", "64K", "--max-event", "4K"}).status, 0);
  ASSERT_EQ(h({"publish", "t", "old"}).status, 0);
  Background tail = hb({"tail", "t", "--follow"});
  ASSERT_TRUE(wait_until([&] { tail.drain(); return tail.out == "old\n"; }, 20, [&] { return tail.out + tail.err; }));
  ASSERT_EQ(h({"publish", "t", "new"}).status, 0);
  ASSERT_TRUE(wait_until([&] { tail.drain(); return tail.out == "old\nnew\n"; }, 20, [&] { return tail.out + tail.err; }));
  EXPECT_EQ(tail.stop(), 0) << tail.err;
  // A group-less reader holds nobody back and leaves no group behind.
  EXPECT_TRUE(h({"groups", "t", "--json"}).json()["topics"][0]["groups"].empty());
}

// tail holds producers back for nobody: what a ring overwrites before a
// stopped tail -f reads it is gone, and tail says so (it used to print on
// as if nothing had been skipped).
TEST_F(CliDataTest, TailFollowWarnsOfEventsOverwrittenBeforeItReadThem) {
  ASSERT_EQ(h({"topic", "create", "t", "--partitions", "1", "--ring", "16K"}).status, 0);
  ASSERT_EQ(h({"publish", "t", "first"}).status, 0);
  Background tail = hb({"tail", "t", "--follow"});
  ASSERT_TRUE(wait_until([&] { tail.drain(); return tail.out == "first\n"; }, 20, [&] { return tail.out + tail.err; }));
  ASSERT_EQ(::kill(tail.pid, SIGSTOP), 0);
  std::string lines;
  for (int i = 0; i < 400; ++i) lines += "lapping " + std::to_string(i) + "\n";  // ~38 KB of records
  const CliRun pub = h({"publish", "t"}, lines);
  ::kill(tail.pid, SIGCONT);
  ASSERT_EQ(pub.status, 0) << pub.describe();
  ASSERT_EQ(h({"publish", "t", "last"}).status, 0);
  ASSERT_TRUE(wait_until([&] { tail.drain(); return tail.out.ends_with("last\n"); }, 20,
                         [&] { return tail.out + tail.err; }));
  EXPECT_EQ(tail.stop(), 0) << tail.err;
  EXPECT_NE(tail.err.find("herald: warning: tail skipped "), std::string::npos) << tail.err;
  EXPECT_NE(tail.err.find("on partition 0 of 't'"), std::string::npos) << tail.err;
  EXPECT_EQ(tail.out.find("lapping 0\n"), std::string::npos) << "the first ones were overwritten";
}

// herald trace: one request's events across topics, as the tree their
// causation ids make, with a dead letter under the event it holds.
TEST_F(CliDataTest, TraceFollowsARequestAcrossTopicsAsACausalTree) {
  ASSERT_EQ(h({"topic", "create", "orders", "--partitions", "1"}).status, 0);
  ASSERT_EQ(h({"topic", "create", "payments", "--partitions", "1"}).status, 0);
  CliRun r = h({"--json", "publish", "orders", "--type", "OrderPlaced", "--correlation-id", "req-1", "--source",
                "checkout", "o"});
  ASSERT_EQ(r.status, 0) << r.describe();
  const std::string placed = r.json()["id"];
  r = h({"--json", "publish", "payments", "--type", "PaymentCaptured", "--correlation-id", "req-1", "--causation-id",
         placed, "p"});
  ASSERT_EQ(r.status, 0) << r.describe();
  const std::string paid = r.json()["id"];
  ASSERT_EQ(h({"publish", "orders", "--type", "OrderPlaced", "--correlation-id", "req-2", "other"}).status, 0);

  r = h({"trace", "req-1"});
  ASSERT_EQ(r.status, 0) << r.describe();
  EXPECT_NE(r.out.find("trace 'req-1': 2 events on 2 topics"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\nOrderPlaced  orders 0:0  from checkout  +0ns  id " + placed + "\n"), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("\n└─ PaymentCaptured  payments 0:0  "), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("other"), std::string::npos) << "another request's event: " << r.out;
  // By an event id: that event's request, the event marked.
  r = h({"trace", paid});
  ASSERT_EQ(r.status, 0) << r.describe();
  EXPECT_NE(r.out.find("id " + paid + "  <- this one"), std::string::npos) << r.out;
  r = h({"--json", "trace", "req-1"});
  ASSERT_EQ(r.status, 0) << r.describe();
  const auto j = r.json();
  ASSERT_EQ(j["events"].size(), 2u) << r.out;
  EXPECT_EQ(j["events"][0]["depth"], 0);
  EXPECT_EQ(j["events"][1]["depth"], 1);
  EXPECT_EQ(j["events"][1]["parent_id"], placed);
  EXPECT_EQ(j["events"][1]["topic"], "payments");

  // A dead letter shows under the event it holds, with its reason.
  r = h({"consume", "payments", "--group", "ledger", "--exec", "exit 3", "--max-deliveries", "1", "--count", "1"});
  ASSERT_EQ(r.status, 0) << r.describe();
  r = h({"trace", "req-1"});
  ASSERT_EQ(r.status, 0) << r.describe();
  EXPECT_NE(r.out.find("\n   └─ dead-lettered by group 'ledger' to payments.dlq.ledger 0:0 after 1 delivery: "),
            std::string::npos)
      << r.out;

  r = h({"trace", "req-404"});
  EXPECT_EQ(r.status, 1) << r.describe();
  EXPECT_NE(r.err.find("no retained event has correlation id or event id 'req-404'"), std::string::npos)
      << r.describe();
  r = h({"trace", "req-1", "--topics", "nope"});
  EXPECT_EQ(r.status, 1) << r.describe();
  EXPECT_NE(r.err.find("nope"), std::string::npos) << r.describe();
  // Only the topics named are read.
  r = h({"--json", "trace", "req-1", "--topics", "payments"});
  ASSERT_EQ(r.status, 0) << r.describe();
  EXPECT_EQ(r.json()["events"].size(), 1u) << r.out;
}

// A lossy group a ring behind has lost bytes it has not counted yet:
// groups says so (it showed GAPS 0, and a lag time of the oldest retained
// event as if it were the group's).
TEST_F(CliDataTest, GroupsShowsBytesOverwrittenBeforeTheGroupReadThem) {
  ASSERT_EQ(h({"topic", "create", "t", "--partitions", "1", "--ring", "16K"}).status, 0);
  ASSERT_EQ(h({"publish", "t", "first"}).status, 0);
  ASSERT_EQ(h({"consume", "t", "--group", "dash", "--policy", "lossy", "--count", "1"}).status, 0);
  CliRun r = h({"--json", "groups", "t"});
  ASSERT_EQ(r.status, 0) << r.describe();
  EXPECT_EQ(r.json()["topics"][0]["groups"][0]["partitions"][0]["overwritten_bytes"], 0) << r.out;
  std::string lines;
  for (int i = 0; i < 400; ++i) lines += "lapping " + std::to_string(i) + "\n";
  ASSERT_EQ(h({"publish", "t"}, lines).status, 0);
  r = h({"--json", "groups", "t"});
  ASSERT_EQ(r.status, 0) << r.describe();
  const auto p = r.json()["topics"][0]["groups"][0]["partitions"][0];
  const auto d = h({"--json", "topic", "describe", "t"}).json();
  const std::uint64_t committed = p["committed"];
  EXPECT_GT(p["overwritten_bytes"].get<std::uint64_t>(), 0u) << r.out;
  EXPECT_EQ(p["overwritten_bytes"].get<std::uint64_t>() + committed,
            d["partition_stats"][0]["beginning"].get<std::uint64_t>())
      << r.out << d.dump();
  EXPECT_EQ(p["gaps"], 0) << "not counted until a member reads: " << r.out;
  r = h({"groups", "t"});
  EXPECT_NE(r.out.find(" overwritten"), std::string::npos) << r.out;
}

// trace on shapes a request's events should not take but may: a causation
// chain thousands deep (it overflowed the stack, and its indentation grew
// the output quadratically), a cycle (its events vanished), an event that
// names itself as its cause; and event ids in any spelling parse takes.
TEST_F(CliDataTest, TraceCopesWithDeepChainsCyclesAndIdSpellings) {
  auto b = Bus::attach(bus());
  ASSERT_TRUE(b) << b.error().message();
  ASSERT_TRUE(b->create_topic("deep", {.partitions = 1, .ring_bytes = 4 << 20}));
  auto prod = b->producer("deep").value();
  const std::size_t depth = 3000;
  std::string cause, first;
  for (std::size_t i = 0; i < depth; ++i) {
    auto r = prod.publish({.type = "Step", .payload = "s", .correlation_id = "chain", .causation_id = cause});
    ASSERT_TRUE(r) << r.error().message();
    cause = r->id.to_string();
    if (i == 0) first = cause;
  }
  const EventId x = EventId::parse("01900000-0000-7000-8000-00000000000a").value();
  const EventId y = EventId::parse("01900000-0000-7000-8000-00000000000b").value();
  const std::string xs = x.to_string(), ys = y.to_string();
  ASSERT_TRUE(prod.publish({.type = "A", .payload = "a", .correlation_id = "cyc", .causation_id = ys, .id = x}));
  ASSERT_TRUE(prod.publish({.type = "B", .payload = "b", .correlation_id = "cyc", .causation_id = xs, .id = y}));
  // C hangs off the cycle (caused by A, its id spelled upper case without
  // dashes) and is the earliest: it belongs under A, not at the top.
  std::string a_spelled;
  for (char ch : xs)
    if (ch != '-') a_spelled += static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  ASSERT_TRUE(prod.publish({.type = "C", .payload = "c", .correlation_id = "cyc", .causation_id = a_spelled,
                            .time_ns = 1}));
  const EventId z = EventId::parse("01900000-0000-7000-8000-00000000000c").value();
  ASSERT_TRUE(prod.publish({.type = "Self", .payload = "c", .correlation_id = "self", .causation_id = z.to_string(), .id = z}));

  CliRun r = h({"trace", "chain"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), static_cast<long>(depth + 1));
  EXPECT_LT(r.out.size(), depth * 200) << "indentation is capped";
  EXPECT_NE(r.out.find("\n[depth 2999] Step  deep 0:"), std::string::npos);
  r = h({"--json", "trace", "chain"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.json()["events"].size(), depth);
  EXPECT_EQ(r.json()["events"][depth - 1]["depth"], depth - 1);

  r = h({"trace", "cyc"});
  ASSERT_EQ(r.status, 0) << r.describe();
  EXPECT_NE(r.out.find("(a causation cycle)\nA  deep 0:"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("─ B  deep 0:"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("─ C  deep 0:"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("not retained"), std::string::npos) << r.out;
  r = h({"trace", "self"});
  ASSERT_EQ(r.status, 0) << r.describe();
  EXPECT_NE(r.out.find("(names itself as its cause)\nSelf  "), std::string::npos) << r.out;

  // The first step's id, upper case and without dashes: the same event.
  std::string spelled;
  for (char ch : first)
    if (ch != '-') spelled += static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  r = h({"--json", "trace", spelled});
  ASSERT_EQ(r.status, 0) << r.describe();
  EXPECT_EQ(r.json()["correlation_id"], "chain");
  EXPECT_EQ(r.json()["events"].size(), depth);
}

TEST_F(CliDataTest, PublishWaitsUnderBackpressureAndDeadlineBoundsIt) {
  // A lossless group with no consumer on a small ring: the ring fills.
  ASSERT_EQ(h({"topic", "create", "t", "--partitions", "1", "--ring", "16K", "--max-event", "4K", "--policy",
               "lossless"}).status, 0);
  ASSERT_EQ(h({"consume", "t", "--group", "audit", "--timeout", "100ms"}).status, 0);
  std::string lines;
  for (int i = 0; i < 1000; ++i) lines += "line-" + std::to_string(i) + "\n";
  CliRun r = h({"publish", "t", "--deadline", "200ms"}, lines);
  EXPECT_EQ(r.status, 1) << r.describe();
  EXPECT_EQ(r.err.rfind("herald: error: ", 0), 0u);
  EXPECT_NE(r.err.find("events published before it"), std::string::npos) << r.describe();
  // Without --deadline it waits; a consumer draining the group lets it finish.
  Background consumer = hb({"consume", "t", "--group", "audit"});
  r = h({"publish", "t"}, lines, 60);
  EXPECT_EQ(r.status, 0) << r.describe();
  EXPECT_NE(r.out.find("published 1000 events"), std::string::npos) << r.out;
  EXPECT_EQ(consumer.stop(), 0) << consumer.err;
}

}  // namespace
}  // namespace herald::test
