// Layout invariants of the log, state and registry segments: sizes, offsets,
// alignment, and the geometry every attach recomputes. These are the facts
// two processes built at different times must agree on.
#include <gtest/gtest.h>

#include <cstddef>
#include <cstring>
#include <random>

#include "shm/log_layout.hpp"
#include "shm/record_layout.hpp"
#include "shm/registry_layout.hpp"
#include "shm/segment_layout.hpp"
#include "shm/state_layout.hpp"
#include "shm/topic_map.hpp"
#include "tests/support/test_env.hpp"

namespace herald::shm {
namespace {

TEST(LogLayoutTest, FixedSizesAndOffsets) {
  EXPECT_EQ(sizeof(SegmentHeaderLayout), 64u);
  EXPECT_EQ(offsetof(SegmentHeaderLayout, magic), 0u);
  EXPECT_EQ(offsetof(SegmentHeaderLayout, layout_version), 8u);
  EXPECT_EQ(offsetof(SegmentHeaderLayout, kind), 12u);
  EXPECT_EQ(sizeof(RecordHeader), 48u);
  EXPECT_EQ(offsetof(RecordHeader, word), 0u);  // the commit word is the first 8 bytes of a record
  EXPECT_EQ(sizeof(PartitionLayout), 512u);
  EXPECT_EQ(alignof(PartitionLayout), 128u);
  // tail, producer_waiters and the repair stats each sit on their own 128-byte block.
  EXPECT_EQ(offsetof(PartitionLayout, tail) % 128, 0u);
  EXPECT_EQ(offsetof(PartitionLayout, producer_waiters) % 128, 0u);
  EXPECT_EQ(offsetof(PartitionLayout, aborted_records) % 128, 0u);
  EXPECT_EQ(sizeof(ClaimSlotLayout), 64u);
  EXPECT_EQ(sizeof(ProducerSlotLayout), 128u);
  EXPECT_EQ(sizeof(ReaderWakeLayout), 64u);
  EXPECT_LE(sizeof(LogHeaderLayout), kPageBytes);
  EXPECT_LE(sizeof(StateHeaderLayout), kPageBytes);
  EXPECT_LE(sizeof(RegistryHeaderLayout), kPageBytes);
  EXPECT_EQ(sizeof(GroupLayout), 256u);
  EXPECT_EQ(sizeof(GroupPartitionLayout), 256u);
  EXPECT_EQ(offsetof(PartitionStateLayout, gate_seq), 128u);
  EXPECT_EQ(sizeof(TopicEntryLayout), 320u);
  // Magic values spell their names in little-endian bytes.
  EXPECT_EQ(std::memcmp(&kMagicLog, "HERALDLG", 8), 0);
  EXPECT_EQ(std::memcmp(&kMagicState, "HERALDST", 8), 0);
  EXPECT_EQ(std::memcmp(&kMagicRegistry, "HERALDRG", 8), 0);
}

TEST(LogLayoutTest, RecordsRoundUpToSixteenAndClaimsToSixtyFour) {
  EXPECT_EQ(record_size(0, 0, 0), 48u);
  EXPECT_EQ(record_size(0, 0, 1), 64u);
  EXPECT_EQ(record_size(0, 0, 64), 112u);  // a 64 B payload packed in a batch
  EXPECT_EQ(claim_bytes(record_size(0, 0, 64)), 128u);  // the same event published alone
  EXPECT_EQ(record_size(0, 0, 17), 80u);
  EXPECT_EQ(record_size(3, 5, 8), 64u);
  EXPECT_EQ(record_size(100, 200, 1000), align_up(48 + 1300, 16));
  for (std::uint64_t n = 0; n < 5000; ++n) {
    const std::uint64_t s = record_size(0, 0, n);
    ASSERT_EQ(s % kRecordAlign, 0u);
    ASSERT_GE(s, 48 + n);
    ASSERT_LT(s, 48 + n + kRecordAlign);
    const std::uint64_t c = claim_bytes(s);
    ASSERT_EQ(c % kClaimAlign, 0u);
    ASSERT_GE(c, s);
    ASSERT_LT(c, s + kClaimAlign);
  }
}

TEST(LogLayoutTest, AlignHelpers) {
  EXPECT_EQ(align_up(0, 64), 0u);
  EXPECT_EQ(align_up(1, 64), 64u);
  EXPECT_EQ(align_up(64, 64), 64u);
  EXPECT_EQ(align_up(4097, 4096), 8192u);
  EXPECT_FALSE(is_pow2(0));
  EXPECT_TRUE(is_pow2(1));
  EXPECT_TRUE(is_pow2(4096));
  EXPECT_FALSE(is_pow2(4096 + 64));
  EXPECT_TRUE(is_pow2(1ull << 63));
}

// Every geometry a valid parameter set can produce: regions in order, each
// aligned, none overlapping, rings page aligned and back to back, and the
// whole segment a page multiple (map_twice needs page-aligned rings).
void expect_geometry_invariants(const LogParams& p) {
  SCOPED_TRACE("partitions=" + std::to_string(p.partitions) + " ring=" + std::to_string(p.ring_bytes) +
               " max_event=" + std::to_string(p.max_event));
  const LogGeometry g = LogGeometry::compute(p);
  EXPECT_EQ(g.partitions_off, kPageBytes);
  EXPECT_GE(g.wake_off, g.partitions_off + std::uint64_t{p.partitions} * sizeof(PartitionLayout));
  EXPECT_GE(g.producers_off, g.wake_off + std::uint64_t{g.reader_slots} * sizeof(ReaderWakeLayout));
  EXPECT_GE(g.claims_off, g.producers_off + std::uint64_t{g.producer_slots} * sizeof(ProducerSlotLayout));
  EXPECT_GE(g.counters_off,
            g.claims_off + std::uint64_t{p.partitions} * g.producer_slots * sizeof(ClaimSlotLayout));
  EXPECT_GE(g.index_off,
            g.counters_off + std::uint64_t{p.partitions} * g.producer_slots * sizeof(ProducerCountersLayout));
  EXPECT_GE(g.rings_off, g.index_off + std::uint64_t{p.partitions} * (p.ring_bytes / kIndexPageBytes) * 8);
  for (std::uint64_t off : {g.partitions_off, g.wake_off, g.producers_off, g.claims_off, g.counters_off, g.index_off})
    EXPECT_EQ(off % 128, 0u) << off;
  EXPECT_EQ(g.rings_off % kPageBytes, 0u);
  EXPECT_EQ(g.total_bytes % kPageBytes, 0u);
  EXPECT_EQ(g.total_bytes, g.rings_off + std::uint64_t{p.partitions} * p.ring_bytes);
  EXPECT_TRUE(is_pow2(g.index_entries_per_ring()));
  for (std::uint32_t i = 0; i < p.partitions; ++i) {
    EXPECT_EQ(g.ring_off(i) % kPageBytes, 0u);
    EXPECT_EQ(g.ring_off(i), g.rings_off + i * p.ring_bytes);
    EXPECT_LE(g.ring_off(i) + p.ring_bytes, g.total_bytes);
    EXPECT_EQ(g.partition_index_off(i) % 8, 0u);
    EXPECT_LE(g.partition_index_off(i) + g.index_entries_per_ring() * 8, g.rings_off);
    EXPECT_EQ(g.partition_claims_off(i) % 64, 0u);
    EXPECT_LE(g.partition_claims_off(i) + g.producer_slots * sizeof(ClaimSlotLayout), g.counters_off);
  }
}

TEST(LogLayoutTest, GeometryInvariantsHoldForEdgeParameters) {
  expect_geometry_invariants({1, kMinRingBytes, kMinMaxEvent, 0});
  expect_geometry_invariants({1, kMinRingBytes, kMinRingBytes / 4, 0});
  expect_geometry_invariants({4, 16ull << 20, 1ull << 20, 0});
  expect_geometry_invariants({kMaxPartitions, kMinRingBytes, kMinMaxEvent, 0});
  expect_geometry_invariants({3, 1ull << 16, 4096, kLogSingleProducer});
  expect_geometry_invariants({kMaxPartitions, kMaxRingBytes, kMaxRingBytes / 4, 0});
}

TEST(LogLayoutTest, GeometryInvariantsHoldForRandomValidParameters) {
  std::mt19937_64 rng(test::seed("geometry"));
  for (int i = 0; i < 2000; ++i) {
    LogParams p;
    p.partitions = 1 + static_cast<std::uint32_t>(rng() % kMaxPartitions);
    p.ring_bytes = kMinRingBytes << (rng() % 21);  // 4 KiB .. 4 GiB
    const std::uint64_t max_units = p.ring_bytes / 4 / 64;
    p.max_event = 64 * (2 + rng() % (max_units - 1));
    ASSERT_TRUE(validate_log_params(p)) << validate_log_params(p).error().message();
    expect_geometry_invariants(p);
    if (HasFailure()) return;
  }
}

TEST(LogLayoutTest, StateGeometryInvariants) {
  for (std::uint32_t parts : {1u, 2u, 7u, 64u, kMaxPartitions}) {
    SCOPED_TRACE(parts);
    const StateGeometry g = StateGeometry::compute(parts);
    EXPECT_EQ(g.partitions_off, kPageBytes);
    EXPECT_GE(g.groups_off, g.partitions_off + parts * sizeof(PartitionStateLayout));
    EXPECT_GE(g.cursors_off, g.groups_off + g.group_slots * sizeof(GroupLayout));
    EXPECT_GE(g.readers_off, g.cursors_off + std::uint64_t{g.group_slots} * parts * sizeof(GroupPartitionLayout));
    EXPECT_GE(g.total_bytes, g.readers_off + g.reader_slots * sizeof(ReaderLayout));
    EXPECT_EQ(g.total_bytes % kPageBytes, 0u);
    EXPECT_EQ(g.groups_off % 128, 0u);
    EXPECT_EQ(g.cursors_off % 128, 0u);
    EXPECT_EQ(g.readers_off % 128, 0u);
    // The last (group, partition) slot ends before the reader table.
    EXPECT_LE(g.group_partition_off(g.group_slots - 1, parts - 1) + sizeof(GroupPartitionLayout), g.readers_off);
    EXPECT_EQ(g.group_partition_off(1, 0) - g.group_partition_off(0, 0), parts * sizeof(GroupPartitionLayout));
  }
  // One bit per reader slot in the 64-bit waiters mask.
  EXPECT_LE(kReaderSlots, 64u);
}

TEST(LogLayoutTest, RegistryGeometry) {
  const RegistryGeometry g;
  EXPECT_EQ(g.topics_off, kPageBytes);
  EXPECT_EQ(g.total_bytes, g.topics_off + std::uint64_t{g.topic_slots} * sizeof(TopicEntryLayout));
  EXPECT_EQ(g.total_bytes % kPageBytes, 0u);
  EXPECT_GE(kTopicNameCapacity, 100u + 5u + 100u);  // <topic>.dlq.<group>
}

}  // namespace
}  // namespace herald::shm
