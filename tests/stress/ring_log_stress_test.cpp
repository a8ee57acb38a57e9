// Many threads on one partition at the shm level (no runtime, no daemon).
//
//   EveryGroupSeesEveryEventOnceInOrder
//     4 producers x 250k events (some as batches of several records per
//     claim) into a 64 KiB (and an 8 KiB) ring that wraps thousands of
//     times; two lossless gating groups, each read by its own consumer with
//     read_gated and a cursor CAS. Every group sees every event exactly
//     once, each producer's events in its order, every body intact. A
//     group-less lossy reader runs alongside (read_copy, resynchronising
//     with boundary_at_or_after on overrun): every copy it accepts is
//     intact and in order.
//   StalledClaimIsNeverLapped
//     a producer holds a claim (uncommitted) while the others publish far
//     more than a ring: they are held back (kBackPressured / waiting) and
//     never overwrite it; after it commits everything flows again.
//
// Seeded (printed), counts scaled by HERALD_STRESS_SCALE and by 1/10 under
// TSan, every wait bounded by progress and reported with positions.
#include <gtest/gtest.h>

#include <sched.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "shm/clock.hpp"
#include "shm/ring_log.hpp"
#include "shm/slots.hpp"
#include "shm/topic_map.hpp"
#include "tests/support/shm_records.hpp"
#include "tests/support/test_env.hpp"

namespace herald::shm {
namespace {

using test::check_record;
using test::fill_record;

constexpr std::uint64_t kStallNs = 60'000'000'000ull;  // no progress for this long = a wedge

std::uint64_t stress_count(std::uint64_t n) { return test::scaled(test::under_tsan() ? n / 10 : n); }

constexpr std::uint64_t make_tag(std::uint64_t producer, std::uint64_t seq) { return producer << 40 | seq; }

// Makes group slot g an active lossless gating group, as group creation does.
void activate_lossless_group(const TopicMap& t, std::uint32_t g) {
  GroupLayout* grp = t.group(g);
  grp->seq.store(1);
  grp->policy.store(static_cast<std::uint32_t>(GroupPolicy::kLossless));
  grp->name_len.store(2);
  grp->name_words[0].store(0x3067 + (std::uint64_t{g} << 8));  // "g0", "g1", ...
  grp->flags.store(kGroupGating);
  grp->state.store(kGroupActive, std::memory_order_seq_cst);
  grp->seq.store(2, std::memory_order_release);
  std::uint32_t hw = t.state_header()->group_slots_hw.load();
  while (hw < g + 1 && !t.state_header()->group_slots_hw.compare_exchange_weak(hw, g + 1)) {
  }
  t.state_header()->groups_epoch.fetch_add(1);
}

// A lossless consumer of one group: read_gated at its cursor, check, move
// the cursor by CAS (R4, seq_cst like the runtime's), wake producers.
struct GroupConsumer {
  const TopicMap* topic = nullptr;
  std::uint32_t group = 0;
  std::uint32_t producers = 0;
  std::uint64_t expected = 0;  // events in all
  std::vector<std::uint64_t> next_seq;
  std::uint64_t events = 0, aborted = 0, empty_polls = 0;
  std::uint64_t q = 0;
  std::atomic<std::uint64_t> position{0};  // q, published for the test's main thread
  std::atomic<bool> failed{false};         // set after `failure` is written
  std::string failure;

  void run(const std::atomic<bool>& stop) {
    consume(stop);
    if (!failure.empty()) failed.store(true, std::memory_order_release);
  }

 private:

  void consume(const std::atomic<bool>& stop) {
    const PartitionView& v = topic->partition(0);
    GroupPartitionLayout* gp = topic->group_partition(group, 0);
    next_seq.assign(producers, 0);
    std::uint64_t cursor = gp->cursor.load(std::memory_order_acquire);
    std::uint64_t last_progress = monotonic_ns();
    std::uint32_t idle = 0;
    while (events < expected && failure.empty()) {
      const RecordHeader* h = nullptr;
      const Status st = read_gated(v, q, &h);
      if (st == Status::kEmpty) {
        ++empty_polls;
        if (stop.load(std::memory_order_relaxed)) return;
        if (++idle > 64) sched_yield();
        if ((idle & 1023) == 0 && monotonic_ns() - last_progress > kStallNs) {
          failure = "no record at " + std::to_string(q) + " for 60 s; " + test::describe_partition(v);
          return;
        }
        continue;
      }
      if (st != Status::kOk) {
        failure = "read_gated status " + std::to_string(static_cast<int>(st)) + " at " + std::to_string(q);
        return;
      }
      idle = 0;
      last_progress = monotonic_ns();
      const std::uint32_t size = h->size;
      if ((h->flags & kRecordAborted) != 0) {
        ++aborted;
      } else {
        std::uint64_t tag = 0;
        if (!check_record(reinterpret_cast<const std::byte*>(h), q, &tag)) {
          failure = "damaged record at " + std::to_string(q) + " (size " + std::to_string(size) + ")";
          return;
        }
        const std::uint64_t p = tag >> 40, seq = tag & ((1ull << 40) - 1);
        if (p >= producers || seq != next_seq[p]) {
          failure = "group " + std::to_string(group) + " at " + std::to_string(q) + ": producer " + std::to_string(p) +
                    " seq " + std::to_string(seq) + ", expected seq " +
                    (p < producers ? std::to_string(next_seq[p]) : "-") + " (lost, duplicated or reordered)";
          return;
        }
        ++next_seq[p];
        ++events;
      }
      q += size;
      // R4: our reads of everything below q happen before a producer that
      // sees the new cursor overwrites it.
      if (!gp->cursor.compare_exchange_strong(cursor, pack_cursor(0, q), std::memory_order_seq_cst)) {
        failure = "cursor changed under its only writer: " + std::to_string(cursor);
        return;
      }
      cursor = pack_cursor(0, q);
      position.store(q, std::memory_order_relaxed);
      wake_producers(v);
    }
  }
};

// A group-less (lossy) reader running alongside: read_copy at q; on
// kOverrun resynchronise forward with boundary_at_or_after. Every copy it
// accepts must be intact, and per producer the sequence never repeats or
// goes back (gaps are allowed: it does not gate).
struct LossyReader {
  const TopicMap* topic = nullptr;
  std::uint32_t producers = 0;
  std::vector<std::int64_t> last_seq;
  std::uint64_t copies = 0, overruns = 0, gap_bytes = 0, q = 0;
  std::string failure;

  void run(const std::atomic<bool>& producers_done, const std::atomic<bool>& stop) {
    const PartitionView& v = topic->partition(0);
    std::vector<std::byte> buf(v.max_event);
    last_seq.assign(producers, -1);
    std::uint64_t last_progress = monotonic_ns();
    std::uint32_t idle = 0;
    while (!stop.load(std::memory_order_relaxed)) {
      std::uint32_t n = 0;
      const Status st = read_copy(v, q, buf.data(), &n);
      if (st == Status::kOk) {
        std::uint64_t tag = 0;
        if (!check_record(buf.data(), q, &tag)) {
          failure = "read_copy accepted a torn or stale copy at " + std::to_string(q);
          return;
        }
        const std::uint64_t p = tag >> 40;
        const auto seq = static_cast<std::int64_t>(tag & ((1ull << 40) - 1));
        if (p >= producers || seq <= last_seq[p]) {
          failure = "lossy reader at " + std::to_string(q) + ": producer " + std::to_string(p) + " seq " +
                    std::to_string(seq) + " after " + (p < producers ? std::to_string(last_seq[p]) : "-");
          return;
        }
        last_seq[p] = seq;
        q += n;
        ++copies;
        idle = 0;
        last_progress = monotonic_ns();
      } else if (st == Status::kOverrun) {
        ++overruns;
        const std::uint64_t nq = boundary_at_or_after(v, q);
        if (nq <= q || nq > load_tail(v)) {
          failure = "resynchronised from " + std::to_string(q) + " to " + std::to_string(nq);
          return;
        }
        gap_bytes += nq - q;
        q = nq;
      } else if (st == Status::kEmpty) {
        // Every record is committed once the producers are done: then an
        // empty position below the tail is not a record start at all.
        if (producers_done.load(std::memory_order_acquire)) {
          const std::uint64_t t = load_tail(v);
          if (q == t) return;
          if (read_copy(v, q, buf.data(), &n) == Status::kEmpty) {
            failure = "lossy reader stuck at " + std::to_string(q) + " below the final tail " + std::to_string(t);
            return;
          }
          continue;
        }
        if (++idle > 64) sched_yield();
        if ((idle & 1023) == 0 && monotonic_ns() - last_progress > kStallNs) {
          failure = "lossy reader: nothing at " + std::to_string(q) + " for 60 s; " + test::describe_partition(v);
          return;
        }
      } else {
        failure = "read_copy status " + std::to_string(static_cast<int>(st)) + " at " + std::to_string(q);
        return;
      }
    }
  }
};

struct ProducerStats {
  std::uint64_t events = 0, claims = 0, batches = 0, backpressured = 0;
  std::string failure;
};

class RingLogConcurrentTest : public ::testing::Test {
 protected:
  void make_topic(const LogParams& params) {
    topic_.emplace(params);
    ASSERT_TRUE(topic_->ok());
    // Producers map the log read-write and the state read-only; consumers
    // the other way round: what each role may write is all it can write.
    auto p = TopicMap::attach(topic_->guard.bus(), "t", 1, Access::kReadWrite, Access::kReadOnly);
    ASSERT_TRUE(p) << p.error().message();
    producer_map_ = std::move(p).value();
    auto c = TopicMap::attach(topic_->guard.bus(), "t", 1, Access::kReadOnly, Access::kReadWrite);
    ASSERT_TRUE(c) << c.error().message();
    consumer_map_ = std::move(c).value();
  }
  std::optional<test::ShmTopic> topic_;
  TopicMap producer_map_, consumer_map_;
};

class RingLogTwoGroupsTest : public RingLogConcurrentTest, public ::testing::WithParamInterface<std::uint64_t> {};

TEST_P(RingLogTwoGroupsTest, EveryGroupSeesEveryEventOnceInOrder) {
  constexpr std::uint32_t kProducers = 4;
  constexpr std::uint64_t kMax = 1024;
  make_topic({.partitions = 1, .ring_bytes = GetParam(), .max_event = kMax, .flags = 0});
  activate_lossless_group(topic_->map, 0);
  activate_lossless_group(topic_->map, 1);
  const std::uint64_t per_producer = stress_count(250'000);
  const std::uint64_t seed = test::seed("two lossless groups");
  std::atomic<bool> stop{false};

  std::vector<ProducerStats> pstats(kProducers);
  std::vector<std::thread> threads;
  for (std::uint32_t id = 0; id < kProducers; ++id) {
    threads.emplace_back([&, id] {
      ProducerStats& st = pstats[id];
      auto slot = acquire_producer_slot(producer_map_, id + 1);
      if (!slot) {
        st.failure = slot.error().message();
        stop.store(true);
        return;
      }
      RingLogWriter w(&producer_map_, *slot, false);
      const PartitionView& v = producer_map_.partition(0);
      std::mt19937_64 rng(seed + id);
      const WaitPolicy spin_yield{.mode = WaitMode::kSpinYield};
      std::uint64_t seq = 0;
      std::uint32_t sizes[4];
      while (seq < per_producer && !stop.load(std::memory_order_relaxed)) {
        // One record per claim mostly; every 8th claim a batch of up to 4.
        const std::uint64_t n = (rng() % 8 == 0) ? std::min<std::uint64_t>(1 + rng() % 4, per_producer - seq) : 1;
        std::uint64_t bytes = 0;
        for (std::uint64_t k = 0; k < n; ++k) {
          sizes[k] = static_cast<std::uint32_t>(64 * (1 + rng() % 8));  // 64..512
          bytes += sizes[k];
        }
        std::uint64_t pos = 0;
        const Status cs = w.claim(0, bytes, monotonic_ns() + kStallNs, spin_yield, &pos);
        if (cs != Status::kOk) {
          st.failure = "claim of " + std::to_string(bytes) + " bytes: status " + std::to_string(static_cast<int>(cs)) +
                       "; " + test::describe_partition(v);
          stop.store(true);
          return;
        }
        for (std::uint64_t k = 0; k < n; ++k) {
          fill_record(v, pos, sizes[k], make_tag(id, seq++));
          w.commit_record(0, pos, sizes[k]);  // in order: committed_to only grows
          pos += sizes[k];
        }
        w.finish(0);
        ++st.claims;
        st.batches += n > 1 ? 1 : 0;
        st.events += n;
      }
      release_producer_slot(producer_map_, *slot);
    });
  }
  std::vector<GroupConsumer> consumers(2);
  for (std::uint32_t g = 0; g < 2; ++g) {
    consumers[g].topic = &consumer_map_;
    consumers[g].group = g;
    consumers[g].producers = kProducers;
    consumers[g].expected = kProducers * per_producer;
    threads.emplace_back([&, g] {
      consumers[g].run(stop);
      if (!consumers[g].failure.empty()) stop.store(true);
    });
  }
  std::atomic<bool> producers_done{false};
  LossyReader lossy;
  lossy.topic = &consumer_map_;
  lossy.producers = kProducers;
  std::thread lossy_thread([&] { lossy.run(producers_done, stop); });
  for (std::uint32_t i = 0; i < kProducers; ++i) threads[i].join();
  producers_done.store(true, std::memory_order_release);
  for (std::size_t i = kProducers; i < threads.size(); ++i) threads[i].join();
  lossy_thread.join();
  EXPECT_EQ(lossy.failure, "");
  EXPECT_GT(lossy.copies, 0u);

  std::uint64_t claims = 0, batches = 0;
  for (std::uint32_t id = 0; id < kProducers; ++id) {
    EXPECT_EQ(pstats[id].failure, "") << "producer " << id;
    EXPECT_EQ(pstats[id].events, per_producer) << "producer " << id;
    claims += pstats[id].claims;
    batches += pstats[id].batches;
  }
  const PartitionView& v = consumer_map_.partition(0);
  for (const GroupConsumer& c : consumers) {
    EXPECT_EQ(c.failure, "") << "group " << c.group;
    EXPECT_EQ(c.events, kProducers * per_producer) << "group " << c.group;
    EXPECT_EQ(c.aborted, 0u);
    for (std::uint32_t p = 0; p < kProducers && c.failure.empty(); ++p)
      EXPECT_EQ(c.next_seq[p], per_producer) << "group " << c.group << " producer " << p;
    EXPECT_EQ(c.q, load_tail(v)) << "group " << c.group << " stopped short of the tail";
  }
  std::printf("[stress] lossy reader: %llu intact copies, %llu overruns, %llu gap bytes\n",
              static_cast<unsigned long long>(lossy.copies), static_cast<unsigned long long>(lossy.overruns),
              static_cast<unsigned long long>(lossy.gap_bytes));
  std::printf("[stress] %llu events in %llu claims (%llu batches), %llu bytes = %.1f laps of the ring; "
              "consumer empty polls %llu / %llu\n",
              static_cast<unsigned long long>(kProducers * per_producer), static_cast<unsigned long long>(claims),
              static_cast<unsigned long long>(batches), static_cast<unsigned long long>(load_tail(v)),
              static_cast<double>(load_tail(v)) / static_cast<double>(v.ring_bytes),
              static_cast<unsigned long long>(consumers[0].empty_polls),
              static_cast<unsigned long long>(consumers[1].empty_polls));
  for (std::uint32_t i = 0; i < v.producer_slots; ++i)
    EXPECT_EQ(v.claims[i].word.load() & kClaimStateMask, kClaimEmpty) << "slot " << i;
}

INSTANTIATE_TEST_SUITE_P(RingBytes, RingLogTwoGroupsTest, ::testing::Values(64 * 1024, 8 * 1024),
                         [](const ::testing::TestParamInfo<std::uint64_t>& p) {
                           return std::to_string(p.param / 1024) + "KiB";
                         });

// ---- a claim held while others publish ------------------------------------------

class RingLogStalledClaimTest : public RingLogConcurrentTest, public ::testing::WithParamInterface<bool> {};

TEST_P(RingLogStalledClaimTest, StalledClaimIsNeverLapped) {
  const bool with_group = GetParam();
  constexpr std::uint64_t kRing = 64 * 1024;
  constexpr std::uint32_t kOthers = 3;
  constexpr std::uint32_t kHeld = 512;
  constexpr std::uint32_t kLargest = 64 * 8;  // the others' records: 64..kLargest bytes
  make_topic({.partitions = 1, .ring_bytes = kRing, .max_event = 1024, .flags = 0});
  if (with_group) activate_lossless_group(topic_->map, 0);
  const std::uint64_t seed = test::seed("stalled claim");
  const std::uint64_t after_release = stress_count(20'000);  // events each, after the stall: many rings more
  const PartitionView& v = producer_map_.partition(0);

  // The stalling producer publishes a little, then claims and stops before
  // its commit, holding the claim.
  auto sslot = acquire_producer_slot(producer_map_, 99);
  ASSERT_TRUE(sslot) << sslot.error().message();
  RingLogWriter stalled(&producer_map_, *sslot, false);
  for (std::uint64_t i = 0; i < 10; ++i) ASSERT_TRUE(test::publish(stalled, 0, 256, make_tag(7, i)));
  std::uint64_t held = 0;
  ASSERT_EQ(stalled.try_claim(0, kHeld, &held), Status::kOk);
  fill_record(v, held, kHeld, make_tag(7, 10));  // its bytes: they must survive the stall
  std::vector<std::byte> snapshot(v.bytes_at(held), v.bytes_at(held) + kHeld);

  std::atomic<bool> released{false};
  std::atomic<bool> stop{false};
  struct Other {
    std::atomic<std::uint64_t> backpressured_while_held{0};
    std::atomic<std::uint64_t> events{0};
    std::string failure;
  };
  std::vector<Other> others(kOthers);
  std::vector<std::thread> threads;
  for (std::uint32_t id = 0; id < kOthers; ++id) {
    threads.emplace_back([&, id] {
      Other& me = others[id];
      auto slot = acquire_producer_slot(producer_map_, id);
      if (!slot) {
        me.failure = slot.error().message();
        return;
      }
      RingLogWriter w(&producer_map_, *slot, false);
      std::mt19937_64 rng(seed + id);
      // Producer 0 parks (futex on gate_seq, 10 ms safety net), the others spin on try_claim.
      const WaitPolicy park{.mode = WaitMode::kPark, .spins = 16, .yields = 4};
      std::uint64_t seq = 0, done_after = 0;
      std::uint64_t last_progress = monotonic_ns();
      while (done_after < after_release && !stop.load(std::memory_order_relaxed)) {
        const auto size = static_cast<std::uint32_t>(64 * (1 + rng() % (kLargest / 64)));
        const bool was_released = released.load(std::memory_order_acquire);
        Status st{};
        std::uint64_t pos = 0;
        if (id == 0) {
          st = w.claim(0, size, monotonic_ns() + 20'000'000, park, &pos);
        } else {
          st = w.try_claim(0, size, &pos);
        }
        if (st == Status::kBackPressured) {
          if (!was_released) me.backpressured_while_held.fetch_add(1, std::memory_order_relaxed);
          if (monotonic_ns() - last_progress > kStallNs) {
            me.failure = "no claim for 60 s after the release; " + test::describe_partition(v);
            return;
          }
          sched_yield();
          continue;
        }
        if (st != Status::kOk) {
          me.failure = "claim status " + std::to_string(static_cast<int>(st));
          return;
        }
        // The invariant: while the held claim stands, nothing reaches past
        // held + ring. `released` is set before the held claim is finished,
        // so a claim that the finish made possible sees it set.
        if (!released.load(std::memory_order_acquire) && pos + size > held + kRing) {
          me.failure = "claimed [" + std::to_string(pos) + ", +" + std::to_string(size) +
                       ") over the held claim at " + std::to_string(held) + "; " + test::describe_partition(v);
          stop.store(true);
          return;
        }
        last_progress = monotonic_ns();
        fill_record(v, pos, size, make_tag(id, seq++));
        w.commit_record(0, pos, size);
        w.finish(0);
        me.events.fetch_add(1, std::memory_order_relaxed);
        if (was_released) ++done_after;
      }
      release_producer_slot(producer_map_, *slot);
    });
  }
  // With a group, a consumer follows; it must stop at the held claim.
  GroupConsumer consumer;
  if (with_group) {
    consumer.topic = &consumer_map_;
    consumer.group = 0;
    consumer.producers = 8;
    consumer.expected = ~0ull;  // runs until stopped
    threads.emplace_back([&] { consumer.run(stop); });
  }

  // Wait until every other producer has been held back (their claims hit
  // held + ring) — a bounded wait on a condition, not a sleep.
  const bool all_held = test::wait_until(
      [&] {
        for (const Other& o : others)
          if (o.backpressured_while_held.load() == 0) return false;
        return true;
      },
      60.0,
      [&] {
        std::string s = test::describe_partition(v) + " held=" + std::to_string(held) + " backpressured:";
        for (const Other& o : others) s += " " + std::to_string(o.backpressured_while_held.load());
        return s;
      });
  EXPECT_TRUE(all_held);
  // A refusal says the ring is full only once the group's consumer (if
  // any) has reached the held claim: until then its cursor gates the
  // producers too, and a slow consumer (seen under TSan: tail at 66048 with
  // the limit at 68096) refuses them short of held + ring. So wait, bounded,
  // for the others to fill the ring up to the held claim, within one record.
  const bool filled = test::wait_until([&] { return load_tail(v) + kLargest >= held + kRing; }, 60.0,
                                       [&] { return test::describe_partition(v) + " held=" + std::to_string(held); });
  EXPECT_TRUE(filled) << "the others filled the ring up to the held claim";
  EXPECT_LE(load_tail(v), held + kRing);
  EXPECT_EQ(std::memcmp(snapshot.data(), v.bytes_at(held), kHeld), 0) << "the held claim's bytes were overwritten";
  if (with_group) {
    EXPECT_TRUE(test::wait_until([&] { return consumer.position.load() == held || consumer.failed.load(); }, 60.0))
        << "consumer at " << consumer.position.load();
  }

  // Commit: the held record is intact and readable (checked while the claim
  // slot still holds W, so nobody can overwrite it yet), then finish, and
  // everything flows again.
  stalled.commit_record(0, held, kHeld);
  {
    const RecordHeader* h = nullptr;
    EXPECT_EQ(read_gated(consumer_map_.partition(0), held, &h), Status::kOk);
    std::uint64_t tag = 0;
    EXPECT_TRUE(h != nullptr && check_record(reinterpret_cast<const std::byte*>(h), held, &tag));
    EXPECT_EQ(tag, make_tag(7, 10));
  }
  const std::uint64_t tail_at_release = load_tail(v);
  released.store(true, std::memory_order_release);
  stalled.finish(0);
  for (std::uint32_t id = 0; id < kOthers; ++id) threads[id].join();
  const std::uint64_t final_tail = load_tail(v);
  if (with_group) {
    EXPECT_TRUE(test::wait_until([&] { return consumer.position.load() == final_tail || consumer.failed.load(); }, 60.0))
        << "consumer at " << consumer.position.load() << ", tail " << final_tail;
    stop.store(true);
    threads.back().join();
    EXPECT_EQ(consumer.failure, "");
    EXPECT_EQ(consumer.next_seq[7], 11u) << "the held record was delivered once, after the ten before it";
  }
  stop.store(true);
  for (std::uint32_t id = 0; id < kOthers; ++id) {
    EXPECT_EQ(others[id].failure, "") << "producer " << id;
    EXPECT_GT(others[id].backpressured_while_held.load(), 0u) << "producer " << id;
  }
  EXPECT_GT(final_tail, tail_at_release + 2 * kRing) << "publishing resumed for several rings";
  std::printf("[stress] held claim at %llu; tail at release %llu (ring %llu), final tail %llu; backpressured %llu/%llu/%llu\n",
              static_cast<unsigned long long>(held), static_cast<unsigned long long>(tail_at_release),
              static_cast<unsigned long long>(kRing), static_cast<unsigned long long>(final_tail),
              static_cast<unsigned long long>(others[0].backpressured_while_held.load()),
              static_cast<unsigned long long>(others[1].backpressured_while_held.load()),
              static_cast<unsigned long long>(others[2].backpressured_while_held.load()));
  release_producer_slot(producer_map_, *sslot);
}

INSTANTIATE_TEST_SUITE_P(Gating, RingLogStalledClaimTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& p) {
                           return std::string(p.param ? "WithLosslessGroup" : "NoConsumerAtAll");
                         });

}  // namespace
}  // namespace herald::shm
