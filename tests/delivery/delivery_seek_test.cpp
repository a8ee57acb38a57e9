// Seek and what a group gets when its cursor was overwritten (DELIVERY.md
// "When a group falls behind"):
// - seek by time: the first event in PARTITION order whose time is at or
//   after it (producers' clocks are not monotonic across producers, so this
//   is not the event with the earliest matching time);
// - seek to a position that is not an event boundary in the retained window:
//   a clear error, and nothing moved;
// - a lossy group whose cursor was overwritten resumes at the earliest
//   retained event, at the tail, or fails until it seeks, per on_overrun
//   (Kafka's auto.offset.reset); on_gap reports the exact byte range lost.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "herald/herald.hpp"
#include "tests/support/bus_fixture.hpp"
#include "tests/support/test_env.hpp"

namespace herald {
namespace {

using namespace std::chrono_literals;

class DeliverySeekTest : public test::BusFixture<> {
 protected:
  static std::string body(const std::string& name) { return name + ";" + std::string(200, '.'); }
  static std::string name_of(std::string_view payload) { return std::string(payload.substr(0, payload.find(';'))); }

  // Two producers with clocks that disagree, interleaved in one partition:
  // partition order a100 b50 a200 b150 a300 b250 (the number is the time).
  void publish_out_of_order_times() {
    ASSERT_TRUE(bus_->create_topic("t", {.partitions = 1, .ring_bytes = 1 << 20, .max_event = 4096}));
    auto a = bus_->producer("t", {.source = "a"});
    auto b = bus_->producer("t", {.source = "b"});
    ASSERT_TRUE(a && b);
    const std::pair<char, std::uint64_t> order[] = {{'a', 100}, {'b', 50}, {'a', 200}, {'b', 150}, {'a', 300}, {'b', 250}};
    for (const auto& [who, t] : order) {
      const std::string n = std::string(1, who) + std::to_string(t);
      auto r = (who == 'a' ? *a : *b).publish({.payload = body(n), .time_ns = kT0 + t, .partition = 0});
      ASSERT_TRUE(r) << r.error().message();
      pos_[n] = r->position;
    }
  }
  // What a reader positioned by seek reads next (nullopt: nothing).
  static std::optional<std::string> next_name(Consumer& c) {
    auto e = c.next(std::chrono::nanoseconds(0));
    if (!e) return std::nullopt;
    return name_of(e->payload_text());
  }

  static constexpr std::uint64_t kT0 = 1'700'000'000'000'000'000ull;
  std::map<std::string, std::uint64_t> pos_;
};

TEST_F(DeliverySeekTest, SeekByTimeFindsTheFirstEventAtOrAfterItInPartitionOrder) {
  ASSERT_NO_FATAL_FAILURE(publish_out_of_order_times());
  auto r = bus_->consumer("t", {});  // group-less reader
  ASSERT_TRUE(r) << r.error().message();
  struct Case {
    std::uint64_t t;
    const char* first;  // nullptr: the tail
  };
  // 150: a200 comes before b150 in the partition, so a200 it is (not the
  // event whose time equals 150, and not the earliest time >= 150).
  const Case cases[] = {{0, "a100"}, {50, "a100"}, {100, "a100"}, {101, "a200"}, {150, "a200"},
                        {201, "a300"}, {251, "a300"}, {300, "a300"}, {301, nullptr}};
  for (const Case& c : cases) {
    ASSERT_TRUE(r->seek(0, Offset::at_time(kT0 + c.t))) << c.t;
    const std::uint64_t tail = bus_->describe_topic("t")->partition_info[0].tail;
    EXPECT_EQ(r->position(0), c.first ? pos_[c.first] : tail) << "time " << c.t;
    EXPECT_EQ(next_name(*r), c.first ? std::optional<std::string>(c.first) : std::nullopt) << "time " << c.t;
  }
  // Every event read after a seek by time follows in partition order,
  // whatever its own time: after a200 comes b150 (time 150 < 200).
  ASSERT_TRUE(r->seek(Offset::at_time(kT0 + 150)));
  std::vector<std::string> rest;
  while (auto n = next_name(*r)) rest.push_back(*n);
  EXPECT_EQ(rest, (std::vector<std::string>{"a200", "b150", "a300", "b250"}));

  // A group member: seeking back by time lowers its committed cursor;
  // seeking forward raises it; a new group can start at a time.
  auto g = bus_->consumer("t", {.group = "g"});
  ASSERT_TRUE(g) << g.error().message();
  std::vector<std::string> seen;
  auto collect = [&](const EventView& e) { seen.push_back(name_of(e.payload_text())); };
  ASSERT_TRUE(g->poll(collect, 100));
  EXPECT_EQ(seen.size(), 6u);
  ASSERT_TRUE(g->seek(0, Offset::at_time(kT0 + 150)));
  EXPECT_EQ(*g->committed(0), pos_["a200"]);
  ASSERT_TRUE(g->seek(0, Offset::at_time(kT0 + 251)));
  EXPECT_EQ(*g->committed(0), pos_["a300"]);
  seen.clear();
  ASSERT_TRUE(g->poll(collect, 100));
  EXPECT_EQ(seen, (std::vector<std::string>{"a300", "b250"}));
  auto h = bus_->consumer("t", {.group = "h", .start = Offset::at_time(kT0 + 150)});
  ASSERT_TRUE(h) << h.error().message();
  seen.clear();
  ASSERT_TRUE(h->poll(collect, 100));
  EXPECT_EQ(seen, (std::vector<std::string>{"a200", "b150", "a300", "b250"}));
}

TEST_F(DeliverySeekTest, SeekToAPositionThatIsNotAnEventBoundaryIsAClearErrorAndMovesNothing) {
  ASSERT_NO_FATAL_FAILURE(publish_out_of_order_times());
  const std::uint64_t tail = bus_->describe_topic("t")->partition_info[0].tail;
  ASSERT_GT(pos_["b50"] - pos_["a100"], 64u) << "records span more than one 64-byte unit";
  const std::uint64_t bad[] = {pos_["a200"] + 64, pos_["a200"] + 1, pos_["a200"] + 8, tail + 64, tail + 4096};
  // A group-less reader.
  auto r = bus_->consumer("t", {});
  ASSERT_TRUE(r) << r.error().message();
  ASSERT_TRUE(r->seek(0, Offset::at(pos_["b50"])));
  for (std::uint64_t q : bad) {
    auto s = r->seek(0, Offset::at(q));
    ASSERT_FALSE(s) << q << " accepted";
    EXPECT_EQ(s.error().code, Errc::kInvalidArgument);
    EXPECT_NE(s.error().message().find("position " + std::to_string(q)), std::string::npos) << s.error().message();
    EXPECT_NE(s.error().message().find("not a committed event boundary"), std::string::npos) << s.error().message();
    EXPECT_EQ(r->position(0), pos_["b50"]) << "a failed seek moves nothing";
  }
  EXPECT_EQ(next_name(*r), "b50");
  ASSERT_TRUE(r->seek(0, Offset::at(tail))) << "the tail is a boundary";
  EXPECT_EQ(next_name(*r), std::nullopt);
  // A partition that does not exist.
  auto nope = r->seek(1, Offset::at(0));
  ASSERT_FALSE(nope);
  EXPECT_EQ(nope.error().code, Errc::kInvalidArgument);

  // A group member: the committed cursor stays where it was.
  auto g = bus_->consumer("t", {.group = "g"});
  ASSERT_TRUE(g) << g.error().message();
  ASSERT_TRUE(g->seek(0, Offset::at(pos_["a200"])));
  for (std::uint64_t q : bad) {
    auto s = g->seek(0, Offset::at(q));
    ASSERT_FALSE(s) << q << " accepted";
    EXPECT_EQ(s.error().code, Errc::kInvalidArgument);
    EXPECT_EQ(*g->committed(0), pos_["a200"]);
  }
  auto all = g->seek(Offset::at(pos_["a200"] + 64));
  ASSERT_FALSE(all);
  EXPECT_EQ(all.error().code, Errc::kInvalidArgument);
  EXPECT_EQ(*g->committed(0), pos_["a200"]);
  std::vector<std::string> seen;
  ASSERT_TRUE(g->poll([&](const EventView& e) { seen.push_back(name_of(e.payload_text())); }, 100));
  EXPECT_EQ(seen, (std::vector<std::string>{"a200", "b150", "a300", "b250"}));
}

class DeliveryOverrunTest : public DeliverySeekTest, public ::testing::WithParamInterface<OffsetReset> {};

TEST_P(DeliveryOverrunTest, LossyGroupWhoseCursorWasOverwrittenResumesPerOnOverrunAndReportsTheExactGap) {
  const OffsetReset reset = GetParam();
  // 64 KiB ring: a few hundred records of ~256 bytes lap it.
  ASSERT_TRUE(bus_->create_topic("t", {.partitions = 1, .ring_bytes = 64 << 10, .max_event = 4096}));
  std::vector<GapReport> gaps;
  ConsumerOptions o;
  o.group = "dash";
  o.policy = Policy::kLossy;
  o.on_overrun = reset;
  o.on_gap = [&](const GapReport& g) { gaps.push_back(g); };
  auto c = bus_->consumer("t", o);
  ASSERT_TRUE(c) << c.error().message();
  auto prod = bus_->producer("t", {.deadline = 0ns});
  ASSERT_TRUE(prod) << prod.error().message();
  std::vector<std::uint64_t> positions;  // of event i
  auto publish = [&](std::uint64_t count) {
    for (std::uint64_t i = 0; i < count; ++i) {
      auto r = prod->publish({.payload = body("e" + std::to_string(positions.size())), .partition = 0});
      ASSERT_TRUE(r) << r.error().message() << " (a lossy group never holds producers back)";
      positions.push_back(r->position);
    }
  };
  std::vector<std::uint64_t> handled;  // positions
  auto collect = [&](const EventView& e) {
    // Never a torn or misplaced event: the payload is the one published there.
    const auto at = std::lower_bound(positions.begin(), positions.end(), e.position());
    ASSERT_TRUE(at != positions.end() && *at == e.position()) << "no event was published at " << e.position();
    EXPECT_EQ(name_of(e.payload_text()), "e" + std::to_string(at - positions.begin()));
    handled.push_back(e.position());
  };
  ASSERT_NO_FATAL_FAILURE(publish(10));
  ASSERT_TRUE(c->poll(collect, 3));
  ASSERT_EQ(handled.size(), 3u);
  const std::uint64_t from = positions[3];
  EXPECT_EQ(*c->committed(0), from);
  // The producer laps the ring several times: the group's cursor is gone.
  ASSERT_NO_FATAL_FAILURE(publish(test::scaled(1000) + 1000));
  const PartitionInfo before = bus_->describe_topic("t")->partition_info[0];
  ASSERT_GT(before.beginning, from);
  handled.clear();

  // What is certainly overwritten: up to the first event at or after tail - ring.
  auto gone_to = [&](std::uint64_t tail) {
    return *std::lower_bound(positions.begin(), positions.end(), tail - (64 << 10));
  };
  auto n = c->poll(collect, 100000);
  if (reset == OffsetReset::kError) {
    ASSERT_FALSE(n) << "on_overrun=kError: the poll fails";
    EXPECT_NE(n.error().message().find("position " + std::to_string(from) + " was overwritten"), std::string::npos)
        << n.error().message();
    EXPECT_TRUE(handled.empty());
    EXPECT_EQ(n.error().code, Errc::kOverrun) << n.error().message();
    // What is gone is counted once, as any gap: from the group's position
    // to the first event that is certainly intact (a seek may still take
    // the events below beginning(), which keeps a max_event margin).
    ASSERT_EQ(gaps.size(), 1u);
    EXPECT_EQ(gaps[0].from, from);
    EXPECT_EQ(gaps[0].to, gone_to(before.tail));
    EXPECT_LE(gaps[0].to, before.beginning);
    EXPECT_EQ(c->stats().gap_bytes, gone_to(before.tail) - from);
    // The group's shared figures take the gap when the group moves past
    // it (its cursor stays until the seek): a member taking over now
    // counts it there once, not on top of this one's count.
    EXPECT_EQ(bus_->describe_topic("t")->groups[0].partitions[0].gap_bytes, 0u);
    auto again = c->poll(collect, 100000);
    ASSERT_FALSE(again) << "and keeps failing: nothing is skipped silently";
    EXPECT_EQ(again.error().code, Errc::kOverrun);
    EXPECT_TRUE(handled.empty());
    EXPECT_EQ(gaps.size(), 1u) << "counted once";
    EXPECT_EQ(*c->committed(0), from);
    // While the group waits there for a seek, the producer laps on: what it
    // overwrites is lost too, and counted as more of the same gap (one
    // overrun, every byte), at the next failed poll...
    ASSERT_NO_FATAL_FAILURE(publish(test::scaled(500) + 500));
    const std::uint64_t later = gone_to(bus_->describe_topic("t")->partition_info[0].tail);
    ASSERT_GT(later, gone_to(before.tail));
    again = c->poll(collect, 100000);
    ASSERT_FALSE(again);
    EXPECT_NE(again.error().message().find(std::to_string(later - from) + " bytes"), std::string::npos)
        << again.error().message();
    ASSERT_EQ(gaps.size(), 2u);
    EXPECT_EQ(gaps[1].from, gone_to(before.tail));
    EXPECT_EQ(gaps[1].to, later);
    EXPECT_EQ(c->stats().gaps, 1u);
    EXPECT_EQ(c->stats().gap_bytes, later - from);
    // ... or at the seek that moves it on.
    ASSERT_NO_FATAL_FAILURE(publish(test::scaled(500) + 500));
    const std::uint64_t at_seek = bus_->describe_topic("t")->partition_info[0].beginning;
    ASSERT_GT(at_seek, later);
    // The overwritten position cannot be sought; the earliest can.
    auto s = c->seek(0, Offset::at(from));
    ASSERT_FALSE(s);
    EXPECT_EQ(s.error().code, Errc::kInvalidArgument);
    ASSERT_TRUE(c->seek(0, Offset::earliest()));
    EXPECT_EQ(c->stats().gap_bytes, at_seek - from);
    ASSERT_EQ(gaps.size(), 3u);
    EXPECT_EQ(gaps[2].to, at_seek);
    n = c->poll(collect, 100000);
    ASSERT_TRUE(n) << n.error().message();
    ASSERT_FALSE(handled.empty());
    EXPECT_EQ(handled.front(), at_seek);
    EXPECT_EQ(gaps.size(), 3u) << "the caller chose where to go on: nothing more is lost";
    const auto groups = bus_->describe_topic("t")->groups;
    ASSERT_EQ(groups.size(), 1u);
    EXPECT_EQ(groups[0].partitions[0].gap_bytes, at_seek - from);
    EXPECT_EQ(groups[0].partitions[0].gaps, 1u);
    return;
  }
  ASSERT_TRUE(n) << n.error().message();
  const std::uint64_t to = reset == OffsetReset::kEarliest ? before.beginning : before.tail;
  ASSERT_EQ(gaps.size(), 1u);
  EXPECT_EQ(gaps[0].partition, 0u);
  EXPECT_EQ(gaps[0].from, from) << "the gap starts where the group was";
  EXPECT_EQ(gaps[0].to, to) << "and ends where it resumed";
  EXPECT_EQ(gaps[0].bytes, to - from);
  const ConsumerStats st = c->stats();
  EXPECT_EQ(st.gaps, 1u);
  EXPECT_EQ(st.gap_bytes, to - from);
  // Every published event was either handled before, lost inside the
  // reported range (whole events only), or handled now, in order.
  std::vector<std::uint64_t> expect_now;
  std::uint64_t lost = 0;
  for (std::size_t i = 3; i < positions.size(); ++i) {
    if (positions[i] < to)
      ++lost;
    else
      expect_now.push_back(positions[i]);
  }
  EXPECT_EQ(handled, expect_now);
  EXPECT_GT(lost, 0u);
  EXPECT_TRUE(std::find(positions.begin(), positions.end(), to) != positions.end() || to == before.tail)
      << "the gap ends at an event boundary";
  const auto groups = bus_->describe_topic("t")->groups;
  ASSERT_EQ(groups.size(), 1u);
  EXPECT_EQ(groups[0].partitions[0].gap_bytes, to - from);
  EXPECT_EQ(groups[0].partitions[0].gaps, 1u);
  if (reset == OffsetReset::kLatest) {
    EXPECT_TRUE(handled.empty());
    ASSERT_NO_FATAL_FAILURE(publish(1));
    ASSERT_TRUE(c->poll(collect, 100));
    EXPECT_EQ(handled, (std::vector<std::uint64_t>{positions.back()}));
  }
  EXPECT_EQ(*c->committed(0), bus_->describe_topic("t")->partition_info[0].tail);
}

INSTANTIATE_TEST_SUITE_P(OnOverrun, DeliveryOverrunTest,
                         ::testing::Values(OffsetReset::kEarliest, OffsetReset::kLatest, OffsetReset::kError),
                         [](const ::testing::TestParamInfo<OffsetReset>& i) {
                           switch (i.param) {
                             case OffsetReset::kEarliest: return std::string("Earliest");
                             case OffsetReset::kLatest: return std::string("Latest");
                             case OffsetReset::kError: return std::string("Error");
                           }
                           return std::string("?");
                         });

// A group-less reader (a replay, a tail) follows on_overrun as a group
// does: kError fails its poll where it was overwritten, so a replay that
// must see every event can tell, rather than resuming at the earliest.
TEST_F(DeliverySeekTest, AGroupLessReaderFollowsOnOverrun) {
  ASSERT_TRUE(bus_->create_topic("t", {.partitions = 1, .ring_bytes = 64 << 10, .max_event = 4096}));
  auto prod = bus_->producer("t", {.deadline = 0ns});
  ASSERT_TRUE(prod) << prod.error().message();
  std::vector<std::uint64_t> positions;
  auto publish = [&](std::uint64_t count) {
    for (std::uint64_t i = 0; i < count; ++i) {
      auto r = prod->publish({.payload = body("e"), .partition = 0});
      ASSERT_TRUE(r);
      positions.push_back(r->position);
    }
  };
  std::uint64_t gap_bytes = 0;
  auto strict = bus_->consumer("t", {.on_overrun = OffsetReset::kError,
                                     .on_gap = [&](const GapReport& g) { gap_bytes += g.bytes; }});
  ASSERT_TRUE(strict) << strict.error().message();
  auto latest = bus_->consumer("t", {.on_overrun = OffsetReset::kLatest});
  ASSERT_TRUE(latest) << latest.error().message();
  ASSERT_NO_FATAL_FAILURE(publish(10));
  std::size_t seen = 0;
  auto count = [&](const EventView&) { ++seen; };
  ASSERT_EQ(strict->poll(count, 2).value(), 2u);
  ASSERT_EQ(latest->poll(count, 2).value(), 2u);
  ASSERT_NO_FATAL_FAILURE(publish(test::scaled(1000) + 1000));
  const PartitionInfo now = bus_->describe_topic("t")->partition_info[0];

  auto n = strict->poll(count, 100000);
  ASSERT_FALSE(n) << "kError: the replay learns it lost events";
  EXPECT_EQ(n.error().code, Errc::kOverrun);
  EXPECT_NE(n.error().message().find("a group-less reader lost events on partition 0"), std::string::npos)
      << n.error().message();
  EXPECT_EQ(gap_bytes, strict->stats().gap_bytes);
  EXPECT_GT(strict->stats().gap_bytes, 0u);
  EXPECT_LE(strict->stats().gap_bytes, now.beginning - strict->position(0));
  // A seek counts what it skips up to the oldest retained event, and no
  // byte twice: to an event still retained below beginning() (which keeps
  // a max_event margin), the bytes from there on are delivered, not lost.
  const std::uint64_t at = strict->position(0);
  const std::uint64_t below = *std::lower_bound(positions.begin(), positions.end(), now.tail - (64 << 10));
  ASSERT_LT(below, now.beginning);
  ASSERT_TRUE(strict->seek(0, Offset::at(below)));
  EXPECT_EQ(strict->stats().gap_bytes, below - at);
  std::uint64_t delivered = 0;
  ASSERT_TRUE(strict->poll([&](const EventView& e) { delivered += e.next_position() - e.position(); }, 100000));
  EXPECT_EQ(at + strict->stats().gap_bytes + delivered, now.tail) << "every byte delivered or counted lost, once";

  seen = 0;
  ASSERT_EQ(latest->poll(count, 100000).value(), 0u) << "kLatest: it resumes at the tail";
  EXPECT_EQ(latest->position(0), now.tail);
  EXPECT_EQ(latest->stats().gaps, 1u);
}

}  // namespace
}  // namespace herald
