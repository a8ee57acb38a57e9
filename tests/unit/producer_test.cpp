// runtime/src/producer.cpp: publish, publish_batch and zero-copy claims
// through the public API: records crossing the ring's end, the maximum event
// size, batches, claims (commit, partial commit, abort, RAII) and statistics.
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "herald/herald.hpp"
#include "shm/registry.hpp"
#include "shm/state_layout.hpp"
#include "shm/topic_map.hpp"
#include "tests/support/bus_fixture.hpp"
#include "tests/support/payload.hpp"
#include "tests/support/test_env.hpp"

namespace herald {
namespace {

class ProducerTest : public test::BusFixture<> {
 protected:
  // Drains `c` (timeout 0), checking each payload; returns the stamps seen.
  static std::vector<test::Stamp> drain(Consumer& c) {
    std::vector<test::Stamp> out;
    for (;;) {
      auto n = c.poll(
          [&](const EventView& e) {
            auto s = test::check_payload(e.payload());
            EXPECT_TRUE(s) << "corrupt payload at position " << e.position();
            if (s) out.push_back(*s);
          },
          256);
      EXPECT_TRUE(n) << n.error().message();
      if (!n || *n == 0) return out;
    }
  }
};

TEST_F(ProducerTest, RecordCrossingTheRingEndIsReadIntact) {
  // 4 KiB ring, 192-byte records: 4096 is not a multiple of 192, so records
  // straddle the end of the ring on most laps (the ring is mapped twice).
  constexpr std::uint64_t kRing = 4096;
  ASSERT_TRUE(bus_->create_topic("wrap", {.partitions = 1, .ring_bytes = kRing, .max_event = 1024}));
  auto group = bus_->consumer("wrap", {.group = "g", .policy = Policy::kLossless}).value();
  auto producer = bus_->producer("wrap", {.deadline = std::chrono::nanoseconds(0)}).value();
  constexpr std::size_t kPayload = 192 - 48;  // a 192-byte record
  int crossings = 0;
  std::uint64_t seq = 0;
  std::vector<test::Stamp> seen;
  std::vector<std::uint64_t> crossing_positions;
  for (int round = 0; round < 20; ++round) {
    const std::size_t crossings_before = crossing_positions.size();
    for (int i = 0; i < 10; ++i) {
      const std::string payload = test::make_payload(kPayload, {1, 0, seq});
      auto r = producer.publish({.payload = payload});
      ASSERT_TRUE(r) << r.error().message();
      if (r->position % kRing + 192 > kRing) {
        ++crossings;
        crossing_positions.push_back(r->position);
      }
      ++seq;
    }
    // A group-less reader at this round's crossing record (copy path) sees it intact.
    if (crossing_positions.size() > crossings_before) {
      auto reader = bus_->consumer("wrap", {.start = Offset::at(crossing_positions.back())});
      ASSERT_TRUE(reader) << reader.error().message();
      auto e = reader->next();
      ASSERT_TRUE(e) << e.error().message();
      EXPECT_EQ(e->position(), crossing_positions.back());
      EXPECT_TRUE(test::check_payload(e->payload())) << "crossing record at " << e->position();
    }
    auto got = drain(group);  // zero-copy path; frees the ring (lossless)
    seen.insert(seen.end(), got.begin(), got.end());
  }
  EXPECT_GE(crossings, 5);
  ASSERT_EQ(seen.size(), seq);
  for (std::uint64_t i = 0; i < seq; ++i) EXPECT_EQ(seen[i].seq, i);
}

// Past the largest position a group cursor holds, a partition takes no more
// events: publish says so (kNoSpace, naming the limit and what to do)
// instead of writing events that no group could read past.
TEST_F(ProducerTest, APartitionThatHasUsedItsPositionSpaceRefusesMoreEvents) {
  ASSERT_TRUE(bus_->create_topic("old", {.partitions = 1, .ring_bytes = 4096, .max_event = 1024}));
  auto rec = shm::Registry::open(guard_.bus())->find("old");
  ASSERT_TRUE(rec);
  auto map = shm::TopicMap::attach(guard_.bus(), "old", rec->incarnation, shm::Access::kReadWrite,
                                   shm::Access::kReadWrite);
  ASSERT_TRUE(map) << map.error().message();
  // As if 2^56 bytes had gone through it, one 128-byte record short.
  const std::uint64_t last = shm::kMaxCursorPosition & ~std::uint64_t{63};
  map->partition(0).part->tail.store(last - 128, std::memory_order_release);
  auto group = bus_->consumer("old", {.group = "g", .start = Offset::latest()}).value();
  auto producer = bus_->producer("old").value();
  const std::string payload(64, 'x');  // a 128-byte record
  auto first = producer.publish({.payload = payload});
  ASSERT_TRUE(first) << first.error().message();
  EXPECT_EQ(first->position, last - 128);
  auto second = producer.publish({.payload = payload});
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().code, Errc::kNoSpace);
  EXPECT_NE(second.error().detail.find("position space"), std::string::npos) << second.error().message();
  Message batch[2] = {{.payload = payload}, {.payload = payload}};
  auto b = producer.publish_batch(batch);
  ASSERT_FALSE(b);
  EXPECT_EQ(b.error().code, Errc::kNoSpace);
  // The event that fit is read, and the group's cursor holds its end.
  auto e = group.next(std::chrono::seconds(10));
  ASSERT_TRUE(e) << e.error().message();
  EXPECT_EQ(e->position(), last - 128);
  ASSERT_TRUE(group.commit());
  auto c = group.committed(0);
  ASSERT_TRUE(c) << c.error().message();
  EXPECT_EQ(*c, last);
}

TEST_F(ProducerTest, MaximumEventSizeExactlyFitsAndOneByteMoreIsTooLarge) {
  constexpr std::uint64_t kMaxEvent = 4096;
  ASSERT_TRUE(bus_->create_topic("max", {.partitions = 1, .ring_bytes = 1 << 16, .max_event = kMaxEvent}));
  auto producer = bus_->producer("max").value();
  const Header hs[] = {{"h", "v"}};
  const Message meta{.key = "k-1", .type = "Big", .headers = hs};
  const std::size_t max_payload = producer.max_payload(meta);
  ASSERT_EQ(producer.max_event(), kMaxEvent);
  ASSERT_GT(max_payload, 0u);

  std::string payload = test::make_payload(max_payload, {1, 0, 0});
  Message m = meta;
  m.payload = payload;
  auto ok = producer.publish(m);
  ASSERT_TRUE(ok) << ok.error().message();

  auto check_too_large = [&](const Error& e, const char* what) {
    EXPECT_EQ(e.code, Errc::kTooLarge) << what << ": " << e.message();
    // Names the sizes: the event's and the limit.
    EXPECT_NE(e.detail.find("max_event=" + std::to_string(kMaxEvent)), std::string::npos) << what << ": " << e.message();
    EXPECT_NE(e.detail.find(std::to_string(kMaxEvent + 16)), std::string::npos) << what << ": " << e.message();
    EXPECT_NE(e.detail.find("payload " + std::to_string(max_payload + 1)), std::string::npos)
        << what << ": " << e.message();
  };
  std::string bigger = payload + "x";
  m.payload = bigger;
  auto too_large = producer.publish(m);
  ASSERT_FALSE(too_large);
  check_too_large(too_large.error(), "publish");

  const Message batch[] = {m};
  auto b = producer.publish_batch(batch);
  ASSERT_FALSE(b);
  check_too_large(b.error(), "publish_batch");

  auto c = producer.claim(max_payload + 1, meta);
  ASSERT_FALSE(c);
  check_too_large(c.error(), "claim");
  auto c_ok = producer.claim(max_payload, meta);
  ASSERT_TRUE(c_ok) << c_ok.error().message();
  std::memcpy(c_ok->payload().data(), payload.data(), payload.size());
  ASSERT_TRUE(c_ok->commit());

  // Exactly two max-size events landed, each occupying max_event bytes.
  auto reader = bus_->consumer("max", {.start = Offset::earliest()}).value();
  int n = 0;
  ASSERT_TRUE(reader.poll(
      [&](const EventView& e) {
        ++n;
        EXPECT_EQ(e.next_position() - e.position(), kMaxEvent);
        EXPECT_EQ(e.payload().size(), max_payload);
        EXPECT_TRUE(test::check_payload(e.payload()));
        EXPECT_EQ(e.key(), "k-1");
      },
      10));
  EXPECT_EQ(n, 2);
}

TEST_F(ProducerTest, BatchSpreadsOverPartitionsKeepingPerKeyOrder) {
  ASSERT_TRUE(bus_->create_topic("b", {.partitions = 4, .ring_bytes = 1 << 16, .max_event = 1024}));
  auto producer = bus_->producer("b").value();
  std::vector<std::string> keys, payloads;
  std::vector<Message> batch;
  constexpr int kEvents = 200;
  for (int i = 0; i < kEvents; ++i) {
    keys.push_back("entity-" + std::to_string(i % 13));
    payloads.push_back(test::make_payload(64, {0, static_cast<std::uint32_t>(i % 13), std::uint64_t(i)}));
  }
  for (std::size_t i = 0; i < keys.size(); ++i) batch.push_back({.key = keys[i], .payload = payloads[i]});
  auto r = producer.publish_batch(batch);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->published, static_cast<std::size_t>(kEvents));
  EXPECT_FALSE(r->error.has_value());
  EXPECT_EQ(producer.stats().events, static_cast<std::uint64_t>(kEvents));

  auto reader = bus_->consumer("b", {.start = Offset::earliest()}).value();
  std::map<std::uint32_t, std::int64_t> last_seq_per_key;
  int n = 0;
  for (;;) {
    auto got = reader.poll(
        [&](const EventView& e) {
          auto s = test::check_payload(e.payload());
          ASSERT_TRUE(s);
          EXPECT_EQ(e.partition(), producer.partition_for(e.key()));
          auto [it, fresh] = last_seq_per_key.try_emplace(s->key, -1);
          EXPECT_LT(it->second, static_cast<std::int64_t>(s->seq)) << "key " << s->key;
          it->second = static_cast<std::int64_t>(s->seq);
          ++n;
        },
        256);
    ASSERT_TRUE(got);
    if (*got == 0) break;
  }
  EXPECT_EQ(n, kEvents);
}

TEST_F(ProducerTest, BatchWithOneBadEventPublishesNothing) {
  ASSERT_TRUE(bus_->create_topic("b", {.partitions = 2, .ring_bytes = 1 << 16, .max_event = 1024}));
  auto producer = bus_->producer("b").value();
  std::vector<Message> batch(5, Message{.payload = "fine"});
  const std::string long_type(300, 't');
  batch[3].type = long_type;
  auto r = producer.publish_batch(batch);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kInvalidArgument);
  EXPECT_NE(r.error().detail.find("batch event 3"), std::string::npos) << r.error().message();
  EXPECT_NE(r.error().detail.find("type is 300 bytes"), std::string::npos) << r.error().message();
  auto info = bus_->describe_topic("b").value();
  for (const auto& p : info.partition_info) EXPECT_EQ(p.tail, 0u) << "partition " << p.partition;
  // An empty batch is not an error.
  auto empty = producer.publish_batch({});
  ASSERT_TRUE(empty);
  EXPECT_EQ(empty->published, 0u);
}

TEST_F(ProducerTest, BatchThatStopsPartWayPublishedExactlyItsFirstEvents) {
  // The caller of a batch that stopped part way (`published` < size, error
  // kBackPressured) retries the rest: that is only correct if the events
  // published are exactly the first `published` of the batch. Partition 1 is
  // full (a lossless group has not committed), partition 0 is free; the
  // batch interleaves them.
  ASSERT_TRUE(bus_->create_topic("b", {.partitions = 2, .ring_bytes = 1 << 14, .max_event = 1024}));
  auto group = bus_->consumer("b", {.group = "g", .policy = Policy::kLossless, .commit_mode = CommitMode::kManual})
                   .value();
  auto producer = bus_->producer("b", {.deadline = std::chrono::milliseconds(1)}).value();
  const std::string filler(400, 'f');
  while (producer.publish({.payload = filler, .partition = 1})) {
  }
  while (producer.publish({.payload = "x", .partition = 1})) {  // to the last 64 bytes
  }
  ASSERT_TRUE(producer.publish({.payload = "fits", .partition = 0}));
  const Message batch[] = {{.payload = "a", .partition = 0},
                           {.payload = "b", .partition = 1},  // refused: partition 1 is full
                           {.payload = "c", .partition = 0},
                           {.payload = "d", .partition = 0}};
  auto r = producer.publish_batch(batch);
  ASSERT_TRUE(r) << r.error().message();  // "a" went out, so a partial result, not an error
  ASSERT_TRUE(r->error.has_value());
  EXPECT_EQ(r->error->code, Errc::kBackPressured);
  ASSERT_EQ(r->published, 1u);
  // Partition 0 holds "fits" and "a" only: "c" and "d" come after the
  // refused "b", so the caller's retry of batch[1..] must not duplicate them.
  auto reader = bus_->consumer("b", {.partitions = {0}}).value();
  std::vector<std::string> p0;
  ASSERT_TRUE(reader.poll([&](const EventView& e) { p0.emplace_back(e.payload_text()); }, 100));
  EXPECT_EQ(p0, (std::vector<std::string>{"fits", "a"}));
  // Once the group commits, the retry of the rest publishes each event once.
  while (group.poll([](const EventView&) {}, 1000).value() > 0) {
  }
  ASSERT_TRUE(group.commit());
  auto rest = producer.publish_batch(std::span<const Message>(batch).subspan(r->published));
  ASSERT_TRUE(rest) << rest.error().message();
  EXPECT_EQ(rest->published, 3u);
  EXPECT_FALSE(rest->error.has_value());
  p0.clear();
  ASSERT_TRUE(reader.poll([&](const EventView& e) { p0.emplace_back(e.payload_text()); }, 100));
  EXPECT_EQ(p0, (std::vector<std::string>{"c", "d"}));
}

TEST_F(ProducerTest, BatchLargerThanAQuarterRingIsSplitIntoClaims) {
  // A batch of 3 rings' worth of bytes into a ring nobody gates: it is
  // claimed in chunks of at most ring/4, each committed before the next.
  ASSERT_TRUE(bus_->create_topic("big", {.partitions = 1, .ring_bytes = 1 << 14, .max_event = 1024}));
  auto producer = bus_->producer("big").value();
  std::vector<std::string> payloads;
  std::vector<Message> batch;
  for (int i = 0; i < 3 * (1 << 14) / 256; ++i) payloads.push_back(test::make_payload(256 - 48, {0, 0, std::uint64_t(i)}));
  for (const auto& p : payloads) batch.push_back({.payload = p});
  auto r = producer.publish_batch(batch);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->published, batch.size());
  auto info = bus_->describe_topic("big").value();
  EXPECT_EQ(info.partition_info[0].tail, batch.size() * 256);
  EXPECT_EQ(info.partition_info[0].events, batch.size());
  // The retained window reads intact and in order.
  auto reader = bus_->consumer("big", {.start = Offset::earliest()}).value();
  std::int64_t last = -1;
  int n = 0;
  ASSERT_TRUE(reader.poll(
      [&](const EventView& e) {
        auto s = test::check_payload(e.payload());
        ASSERT_TRUE(s);
        EXPECT_EQ(static_cast<std::int64_t>(s->seq), last == -1 ? static_cast<std::int64_t>(s->seq) : last + 1);
        last = static_cast<std::int64_t>(s->seq);
        ++n;
      },
      1 << 20));
  EXPECT_GT(n, 0);
  EXPECT_EQ(last, static_cast<std::int64_t>(batch.size()) - 1);
}

TEST_F(ProducerTest, EveryPayloadSizeIsCopiedExactly) {
  // Payloads of 1..130 bytes (the small ones are copied inline, in
  // overlapping pieces; over 64 through memcpy), by publish and by
  // publish_batch, read back byte for byte.
  ASSERT_TRUE(bus_->create_topic("sizes", {.partitions = 1, .ring_bytes = 1 << 16, .max_event = 1024}));
  auto producer = bus_->producer("sizes").value();
  auto reader = bus_->consumer("sizes", {.group = "g"}).value();
  std::vector<std::string> want;
  for (std::size_t n = 1; n <= 130; ++n) {
    std::string payload(n, '\0');
    for (std::size_t i = 0; i < n; ++i) payload[i] = static_cast<char>('A' + (n * 7 + i) % 53);
    want.push_back(std::move(payload));
  }
  for (const auto& w : want) ASSERT_TRUE(producer.publish({.payload = w}));
  std::vector<Message> batch;
  for (const auto& w : want) batch.push_back({.payload = w});
  auto r = producer.publish_batch(batch);
  ASSERT_TRUE(r) << r.error().message();
  ASSERT_EQ(r->published, want.size());
  std::vector<std::string> got;
  for (;;) {
    auto n = reader.poll([&](const EventView& e) { got.emplace_back(e.payload_text()); }, 1000);
    ASSERT_TRUE(n) << n.error().message();
    if (*n == 0) break;
  }
  ASSERT_EQ(got.size(), 2 * want.size());
  for (std::size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i], want[i % want.size()]) << "event " << i;
}

TEST_F(ProducerTest, PayloadOnlyBatchesCarryTheSameEnvelopeAsOtherEvents) {
  // publish_batch writes a batch of payload-only events on a path of its
  // own (write_plain_run: one id reservation, one time, the header's
  // constant tail once), and publish and claim have a payload-only path
  // too. Read back, their events must look as those of the general path (a
  // batch or claim with an envelope field) do.
  ASSERT_TRUE(bus_->create_topic("env", {.partitions = 1, .ring_bytes = 1 << 16, .max_event = 1024}));
  auto producer = bus_->producer("env").value();
  std::vector<std::string> payloads;
  for (std::uint64_t i = 0; i < 11; ++i) payloads.push_back(test::make_payload(64, {0, 0, i}));
  ASSERT_TRUE(producer.publish({.payload = payloads[0]}));
  std::vector<Message> plain = {{.payload = payloads[1]}, {.payload = payloads[2]}, {.payload = payloads[3]}};
  // A payload-only event before the enveloped one: publish_batch validates
  // the first on its quick path, then goes the general way for the batch.
  std::vector<Message> enveloped = {{.payload = payloads[4]}, {.type = "T", .payload = payloads[5]},
                                    {.payload = payloads[6]}};
  std::vector<Message> plain2 = {{.payload = payloads[7]}, {.payload = payloads[8]}};
  for (auto* b : {&plain, &enveloped, &plain2}) {
    auto r = producer.publish_batch(*b);
    ASSERT_TRUE(r) << r.error().message();
    ASSERT_EQ(r->published, b->size());
  }
  // Zero-copy claims take the same two paths: payload-only, and with a type.
  for (std::size_t i : {std::size_t{9}, std::size_t{10}}) {
    auto c = producer.claim(64, i == 10 ? Message{.type = "C"} : Message{});
    ASSERT_TRUE(c) << c.error().message();
    std::memcpy(c->payload().data(), payloads[i].data(), 64);
    ASSERT_TRUE(c->commit());
  }
  struct Seen {
    std::uint64_t seq, time;
    EventId id;
    std::string key, type, source;
    std::size_t headers;
  };
  std::vector<Seen> seen;
  auto reader = bus_->consumer("env", {.start = Offset::earliest()}).value();
  ASSERT_TRUE(reader.poll(
      [&](const EventView& e) {
        auto s = test::check_payload(e.payload());
        ASSERT_TRUE(s) << "corrupt payload at position " << e.position();
        seen.push_back({s->seq, e.time_ns(), e.id(), std::string(e.key()), std::string(e.type()),
                        std::string(e.source()), e.header_count()});
      },
      100));
  ASSERT_EQ(seen.size(), 11u);
  const std::uint64_t nonce = (seen[0].id.lo >> 32) & 0x3fffffff;
  for (std::size_t i = 0; i < seen.size(); ++i) {
    const Seen& e = seen[i];
    SCOPED_TRACE("event " + std::to_string(i));
    EXPECT_EQ(e.seq, i);
    EXPECT_NE(e.time, 0u);
    EXPECT_EQ((e.id.hi >> 12) & 0xf, 7u);  // UUIDv7 version
    EXPECT_EQ(e.id.lo >> 62, 2u);          // variant 0b10
    EXPECT_EQ((e.id.lo >> 32) & 0x3fffffff, nonce);
    EXPECT_EQ(e.id.hi >> 16, e.time / 1'000'000);  // the id's ms is the event's time
    EXPECT_EQ(e.key, "");
    EXPECT_EQ(e.type, i == 5 ? "T" : i == 10 ? "C" : "");
    EXPECT_EQ(e.source, "");
    EXPECT_EQ(e.headers, 0u);
    if (i > 0) {
      EXPECT_GE(e.time, seen[i - 1].time);
      // Strictly increasing ids: the counter moves by one per event, across
      // paths (a batch reserves its run's counters at once).
      EXPECT_EQ(e.id.lo & 0xffffffff, (seen[i - 1].id.lo & 0xffffffff) + 1);
    }
  }
  // One clock read per batch: a batch's events share their time.
  for (auto [from, to] : {std::pair<std::size_t, std::size_t>{1, 3}, {4, 6}, {7, 8}})
    for (std::size_t i = from + 1; i <= to; ++i) EXPECT_EQ(seen[i].time, seen[from].time) << "event " << i;
}

TEST_F(ProducerTest, PayloadOnlyEventsAtTheSizeLimit) {
  // The payload-only paths decide for themselves that an event fits
  // (plain_fits); they must agree with try_size: max_event - 48 bytes of
  // payload fit, one more is too large, through publish, publish_batch and
  // claim alike.
  constexpr std::uint64_t kMaxEvent = 1024;
  ASSERT_TRUE(bus_->create_topic("limit", {.partitions = 1, .ring_bytes = 1 << 16, .max_event = kMaxEvent}));
  auto producer = bus_->producer("limit").value();
  const std::size_t fits = producer.max_payload(Message{});
  ASSERT_EQ(fits, kMaxEvent - 48);
  const std::string ok(fits, 'a'), over(fits + 1, 'b');
  ASSERT_TRUE(producer.publish({.payload = ok}));
  const Message one_ok[] = {{.payload = ok}}, one_over[] = {{.payload = ok}, {.payload = over}};
  auto b = producer.publish_batch(one_ok);
  ASSERT_TRUE(b) << b.error().message();
  auto c = producer.claim(fits);
  ASSERT_TRUE(c) << c.error().message();
  ASSERT_TRUE(c->commit());
  auto p_over = producer.publish({.payload = over});
  ASSERT_FALSE(p_over);
  EXPECT_EQ(p_over.error().code, Errc::kTooLarge) << p_over.error().message();
  auto b_over = producer.publish_batch(one_over);
  ASSERT_FALSE(b_over);
  EXPECT_EQ(b_over.error().code, Errc::kTooLarge) << b_over.error().message();
  EXPECT_NE(b_over.error().detail.find("batch event 1"), std::string::npos) << b_over.error().message();
  auto c_over = producer.claim(fits + 1);
  ASSERT_FALSE(c_over);
  EXPECT_EQ(c_over.error().code, Errc::kTooLarge) << c_over.error().message();
  // Three events of `fits` bytes, nothing of the refused ones.
  auto reader = bus_->consumer("limit", {.start = Offset::earliest()}).value();
  std::vector<std::size_t> sizes;
  ASSERT_TRUE(reader.poll([&](const EventView& e) { sizes.push_back(e.payload().size()); }, 100));
  EXPECT_EQ(sizes, (std::vector<std::size_t>{fits, fits, fits}));
}

// Reads up to n events of test::make_payload payloads (a few polls, none
// waiting), each checked and with a generated id and time: seq -> (source,
// partition).
std::map<std::uint64_t, std::pair<std::string, std::uint32_t>> read_payload_events(Consumer& reader,
                                                                                    std::size_t n) {
  std::map<std::uint64_t, std::pair<std::string, std::uint32_t>> seen;
  for (int i = 0; i < 4 && seen.size() < n; ++i) {
    auto r = reader.poll(
        [&](const EventView& e) {
          auto s = test::check_payload(e.payload());
          ASSERT_TRUE(s) << "corrupt payload at position " << e.position();
          EXPECT_NE(e.time_ns(), 0u);
          EXPECT_EQ((e.id().hi >> 12) & 0xf, 7u);  // a generated UUIDv7
          seen[s->seq] = {std::string(e.source()), e.partition()};
        },
        100, std::chrono::milliseconds(0));
    EXPECT_TRUE(r) << r.error().message();
  }
  return seen;
}

TEST_F(ProducerTest, PublishOfAPayloadIsPublishOfAPayloadOnlyMessage) {
  // publish(Bytes, partition) is publish(Message{.payload, .partition})
  // without the Message: the same envelope, the same partition choice and
  // the same refusals, and the general path for a producer whose events
  // carry more than their payload (a source option).
  ASSERT_TRUE(bus_->create_topic("bytes", {.partitions = 3, .ring_bytes = 1 << 16, .max_event = 1024}));
  auto producer = bus_->producer("bytes").value();
  auto sourced = bus_->producer("bytes", {.source = "svc"}).value();
  const std::string a = test::make_payload(64, {0, 0, 0}), b = test::make_payload(64, {0, 0, 1});
  const std::string c = test::make_payload(64, {0, 0, 2});
  auto pa = producer.publish(Bytes(a), 2);
  ASSERT_TRUE(pa) << pa.error().message();
  EXPECT_EQ(pa->partition, 2u);
  auto pb = producer.publish(Bytes(b));  // sticky round-robin: some partition
  ASSERT_TRUE(pb) << pb.error().message();
  EXPECT_LT(pb->partition, 3u);
  auto pc = sourced.publish(Bytes(c), 1);
  ASSERT_TRUE(pc) << pc.error().message();
  EXPECT_EQ(pc->partition, 1u);
  // Refusals, as publish(Message) gives them; nothing is published.
  for (std::int32_t bad : {3, -2}) {
    auto r = producer.publish(Bytes(a), bad);
    ASSERT_FALSE(r) << "partition " << bad;
    EXPECT_EQ(r.error().code, Errc::kInvalidArgument) << r.error().message();
  }
  const std::string over(producer.max_payload(Message{}) + 1, 'x');
  auto too_large = producer.publish(Bytes(over), 0);
  ASSERT_FALSE(too_large);
  EXPECT_EQ(too_large.error().code, Errc::kTooLarge) << too_large.error().message();
  {
    auto held = producer.claim(16);
    ASSERT_TRUE(held) << held.error().message();
    auto r = producer.publish(Bytes(a), 0);
    ASSERT_FALSE(r) << "a zero-copy claim is pending";
    EXPECT_EQ(r.error().code, Errc::kInvalidArgument) << r.error().message();
    held->abort();
  }
  auto reader = bus_->consumer("bytes", {.start = Offset::earliest()}).value();
  auto seen = read_payload_events(reader, 3);
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[0], (std::pair<std::string, std::uint32_t>{"", 2}));
  EXPECT_EQ(seen[1].first, "");
  EXPECT_EQ(seen[1].second, pb->partition);
  EXPECT_EQ(seen[2], (std::pair<std::string, std::uint32_t>{"svc", 1}));
}

TEST_F(ProducerTest, ClaimOfASizeIsClaimWithAnEmptyMessage) {
  // claim(n) is claim(n, Message{}) without the Message: a payload-only
  // event on a sticky partition, the general path for a producer whose
  // events carry more (a source option), and the same refusals.
  ASSERT_TRUE(bus_->create_topic("sized", {.partitions = 2, .ring_bytes = 1 << 16, .max_event = 1024}));
  auto producer = bus_->producer("sized").value();
  auto sourced = bus_->producer("sized", {.source = "svc"}).value();
  const std::string a = test::make_payload(64, {0, 0, 0}), b = test::make_payload(64, {0, 0, 1});
  for (auto* p : {&producer, &sourced}) {
    auto c = p->claim(64);
    ASSERT_TRUE(c) << c.error().message();
    ASSERT_EQ(c->payload().size(), 64u);
    const std::string& bytes = p == &producer ? a : b;
    std::memcpy(c->payload().data(), bytes.data(), bytes.size());
    auto r = c->commit();
    ASSERT_TRUE(r) << r.error().message();
    EXPECT_LT(r->partition, 2u);
  }
  {
    auto held = producer.claim(16);
    ASSERT_TRUE(held) << held.error().message();
    auto second = producer.claim(16);
    ASSERT_FALSE(second) << "a zero-copy claim is pending";
    EXPECT_EQ(second.error().code, Errc::kInvalidArgument) << second.error().message();
    held->abort();
  }
  auto too_large = producer.claim(producer.max_payload() + 1);
  ASSERT_FALSE(too_large);
  EXPECT_EQ(too_large.error().code, Errc::kTooLarge) << too_large.error().message();
  auto reader = bus_->consumer("sized", {.start = Offset::earliest()}).value();
  auto seen = read_payload_events(reader, 2);
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].first, "");
  EXPECT_EQ(seen[1].first, "svc");
}

TEST_F(ProducerTest, BatchRecordsArePackedInsideLineAlignedClaims) {
  // A 64 B payload is a 112-byte record (48-byte header), 16-byte aligned:
  // a batch packs its records and pads the last one to the claim's 64-byte
  // end; a lone publish pads its record to whole lines (128 bytes).
  ASSERT_TRUE(bus_->create_topic("packed", {.partitions = 1, .ring_bytes = 1 << 16, .max_event = 1024}));
  auto producer = bus_->producer("packed").value();
  std::vector<std::string> payloads;
  for (std::uint64_t i = 0; i < 6; ++i) payloads.push_back(test::make_payload(64, {0, 0, i}));
  std::vector<Message> batch;
  for (std::size_t i = 0; i < 5; ++i) batch.push_back({.payload = payloads[i]});
  auto r = producer.publish_batch(batch);
  ASSERT_TRUE(r) << r.error().message();
  ASSERT_EQ(r->published, 5u);
  EXPECT_EQ(bus_->describe_topic("packed").value().partition_info[0].tail, 576u);  // 5 * 112 = 560, up to 64
  auto one = producer.publish({.payload = payloads[5]});
  ASSERT_TRUE(one) << one.error().message();
  EXPECT_EQ(one->position, 576u);
  EXPECT_EQ(bus_->describe_topic("packed").value().partition_info[0].tail, 704u);
  auto reader = bus_->consumer("packed", {.start = Offset::earliest()}).value();
  std::vector<std::pair<std::uint64_t, std::uint64_t>> spans;  // position, next position
  std::vector<std::uint64_t> seqs;
  ASSERT_TRUE(reader.poll(
      [&](const EventView& e) {
        auto s = test::check_payload(e.payload());
        ASSERT_TRUE(s) << "corrupt payload at position " << e.position();
        seqs.push_back(s->seq);
        spans.emplace_back(e.position(), e.next_position());
      },
      100));
  EXPECT_EQ(seqs, (std::vector<std::uint64_t>{0, 1, 2, 3, 4, 5}));
  const std::vector<std::pair<std::uint64_t, std::uint64_t>> want = {
      {0, 112}, {112, 224}, {224, 336}, {336, 448}, {448, 576}, {576, 704}};
  EXPECT_EQ(spans, want);
}

TEST_F(ProducerTest, BatchRunEndsWhereTheLastRecordsPaddingWouldPassMaxEvent) {
  // 1008-byte records (max_event 1024): two packed would end at 2016, and
  // padding the second to the claim's end (2048) would make it 1040 bytes,
  // more than a record may be. So each goes in its own claim, padded to 1024.
  ASSERT_TRUE(bus_->create_topic("edge", {.partitions = 1, .ring_bytes = 1 << 16, .max_event = 1024}));
  auto producer = bus_->producer("edge").value();
  std::vector<std::string> payloads;
  for (std::uint64_t i = 0; i < 3; ++i) payloads.push_back(test::make_payload(1008 - 48, {0, 0, i}));
  std::vector<Message> batch;
  for (const auto& p : payloads) batch.push_back({.payload = p});
  auto r = producer.publish_batch(batch);
  ASSERT_TRUE(r) << r.error().message();
  ASSERT_EQ(r->published, 3u);
  auto group = bus_->consumer("edge", {.group = "g", .start = Offset::earliest()}).value();
  std::vector<std::uint64_t> positions, seqs;
  ASSERT_TRUE(group.poll(
      [&](const EventView& e) {
        auto s = test::check_payload(e.payload());
        ASSERT_TRUE(s) << "corrupt payload at position " << e.position();
        seqs.push_back(s->seq);
        positions.push_back(e.position());
        EXPECT_EQ(e.next_position() - e.position(), 1024u);
      },
      100));
  EXPECT_EQ(seqs, (std::vector<std::uint64_t>{0, 1, 2}));
  EXPECT_EQ(positions, (std::vector<std::uint64_t>{0, 1024, 2048}));
}

TEST_F(ProducerTest, ClaimCommitPartialAbortAndRaii) {
  ASSERT_TRUE(bus_->create_topic("z", {.partitions = 1, .ring_bytes = 1 << 16, .max_event = 4096}));
  auto producer = bus_->producer("z").value();
  {
    auto c = producer.claim(100, {.type = "Z"}).value();
    ASSERT_EQ(c.payload().size(), 100u);
    EXPECT_TRUE(c.pending());
    // One claim at a time per producer, and no publish meanwhile.
    auto second = producer.claim(10);
    ASSERT_FALSE(second);
    EXPECT_EQ(second.error().code, Errc::kInvalidArgument);
    auto pub = producer.publish({.payload = "x"});
    ASSERT_FALSE(pub);
    EXPECT_EQ(pub.error().code, Errc::kInvalidArgument);
    const Message one[] = {{.payload = "x"}};
    EXPECT_FALSE(producer.publish_batch(one));
    // Commit more than claimed: refused, claim still pending.
    auto over = c.commit(101);
    ASSERT_FALSE(over);
    EXPECT_EQ(over.error().code, Errc::kInvalidArgument);
    EXPECT_NE(over.error().detail.find("101"), std::string::npos) << over.error().message();
    std::memcpy(c.payload().data(), "partial", 7);
    auto done = c.commit(7);
    ASSERT_TRUE(done) << done.error().message();
    EXPECT_FALSE(c.pending());
    auto again = c.commit();
    ASSERT_FALSE(again);
    EXPECT_EQ(again.error().code, Errc::kInvalidArgument);
  }
  { auto dropped = producer.claim(50).value(); }  // RAII: aborted
  {
    auto c = producer.claim(50).value();
    c.abort();
    EXPECT_FALSE(c.pending());
    EXPECT_FALSE(c.commit());
  }
  {
    // A claim moved around stays one claim.
    auto c = producer.claim(3).value();
    Claim moved = std::move(c);
    EXPECT_FALSE(c.pending());  // NOLINT(bugprone-use-after-move): checking the moved-from state
    std::memcpy(moved.payload().data(), "abc", 3);
    ASSERT_TRUE(moved.commit());
  }
  ASSERT_TRUE(producer.publish({.payload = "after"}));
  auto reader = bus_->consumer("z", {.start = Offset::earliest()}).value();
  std::vector<std::string> got;
  ASSERT_TRUE(reader.poll([&](const EventView& e) { got.emplace_back(e.payload_text()); }, 100));
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0], "partial");
  EXPECT_EQ(got[1], "abc");
  EXPECT_EQ(got[2], "after");
  EXPECT_EQ(reader.stats().aborted_skipped, 2u);
  EXPECT_EQ(bus_->describe_topic("z").value().partition_info[0].events, 3u);
  // The two claims given up are counted where repairs are (they showed in
  // no statistic).
  EXPECT_EQ(bus_->describe_topic("z").value().partition_info[0].aborted_records, 2u);
}

TEST_F(ProducerTest, ClaimOutlivingItsProducerIsAbortedAndEmptied) {
  ASSERT_TRUE(bus_->create_topic("z", {.partitions = 1, .ring_bytes = 1 << 16, .max_event = 4096}));
  Claim c;
  {
    auto producer = bus_->producer("z").value();
    c = producer.claim(10).value();
    EXPECT_TRUE(c.pending());
  }
  EXPECT_FALSE(c.pending());
  EXPECT_FALSE(c.commit());
  // The aborted record does not block anyone: the next producer's event is read.
  auto producer = bus_->producer("z").value();
  ASSERT_TRUE(producer.publish({.payload = "next"}));
  auto reader = bus_->consumer("z", {.start = Offset::earliest()}).value();
  auto e = reader.next();
  ASSERT_TRUE(e) << e.error().message();
  EXPECT_EQ(e->payload_text(), "next");
  EXPECT_EQ(reader.stats().aborted_skipped, 1u);
}

TEST_F(ProducerTest, StatsAndTopicCountersAddUp) {
  ASSERT_TRUE(bus_->create_topic("s", {.partitions = 2, .ring_bytes = 1 << 16, .max_event = 1024}));
  {
    auto first = bus_->producer("s").value();
    for (int i = 0; i < 10; ++i) ASSERT_TRUE(first.publish({.payload = "x", .partition = i % 2}));
    EXPECT_EQ(first.stats().events, 10u);
    EXPECT_EQ(first.stats().bytes, 10u * 64);
  }
  // A later producer (which reuses the first one's slot) adds to the
  // topic's totals; its own stats start at zero.
  auto second = bus_->producer("s").value();
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(second.publish({.payload = "y", .partition = 0}));
  EXPECT_EQ(second.stats().events, 5u);
  auto info = bus_->describe_topic("s").value();
  EXPECT_EQ(info.partition_info[0].events, 10u);
  EXPECT_EQ(info.partition_info[1].events, 5u);
  EXPECT_EQ(info.partition_info[0].bytes, 10u * 64);
  EXPECT_EQ(info.partition_info[0].events + info.partition_info[1].events, 15u);
}

// Idempotent producers (ProducerOptions::producer_id): found by an
// adversarial pass over the API.
TEST_F(ProducerTest, IdempotentSequencesStopAtTheLargestAndNeverWrap) {
  ASSERT_TRUE(bus_->create_topic("t", {.partitions = 1, .ring_bytes = 1 << 16, .max_event = 1024}));
  auto p = bus_->producer("t", {.producer_id = 7}).value();
  auto r = p.publish({.payload = "past", .sequence = UINT64_MAX});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kInvalidArgument) << r.error().message();
  ASSERT_TRUE(p.publish({.payload = "last", .sequence = kMaxSequence}));
  // "last + 1" would wrap to 0 and make every later event a duplicate.
  r = p.publish({.payload = "next"});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kInvalidArgument) << r.error().message();
  EXPECT_NE(r.error().detail.find("past the largest"), std::string::npos) << r.error().message();
}

TEST_F(ProducerTest, IdempotentBatchSaysHowManyWereDuplicates) {
  ASSERT_TRUE(bus_->create_topic("t", {.partitions = 1, .ring_bytes = 1 << 16, .max_event = 1024}));
  auto p = bus_->producer("t", {.producer_id = 9}).value();
  ASSERT_TRUE(p.publish({.payload = "s1"}));
  ASSERT_TRUE(p.publish({.payload = "s2"}));
  const std::vector<Message> batch = {
      {.payload = "dup1", .sequence = 1}, {.payload = "new3"}, {.payload = "dup2", .sequence = 2}, {.payload = "new4"}};
  auto b = p.publish_batch(batch);
  ASSERT_TRUE(b) << b.error().message();
  EXPECT_EQ(b->published, 4u);
  EXPECT_EQ(b->duplicates, 2u);
  auto c = bus_->consumer("t", {.group = "g"}).value();
  std::vector<std::string> got;
  ASSERT_TRUE(c.poll([&](const EventView& e) { got.emplace_back(e.payload_text()); }, 16));
  EXPECT_EQ(got, (std::vector<std::string>{"s1", "s2", "new3", "new4"}));
}

// A restarted idempotent producer learns its last sequence past another
// producer's open claim (live, or dead while heraldd is down): the scan
// stopped at the first uncommitted record, and the restart published every
// event after the claim again (found by an exploratory pass).
TEST_F(ProducerTest, IdempotentRestartLearnsItsSequencePastAnOpenClaim) {
  ASSERT_TRUE(bus_->create_topic("t", {.partitions = 1, .ring_bytes = 1 << 16}));
  auto holder = bus_->producer("t").value();
  auto open = holder.claim(100);
  ASSERT_TRUE(open) << open.error().message();
  {
    auto p = bus_->producer("t", {.producer_id = 7}).value();
    for (std::uint64_t s = 1; s <= 10; ++s) ASSERT_TRUE(p.publish({.payload = "e", .sequence = s}));
  }
  auto again = bus_->producer("t", {.producer_id = 7});
  ASSERT_TRUE(again) << again.error().message();
  EXPECT_EQ(again->last_sequence(), 10u);
  for (std::uint64_t s = 1; s <= 10; ++s) {
    auto r = again->publish({.payload = "e", .sequence = s});
    ASSERT_TRUE(r) << r.error().message();
    EXPECT_TRUE(r->duplicate) << "sequence " << s << " was published twice";
  }
  ASSERT_TRUE(open->commit());
  EXPECT_EQ(bus_->describe_topic("t")->partition_info[0].events, 11u);
}

// A zero-copy claim of a duplicate sequence is refused before anything is
// claimed: it took ring space, counted nowhere (found by a docs pass).
TEST_F(ProducerTest, ADuplicateClaimTakesNoRingSpace) {
  ASSERT_TRUE(bus_->create_topic("t", {.partitions = 1, .ring_bytes = 1 << 16}));
  auto p = bus_->producer("t", {.producer_id = 5}).value();
  auto first = p.publish({.payload = "x", .sequence = 6});
  ASSERT_TRUE(first) << first.error().message();
  const std::uint64_t tail = bus_->describe_topic("t")->partition_info[0].tail;
  auto dup = p.claim(8, {.payload = {}, .sequence = 4});
  ASSERT_FALSE(dup);
  EXPECT_EQ(dup.error().code, Errc::kAlreadyExists) << dup.error().message();
  EXPECT_EQ(bus_->describe_topic("t")->partition_info[0].tail, tail);
  auto next = p.publish({.payload = "y"});
  ASSERT_TRUE(next) << next.error().message();
  EXPECT_EQ(next->position, tail);
}

TEST_F(ProducerTest, OneLiveProducerPerIdempotentId) {
  ASSERT_TRUE(bus_->create_topic("t", {.partitions = 1, .ring_bytes = 1 << 16, .max_event = 1024}));
  auto first = bus_->producer("t", {.producer_id = 100});
  ASSERT_TRUE(first) << first.error().message();
  auto second = bus_->producer("t", {.producer_id = 100});
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().code, Errc::kBusy) << second.error().message();
  EXPECT_NE(second.error().detail.find("producer id 100"), std::string::npos) << second.error().message();
  // Other ids, and id 0 (not idempotent), are not affected.
  EXPECT_TRUE(bus_->producer("t", {.producer_id = 101}));
  EXPECT_TRUE(bus_->producer("t"));
  // Once the first is gone, the id is free, and its successor continues
  // after the last committed sequence.
  ASSERT_TRUE(first->publish({.payload = "a"}));
  first = fail(Errc::kClosed, "gone");
  auto again = bus_->producer("t", {.producer_id = 100});
  ASSERT_TRUE(again) << again.error().message();
  EXPECT_EQ(again->last_sequence(), 1u);
}

TEST_F(ProducerTest, MaxPayloadOfAnEnvelopePublishWouldRefuseIsZero) {
  ASSERT_TRUE(bus_->create_topic("t", {.partitions = 1, .ring_bytes = 1 << 16, .max_event = 4096}));
  auto p = bus_->producer("t").value();
  EXPECT_EQ(p.max_payload(), 4096u - 48u);
  const std::vector<Header> many(kMaxHeaders + 1, Header{"h", "v"});
  EXPECT_EQ(p.max_payload({.headers = many}), 0u);
  EXPECT_EQ(p.max_payload({.key = std::string(kMaxKeyBytes + 1, 'k')}), 0u);
}

}  // namespace
}  // namespace herald
