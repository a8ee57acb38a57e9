// Basic smoke of the shm layer: create a topic's segments, claim, commit,
// read back, wrap the ring, close.
#include <gtest/gtest.h>

#include <cstring>

#include "shm/clock.hpp"
#include "shm/names.hpp"
#include "shm/ring_log.hpp"
#include "shm/slots.hpp"
#include "shm/topic_map.hpp"
#include "tests/support/test_env.hpp"

namespace herald::shm {
namespace {

class SegmentLayoutTest : public ::testing::Test {
 protected:
  test::BusGuard guard_;
};

TEST_F(SegmentLayoutTest, CreateAttachPublishReadAcrossWrap) {
  LogParams params{.partitions = 2, .ring_bytes = 64 * 1024, .max_event = 4096, .flags = 0};
  auto created = TopicMap::create(guard_.bus(), "orders", 7, params, {});
  ASSERT_TRUE(created) << created.error().message();
  auto prod_map = TopicMap::attach(guard_.bus(), "orders", 7, Access::kReadWrite, Access::kReadOnly);
  ASSERT_TRUE(prod_map) << prod_map.error().message();
  auto cons_map = TopicMap::attach(guard_.bus(), "orders", 7, Access::kReadOnly, Access::kReadWrite);
  ASSERT_TRUE(cons_map) << cons_map.error().message();

  auto slot = acquire_producer_slot(*prod_map, 0);
  ASSERT_TRUE(slot) << slot.error().message();
  RingLogWriter w(&*prod_map, *slot, false);
  const PartitionView& rv = cons_map->partition(1);
  std::uint64_t q = 0;
  std::vector<std::byte> buf(params.max_event);
  // 3 laps of 192-byte records (not a divisor of the ring: records cross the end).
  for (std::uint64_t i = 0; i < 3 * params.ring_bytes / 192; ++i) {
    std::uint64_t pos = 0;
    ASSERT_EQ(w.try_claim(1, 192, &pos), Status::kOk) << i;
    auto* h = prod_map->partition(1).header_at(pos);
    h->size = 192;
    h->payload_len = 8;
    h->key_len = 0;
    h->meta_len = 0;
    h->flags = 0;
    std::memcpy(reinterpret_cast<std::byte*>(h) + kRecordHeaderBytes, &i, 8);
    w.commit_record(1, pos, 192);
    w.finish(1);
    const RecordHeader* rh = nullptr;
    ASSERT_EQ(read_gated(rv, q, &rh), Status::kOk) << "at " << q;
    std::uint64_t got = 0;
    std::memcpy(&got, reinterpret_cast<const std::byte*>(rh) + kRecordHeaderBytes, 8);
    ASSERT_EQ(got, i);
    std::uint32_t n = 0;
    ASSERT_EQ(read_copy(rv, q, buf.data(), &n), Status::kOk);
    ASSERT_EQ(n, 192u);
    q += rh->size;
  }
  const RecordHeader* rh = nullptr;
  EXPECT_EQ(read_gated(rv, q, &rh), Status::kEmpty);
  EXPECT_GT(beginning(rv), 0u);
  EXPECT_EQ(check_position(rv, beginning(rv)), Status::kOk);
  release_producer_slot(*prod_map, *slot);
  created->close();
  EXPECT_EQ(read_gated(rv, q, &rh), Status::kClosed);
  std::uint64_t pos = 0;
  auto slot2 = acquire_producer_slot(*prod_map, 0);
  ASSERT_TRUE(slot2);
  RingLogWriter w2(&*prod_map, *slot2, false);
  EXPECT_EQ(w2.try_claim(0, 64, &pos), Status::kClosed);
  release_producer_slot(*prod_map, *slot2);
}

}  // namespace
}  // namespace herald::shm
