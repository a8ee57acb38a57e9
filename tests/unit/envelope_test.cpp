// runtime/src/envelope.cpp: the event envelope through the public API. Every
// field survives publish -> poll (zero-copy group read and copying group-less
// read), empty and maximum-size fields included, binary payloads byte for
// byte; ids and times are kept when given and generated when not.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "herald/herald.hpp"
#include "shm/clock.hpp"
#include "shm/record_layout.hpp"
#include "tests/support/bus_fixture.hpp"
#include "tests/support/test_env.hpp"

namespace herald {
namespace {

class EnvelopeTest : public test::BusFixture<> {
 protected:
  void SetUp() override {
    BusFixture::SetUp();
    if (HasFatalFailure()) return;
    ASSERT_TRUE(bus_->create_topic("env", {.partitions = 1, .ring_bytes = 1 << 20, .max_event = 256 << 10}));
  }

  // Every event of the topic, read two ways: by a new group (zero-copy views
  // of the ring) and by a group-less reader (copies). Both must agree.
  std::vector<Event> read_all(const std::string& group) {
    std::vector<Event> zero_copy, copied;
    auto member = bus_->consumer("env", {.group = group, .policy = Policy::kLossless}).value();
    auto reader = bus_->consumer("env", {.start = Offset::earliest()}).value();
    for (auto* c : {&member, &reader}) {
      auto& out = c == &member ? zero_copy : copied;
      for (;;) {
        auto n = c->poll([&](const EventView& e) { out.push_back(e.to_event()); }, 64);
        EXPECT_TRUE(n) << n.error().message();
        if (!n || *n == 0) break;
      }
    }
    EXPECT_EQ(zero_copy.size(), copied.size());
    for (std::size_t i = 0; i < std::min(zero_copy.size(), copied.size()); ++i) {
      EXPECT_EQ(zero_copy[i].id(), copied[i].id());
      EXPECT_EQ(zero_copy[i].position(), copied[i].position());
      EXPECT_TRUE(std::equal(zero_copy[i].payload().begin(), zero_copy[i].payload().end(),
                             copied[i].payload().begin(), copied[i].payload().end()));
    }
    return zero_copy;
  }
};

std::string bytes_0_to_255(std::size_t n) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>(i & 0xff);
  return s;
}

TEST_F(EnvelopeTest, EveryFieldRoundTrips) {
  auto producer = bus_->producer("env", {.source = "svc-default"}).value();
  const Header hs[] = {{"tenant", "acme"}, {"trace", "00-abc-01"}, {"empty", ""}, {"tenant", "second"}};
  const std::string payload = bytes_0_to_255(1000);  // binary: NULs and high bytes
  const EventId given_id{0x0190a1b2c3d47e5full, 0x8a9b0c1d2e3f4a5bull};
  auto r = producer.publish({.key = "customer-42",
                             .type = "OrderPlaced",
                             .payload = payload,
                             .source = "svc-orders",
                             .correlation_id = "corr-1",
                             .causation_id = "cause-7",
                             .content_type = "application/octet-stream",
                             .headers = hs,
                             .id = given_id,
                             .time_ns = 1'234'567'890'123ull});
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->id, given_id);

  auto events = read_all("g");
  ASSERT_EQ(events.size(), 1u);
  const Event& e = events[0];
  EXPECT_EQ(e.key(), "customer-42");
  EXPECT_EQ(e.type(), "OrderPlaced");
  EXPECT_EQ(e.source(), "svc-orders");  // the message's source wins over the producer's default
  EXPECT_EQ(e.correlation_id(), "corr-1");
  EXPECT_EQ(e.causation_id(), "cause-7");
  EXPECT_EQ(e.content_type(), "application/octet-stream");
  EXPECT_EQ(e.id(), given_id);
  EXPECT_EQ(e.time_ns(), 1'234'567'890'123ull);
  EXPECT_EQ(e.payload_text(), payload);
  ASSERT_EQ(e.header_count(), 4u);
  for (std::size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(e.header_at(i).name, hs[i].name) << i;
    EXPECT_EQ(e.header_at(i).value, hs[i].value) << i;
  }
  EXPECT_EQ(e.header("tenant").value_or("?"), "acme");  // the first of that name
  EXPECT_EQ(e.header("empty").value_or("?"), "");
  EXPECT_FALSE(e.header("missing").has_value());
  EXPECT_EQ(e.header_at(99).name, "");  // out of range: an empty header, no crash
  EXPECT_EQ(e.topic(), "env");
  EXPECT_EQ(e.partition(), 0u);
  EXPECT_EQ(e.position(), r->position);
  EXPECT_EQ(e.delivery(), 1u);
  // Copies of an Event are deep: the copy outlives the original.
  Event copy;
  {
    Event tmp = e;
    copy = std::move(tmp);
  }
  EXPECT_EQ(copy.type(), "OrderPlaced");
  EXPECT_EQ(copy.topic(), "env");
  EXPECT_EQ(copy.payload_text(), payload);
}

TEST_F(EnvelopeTest, EmptyFieldsReadAsEmpty) {
  auto producer = bus_->producer("env").value();  // no default source
  ASSERT_TRUE(producer.publish(Message{}));            // nothing at all: a 48-byte header in a 64-byte record
  ASSERT_TRUE(producer.publish({.payload = ""}));
  auto events = read_all("g");
  ASSERT_EQ(events.size(), 2u);
  for (const Event& e : events) {
    EXPECT_EQ(e.key(), "");
    EXPECT_EQ(e.type(), "");
    EXPECT_EQ(e.source(), "");
    EXPECT_EQ(e.correlation_id(), "");
    EXPECT_EQ(e.causation_id(), "");
    EXPECT_EQ(e.content_type(), "");
    EXPECT_EQ(e.header_count(), 0u);
    EXPECT_TRUE(e.payload().empty());
    EXPECT_FALSE(e.id().empty());
    EXPECT_EQ(e.next_position() - e.position(), 64u);
  }
}

TEST_F(EnvelopeTest, MaximumSizeFieldsRoundTrip) {
  auto producer = bus_->producer("env", {.source = std::string(kMaxShortField, 's')}).value();
  const std::string key = bytes_0_to_255(kMaxKeyBytes);
  const std::string type(kMaxShortField, 't');
  const std::string content(kMaxShortField, 'c');
  const std::string corr(kMaxShortField, 'r');
  const std::string cause(kMaxShortField, 'u');
  // kMaxHeaders headers, one with a 255-byte name; together with the short
  // fields the meta section is exactly a user event's limit: 65535 bytes
  // less the 1024 kept for a dead letter's headers (DELIVERY.md).
  std::vector<std::string> names, values;
  for (std::size_t i = 0; i < kMaxHeaders; ++i) {
    names.push_back(i == 0 ? std::string(kMaxHeaderName, 'n') : "h" + std::to_string(i));
    values.push_back(std::string(8, static_cast<char>('a' + i % 26)));
  }
  std::size_t meta = 5 * (2 + kMaxShortField);
  for (std::size_t i = 0; i < kMaxHeaders; ++i) meta += 4 + names[i].size() + values[i].size();
  constexpr std::size_t kUserMeta = 65535 - 1024;
  ASSERT_LT(meta, kUserMeta);
  values.back().append(kUserMeta - meta, 'z');
  std::vector<Header> hs;
  for (std::size_t i = 0; i < kMaxHeaders; ++i) hs.push_back({names[i], values[i]});
  const Message m{.key = key, .type = type, .correlation_id = corr, .causation_id = cause, .content_type = content,
                  .headers = hs};
  const std::string payload = bytes_0_to_255(producer.max_payload(m));
  Message full = m;
  full.payload = payload;
  auto r = producer.publish(full);
  ASSERT_TRUE(r) << r.error().message();

  auto events = read_all("g");
  ASSERT_EQ(events.size(), 1u);
  const Event& e = events[0];
  EXPECT_EQ(e.next_position() - e.position(), producer.max_event()) << "the record fills max_event exactly";
  EXPECT_EQ(e.key(), key);
  EXPECT_EQ(e.type(), type);
  EXPECT_EQ(e.source(), std::string(kMaxShortField, 's'));
  EXPECT_EQ(e.content_type(), content);
  EXPECT_EQ(e.correlation_id(), corr);
  EXPECT_EQ(e.causation_id(), cause);
  ASSERT_EQ(e.header_count(), kMaxHeaders);
  for (std::size_t i = 0; i < kMaxHeaders; ++i) {
    EXPECT_EQ(e.header_at(i).name, names[i]);
    EXPECT_EQ(e.header_at(i).value, values[i]);
  }
  EXPECT_EQ(e.payload_text(), payload);

  // One byte more in the meta section is refused, naming the limit.
  values.back().push_back('z');
  hs.back().value = values.back();
  Message over = m;
  over.headers = hs;
  auto bad = producer.publish(over);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, Errc::kInvalidArgument);
  EXPECT_NE(bad.error().detail.find("64511"), std::string::npos) << bad.error().message();
}

TEST_F(EnvelopeTest, GeneratedIdsAndTimes) {
  auto producer = bus_->producer("env").value();
  const std::uint64_t before = shm::realtime_ns();
  std::vector<EventId> ids;
  for (int i = 0; i < 500; ++i) {
    auto r = producer.publish({.payload = "x"});
    ASSERT_TRUE(r) << r.error().message();
    ids.push_back(r->id);
  }
  const std::uint64_t after = shm::realtime_ns();
  auto events = read_all("g");
  ASSERT_EQ(events.size(), ids.size());
  for (std::size_t i = 0; i < events.size(); ++i) {
    EXPECT_EQ(events[i].id(), ids[i]) << i;  // the id publish returned is the one stored
    EXPECT_EQ((ids[i].hi >> 12) & 0xf, 7u) << "UUIDv7";
    if (i > 0) {
      EXPECT_LT(ids[i - 1], ids[i]) << "ids strictly increase per producer (" << i << ")";
    }
    // Stamped from CLOCK_REALTIME between the two reads around the publishes
    // (an ordering check, not a duration), give or take the event clock's
    // error (shm::EventClock: ~100 ns at worst; 1 ms is far above it).
    constexpr std::uint64_t kClockError = 1'000'000;
    EXPECT_GE(events[i].time_ns() + kClockError, before);
    EXPECT_LE(events[i].time_ns(), after + kClockError);
    EXPECT_EQ(ids[i].hi >> 16, events[i].time_ns() / 1'000'000) << "the id's ms is the event's time";
  }
}

TEST_F(EnvelopeTest, IdsIncreaseAcrossPublishBatchAndClaim) {
  auto producer = bus_->producer("env").value();
  std::vector<EventId> ids;
  auto r = producer.publish({.payload = "single"});
  ASSERT_TRUE(r);
  ids.push_back(r->id);
  std::vector<Message> batch(10, Message{.payload = "batched"});
  // Given times that go backwards do not make generated ids go backwards.
  for (std::size_t i = 0; i < batch.size(); ++i) batch[i].time_ns = 2'000'000'000'000ull - i * 1'000'000'000ull;
  auto b = producer.publish_batch(batch);
  ASSERT_TRUE(b) << b.error().message();
  ASSERT_EQ(b->published, batch.size());
  auto c = producer.claim(4).value();
  std::memcpy(c.payload().data(), "zcpy", 4);
  auto cr = c.commit();
  ASSERT_TRUE(cr) << cr.error().message();
  auto events = read_all("g");
  ASSERT_EQ(events.size(), 12u);
  for (const Event& e : events) ids.push_back(e.id());
  ids.erase(ids.begin() + 1);  // the first publish is in both lists
  ASSERT_EQ(ids.size(), 12u);
  EXPECT_EQ(ids.back(), cr->id);
  for (std::size_t i = 1; i < ids.size(); ++i) EXPECT_LT(ids[i - 1], ids[i]) << i;
  for (std::size_t i = 0; i < batch.size(); ++i) EXPECT_EQ(events[1 + i].time_ns(), batch[i].time_ns);
  EXPECT_EQ(events.back().payload_text(), "zcpy");
}

// An id's millisecond is when the producer made it, whatever event time the
// caller gives: one event timed in 2100 used to pin the millisecond of every
// later generated id of the producer there (found by an exploratory pass).
TEST_F(EnvelopeTest, AGivenEventTimeDoesNotMoveLaterIds) {
  auto producer = bus_->producer("env").value();
  constexpr std::uint64_t k2100 = 4'102'444'800'000'000'000ull;  // 2100-01-01T00:00:00Z
  auto future = producer.publish({.payload = "later", .time_ns = k2100});
  ASSERT_TRUE(future) << future.error().message();
  auto plain = producer.publish({.payload = "now"});
  ASSERT_TRUE(plain) << plain.error().message();
  const std::uint64_t now_ms = shm::realtime_ns() / 1'000'000;
  EXPECT_LT(future->id, plain->id) << "ids still increase per producer";
  EXPECT_LE(plain->id.hi >> 16, now_ms + 1000) << "the id is not from 2100";
  EXPECT_LE(future->id.hi >> 16, now_ms + 1000) << "nor is the id of the event timed in 2100";
  auto events = read_all("g");
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].time_ns(), k2100) << "the event keeps its time";
}

// A view's bytes can change under it once its member lost the partition
// (a handler that outlived max_poll_interval; DELIVERY.md). Whatever the
// header then says, every accessor stays inside the record's size as it
// was delivered: an overwritten header's lengths made payload() read past
// the mapping (SIGBUS; found by an exploratory pass).
TEST(EnvelopeViewTest, AccessorsStayInsideTheRecordWhateverItsHeaderSays) {
  alignas(16) std::byte rec[128] = {};
  auto* h = reinterpret_cast<shm::RecordHeader*>(rec);
  h->size = sizeof rec;
  h->key_len = 3;
  h->payload_len = 5;
  std::memcpy(rec + shm::kRecordHeaderBytes, "keyhello", 8);
  const EventView v = EventView::over(rec, "t", 0, 0, 1, sizeof rec);
  EXPECT_EQ(v.key(), "key");
  EXPECT_EQ(v.payload_text(), "hello");
  // Lengths an overwrite can leave: none reaches outside the 128 bytes.
  h->payload_len = 0xfffffff0u;
  EXPECT_TRUE(v.payload().empty());
  h->payload_len = 5;
  h->key_len = 0xffff;
  EXPECT_TRUE(v.key().empty());
  EXPECT_TRUE(v.payload().empty());
  h->key_len = 0;
  h->meta_len = 0xffff;
  EXPECT_TRUE(v.payload().empty());
  EXPECT_EQ(v.header_count(), 0u);
  EXPECT_TRUE(v.type().empty());
  EXPECT_FALSE(v.header("x"));
  h->size = 0x7fffffffu;  // the header's own size is not trusted either
  EXPECT_EQ(v.to_event().next_position(), sizeof rec);
}

}  // namespace
}  // namespace herald
