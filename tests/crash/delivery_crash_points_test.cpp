// Group members killed (kill -9) around handling and committing, at every
// named consume.* crash point and at seeded random points and moments
// (HERALD_SEED replays; HERALD_DELIVERY_KILLS random kills, 20 by default,
// hundreds under the soak label), each restarted by the next member
// process (DELIVERY.md "What redelivered means exactly"):
// - at-least-once, no helper: every event is handled at least once, and a
//   duplicate is only ever the one event a killed member was inside (its
//   last handled event, redelivered as delivery 2): at most one per kill,
//   exactly one per kill after a handler returned;
// - with IdempotentConsumer and a sink that stores each event id with its
//   effect (one append per event) and rebuilds the helper from it on start:
//   every event id takes effect exactly once.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <random>
#include <set>

#include "tests/crash/delivery_fixture.hpp"

namespace herald::test {
namespace {

constexpr std::uint32_t kPartitions = 4;
constexpr std::uint64_t kBatch = 16;  // poll budget of the members

struct Kill {
  std::string point;  // a crash point, or "" for a SIGKILL from the test
  std::uint64_t hit = 0;
  std::uint64_t after_lines = 0;  // parent kills: once the member recorded this many more lines
  std::string describe() const {
    return point.empty() ? "SIGKILL after " + std::to_string(after_lines) + " handled" : point + ":" + std::to_string(hit);
  }
  // Events a member needs to reach this kill (and may consume before it, at
  // most, at a crash point).
  // One more than needed: a member killed right after committing its last
  // event would look, for a moment, like one that ran out.
  std::uint64_t budget() const {
    if (point.empty()) return after_lines + 1;
    if (point == "consume.after_commit") return hit * kBatch + 1;
    return hit + 1;
  }
};

std::vector<Kill> plan(std::uint64_t seed, std::uint64_t random_kills) {
  std::vector<Kill> out = {{"consume.before_handler", 40, 0}, {"consume.after_handler", 40, 0},
                           {"consume.after_commit", 3, 0}};
  std::mt19937_64 rng(seed);
  const char* points[] = {"consume.before_handler", "consume.after_handler", "consume.after_commit"};
  for (std::uint64_t i = 0; i < random_kills; ++i) {
    const std::uint64_t kind = rng() % 4;
    if (kind == 3) {
      out.push_back({"", 0, 2 + rng() % 60});
    } else if (kind == 2) {
      out.push_back({points[kind], 1 + rng() % 6, 0});
    } else {
      // From the second handler call on: the first call of a member is
      // often the event its predecessor died in.
      out.push_back({points[kind], 2 + rng() % 60, 0});
    }
  }
  return out;
}

// "m3 (consume.after_handler:12): 11 handled" per member, for failures.
std::string per_member(const std::vector<Handled>& hs, const std::vector<Kill>& kills) {
  std::map<std::string, std::uint64_t> n;
  for (const Handled& h : hs) ++n[h.tag];
  std::string s;
  for (std::size_t k = 0; k < kills.size(); ++k) {
    const std::string tag = "m" + std::to_string(k);
    s += "  " + tag + " (" + kills[k].describe() + "): " + std::to_string(n[tag]) + " handled\n";
  }
  return s + "  final: " + std::to_string(n["final"]) + " handled\n";
}

class DeliveryCrashPointsTest : public DeliveryCrashFixture, public ::testing::WithParamInterface<bool> {};

TEST_P(DeliveryCrashPointsTest, KilledMembersRedeliverOnlyTheirInFlightEvent) {
  const bool idempotent = GetParam();
  const std::uint64_t s = seed("delivery crash points");
  const std::vector<Kill> kills = plan(s, scaled(env_u64("HERALD_DELIVERY_KILLS", 20)));
  ASSERT_NO_FATAL_FAILURE(start(true));
  ASSERT_NO_FATAL_FAILURE(make_topic("t", kPartitions, 4 << 20));  // every event stays in the ring (~128 B each)
  // Events are published as the kills go, each member getting just what it
  // needs to reach its kill: a member never runs out before its crash point,
  // and a kill from the test (which lands a little late) cannot eat the rest.
  auto made = bus_->producer("t");
  ASSERT_TRUE(made) << made.error().message();
  Producer prod = std::move(made).value();
  std::uint64_t n = 0;
  auto publish_more = [&](std::uint64_t count) {
    for (std::uint64_t end = n + count; n < end; ++n) {
      const std::string body = "E" + std::to_string(n) + ";";
      ASSERT_TRUE(prod.publish({.payload = body, .partition = static_cast<std::int32_t>(n % kPartitions)}));
    }
  };
  ASSERT_NO_FATAL_FAILURE(publish_more(100));
  const std::string record = path("sink.rec"), skips = path("skips.rec");
  auto args = [&](const std::string& tag) {
    std::vector<std::string> a = {"--topic=t", "--group=g", "--record=" + record, "--tag=" + tag,
                                  "--batch=" + std::to_string(kBatch), "--max-deliveries=1000"};
    if (idempotent) {
      a.push_back("--idempotent=1");
      a.push_back("--skips=" + skips);
    }
    return a;
  };

  std::map<std::string, Kill> killed;  // by member tag
  for (std::size_t k = 0; k < kills.size(); ++k) {
    const Kill& kill = kills[k];
    const std::string tag = "m" + std::to_string(k);
    ASSERT_NO_FATAL_FAILURE(publish_more(kill.budget()));
    LineCounter lines(record);
    const std::uint64_t before = lines.count();
    Child& c = peer("consume", args(tag), kill.point.empty() ? "" : kill.point + ":" + std::to_string(kill.hit),
                    tag);
    bool ran_out = false;
    ASSERT_TRUE(wait_until(
        [&] {
          if (!c.running()) return true;
          if (kill.point.empty()) {
            // Killed wherever it is once it handled that many (or, idle, parked in poll).
            if (lines.count() < before + kill.after_lines && !all_committed("t", "g")) return false;
            c.kill_now();
            return true;
          }
          ran_out = all_committed("t", "g");
          return ran_out;
        },
        60, [&] { return tag + " (" + kill.describe() + ") neither died nor finished\n" + state(); }));
    ASSERT_FALSE(ran_out) << tag << " (" << kill.describe() << ") handled everything without being killed\n"
                          << per_member(read_handled(record), kills);
    ASSERT_TRUE(killed_by(c.status(), SIGKILL)) << tag << " (" << kill.describe() << "): "
                                                << describe_status(*c.status()) << "\n"
                                                << read_file(path(tag + ".stderr"));
    killed[tag] = kill;
  }
  // The last member finishes the topic (with some new events of its own, so
  // it is surely up and consuming when the topic is done).
  ASSERT_NO_FATAL_FAILURE(publish_more(2 * kPartitions));
  Child& last = peer("consume", args("final"), "", "final");
  ASSERT_TRUE(wait_until([&] { return all_committed("t", "g") || !last.running(); }, 120,
                         [&] { return "the final member did not finish\n" + state(); }));
  ASSERT_TRUE(last.running()) << describe_status(*last.status()) << "\n" << read_file(path("final.stderr"));
  stop(last, "final.stderr");

  // Every handler call of every member in order: members ran one after the
  // other, and each numbered its calls. With the helper, a call either took
  // effect (a sink line) or was skipped as a redelivery (a skips line).
  const std::vector<Handled> hs = read_handled(record);
  const std::vector<Handled> sk = idempotent ? read_handled(skips) : std::vector<Handled>{};
  struct Call {
    const Handled* h;
    bool effect;
  };
  std::map<std::string, std::size_t> member_order;
  for (std::size_t k = 0; k < kills.size(); ++k) member_order["m" + std::to_string(k)] = k;
  member_order["final"] = kills.size();
  std::vector<Call> calls;
  for (const Handled& h : hs) calls.push_back({&h, true});
  for (const Handled& h : sk) calls.push_back({&h, false});
  std::sort(calls.begin(), calls.end(), [&](const Call& a, const Call& b) {
    return std::make_pair(member_order.at(a.h->tag), a.h->call) < std::make_pair(member_order.at(b.h->tag), b.h->call);
  });
  std::map<std::string, std::size_t> last_call;  // by member: the only call a kill can repeat
  for (std::size_t i = 0; i < calls.size(); ++i) last_call[calls[i].h->tag] = i;

  std::map<std::string, std::size_t> previous;  // by event: its latest call so far
  std::map<std::string, std::uint64_t> effects;
  std::map<std::uint32_t, std::uint64_t> last_pos;
  std::set<std::string> repeated;  // members whose last call was delivered again
  std::uint64_t redeliveries = 0, duplicates = 0;
  for (std::size_t i = 0; i < calls.size(); ++i) {
    const Handled& h = *calls[i].h;
    auto it = previous.find(h.id);
    const bool again = it != previous.end();
    if (again) {
      // A redelivery: of the event a killed member was inside, to the next member.
      ++redeliveries;
      const Handled& before = *calls[it->second].h;
      EXPECT_TRUE(killed.count(before.tag) != 0 && last_call[before.tag] == it->second)
          << h.id << " delivered again to " << h.tag << " #" << h.call << ", but its previous delivery ("
          << before.tag << " #" << before.call << ") was not the last call of a killed member";
      EXPECT_NE(before.tag, h.tag) << h.id;
      EXPECT_GE(h.delivery, 2u) << h.id << ": a redelivery says so";
      repeated.insert(before.tag);
    } else {
      EXPECT_TRUE(calls[i].effect) << h.id << " skipped by " << h.tag << " though it never took effect";
    }
    previous[h.id] = i;
    if (calls[i].effect && effects[h.id]++ > 0) ++duplicates;
    auto [lp, first_on_p] = last_pos.try_emplace(h.partition, h.position);
    if (!first_on_p) {
      if (again) {
        EXPECT_GE(h.position, lp->second) << h.id << " out of order on partition " << h.partition;
      } else {
        EXPECT_GT(h.position, lp->second) << h.id << " out of order on partition " << h.partition;
      }
      lp->second = h.position;
    }
  }
  for (std::uint64_t i = 0; i < n; ++i) {
    const std::uint64_t e = effects["E" + std::to_string(i)];
    EXPECT_GE(e, 1u) << "E" << i << " never took effect";
    if (idempotent) {
      EXPECT_LE(e, 1u) << "E" << i << ": with the helper and the sink, each id takes effect once";
    }
  }

  // What each kind of kill may repeat: after a handler returned, exactly
  // its event; before a handler or after a commit, nothing.
  std::uint64_t after_handler = 0, parent = 0;
  for (const auto& [tag, kill] : killed) {
    const bool rep = repeated.count(tag) != 0;
    if (kill.point == "consume.after_handler") {
      ++after_handler;
      EXPECT_TRUE(rep) << tag << " (" << kill.describe() << "): the event it handled must be delivered again";
    } else if (kill.point.empty()) {
      ++parent;
    } else {
      EXPECT_FALSE(rep) << tag << " (" << kill.describe() << "): nothing it handled may be delivered again";
    }
  }
  EXPECT_GE(redeliveries, after_handler);
  EXPECT_LE(redeliveries, after_handler + parent) << "at most one redelivery per kill";
  if (idempotent) {
    EXPECT_EQ(duplicates, 0u);
    EXPECT_EQ(sk.size(), redeliveries) << "every redelivery was recognised by the helper";
  } else {
    EXPECT_EQ(duplicates, redeliveries);
  }
  std::fprintf(stderr, "[herald] %zu kills (%llu after a handler, %llu from the test), %llu events: %llu %s\n",
               kills.size(), static_cast<unsigned long long>(after_handler), static_cast<unsigned long long>(parent),
               static_cast<unsigned long long>(n), static_cast<unsigned long long>(redeliveries),
               idempotent ? "redeliveries skipped by the helper" : "duplicates (redeliveries)");
  if (HasFailure()) {
    std::fprintf(stderr, "[herald] handled (tail):\n%s", describe_handled(hs, 60).c_str());
    std::fprintf(stderr, "%s", per_member(hs, kills).c_str());
  }
}

// A SIGKILL inside the sink's one write(2) can leave the first part of a
// line (the kernel stops a file write between pages once a fatal signal is
// pending). That effect did not complete: the next member marks the line,
// does not remember its id, and the redelivered event takes effect once.
class DeliveryTornSinkTest : public DeliveryCrashFixture {};

TEST_F(DeliveryTornSinkTest, ATornSinkLineIsAnEffectThatDidNotComplete) {
  ASSERT_NO_FATAL_FAILURE(start(true));
  ASSERT_NO_FATAL_FAILURE(make_topic("t", 1));
  auto prod = bus_->producer("t");
  ASSERT_TRUE(prod) << prod.error().message();
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(prod->publish({.payload = "E" + std::to_string(i) + ";"}));
  const std::string record = path("sink.rec"), skips = path("skips.rec");
  auto args = [&](const std::string& tag) {
    return std::vector<std::string>{"--topic=t",      "--group=g",      "--record=" + record, "--tag=" + tag,
                                    "--idempotent=1", "--skips=" + skips, "--batch=1"};
  };
  // m0 handles E0 and E1 and dies before committing E1.
  Child& m0 = peer("consume", args("m0"), "consume.after_handler:2", "m0");
  const auto st = wait_death(m0, 60, "m0 (consume.after_handler:2)");
  ASSERT_TRUE(killed_by(st, SIGKILL)) << (st ? describe_status(*st) : "running") << "\n" << read_file(path("m0.stderr"));
  const std::string text = read_file(record);
  const std::size_t last = text.rfind('\n', text.size() - 2);
  ASSERT_TRUE(text.size() > 8 && text.back() == '\n' && last != std::string::npos) << text;
  ASSERT_NE(text.find(" E1 ", last), std::string::npos) << "E1's line is the last\n" << text;
  // Tear E1's line inside its event id, as the kill inside the write would have.
  ASSERT_EQ(::truncate(record.c_str(), static_cast<off_t>(text.size() - 6)), 0) << std::strerror(errno);

  Child& fin = peer("consume", args("final"), "", "final");
  ASSERT_TRUE(wait_until([&] { return all_committed("t", "g") || !fin.running(); }, 60,
                         [&] { return "the final member did not finish\n" + state(); }));
  ASSERT_TRUE(fin.running()) << describe_status(*fin.status()) << "\n" << read_file(path("final.stderr"));
  stop(fin, "final.stderr");

  const std::string after = read_file(record);
  EXPECT_NE(after.find(std::string(kTornMark) + "\n"), std::string::npos) << "the torn line was marked\n" << after;
  const std::vector<Handled> hs = read_handled(record);
  std::map<std::string, std::vector<std::string>> effects;  // payload id -> "tag/delivery"
  for (const Handled& h : hs) effects[h.id].push_back(h.tag + "/" + std::to_string(h.delivery));
  EXPECT_EQ(effects["E0"], std::vector<std::string>{"m0/1"}) << after;
  EXPECT_EQ(effects["E1"], std::vector<std::string>{"final/2"}) << "the torn effect happens once, again\n" << after;
  EXPECT_EQ(effects["E2"], std::vector<std::string>{"final/1"}) << after;
  EXPECT_EQ(effects.size(), 3u) << after;
  EXPECT_TRUE(read_handled(skips).empty()) << "nothing was skipped as done\n" << read_file(skips);
}

INSTANTIATE_TEST_SUITE_P(Sinks, DeliveryCrashPointsTest, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& i) {
                           return i.param ? "IdempotentSink" : "AtLeastOnce";
                         });

}  // namespace
}  // namespace herald::test
