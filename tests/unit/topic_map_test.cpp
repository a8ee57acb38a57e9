// Creating and attaching a topic's two segments, and every way attach can
// refuse a segment: each a clear error that names the problem, never a
// crash, and never a mapping of something it did not validate.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "shm/mapping.hpp"
#include "shm/names.hpp"
#include "shm/registry.hpp"
#include "shm/topic_map.hpp"
#include "tests/support/shm_records.hpp"
#include "tests/support/test_env.hpp"

namespace herald::shm {
namespace {

constexpr std::uint64_t kInc = 0x51;
const LogParams kParams{.partitions = 3, .ring_bytes = 16 * 1024, .max_event = 1024, .flags = 0};

class TopicMapTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto t = TopicMap::create(guard_.bus(), "orders", kInc, kParams, {});
    ASSERT_TRUE(t) << t.error().message();
    topic_ = std::move(t).value();
  }
  Result<TopicMap> attach(Access log = Access::kReadOnly, Access state = Access::kReadWrite) {
    return TopicMap::attach(guard_.bus(), "orders", kInc, log, state);
  }
  // Expects attach to fail with `code` and a message holding `says`.
  void expect_attach_fails(Errc code, const std::string& says) {
    for (Access log : {Access::kReadOnly, Access::kReadWrite}) {
      auto r = attach(log, Access::kReadWrite);
      ASSERT_FALSE(r) << "attach accepted a segment it should refuse (" << says << ")";
      EXPECT_EQ(r.error().code, code) << r.error().message();
      EXPECT_NE(r.error().detail.find(says), std::string::npos) << r.error().message();
      EXPECT_NE(r.error().detail.find("orders"), std::string::npos) << "names the topic: " << r.error().message();
    }
  }
  std::string log_name() const { return log_segment_name(guard_.bus(), "orders", kInc); }
  std::string state_name() const { return state_segment_name(guard_.bus(), "orders", kInc); }

  test::BusGuard guard_;
  TopicMap topic_;
};

TEST_F(TopicMapTest, CreateInitialisesEveryHeaderField) {
  const LogHeaderLayout* h = topic_.log_header();
  EXPECT_EQ(h->segment.magic, kMagicLog);
  EXPECT_EQ(h->segment.layout_version.load(), kLayoutVersion);
  EXPECT_EQ(h->segment.kind, static_cast<std::uint32_t>(SegmentKind::kLog));
  EXPECT_EQ(h->segment.segment_bytes, topic_.geometry().total_bytes);
  EXPECT_EQ(h->segment.incarnation, kInc);
  EXPECT_EQ(h->segment.creator_pid, static_cast<std::uint32_t>(::getpid()));
  EXPECT_EQ(h->partitions, 3u);
  EXPECT_EQ(h->ring_bytes, kParams.ring_bytes);
  EXPECT_EQ(h->max_event, kParams.max_event);
  const StateHeaderLayout* sh = topic_.state_header();
  EXPECT_EQ(sh->segment.magic, kMagicState);
  EXPECT_EQ(sh->partitions, 3u);
  EXPECT_EQ(sh->segment.segment_bytes, topic_.state_geometry().total_bytes);
  // Salts differ per partition and never have zero low bits; leases start free.
  for (std::uint32_t p = 0; p < 3; ++p) {
    EXPECT_NE(topic_.partition(p).salt & (kRecordAlign - 1), 0u);
    EXPECT_EQ(topic_.partition(p).part->tail.load(), 0u);
    EXPECT_EQ(topic_.group_partition(0, p)->lease.load(), kNoLease);
    EXPECT_EQ(topic_.group_partition(kGroupSlots - 1, p)->lease.load(), kNoLease);
  }
  EXPECT_NE(topic_.partition(0).salt, topic_.partition(1).salt);
}

TEST_F(TopicMapTest, RingsArePageAlignedAndDoubleMapped) {
  for (std::uint32_t p = 0; p < 3; ++p) {
    const PartitionView& v = topic_.partition(p);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(v.ring) % kPageBytes, 0u);
    EXPECT_EQ(v.mask, v.ring_bytes - 1);
    EXPECT_EQ(v.index_mask + 1, v.ring_bytes / kIndexPageBytes);
    // A byte written through the first copy is seen through the second, and back.
    v.ring[5] = std::byte{0xab};
    EXPECT_EQ(v.ring[v.ring_bytes + 5], std::byte{0xab});
    v.ring[2 * v.ring_bytes - 1] = std::byte{0xcd};
    EXPECT_EQ(v.ring[v.ring_bytes - 1], std::byte{0xcd});
  }
  // Different partitions do not alias.
  topic_.partition(0).ring[100] = std::byte{1};
  topic_.partition(1).ring[100] = std::byte{2};
  EXPECT_EQ(topic_.partition(0).ring[100], std::byte{1});
}

// prefault() maps one partition's ring into this process's page tables (the
// whole first copy, the second as far as max_event), once; nothing else.
TEST_F(TopicMapTest, PrefaultMapsOnePartitionsRing) {
  auto consumer = attach(Access::kReadOnly, Access::kReadWrite);
  ASSERT_TRUE(consumer) << consumer.error().message();
  const PartitionView& v1 = consumer->partition(1);
  const PartitionView& v2 = consumer->partition(2);
  ASSERT_EQ(test::rss_kb(v1.ring), 0) << "a fresh attach already has ring pages mapped";
  consumer->prefault(1);
  consumer->prefault(1);  // once is enough; a repeat is a no-op
  EXPECT_EQ(test::rss_kb(v1.ring), static_cast<long>(kParams.ring_bytes / 1024));
  // The second copy: at least the page a 1024-byte record can spill into
  // (the kernel's fault-around may map more of it, never beyond the copy).
  EXPECT_GE(test::rss_kb(v1.ring + v1.ring_bytes), static_cast<long>(kPageBytes / 1024));
  EXPECT_LE(test::rss_kb(v1.ring + v1.ring_bytes), static_cast<long>(kParams.ring_bytes / 1024));
  EXPECT_EQ(test::rss_kb(v2.ring), 0);
  consumer->prefault(99);  // no such partition: ignored
}

// fork() does not copy a shared mapping's page-table entries, so a child
// that inherits a prefaulted TopicMap must populate its own: prefault()
// there is not the no-op a repeat in the parent is.
TEST_F(TopicMapTest, PrefaultInAForkedChildPopulatesTheChildsTables) {
  auto consumer = attach(Access::kReadOnly, Access::kReadWrite);
  ASSERT_TRUE(consumer) << consumer.error().message();
  const PartitionView& v = consumer->partition(1);
  consumer->prefault(1);
  const long ring_kb = static_cast<long>(kParams.ring_bytes / 1024);
  ASSERT_EQ(test::rss_kb(v.ring), ring_kb);
  const pid_t kid = ::fork();
  ASSERT_GE(kid, 0) << std::strerror(errno);
  if (kid == 0) {
    // Exit codes: 0 populated; 1 not populated after prefault().
    consumer->prefault(1);
    ::_exit(test::rss_kb(v.ring) == ring_kb ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(kid, &status, 0), kid);
  ASSERT_TRUE(WIFEXITED(status)) << "child status " << status;
  EXPECT_EQ(WEXITSTATUS(status), 0) << "the child's prefault() left its ring pages unmapped";
  EXPECT_EQ(test::rss_kb(v.ring), ring_kb);  // the parent's are untouched
}

TEST_F(TopicMapTest, AttachSeesWhatTheCreatorWrote) {
  auto consumer = attach(Access::kReadOnly, Access::kReadWrite);
  ASSERT_TRUE(consumer) << consumer.error().message();
  EXPECT_EQ(consumer->log_access(), Access::kReadOnly);
  EXPECT_EQ(consumer->geometry().total_bytes, topic_.geometry().total_bytes);
  for (std::uint32_t p = 0; p < 3; ++p) {
    EXPECT_EQ(consumer->partition(p).salt, topic_.partition(p).salt);
    topic_.partition(p).ring[64 * p] = std::byte{0x5a};
    EXPECT_EQ(consumer->partition(p).ring[64 * p + consumer->partition(p).ring_bytes], std::byte{0x5a});
  }
  auto producer = attach(Access::kReadWrite, Access::kReadOnly);
  ASSERT_TRUE(producer) << producer.error().message();
  EXPECT_EQ(producer->state_access(), Access::kReadOnly);
}

TEST_F(TopicMapTest, CreateRefusesAnExistingTopic) {
  auto again = TopicMap::create(guard_.bus(), "orders", kInc, kParams, {});
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, Errc::kAlreadyExists) << again.error().message();
  // The failed create did not remove the first one's segments.
  EXPECT_TRUE(attach());
}

TEST_F(TopicMapTest, AttachToAMissingTopicIsNotFound) {
  auto r = TopicMap::attach(guard_.bus(), "nope", kInc, Access::kReadOnly, Access::kReadWrite);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kNotFound) << r.error().message();
  // Another incarnation of the same topic is another pair of segments.
  auto other = TopicMap::attach(guard_.bus(), "orders", kInc + 1, Access::kReadOnly, Access::kReadWrite);
  ASSERT_FALSE(other);
  EXPECT_EQ(other.error().code, Errc::kNotFound);
}

TEST_F(TopicMapTest, RefusesWrongMagicNamingBoth) {
  topic_.log_header()->segment.magic = 0x1122334455667788ull;
  expect_attach_fails(Errc::kCorrupt, "magic 0x1122334455667788, expected 0x474c444c41524548");
}

TEST_F(TopicMapTest, RefusesAStateSegmentWithTheLogMagic) {
  topic_.state_header()->segment.magic = kMagicLog;
  expect_attach_fails(Errc::kCorrupt, "state segment has magic");
}

TEST_F(TopicMapTest, RefusesAnotherLayoutVersionNamingBoth) {
  topic_.log_header()->segment.layout_version.store(kLayoutVersion + 1);
  expect_attach_fails(Errc::kVersionMismatch,
                      "layout version " + std::to_string(kLayoutVersion + 1) + ", this build reads version " +
                          std::to_string(kLayoutVersion));
  topic_.log_header()->segment.layout_version.store(kLayoutVersion);
  topic_.state_header()->segment.layout_version.store(0xffffffffu);
  expect_attach_fails(Errc::kVersionMismatch, "state segment has layout version 4294967295");
}

TEST_F(TopicMapTest, VersionZeroIsNotReadyAndRetryable) {
  topic_.log_header()->segment.layout_version.store(0);
  expect_attach_fails(Errc::kNotReady, "still being created");
  EXPECT_TRUE(is_retryable(Errc::kNotReady));
  topic_.log_header()->segment.layout_version.store(kLayoutVersion);
  topic_.state_header()->segment.layout_version.store(0);
  expect_attach_fails(Errc::kNotReady, "state segment is still being created");
  topic_.state_header()->segment.layout_version.store(kLayoutVersion);
  EXPECT_TRUE(attach());  // and once published, attach succeeds
}

TEST_F(TopicMapTest, RefusesWrongKindAndIncarnation) {
  topic_.log_header()->segment.kind = static_cast<std::uint32_t>(SegmentKind::kState);
  expect_attach_fails(Errc::kCorrupt, "log segment has kind 2");
  topic_.log_header()->segment.kind = static_cast<std::uint32_t>(SegmentKind::kLog);
  topic_.log_header()->segment.incarnation = kInc + 1;
  expect_attach_fails(Errc::kCorrupt, "incarnation " + std::to_string(kInc + 1) + ", expected " + std::to_string(kInc));
}

TEST_F(TopicMapTest, RefusesARecordedSizeThatDisagreesWithTheMapping) {
  topic_.log_header()->segment.segment_bytes += kPageBytes;
  expect_attach_fails(Errc::kCorrupt, "(truncated or resized)");
}

TEST_F(TopicMapTest, RefusesBadParameters) {
  LogHeaderLayout* h = topic_.log_header();
  h->ring_bytes = 12 * 1024;  // not a power of two
  expect_attach_fails(Errc::kCorrupt, "ring_bytes=12288 must be a power of two");
  h->ring_bytes = 0;
  expect_attach_fails(Errc::kCorrupt, "ring_bytes=0");
  h->ring_bytes = kParams.ring_bytes;
  h->max_event = kParams.ring_bytes / 2;
  expect_attach_fails(Errc::kCorrupt, "max_event=8192 > ring_bytes/4=4096");
  h->max_event = 1000;
  expect_attach_fails(Errc::kCorrupt, "max_event=1000 must be a multiple of 64");
  h->max_event = kParams.max_event;
  h->partitions = 0;
  expect_attach_fails(Errc::kCorrupt, "partitions=0 is outside 1..256");
  h->partitions = 100000;
  expect_attach_fails(Errc::kCorrupt, "partitions=100000");
  h->partitions = 3;
  h->flags = 0x80;
  expect_attach_fails(Errc::kCorrupt, "unknown log flags 128");
  h->flags = 0;
  h->producer_slots = 65;
  expect_attach_fails(Errc::kCorrupt, "65 producer and 64 reader slots");
  h->producer_slots = kProducerSlots;
  EXPECT_TRUE(attach());
}

TEST_F(TopicMapTest, RefusesParametersThatNeedAnotherSize) {
  // Consistent offsets for 2 partitions, but the segment was made for 3.
  LogHeaderLayout* h = topic_.log_header();
  const LogGeometry g2 = LogGeometry::compute({2, kParams.ring_bytes, kParams.max_event, 0});
  h->partitions = 2;
  h->wake_off = g2.wake_off;
  h->producers_off = g2.producers_off;
  h->claims_off = g2.claims_off;
  h->counters_off = g2.counters_off;
  h->index_off = g2.index_off;
  h->rings_off = g2.rings_off;
  expect_attach_fails(Errc::kCorrupt, "its parameters need " + std::to_string(g2.total_bytes));
}

TEST_F(TopicMapTest, RefusesInconsistentOffsets) {
  LogHeaderLayout* h = topic_.log_header();
  for (std::uint64_t LogHeaderLayout::*field :
       {&LogHeaderLayout::partitions_off, &LogHeaderLayout::wake_off, &LogHeaderLayout::producers_off,
        &LogHeaderLayout::claims_off, &LogHeaderLayout::counters_off, &LogHeaderLayout::index_off,
        &LogHeaderLayout::rings_off}) {
    const std::uint64_t good = h->*field;
    for (std::uint64_t bad : {good + 64, good - 128, std::uint64_t{0}, ~std::uint64_t{0}}) {
      h->*field = bad;
      expect_attach_fails(Errc::kCorrupt, "region offsets disagree");
    }
    h->*field = good;
  }
  auto* parts = reinterpret_cast<PartitionLayout*>(reinterpret_cast<std::byte*>(h) + topic_.geometry().partitions_off);
  parts[2].ring_off += kPageBytes;
  expect_attach_fails(Errc::kCorrupt, "partition 2 offsets disagree");
  parts[2].ring_off -= kPageBytes;
  parts[1].claims_off = 0;
  expect_attach_fails(Errc::kCorrupt, "partition 1 offsets disagree");
  parts[1].claims_off = topic_.geometry().partition_claims_off(1);
  parts[0].index_off = 1;
  expect_attach_fails(Errc::kCorrupt, "partition 0 offsets disagree");
  parts[0].index_off = topic_.geometry().partition_index_off(0);

  StateHeaderLayout* sh = topic_.state_header();
  sh->cursors_off += 128;
  expect_attach_fails(Errc::kCorrupt, "state segment region offsets disagree");
  sh->cursors_off -= 128;
  sh->partitions = 4;
  expect_attach_fails(Errc::kCorrupt, "state segment has 4 partitions, the log has 3");
  sh->partitions = 3;
  EXPECT_TRUE(attach());
}

TEST_F(TopicMapTest, RefusesASaltWithZeroLowBits) {
  auto* parts = reinterpret_cast<PartitionLayout*>(reinterpret_cast<std::byte*>(topic_.log_header()) +
                                                   topic_.geometry().partitions_off);
  const std::uint64_t good = parts[1].salt;
  // Positions are 16-byte aligned: the salt's low 4 bits must not all be 0.
  for (std::uint64_t bad : {std::uint64_t{0}, std::uint64_t{16}, std::uint64_t{32}, std::uint64_t{64},
                            good & ~(kRecordAlign - 1)}) {
    parts[1].salt = bad;
    expect_attach_fails(Errc::kCorrupt, "partition 1 has a salt with zero low bits");
  }
  parts[1].salt = good;
}

// Copies a segment's first `keep` bytes into a new object of the same name
// (the original is unlinked: mappings of it stay valid), as a crash in the
// middle of ftruncate or a careless `truncate -s` would leave it.
void replace_with_truncated_copy(const Segment& seg, const std::string& name, std::uint64_t keep) {
  ASSERT_TRUE(Segment::remove(name));
  const int fd = ::shm_open(("/" + name).c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  ASSERT_EQ(::ftruncate(fd, static_cast<off_t>(keep)), 0);
  std::uint64_t done = 0;
  while (done < keep) {
    const ssize_t n = ::pwrite(fd, seg.data() + done, keep - done, static_cast<off_t>(done));
    ASSERT_GT(n, 0);
    done += static_cast<std::uint64_t>(n);
  }
  ::close(fd);
}

TEST_F(TopicMapTest, RefusesATruncatedLogSegment) {
  auto log = Segment::open(log_name(), Access::kReadOnly);
  ASSERT_TRUE(log);
  for (std::uint64_t keep : {log->size() - kPageBytes, log->size() / 2, 2 * kPageBytes, kPageBytes}) {
    SCOPED_TRACE(keep);
    replace_with_truncated_copy(*log, log_name(), keep);
    expect_attach_fails(Errc::kCorrupt, "but is " + std::to_string(keep) + " bytes (truncated or resized)");
  }
  for (std::uint64_t keep : {kPageBytes - 8, std::uint64_t{64}, std::uint64_t{0}}) {
    SCOPED_TRACE(keep);
    replace_with_truncated_copy(*log, log_name(), keep);
    expect_attach_fails(Errc::kCorrupt, "smaller than its header page (truncated?)");
  }
}

TEST_F(TopicMapTest, RefusesATruncatedStateSegment) {
  auto state = Segment::open(state_name(), Access::kReadOnly);
  ASSERT_TRUE(state);
  replace_with_truncated_copy(*state, state_name(), state->size() - kPageBytes);
  expect_attach_fails(Errc::kCorrupt, "state segment was made with");
  replace_with_truncated_copy(*state, state_name(), 100);
  expect_attach_fails(Errc::kCorrupt, "smaller than its header page");
}

TEST_F(TopicMapTest, RefusesAnOversizedSegment) {
  auto log = Segment::open(log_name(), Access::kReadWrite);
  ASSERT_TRUE(log);
  const int fd = ::shm_open(("/" + log_name()).c_str(), O_RDWR, 0);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, static_cast<off_t>(log->size() + kPageBytes)), 0);
  ::close(fd);
  expect_attach_fails(Errc::kCorrupt, "(truncated or resized)");
}

TEST_F(TopicMapTest, RemoveUnlinksBothSegmentsAndToleratesMissingOnes) {
  EXPECT_TRUE(Segment::exists(log_name()));
  EXPECT_TRUE(Segment::exists(state_name()));
  TopicMap::remove(guard_.bus(), "orders", kInc);
  EXPECT_FALSE(Segment::exists(log_name()));
  EXPECT_FALSE(Segment::exists(state_name()));
  TopicMap::remove(guard_.bus(), "orders", kInc);  // again: no error, no crash
  // The creator's mapping stays usable after the unlink.
  topic_.partition(0).ring[0] = std::byte{7};
  EXPECT_EQ(topic_.partition(0).ring[topic_.partition(0).ring_bytes], std::byte{7});
}

TEST(TopicMapParamsTest, ValidateLogParamsNamesTheBadValue) {
  struct Case {
    LogParams p;
    std::string says;
  };
  const Case cases[] = {
      {{1, 0, 128, 0}, "ring_bytes=0"},
      {{1, 4096 + 64, 128, 0}, "ring_bytes=4160 must be a power of two"},
      {{1, 2048, 128, 0}, "ring_bytes=2048"},
      {{1, 3 * 4096, 128, 0}, "ring_bytes=12288"},
      {{1, kMaxRingBytes * 2, 128, 0}, "ring_bytes=8589934592"},
      {{1, 65536, 65536 / 4 + 64, 0}, "max_event=16448 > ring_bytes/4=16384"},
      {{1, 65536, 65536, 0}, "max_event=65536 > ring_bytes/4"},
      {{1, 65536, 64, 0}, "max_event=64 must be a multiple of 64 and at least 128"},
      {{1, 65536, 0, 0}, "max_event=0"},
      {{1, 65536, 200, 0}, "max_event=200"},
      {{0, 65536, 1024, 0}, "partitions=0 is outside 1..256"},
      {{257, 65536, 1024, 0}, "partitions=257"},
      {{1, 65536, 1024, 1u << 7}, "unknown log flags"},
  };
  for (const Case& c : cases) {
    auto r = validate_log_params(c.p);
    ASSERT_FALSE(r) << c.says;
    EXPECT_EQ(r.error().code, Errc::kInvalidArgument);
    EXPECT_NE(r.error().detail.find(c.says), std::string::npos) << r.error().detail;
  }
  EXPECT_TRUE(validate_log_params({1, 4096, 1024, 0}));  // max_event == ring/4 exactly
  EXPECT_TRUE(validate_log_params({256, kMaxRingBytes, kMaxRingBytes / 4, kLogSingleProducer | kLogDeadLetterTopic}));
}

TEST(TopicMapParamsTest, CreateRefusesBadParametersAndLeavesNothing) {
  test::BusGuard guard;
  auto r = TopicMap::create(guard.bus(), "t", 1, {1, 65536, 65536, 0}, {});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kInvalidArgument);
  EXPECT_TRUE(Segment::list(bus_segment_prefix(guard.bus())).empty());
}

// ---- the registry segment ---------------------------------------------------

TEST(RegistrySegmentTest, AttachValidatesTheHeader) {
  test::BusGuard guard;
  auto reg = Registry::open_or_create(guard.bus());
  ASSERT_TRUE(reg) << reg.error().message();
  const std::uint64_t bytes = RegistryGeometry{}.total_bytes;
  auto* base = reinterpret_cast<std::byte*>(reg->header());
  EXPECT_TRUE(validate_registry_segment(base, bytes));
  auto expect = [&](Errc code, const std::string& says) {
    auto r = validate_registry_segment(base, bytes);
    ASSERT_FALSE(r) << says;
    EXPECT_EQ(r.error().code, code) << r.error().message();
    EXPECT_NE(r.error().detail.find(says), std::string::npos) << r.error().message();
    auto opened = Registry::open(guard.bus());
    ASSERT_FALSE(opened) << says;
    EXPECT_EQ(opened.error().code, code);
  };
  RegistryHeaderLayout* h = reg->header();
  h->segment.magic ^= 1;
  expect(Errc::kCorrupt, "wrong magic");
  h->segment.magic ^= 1;
  h->segment.layout_version.store(kLayoutVersion + 7);
  expect(Errc::kVersionMismatch, "layout version " + std::to_string(kLayoutVersion + 7));
  h->segment.layout_version.store(kLayoutVersion);
  h->topic_slots = 3;
  expect(Errc::kCorrupt, "disagrees with its geometry");
  h->topic_slots = kTopicSlots;
  h->segment.kind = static_cast<std::uint32_t>(SegmentKind::kLog);
  expect(Errc::kCorrupt, "disagrees with its geometry");
  h->segment.kind = static_cast<std::uint32_t>(SegmentKind::kRegistry);
  EXPECT_TRUE(validate_registry_segment(base, bytes - kPageBytes).error().detail.find("expected") !=
              std::string::npos);
  EXPECT_TRUE(Registry::open(guard.bus()));
}

}  // namespace
}  // namespace herald::shm
