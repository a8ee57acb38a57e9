// A member killed (kill -9) while it moves a dead letter to its group's DLQ
// (DELIVERY.md: "The move is exactly once"): at dlq.pending, dlq.committed,
// dlq.advanced, and at every crash point of the DLQ producer's claim and
// commit (claim.*, write.header, commit.*, finish.before_clear). The member
// publishes its input itself first, one publish() per event, so those
// points are hit once per input event before the dead letter's publish:
// the kill is armed at the hit after them, inside the DLQ publish.
// After recovery by a restarted member — with heraldd repairing the dead
// DLQ claim, and daemonless, where the new member reclaims the dead DLQ
// producer slot itself — the event is in the DLQ exactly once, the
// partition moved past it, and every other event was handled once.
#include <gtest/gtest.h>

#include <set>

#include "tests/crash/delivery_fixture.hpp"

namespace herald::test {
namespace {

struct DlqKill {
  const char* point;
  bool in_publish;  // a producer crash point: armed after the input's own publishes
  bool with_daemon;
};

void PrintTo(const DlqKill& k, std::ostream* os) {
  *os << k.point << (k.with_daemon ? " with heraldd" : " daemonless");
}

class DeliveryDlqMoveCrashTest : public DeliveryCrashFixture, public ::testing::WithParamInterface<DlqKill> {};

TEST_P(DeliveryDlqMoveCrashTest, DeadLetterIsInTheDlqExactlyOnceAfterRecovery) {
  const DlqKill k = GetParam();
  ASSERT_NO_FATAL_FAILURE(start(k.with_daemon));
  ASSERT_NO_FATAL_FAILURE(make_topic("t", 2));
  constexpr std::uint64_t kEvents = 40;
  constexpr std::uint64_t kPoison = 20;  // partition 0
  const std::string record = path("handled.rec");
  auto args = [&](const std::string& tag, bool publish) {
    std::vector<std::string> a = {"--topic=t",          "--group=g",        "--record=" + record,
                                  "--tag=" + tag,       "--on-poison=nack", "--max-deliveries=2",
                                  "--retry-ms=0",       "--batch=8"};
    if (publish) {
      a.push_back("--publish=" + std::to_string(kEvents));
      a.push_back("--partitions=2");
      a.push_back("--poison-at=" + std::to_string(kPoison));
    }
    return a;
  };
  const std::string crash_at = std::string(k.point) + ":" + std::to_string(k.in_publish ? kEvents + 1 : 1);
  Child& first = peer("consume", args("first", true), crash_at, "first");
  ASSERT_TRUE(wait_death(first, 60, "killed at " + crash_at));
  ASSERT_TRUE(killed_by(first.status(), SIGKILL)) << describe_status(*first.status()) << "\n"
                                                  << read_file(path("first.stderr"));
  const pid_t dead = first.pid();

  // The kill was inside the dead letter's move, not in the input's publish:
  // the source holds exactly the input, nothing aborted, and the group is
  // still at (or just past) the poison event.
  shm::TopicMap* src = map("t");
  ASSERT_NE(src, nullptr);
  std::map<std::uint32_t, std::vector<Record>> source;
  std::uint64_t poison_position = 0;
  for (std::uint32_t p = 0; p < 2; ++p) {
    std::uint64_t aborted = 0;
    std::string why;
    ASSERT_TRUE(read_all("t", p, &source[p], &aborted, &why)) << why;
    EXPECT_EQ(aborted, 0u) << "partition " << p;
    EXPECT_EQ(source[p].size(), kEvents / 2) << "partition " << p;
  }
  for (const Record& r : source[0])
    if (r.event.payload_text() == "poison" + std::to_string(kPoison) + ";") poison_position = r.position;
  ASSERT_NE(poison_position, 0u);
  EXPECT_LE(committed("t", "g", 0), poison_position + 64 * 4) << "the member died moving the poison event";
  shm::TopicMap* dlq = map("t.dlq.g");
  ASSERT_NE(dlq, nullptr);
  if (std::string(k.point) != "claim.candidate") {
    EXPECT_GT(shm::load_tail(dlq->partition(0)), 0u) << "the kill was inside the DLQ's claim";
  }

  // A restarted member recovers the partition.
  Child& second = peer("consume", args("second", false), "", "second");
  ASSERT_TRUE(wait_until(
      [&] {
        if (!second.running() || !all_committed("t", "g")) return !second.running();
        if (!producer_repaired(*dlq, dead)) return false;
        auto dl = bus_->dead_letters("t", "g");
        return dl && !dl->empty();
      },
      60, [&] { return "recovery after a kill at " + crash_at + "\n" + state(); }));
  ASSERT_TRUE(second.running()) << describe_status(*second.status()) << "\n" << read_file(path("second.stderr"));
  stop(second, "second.stderr");

  // Exactly once in the DLQ: one dead letter for the poison event, and no
  // other dead letter in the DLQ's log (aborted records aside).
  auto dls = bus_->dead_letters("t", "g");
  ASSERT_TRUE(dls) << dls.error().message();
  ASSERT_EQ(dls->size(), 1u);
  EXPECT_EQ(dls->front().position, poison_position);
  EXPECT_EQ(dls->front().partition, 0u);
  EXPECT_EQ(dls->front().deliveries, 2u);
  EXPECT_EQ(dls->front().event.payload_text(), "poison" + std::to_string(kPoison) + ";");
  EXPECT_EQ(dls->front().event.type(), "Poison");
  // The reason: the handler's, when the first member's dead letter survived
  // (killed once its commit word was stored); else the move was redone by a
  // member that never saw the handler's message.
  const std::string p = k.point;
  const bool survived = p == "dlq.committed" || p == "dlq.advanced" || p == "commit.word" ||
                        p == "commit.committed_to" || p == "finish.before_clear";
  EXPECT_EQ(dls->front().reason, survived ? "poison refused" : "handler failed (the previous owner's reason was not kept)");
  std::vector<Record> in_dlq;
  std::uint64_t dlq_aborted = 0;
  std::string why;
  ASSERT_TRUE(read_all("t.dlq.g", 0, &in_dlq, &dlq_aborted, &why)) << why;
  EXPECT_EQ(in_dlq.size(), 1u) << "committed records in the DLQ (" << dlq_aborted << " aborted)";
  EXPECT_TRUE(producer_repaired(*dlq, dead)) << "the dead member's DLQ producer slot was reclaimed";

  // The partition moved past it; everything else handled once, in order.
  EXPECT_TRUE(all_committed("t", "g"));
  const std::vector<Handled> hs = read_handled(record);
  std::map<std::string, int> count;
  std::map<std::uint32_t, std::uint64_t> last;
  for (const Handled& h : hs) {
    ++count[h.id];
    auto [it, fresh] = last.try_emplace(h.partition, h.position);
    if (!fresh) {
      EXPECT_GT(h.position, it->second) << h.id;
    }
    it->second = h.position;
  }
  for (std::uint64_t i = 0; i < kEvents; ++i)
    if (i != kPoison) {
      EXPECT_EQ(count["E" + std::to_string(i)], 1) << "E" << i;
    }
  EXPECT_EQ(hs.size(), kEvents - 1) << describe_handled(hs, 50);
  std::fprintf(stderr, "[herald] %s (%s): %llu aborted record(s) in the DLQ\n", crash_at.c_str(),
               k.with_daemon ? "heraldd" : "daemonless", static_cast<unsigned long long>(dlq_aborted));
}

std::vector<DlqKill> kills() {
  std::vector<DlqKill> out;
  for (bool daemon : {true, false}) {
    for (const char* p : {"dlq.pending", "dlq.committed", "dlq.advanced"}) out.push_back({p, false, daemon});
    for (const char* p : {"claim.candidate", "claim.won_unmarked", "claim.won", "write.header", "commit.before_word",
                          "commit.word", "commit.committed_to", "finish.before_clear"})
      out.push_back({p, true, daemon});
  }
  return out;
}

INSTANTIATE_TEST_SUITE_P(EveryPoint, DeliveryDlqMoveCrashTest, ::testing::ValuesIn(kills()),
                         [](const ::testing::TestParamInfo<DlqKill>& i) {
                           std::string n = i.param.point;
                           std::replace(n.begin(), n.end(), '.', '_');
                           return n + (i.param.with_daemon ? "_heraldd" : "_daemonless");
                         });

}  // namespace
}  // namespace herald::test
