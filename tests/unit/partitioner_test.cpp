// runtime/src/partitioner.cpp: Kafka's default partitioner (murmur2), checked
// against the vectors Kafka publishes in its own tests (UtilsTest#testMurmur2,
// DefaultPartitionerTest), and the producer's keyless sticky round-robin.
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "herald/herald.hpp"
#include "runtime/src/partitioner.hpp"
#include "tests/support/bus_fixture.hpp"
#include "tests/support/test_env.hpp"

namespace herald {
namespace {

TEST(PartitionerTest, Murmur2MatchesKafkaVectors) {
  struct Vector {
    std::string key;
    std::int32_t hash;
  };
  const std::vector<Vector> vectors = {
      {"21", -973932308},
      {"foobar", -790332482},
      {"a-little-bit-long-string", -985981536},
      {"a-little-bit-longer-string", -1486304829},
      {"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971},
      {std::string{'a', 'b', 'c'}, 479470107},
  };
  for (const auto& v : vectors) EXPECT_EQ(detail::kafka_murmur2(v.key), v.hash) << "key '" << v.key << "'";
}

TEST(PartitionerTest, KeyMapsToKafkaPartition) {
  // DefaultPartitionerTest: "foobar" over 50 partitions is 16; over 10, 6.
  EXPECT_EQ(detail::partition_for_key("foobar", 50), 16u);
  EXPECT_EQ(detail::partition_for_key("foobar", 10), 6u);
  // Every partition index is in range and stable across calls.
  for (std::uint32_t n : {1u, 3u, 4u, 7u, 256u}) {
    for (int i = 0; i < 100; ++i) {
      const std::string key = "entity-" + std::to_string(i);
      const std::uint32_t p = detail::partition_for_key(key, n);
      EXPECT_LT(p, n);
      EXPECT_EQ(p, detail::partition_for_key(key, n));
    }
  }
}

class PartitionerBusTest : public test::BusFixture<> {};

TEST_F(PartitionerBusTest, ProducerPartitionForMatchesKafka) {
  ASSERT_TRUE(bus_->create_topic("fifty", {.partitions = 50, .ring_bytes = 4096, .max_event = 1024}));
  ASSERT_TRUE(bus_->create_topic("ten", {.partitions = 10, .ring_bytes = 4096, .max_event = 1024}));
  auto fifty = bus_->producer("fifty").value();
  auto ten = bus_->producer("ten").value();
  EXPECT_EQ(fifty.partition_for("foobar"), 16u);
  EXPECT_EQ(ten.partition_for("foobar"), 6u);
  // publish() puts a keyed event where partition_for says.
  auto r = fifty.publish({.key = "foobar", .payload = "x"});
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->partition, 16u);
  r = ten.publish({.key = "foobar", .payload = "x"});
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->partition, 6u);
}

TEST_F(PartitionerBusTest, KeylessEventsStickThenRoundRobinOverEveryPartition) {
  constexpr std::uint32_t kParts = 4;
  ASSERT_TRUE(bus_->create_topic("rr", {.partitions = kParts, .ring_bytes = 1 << 20, .max_event = 1024}));
  auto producer = bus_->producer("rr").value();
  std::map<std::uint32_t, int> per_partition;
  std::uint32_t switches = 0;
  std::uint32_t last = UINT32_MAX;
  constexpr int kEvents = 4096;
  for (int i = 0; i < kEvents; ++i) {
    auto r = producer.publish({.payload = "keyless"});
    ASSERT_TRUE(r) << r.error().message();
    ++per_partition[r->partition];
    if (last != UINT32_MAX && r->partition != last) {
      // Round-robin: the next partition, wrapping.
      EXPECT_EQ(r->partition, (last + 1) % kParts) << "event " << i;
      ++switches;
    }
    last = r->partition;
  }
  // Spread over every partition...
  ASSERT_EQ(per_partition.size(), kParts);
  for (const auto& [p, n] : per_partition) EXPECT_GT(n, kEvents / 8) << "partition " << p;
  // ...but sticky: runs of many events per partition, not one each.
  EXPECT_GE(switches, kParts);
  EXPECT_LT(switches, static_cast<std::uint32_t>(kEvents / 16));
}

}  // namespace
}  // namespace herald
