// Idempotent producers across kill -9 (DELIVERY.md "Idempotent producers"):
// - a producer process killed mid-stream (at claim / commit crash points and
//   at seeded random moments) and restarted with the same producer_id learns
//   its last committed sequence — exactly the prefix the log holds once
//   heraldd aborted the dead claim — and publishes nothing twice;
// - consume-transform-produce (one idempotent producer per input partition,
//   sequence = input position + 1) outputs each input exactly once, in
//   input order, across transformer kills before, inside and after the
//   output's publish and after the input's commit.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <random>
#include <set>

#include "tests/crash/delivery_fixture.hpp"

namespace herald::test {
namespace {

struct PeerKill {
  std::string point;  // "" : SIGKILL from the test after `after` units of progress
  std::uint64_t hit = 0;
  std::uint64_t after = 0;
  std::string describe() const {
    return point.empty() ? "SIGKILL after " + std::to_string(after) : point + ":" + std::to_string(hit);
  }
};

std::vector<PeerKill> kill_plan(std::uint64_t seed, const std::vector<std::string>& named, std::uint64_t random,
                                std::uint64_t max_hit) {
  std::vector<PeerKill> out;
  std::mt19937_64 rng(seed);
  // A commit is hit once per poll: a few of them are enough.
  auto hit = [&](const std::string& p) { return p == "consume.after_commit" ? 1 + rng() % 6 : 2 + rng() % max_hit; };
  for (const std::string& p : named) out.push_back({p, hit(p), 0});
  for (std::uint64_t i = 0; i < random; ++i) {
    const std::uint64_t pick = rng() % (named.size() + 1);
    if (pick == named.size()) {
      out.push_back({"", 0, 1 + rng() % max_hit});
    } else {
      out.push_back({named[pick], hit(named[pick]), 0});
    }
  }
  return out;
}

std::uint64_t parse_seq(std::string_view payload) {
  if (payload.empty() || payload.front() != 'S') return 0;
  return std::strtoull(std::string(payload.substr(1, payload.find(';') - 1)).c_str(), nullptr, 10);
}

class DeliveryIdempotentProducerCrashTest : public DeliveryCrashFixture {
 protected:
  std::uint64_t read_progress(const std::string& name) const {
    std::uint64_t v = 0;
    const int fd = ::open(path(name).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      if (::pread(fd, &v, sizeof v, 0) != sizeof v) v = 0;
      ::close(fd);
    }
    return v;
  }
  // A ring that holds `events` records of up to 256 bytes even if they all
  // land in one partition: the checks read every event back from the log,
  // so nothing may be overwritten (at HERALD_STRESS_SCALE=10 and the soak's
  // 300 kills, ~93 000 events overflowed the 4 MiB rings these tests had).
  static std::uint64_t ring_for(std::uint64_t events) {
    return std::max<std::uint64_t>(std::uint64_t{4} << 20, std::bit_ceil(events * 256));
  }
  // The "learned N" lines of the learned file, in order.
  std::vector<std::uint64_t> learned() const {
    std::vector<std::uint64_t> out;
    std::istringstream in(read_file(path("learned.txt")));
    std::string w;
    while (in >> w)
      if (w == "learned" && (in >> w)) out.push_back(std::stoull(w));
    return out;
  }
  // Sequences committed in the log (by partition order), after the dead
  // producer's claims were repaired.
  bool committed_seqs(std::vector<std::uint64_t>* all, std::string* why) {
    shm::TopicMap* m = map("t");
    for (std::uint32_t p = 0; p < m->partitions(); ++p) {
      std::vector<Record> rs;
      std::uint64_t aborted = 0;
      if (!read_all("t", p, &rs, &aborted, why)) return false;
      std::uint64_t prev = 0;
      for (const Record& r : rs) {
        const std::uint64_t s = parse_seq(r.event.payload_text());
        if (s <= prev) {
          *why = "partition " + std::to_string(p) + ": sequence " + std::to_string(s) + " after " + std::to_string(prev);
          return false;
        }
        prev = s;
        all->push_back(s);
      }
    }
    std::sort(all->begin(), all->end());
    return true;
  }
};

TEST_F(DeliveryIdempotentProducerCrashTest, RestartedProducerLearnsItsLastCommittedSequenceAndDoesNotDuplicate) {
  ASSERT_NO_FATAL_FAILURE(start(true));
  const std::uint64_t s = seed("idempotent producer kills");
  const std::vector<PeerKill> kills =
      kill_plan(s, {"claim.candidate", "claim.won_unmarked", "claim.won", "write.header", "commit.before_word",
                    "commit.word", "commit.committed_to", "finish.before_clear"},
                scaled(env_u64("HERALD_DELIVERY_KILLS", 20)), 60);
  std::uint64_t n = 100;
  for (const PeerKill& k : kills) n += k.hit + k.after + 1;
  ASSERT_NO_FATAL_FAILURE(make_topic("t", 2, ring_for(n)));
  const std::vector<std::string> args = {"--topic=t", "--producer-id=77", "--count=" + std::to_string(n),
                                         "--progress=" + path("progress"), "--learned=" + path("learned.txt")};
  std::uint64_t expect_learned = 0;
  for (std::size_t i = 0; i <= kills.size(); ++i) {
    const bool last = i == kills.size();
    const PeerKill k = last ? PeerKill{} : kills[i];
    const std::string tag = "producer" + std::to_string(i);
    std::vector<std::string> a = args;
    if (!last && k.point.empty()) a.push_back("--pause-at=" + std::to_string(expect_learned + k.after));
    Child& c = peer("produce", a, last || k.point.empty() ? "" : k.point + ":" + std::to_string(k.hit), tag);
    if (!last && k.point.empty()) {
      // It stops after that publish returned; kill -9 it there.
      ASSERT_TRUE(wait_until([&] { return !c.running() || read_progress("progress") == expect_learned + k.after; },
                             60, [&] { return tag + " made no progress\n" + state(); }));
      c.kill_now();
    }
    ASSERT_TRUE(wait_death(c, 60, tag + (last ? " finishing" : " (" + k.describe() + ")")));
    if (last) {
      ASSERT_TRUE(exited_with(c.status(), 0)) << describe_status(*c.status()) << "\n" << read_file(path(tag + ".stderr"));
    } else {
      ASSERT_TRUE(killed_by(c.status(), SIGKILL)) << tag << " (" << k.describe() << "): " << describe_status(*c.status())
                                                  << "\n" << read_file(path(tag + ".stderr"));
    }
    // What this producer learned when it started: everything committed by
    // its predecessors, nothing less (so it skips it) and nothing more.
    const std::vector<std::uint64_t> l = learned();
    ASSERT_EQ(l.size(), i + 1) << read_file(path(tag + ".stderr"));
    EXPECT_EQ(l.back(), expect_learned) << tag << " learned the wrong last sequence";
    // heraldd aborts the dead producer's unfinished claim; then the log is
    // exactly the sequences 1..L, once each, in order per partition.
    ASSERT_TRUE(wait_until([&] { return producer_repaired(*map("t"), c.pid()); }, 30,
                           [&] { return "the dead producer " + std::to_string(c.pid()) + " was not repaired\n" + state(); }));
    std::vector<std::uint64_t> seqs;
    std::string why;
    ASSERT_TRUE(committed_seqs(&seqs, &why)) << why;
    for (std::size_t j = 0; j < seqs.size(); ++j)
      ASSERT_EQ(seqs[j], j + 1) << "after " << tag << ": the log must hold 1.." << seqs.size() << " exactly once";
    EXPECT_GE(seqs.size(), read_progress("progress")) << "everything the producer confirmed is in the log";
    expect_learned = seqs.size();
  }
  EXPECT_EQ(expect_learned, n);
  // The last producer republished from 1: everything before its start was
  // reported as a duplicate, not published again.
  const std::string text = read_file(path("learned.txt"));
  const std::vector<std::uint64_t> l = learned();
  EXPECT_NE(text.find("done published=" + std::to_string(n - l.back()) + " duplicates=" + std::to_string(l.back())),
            std::string::npos)
      << text;
}

TEST_F(DeliveryIdempotentProducerCrashTest, ConsumeTransformProduceOutputsEachInputOnceAcrossTransformerKills) {
  ASSERT_NO_FATAL_FAILURE(start(true));
  const std::uint64_t s = seed("transformer kills");
  const std::vector<PeerKill> kills =
      kill_plan(s, {"consume.before_handler", "consume.after_handler", "consume.after_commit", "claim.won",
                    "commit.before_word", "commit.word", "finish.before_clear"},
                scaled(env_u64("HERALD_DELIVERY_KILLS", 20)), 60);
  // The inputs each transformer gets before it starts: what it needs to
  // reach its kill, plus one. A transformer polls up to 64 inputs at a
  // time: k commits may take 64k.
  auto inputs_for = [](const PeerKill& k) -> std::uint64_t {
    return (k.point == "consume.after_commit" ? k.hit * 64 : k.hit) + k.after + 1;
  };
  std::uint64_t inputs = 100 + 10;  // the first batch and the last transformer's
  for (const PeerKill& k : kills) inputs += inputs_for(k);
  ASSERT_NO_FATAL_FAILURE(make_topic("in", 2, ring_for(inputs)));
  ASSERT_NO_FATAL_FAILURE(make_topic("out", 2, ring_for(inputs)));
  // Inputs are published as the kills go: each transformer gets what it
  // needs to reach its kill (plus one), so none runs out early.
  auto made = bus_->producer("in");
  ASSERT_TRUE(made) << made.error().message();
  Producer prod = std::move(made).value();
  std::vector<EventId> input_ids;
  auto publish_more = [&](std::uint64_t count) {
    for (std::uint64_t i = input_ids.size(), end = input_ids.size() + count; i < end; ++i) {
      const std::string body = "I" + std::to_string(i) + ";";
      auto r = prod.publish({.key = "k" + std::to_string(i % 7), .type = "In", .payload = body,
                             .partition = static_cast<std::int32_t>(i % 2)});
      ASSERT_TRUE(r) << r.error().message();
      input_ids.push_back(r->id);
    }
  };
  ASSERT_NO_FATAL_FAILURE(publish_more(100));
  const std::vector<std::string> args = {"--topic=in", "--out=out", "--group=xform", "--skips=" + path("skips.txt")};
  std::uint64_t after_handler = 0;
  for (std::size_t i = 0; i <= kills.size(); ++i) {
    const bool last = i == kills.size();
    const PeerKill k = last ? PeerKill{} : kills[i];
    const std::string tag = "xform" + std::to_string(i);
    // (The last one gets new inputs too: it is surely up and consuming when
    // the input is done.)
    ASSERT_NO_FATAL_FAILURE(publish_more(last ? 10 : inputs_for(k)));
    const std::uint64_t committed_before = committed("in", "xform", 0) + committed("in", "xform", 1);
    Child& c = peer("transform", args, last || k.point.empty() ? "" : k.point + ":" + std::to_string(k.hit), tag);
    if (last) {
      ASSERT_TRUE(wait_until([&] { return all_committed("in", "xform") || !c.running(); }, 120,
                             [&] { return "the last transformer did not finish\n" + state(); }));
      ASSERT_TRUE(c.running()) << describe_status(*c.status()) << "\n" << read_file(path(tag + ".stderr"));
      stop(c, tag + ".stderr");
      break;
    }
    if (k.point.empty()) {
      // Killed wherever it is once it made some progress (bytes of input
      // committed; events are 64-128 bytes), or is idle.
      ASSERT_TRUE(wait_until(
          [&] {
            return !c.running() || all_committed("in", "xform") ||
                   committed("in", "xform", 0) + committed("in", "xform", 1) >= committed_before + k.after * 64;
          },
          60, [&] { return tag + " made no progress\n" + state(); }));
      c.kill_now();
    }
    ASSERT_TRUE(wait_death(c, 60, tag + " (" + k.describe() + ")"));
    ASSERT_TRUE(killed_by(c.status(), SIGKILL)) << tag << " (" << k.describe() << "): " << describe_status(*c.status())
                                                << "\n" << read_file(path(tag + ".stderr"));
    if (!k.point.empty()) {
      ASSERT_FALSE(all_committed("in", "xform")) << "the input ran out before " << tag << "'s crash point";
    }
    if (k.point == "consume.after_handler") ++after_handler;
  }
  // Every transformer is gone: heraldd repaired their output claims.
  for (const auto& c : children_)
    ASSERT_TRUE(wait_until([&] { return producer_repaired(*map("out"), c->pid()); }, 30,
                           [&] { return "transformer " + std::to_string(c->pid()) + " not repaired\n" + state(); }));
  const std::uint64_t n = input_ids.size();
  // Each input exactly once in the output, in input order, caused by it.
  std::map<std::uint64_t, int> seen;
  for (std::uint32_t p = 0; p < 2; ++p) {
    std::vector<Record> rs;
    std::uint64_t aborted = 0;
    std::string why;
    ASSERT_TRUE(read_all("out", p, &rs, &aborted, &why)) << why;
    std::int64_t prev = -1;
    for (const Record& r : rs) {
      const std::string_view pl = r.event.payload_text();
      const std::uint64_t i = std::strtoull(std::string(pl.substr(1, pl.find(';') - 1)).c_str(), nullptr, 10);
      ASSERT_LT(i, n);
      EXPECT_EQ(i % 2, p) << "output of input " << i << " on partition " << p;
      EXPECT_GT(static_cast<std::int64_t>(i), prev) << "output out of input order on partition " << p;
      prev = static_cast<std::int64_t>(i);
      EXPECT_EQ(r.event.causation_id(), input_ids[i].to_string());
      EXPECT_EQ(r.event.key(), "k" + std::to_string(i % 7));
      if (++seen[i] > 1) ADD_FAILURE() << "input " << i << " was output twice";
    }
    std::fprintf(stderr, "[herald] output partition %u: %zu events, %llu aborted records\n", p, rs.size(),
                 static_cast<unsigned long long>(aborted));
  }
  EXPECT_EQ(seen.size(), n) << "every input has its output";
  // Each kill after a handler returned redelivered an input whose output
  // was already committed: the producer reported it as a duplicate.
  std::uint64_t skipped = 0;
  for_each_complete_line(read_file(path("skips.txt")), [&](std::string_view) { ++skipped; });
  EXPECT_GE(skipped, after_handler);
  std::fprintf(stderr, "[herald] %zu transformer kills, %llu redelivered inputs not output again\n", kills.size(),
               static_cast<unsigned long long>(skipped));
}

}  // namespace
}  // namespace herald::test
