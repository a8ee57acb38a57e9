// Producers killed with SIGKILL at every named crash point of a publish
// (DESIGN.md "Producer crash") while heraldd watches: the partition is
// repaired within a bounded wait, the other producer and the consumer carry
// on, nothing committed is lost, and the killed claim becomes aborted
// records the consumer steps over — exactly the unfinished range. Plus a
// publish_batch killed half-way, a multi-threaded producer killed with
// several claims in flight, seeded random kills (many more under the soak
// label) and a live producer that holds a claim too long (reported, never
// aborted).
#include <gtest/gtest.h>

#include <random>
#include <set>

#include "daemon/daemon.hpp"
#include "shm/clock.hpp"
#include "tests/crash/crash_fixture.hpp"

namespace herald::test {
namespace {

using namespace std::chrono_literals;

constexpr std::uint32_t kBatch = 8;  // events per publish_batch in "batch" mode (one claim)

// Where a point sits in a publish, which decides what the killed claim
// leaves behind.
enum class Kind {
  kCandidate,        // before the CAS: nothing claimed (or someone else won): nothing aborted
  kClaimed,          // won, nothing of it committed: all of it aborted
  kBeforeRecordWord, // per record, before its commit word: records before it survive
  kAfterRecordWord,  // per record, after its commit word: it survives
  kFinished,         // every record of the claim committed: nothing aborted
};

struct Point {
  const char* name;
  Kind kind;
};

constexpr Point kPoints[] = {
    {"claim.candidate", Kind::kCandidate},        {"claim.won_unmarked", Kind::kClaimed},
    {"claim.won", Kind::kClaimed},                {"write.header", Kind::kBeforeRecordWord},
    {"commit.before_word", Kind::kBeforeRecordWord}, {"commit.word", Kind::kAfterRecordWord},
    {"commit.committed_to", Kind::kAfterRecordWord}, {"batch.record_committed", Kind::kAfterRecordWord},
    {"finish.before_clear", Kind::kFinished},
};

Kind kind_of(const std::string& point) {
  for (const Point& p : kPoints)
    if (point == p.name) return p.kind;
  return Kind::kCandidate;
}

// What a victim killed at `point`:`hit` must have left: the number of its
// events the consumer gets (`events`, given what it confirmed, `confirmed`)
// and how many of its records were aborted (`aborted_events`).
struct Expect {
  std::uint64_t events = 0;
  std::uint64_t aborted_events = 0;
};
Expect expect_for(const std::string& mode, const std::string& point, std::uint64_t hit, std::uint64_t confirmed) {
  const std::uint64_t claim = mode == "batch" ? kBatch : 1;  // events per claim
  // Record-level points are hit once per record, in publish order, so the
  // hit count says exactly how many records were committed. Claim-level
  // points (a CAS may be retried) go by what the victim confirmed.
  switch (kind_of(point)) {
    case Kind::kCandidate: return {confirmed, 0};
    case Kind::kClaimed: return {confirmed, claim};
    case Kind::kBeforeRecordWord: return {hit - 1, confirmed + claim - (hit - 1)};
    case Kind::kAfterRecordWord: return {hit, confirmed + claim - hit};
    case Kind::kFinished: return {confirmed + claim, 0};
  }
  return {};
}

bool applies(const std::string& mode, const std::string& point) {
  return point != "batch.record_committed" || mode == "batch";
}

class ProducerCrashTest : public CrashFixture {
 protected:
  // Runs one victim to its death at point:hit, beside whatever else runs;
  // returns its pid (0 if it was not killed there; the test has failed).
  pid_t kill_victim(const std::string& tag, const std::string& mode, const std::string& point, std::uint64_t hit,
                    std::uint64_t count, std::uint32_t threads = 1) {
    std::vector<std::string> args = {"produce", "--tag=" + tag, "--mode=" + mode, "--count=" + std::to_string(count),
                                     "--progress=" + path(tag + ".progress"), "--payload=64",
                                     "--threads=" + std::to_string(threads), "--batch=" + std::to_string(kBatch)};
    const std::string crash_at = point + ":" + std::to_string(hit);
    Child& v = peer(args, crash_at, tag);
    const pid_t pid = v.pid();
    if (!pump([&] { return !v.running(); }, 60, "victim " + tag + " (pid " + std::to_string(pid) + ", " + crash_at +
                                                    ") still running"))
      return 0;
    if (!killed_by(v.status(), SIGKILL)) {
      ADD_FAILURE() << "victim " << tag << " at " << crash_at << ": " << describe_status(*v.status()) << "\n"
                    << read_file(path(tag + ".stderr"));
      return 0;
    }
    return pid;
  }

  // The healthy producer, publishing until told to stop.
  Child& start_healthy() {
    return peer({"produce", "--tag=H", "--mode=single", "--count=0", "--progress=" + path("H.progress"), "--payload=64"},
                "", "H");
  }
  // Lets it publish past where a stale claim would have wedged it (three
  // rings on each partition), then stops it and drains.
  void finish_healthy(Child& h) {
    const std::uint64_t from = progress("H.progress")[0];
    const std::uint64_t more = 3 * 2 * kRing / 128;
    ASSERT_TRUE(pump([&] { return progress("H.progress")[0] >= from + more || !h.running(); }, 60,
                     "the healthy producer carries on"));
    ASSERT_TRUE(h.running()) << describe_status(*h.status()) << "\n" << read_file(path("H.stderr"));
    h.signal(SIGTERM);
    ASSERT_TRUE(pump([&] { return !h.running(); }, 30, "the healthy producer stops"));
    ASSERT_TRUE(exited_with(h.status(), 0)) << describe_status(*h.status()) << "\n" << read_file(path("H.stderr"));
    const std::uint64_t total = progress("H.progress")[0];
    std::string why;
    ASSERT_TRUE(pump([&] { return ledger_.distinct("H") == total && drained(&why); }, 60,
                     "draining: H " + std::to_string(ledger_.distinct("H")) + " of " + std::to_string(total)));
    EXPECT_TRUE(ledger_.prefix("H", 0, total, &why)) << why;
  }

  // After the victim "V" (mode, killed at point:hit) was repaired and
  // everything drained: the consumer got exactly what expect_for says, once
  // and in order, and exactly the unfinished range was aborted and stepped
  // over.
  void expect_victim_outcome(const std::string& mode, const std::string& point, std::uint64_t hit,
                             std::uint64_t aborted_before) {
    const std::uint64_t confirmed = progress("V.progress")[0];
    const Expect ex = expect_for(mode, point, hit, confirmed);
    std::string why;
    EXPECT_TRUE(ledger_.prefix("V", 0, ex.events, &why))
        << why << " (confirmed " << confirmed << ", killed at " << point << ":" << hit << ")";
    EXPECT_EQ(ledger_.duplicates(), 0u);
    EXPECT_EQ(ledger_.disorder(), 0u);
    EXPECT_EQ(ledger_.unparsable(), 0u);
    const Ledger::Stream* v = ledger_.stream("V");
    const std::uint64_t size = v != nullptr && v->size != 0 ? v->size : 128;
    EXPECT_EQ(ledger_.gap_bytes() + trailing_aborted(), ex.aborted_events * size)
        << ex.aborted_events << " records of " << size << " bytes";
    EXPECT_EQ(aborted_records() - aborted_before, ex.aborted_events == 0 ? 0u : 1u);
    EXPECT_EQ(member_->stats().aborted_skipped, aborted_records());
  }

  // Aborted bytes after the last event of each partition (not a gap yet).
  std::uint64_t trailing_aborted() const {
    std::uint64_t n = 0;
    for (std::uint32_t p = 0; p < map_->partitions(); ++p) n += member_->position(p) - ledger_.next(p);
    return n;
  }
};

// ---------------------------------------------------------------------------
// Every named point, for publish (one record per claim) and publish_batch
// (eight records per claim).
// ---------------------------------------------------------------------------

struct NamedCase {
  std::string mode, point;
};

class ProducerCrashPointTest : public ProducerCrashTest, public ::testing::WithParamInterface<NamedCase> {};

TEST_P(ProducerCrashPointTest, KilledProducerIsRepairedAndOthersCarryOn) {
  const std::string mode = GetParam().mode, point = GetParam().point;
  make_topic();
  Child& healthy = start_healthy();
  // Record-level points: a hit in the second claim of a batch; claim-level: the third claim.
  const Kind kind = kind_of(point);
  const std::uint64_t hit =
      kind == Kind::kBeforeRecordWord || kind == Kind::kAfterRecordWord ? (mode == "batch" ? kBatch + 5 : 5) : 3;
  const std::uint64_t aborted_before = aborted_records();
  const pid_t pid = kill_victim("V", mode, point, hit, 1000);
  ASSERT_NE(pid, 0);
  ASSERT_TRUE(repaired(pid));
  print_repair_latency(mode + " " + point);

  ASSERT_NO_FATAL_FAILURE(finish_healthy(healthy));
  expect_victim_outcome(mode, point, hit, aborted_before);
}

std::vector<NamedCase> named_cases() {
  std::vector<NamedCase> v;
  for (const char* mode : {"single", "batch"})
    for (const Point& p : kPoints)
      if (applies(mode, p.name)) v.push_back({mode, p.name});
  return v;
}

INSTANTIATE_TEST_SUITE_P(EveryPoint, ProducerCrashPointTest, ::testing::ValuesIn(named_cases()),
                         [](const ::testing::TestParamInfo<NamedCase>& i) {
                           std::string n = i.param.mode + "_" + i.param.point;
                           std::replace(n.begin(), n.end(), '.', '_');
                           return n;
                         });

// ---------------------------------------------------------------------------
// A single-producer topic: its producer moves tail with a plain store (no
// CAS; ring_log.hpp C1). Killed at each point of a claim, it is repaired
// like any other, and the next producer takes the one slot over and
// carries on from where the repair left tail.
// ---------------------------------------------------------------------------

class SingleProducerCrashPointTest : public ProducerCrashTest, public ::testing::WithParamInterface<const char*> {};

TEST_P(SingleProducerCrashPointTest, KilledProducerIsRepairedAndTheNextOneCarriesOn) {
  const std::string point = GetParam();
  make_topic(1, true, /*single_producer=*/true);
  const Kind kind = kind_of(point);
  const std::uint64_t hit = kind == Kind::kBeforeRecordWord || kind == Kind::kAfterRecordWord ? 5 : 3;
  const std::uint64_t aborted_before = aborted_records();
  const pid_t pid = kill_victim("V", "single", point, hit, 1000);
  ASSERT_NE(pid, 0);
  ASSERT_TRUE(repaired(pid));
  print_repair_latency("single-producer " + point);
  // The slot of the dead producer is the topic's only one: the next
  // producer gets it (taken over from the dead owner), not kBusy.
  Child& next = start_healthy();
  ASSERT_NO_FATAL_FAILURE(finish_healthy(next));
  expect_victim_outcome("single", point, hit, aborted_before);
}

INSTANTIATE_TEST_SUITE_P(EveryClaimPoint, SingleProducerCrashPointTest,
                         ::testing::Values("claim.candidate", "claim.won_unmarked", "claim.won", "commit.before_word",
                                           "commit.word", "finish.before_clear"),
                         [](const ::testing::TestParamInfo<const char*>& i) {
                           std::string n = i.param;
                           std::replace(n.begin(), n.end(), '.', '_');
                           return n;
                         });

// ---------------------------------------------------------------------------

TEST_F(ProducerCrashTest, PublishBatchKilledHalfWayKeepsEveryCommittedRecordAndAbortsExactlyTheRest) {
  make_topic(1);
  // 64 events per batch; killed after the 36th record of the second batch.
  const std::uint64_t hit = 64 + 36;
  Child& v = peer({"produce", "--tag=V", "--mode=batch", "--batch=64", "--count=640", "--partition=0",
                   "--progress=" + path("V.progress"), "--payload=64"},
                  "batch.record_committed:" + std::to_string(hit), "V");
  ASSERT_TRUE(pump([&] { return !v.running(); }, 60, "victim still running"));
  ASSERT_TRUE(killed_by(v.status(), SIGKILL)) << describe_status(*v.status()) << read_file(path("V.stderr"));
  ASSERT_TRUE(repaired(v.pid()));
  print_repair_latency("publish_batch");
  std::string why;
  ASSERT_TRUE(pump([&] { return ledger_.distinct("V") == hit && drained(&why); }, 30, "draining"));
  EXPECT_TRUE(ledger_.prefix("V", 0, hit, &why)) << why;
  EXPECT_EQ(progress("V.progress")[0], 64u);
  // The log: 100 committed events, then one aborted range of exactly the 28
  // unfinished records, ending at tail.
  const std::uint64_t size = ledger_.stream("V")->size;
  LogWalk w;
  ASSERT_TRUE(walk_log(*map_, 0, 0, shm::load_tail(map_->partition(0)), &w, &why)) << why;
  EXPECT_EQ(w.records - w.aborted_records, hit);
  EXPECT_EQ(w.aborted_bytes, 28 * size);
  EXPECT_EQ(ledger_.stream("V")->where[hit - 1].second + size + 28 * size, w.end) << "the aborted range ends the claim";
  EXPECT_EQ(member_->stats().aborted_skipped, w.aborted_records);
}

TEST_F(ProducerCrashTest, MultiThreadedProducerKilledWithSeveralClaimsInFlight) {
  make_topic(2);
  // Four threads each take a claim, meet at a barrier (four claims in
  // flight), then commit; the kill comes at the second commit of a round.
  constexpr std::uint32_t kThreads = 4;
  const std::uint64_t hit = 3 * kThreads + 2;
  Child& v = peer({"produce", "--tag=V", "--mode=mt-claim", "--threads=" + std::to_string(kThreads), "--count=100",
                   "--progress=" + path("V.progress"), "--payload=64"},
                  "commit.before_word:" + std::to_string(hit), "V");
  ASSERT_TRUE(pump([&] { return !v.running(); }, 60, "victim still running"));
  ASSERT_TRUE(killed_by(v.status(), SIGKILL)) << describe_status(*v.status()) << read_file(path("V.stderr"));
  ASSERT_TRUE(repaired(v.pid()));
  print_repair_latency("multi-threaded");
  const auto confirmed = progress("V.progress", kThreads);
  std::string why;
  ASSERT_TRUE(pump([&] { return drained(&why); }, 30, "draining"));
  std::uint64_t events = 0;
  for (std::uint32_t t = 0; t < kThreads; ++t) {
    const std::uint64_t seen = ledger_.distinct("V", t);
    events += seen;
    // Each thread: everything it confirmed, and at most the claim it was committing.
    EXPECT_TRUE(seen == confirmed[t] || seen == confirmed[t] + 1) << "thread " << t << " seen " << seen
                                                                  << " confirmed " << confirmed[t];
    EXPECT_TRUE(ledger_.prefix("V", t, seen, &why)) << why;
  }
  EXPECT_GE(events, hit - 1) << "every record committed before the kill survives";
  EXPECT_EQ(ledger_.duplicates(), 0u);
  // The whole log is committed records and aborted ones, nothing unfinished.
  std::uint64_t aborted_bytes = 0, normal = 0;
  for (std::uint32_t p = 0; p < 2; ++p) {
    LogWalk w;
    ASSERT_TRUE(walk_log(*map_, p, 0, shm::load_tail(map_->partition(p)), &w, &why)) << why;
    aborted_bytes += w.aborted_bytes;
    normal += w.records - w.aborted_records;
  }
  EXPECT_EQ(normal, events);
  EXPECT_EQ(aborted_bytes, ledger_.gap_bytes() + trailing_aborted());
  EXPECT_GE(repaired_claims(), 1u) << "the claim being committed at the kill was aborted";
  std::fprintf(stderr, "[herald] %llu claims in flight were aborted (%llu bytes)\n",
               static_cast<unsigned long long>(repaired_claims()), static_cast<unsigned long long>(aborted_bytes));
}

// Seeded random kills: random mode, point and hit count, one victim after
// another beside a healthy producer. HERALD_CRASH_KILLS sets how many (the
// soak label runs hundreds); HERALD_SEED replays.
TEST_F(ProducerCrashTest, SeededRandomKills) {
  make_topic(2);
  const std::uint64_t kills = scaled(env_u64("HERALD_CRASH_KILLS", 20));
  std::mt19937_64 rng(seed("random kills"));
  Child& healthy = start_healthy();
  struct Victim {
    std::string tag, mode, point;
    std::uint64_t hit = 0;
    std::uint32_t threads = 1;
    bool killed = false;
  };
  std::vector<Victim> victims;
  std::vector<std::uint64_t> latencies;
  std::map<std::string, int> by_point;
  for (std::uint64_t i = 0; i < kills; ++i) {
    Victim vic;
    vic.tag = "V" + std::to_string(i);
    const char* modes[] = {"single", "batch", "mt"};
    vic.mode = modes[rng() % 3];
    do {
      vic.point = kPoints[rng() % std::size(kPoints)].name;
    } while (!applies(vic.mode, vic.point));
    vic.hit = 1 + rng() % 40;
    vic.threads = vic.mode == "mt" ? 3 : 1;
    SCOPED_TRACE("kill " + std::to_string(i) + ": " + vic.mode + " " + vic.point + ":" + std::to_string(vic.hit));
    const std::uint64_t repairs_before = repaired_claims();
    // Enough events that every point is reached: at most 40 hits, a claim
    // of up to 8 events per hit.
    const pid_t pid = kill_victim(vic.tag, vic.mode, vic.point, vic.hit, 400, vic.threads);
    ASSERT_NE(pid, 0);
    ASSERT_TRUE(repaired(pid));
    vic.killed = true;
    ++by_point[vic.point];
    if (repaired_claims() != repairs_before) {
      std::uint64_t last = 0;
      for (std::uint32_t p = 0; p < 2; ++p) last = std::max(last, map_->partition(p).part->last_repair_ns.load());
      latencies.push_back(last);
    }
    ASSERT_TRUE(healthy.running()) << read_file(path("H.stderr"));
    victims.push_back(vic);
  }
  ASSERT_NO_FATAL_FAILURE(finish_healthy(healthy));
  std::string why;
  for (const Victim& vic : victims) {
    SCOPED_TRACE(vic.tag + ": " + vic.mode + " " + vic.point + ":" + std::to_string(vic.hit));
    const auto confirmed = progress(vic.tag + ".progress", vic.threads);
    if (vic.mode == "mt") {
      for (std::uint32_t t = 0; t < vic.threads; ++t) {
        const std::uint64_t seen = ledger_.distinct(vic.tag, t);
        EXPECT_TRUE(seen == confirmed[t] || seen == confirmed[t] + 1) << "thread " << t;
        EXPECT_TRUE(ledger_.prefix(vic.tag, t, seen, &why)) << why;
      }
    } else {
      const Expect ex = expect_for(vic.mode, vic.point, vic.hit, confirmed[0]);
      EXPECT_TRUE(ledger_.prefix(vic.tag, 0, ex.events, &why)) << why << " (confirmed " << confirmed[0] << ")";
    }
  }
  EXPECT_EQ(ledger_.duplicates(), 0u);
  EXPECT_EQ(ledger_.disorder(), 0u);
  EXPECT_EQ(member_->stats().aborted_skipped, aborted_records());
  std::sort(latencies.begin(), latencies.end());
  std::string points;
  for (const auto& [p, n] : by_point) points += " " + p + "=" + std::to_string(n);
  std::fprintf(stderr, "[herald] %llu random kills:%s\n", static_cast<unsigned long long>(kills), points.c_str());
  if (!latencies.empty())
    std::fprintf(stderr, "[herald] repair latency over %zu aborting repairs: min %llu us, median %llu us, max %llu us\n",
                 latencies.size(), static_cast<unsigned long long>(latencies.front() / 1000),
                 static_cast<unsigned long long>(latencies[latencies.size() / 2] / 1000),
                 static_cast<unsigned long long>(latencies.back() / 1000));
  print_repair_latency("random kills");
}

TEST_F(ProducerCrashTest, LiveProducerHoldingAClaimPastOneSecondIsReportedNotAborted) {
  make_topic(2);
  Child& holder = peer({"hold-claim", "--partition=1", "--ready=" + path("ready")}, "", "holder");
  const shm::PartitionLayout* part = map_->partition(1).part;
  ASSERT_TRUE(pump([&] { return part->stalled_pid.load() == static_cast<std::uint64_t>(holder.pid()); }, 20,
                   "the stalled claim of pid " + std::to_string(holder.pid()) + " is reported"));
  EXPECT_EQ(part->stalled_claims.load(), 1u);
  EXPECT_EQ(repaired_claims(), 0u) << "never aborted while its owner lives";
  EXPECT_NE(daemon_->log().find("reported, not aborted"), std::string::npos) << daemon_->log();
  holder.signal(SIGTERM);  // it commits the claim and exits
  ASSERT_TRUE(pump([&] { return !holder.running(); }, 20, "holder exits"));
  ASSERT_TRUE(exited_with(holder.status(), 0)) << read_file(path("holder.stderr"));
  ASSERT_TRUE(pump([&] { return ledger_.distinct("held") == 1; }, 20, "the held event arrives"));
  EXPECT_EQ(aborted_records(), 0u);
  EXPECT_TRUE(wait_until([&] { return part->stalled_pid.load() == 0; }, 20)) << "the report clears";
}

// ---------------------------------------------------------------------------
// heraldd itself killed in the middle of a repair (after it took the dead
// producer's slot over; after it aborted the range but before it cleared
// the claim slot). Its successor must finish the repair: the half-repaired
// slot holds the partition's unfinished watermark, so left alone it wedges
// the partition for every producer one lap later.
// ---------------------------------------------------------------------------

class DaemonKilledMidRepairTest : public ProducerCrashTest, public ::testing::WithParamInterface<const char*> {};

TEST_P(DaemonKilledMidRepairTest, SuccessorFinishesTheRepair) {
  make_topic();
  // Swap the fixture's daemon for one armed to die inside its first repair.
  ASSERT_TRUE(exited_with(daemon_->stop(), 0));
  const std::string armed = std::string(GetParam()) + ":1";
  daemon_ = Heraldd::start(guard_.bus(), guard_.run_dir(), {}, {{"HERALD_CRASH_AT", armed}});
  ASSERT_TRUE(daemon_->wait_ready(20)) << daemon_->log();
  Child& healthy = start_healthy();
  const std::uint64_t hit = 5;
  const pid_t pid = kill_victim("V", "single", "commit.before_word", hit, 1000);
  ASSERT_NE(pid, 0);
  const auto st = daemon_->child().wait(20);
  ASSERT_TRUE(killed_by(st, SIGKILL)) << "heraldd armed at " << armed << ": "
                                      << (st ? describe_status(*st) : "still running") << "\n" << daemon_->log();
  EXPECT_FALSE(producer_repaired(*map_, pid)) << "the repair was left half-done\n" << state();
  // Its successor (the consumer and the healthy producer rejoin it).
  daemon_ = Heraldd::start(guard_.bus(), guard_.run_dir());
  ASSERT_TRUE(daemon_->wait_ready(20)) << daemon_->log();
  ASSERT_TRUE(repaired(pid));
  print_repair_latency(std::string("successor after ") + GetParam());
  const std::uint64_t confirmed = progress("V.progress")[0];
  ASSERT_NO_FATAL_FAILURE(finish_healthy(healthy));
  std::string why;
  EXPECT_TRUE(ledger_.prefix("V", 0, hit - 1, &why)) << why << " (confirmed " << confirmed << ")";
  EXPECT_EQ(ledger_.duplicates(), 0u);
  const std::uint64_t size = ledger_.stream("V") != nullptr ? ledger_.stream("V")->size : 128;
  EXPECT_EQ(ledger_.gap_bytes() + trailing_aborted(), size) << "exactly the killed claim was aborted";
}

INSTANTIATE_TEST_SUITE_P(EveryRepairPoint, DaemonKilledMidRepairTest,
                         ::testing::Values("repair.slot_taken", "repair.before_clear"),
                         [](const ::testing::TestParamInfo<const char*>& i) {
                           std::string n = i.param;
                           std::replace(n.begin(), n.end(), '.', '_');
                           return n;
                         });

// ---------------------------------------------------------------------------
// A producer that lost its CAS and died before rewriting its slot, with the
// daemon embedded in this process and stepped on the test thread, so the
// order of events is the test's: the victim (a real process) is killed at
// claim.candidate; this process then wins the position it named; only then
// does the daemon repair. The stale candidate must be cleared, not aborted,
// and until it is, it holds every producer to one ring past it.
// ---------------------------------------------------------------------------

TEST(ProducerLostCasCrashTest, StaleCandidateOfAKilledProducerIsClearedAndThePartitionFlows) {
  BusGuard guard;
  std::vector<std::string> log;
  daemon::Config cfg;
  cfg.bus = guard.bus();
  cfg.run_dir = guard.run_dir();
  auto d = daemon::Daemon::open(cfg, shm::monotonic_ns, [&](const std::string& l) { log.push_back(l); });
  ASSERT_TRUE(d) << d.error().message();
  daemon::Peer me{::getpid(), ::getuid(), ::getgid(), shm::self_start_time()};
  auto made = (*d)->handle(1, me, nlohmann::json::parse(R"({"v":1,"id":1,"op":"create_topic","name":"t","partitions":1,
                                                        "ring_bytes":65536,"max_event":4096})"));
  ASSERT_TRUE(made.value("ok", false)) << made.dump();
  auto m = attach_topic(guard.bus(), "t");
  ASSERT_NE(m, nullptr);

  // No daemon socket: the victim is a daemonless producer. It dies after
  // writing its candidate for position 0, before its CAS.
  SpawnOptions o;
  o.argv = {crash_peer_path(), "produce", "--bus=" + guard.bus(), "--topic=t", "--tag=V", "--count=5", "--partition=0"};
  o.set_env = {{"HERALD_CRASH_AT", "claim.candidate:1"}};
  o.stderr_path = guard.run_dir() + "/victim.stderr";
  Child victim = Child::spawn(o);
  ASSERT_TRUE(victim.wait(30).has_value());
  ASSERT_TRUE(killed_by(victim.status(), SIGKILL)) << describe_status(*victim.status());
  const shm::PartitionView& v = m->partition(0);
  ASSERT_EQ(shm::load_tail(v), 0u);

  // This process wins position 0 (the victim "lost its CAS") ...
  auto bus = Bus::attach(guard.bus());
  ASSERT_TRUE(bus) << bus.error().message();
  auto prod = bus->producer("t", {.deadline = 0ns});
  ASSERT_TRUE(prod);
  auto first = prod->publish({.payload = "mine", .partition = 0});
  ASSERT_TRUE(first) << first.error().message();
  EXPECT_EQ(first->position, 0u);
  // ... and is held one ring past the stale candidate.
  const std::string payload(200, 'x');
  std::uint64_t bytes = 0;
  while (prod->publish({.payload = payload, .partition = 0})) bytes += 256;
  EXPECT_LE(shm::load_tail(v), 65536u) << "the stale candidate holds the unfinished watermark at 0";

  // The daemon finds the dead producer and clears its slot.
  ASSERT_TRUE(wait_until(
      [&] {
        (*d)->do_work();
        return producer_repaired(*m, victim.pid());
      },
      20, [&] { return describe_partitions(*m); }));
  EXPECT_EQ(v.part->aborted_records.load(), 0u) << "the winner's record is not aborted";
  EXPECT_EQ(v.part->repaired_claims.load(), 0u);
  // The partition flows again: two more rings.
  std::uint64_t after = 0;
  for (int i = 0; i < 2 * 65536 / 256; ++i) {
    auto r = prod->publish({.payload = payload, .partition = 0});
    ASSERT_TRUE(r) << "publish " << i << ": " << r.error().message();
    after += 256;
  }
  EXPECT_GE(after, 2u * 65536);
  (void)bytes;
}

}  // namespace
}  // namespace herald::test
