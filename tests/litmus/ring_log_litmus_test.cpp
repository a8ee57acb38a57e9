// Two-thread litmus tests of the log protocol, in the jcstress style: two
// persistent threads meet at a barrier before every iteration, race once,
// and each iteration's outcome is counted. The table is printed; a
// forbidden outcome fails the test.
//
//   CommitThenRead     writer fills a record and commits; reader reads it
//                      once at a random instant. Forbidden: commit word seen
//                      with a stale or torn body.
//   ParkThenWake       reader parks (park_reader, 10 s timeout) until the
//                      record at its position is committed; writer commits
//                      and wakes (plain fence, and membarrier fast path).
//                      Forbidden: the reader sleeps to its timeout (a lost
//                      wake-up).
//   CloseVsClaim       a claim races topic delete (close()), on multi- and
//                      single-producer topics. Forbidden: the closed bit is
//                      gone afterwards.
//   CopyWhileLapped    writer laps a 4 KiB ring; reader read_copy()s a record
//                      being overwritten until it is told kOverrun.
//                      Forbidden: kOk with a torn body; kEmpty or kCorrupt
//                      for a record that was committed.
//
// 100k iterations (10k under TSan), times HERALD_STRESS_SCALE.
#include <gtest/gtest.h>

#include <sched.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "shm/futex.hpp"
#include "shm/ring_log.hpp"
#include "shm/slots.hpp"
#include "shm/topic_map.hpp"
#include "tests/support/shm_records.hpp"
#include "tests/support/test_env.hpp"

namespace herald::shm {
namespace {

using test::check_record;
using test::fill_record;

// A reusable two-party barrier that spins briefly, then yields (2 cores:
// the other party may need ours). The last to arrive decides, for both,
// whether the run goes on, so a stop request cannot split the parties.
class SpinBarrier {
 public:
  // `spins`: how long a waiter spins before it starts yielding. Longer
  // spins make both parties leave the barrier closer together (a narrow
  // race window needs that), at the price of burning the CPU the other
  // party may need on a loaded machine.
  explicit SpinBarrier(unsigned parties, unsigned spins = 128) : parties_(parties), spins_(spins) {}
  bool arrive_and_wait() {
    const unsigned gen = gen_.load(std::memory_order_acquire);
    if (count_.fetch_add(1, std::memory_order_acq_rel) + 1 == parties_) {
      count_.store(0, std::memory_order_relaxed);
      go_on_.store(!stop_.load(std::memory_order_relaxed), std::memory_order_relaxed);
      gen_.store(gen + 1, std::memory_order_release);  // publishes count_ and go_on_
      return go_on_.load(std::memory_order_relaxed);
    }
    for (unsigned spins = 0; gen_.load(std::memory_order_acquire) == gen; ++spins) {
      if (spins < spins_) {
        cpu_relax();
      } else {
        sched_yield();
      }
    }
    return go_on_.load(std::memory_order_relaxed);
  }
  void request_stop() { stop_.store(true, std::memory_order_relaxed); }

 private:
  const unsigned parties_;
  const unsigned spins_;
  std::atomic<unsigned> count_{0};
  std::atomic<unsigned> gen_{0};
  std::atomic<bool> go_on_{true};
  std::atomic<bool> stop_{false};
};

// Outcome counts for one thread (no sharing while the threads run).
using Table = std::map<std::string, std::uint64_t>;

void print_table(const char* name, const Table& allowed, const Table& forbidden, std::uint64_t iterations) {
  std::printf("[litmus] %s: %llu iterations\n", name, static_cast<unsigned long long>(iterations));
  std::printf("  %-58s %12s  %s\n", "outcome", "count", "verdict");
  for (const auto& [k, n] : allowed)
    std::printf("  %-58s %12llu  allowed\n", k.c_str(), static_cast<unsigned long long>(n));
  for (const auto& [k, n] : forbidden)
    std::printf("  %-58s %12llu  %s\n", k.c_str(), static_cast<unsigned long long>(n), n ? "FORBIDDEN" : "forbidden");
  std::fflush(stdout);
}

std::uint64_t litmus_iterations() { return test::scaled(test::under_tsan() ? 10'000 : 100'000); }

// Runs writer(i) and reader(i) on two persistent threads, meeting at a
// barrier before each iteration. Either may return false to stop the run
// (after a forbidden outcome that would make the rest slow).
template <class Writer, class Reader>
std::uint64_t run_pair(std::uint64_t iterations, Writer&& writer, Reader&& reader) {
  SpinBarrier barrier(2);
  std::uint64_t done = 0;
  std::thread w([&] {
    for (std::uint64_t i = 0; i < iterations; ++i) {
      if (!barrier.arrive_and_wait()) return;
      if (!writer(i)) barrier.request_stop();
    }
  });
  for (std::uint64_t i = 0; i < iterations; ++i) {
    if (!barrier.arrive_and_wait()) break;
    if (!reader(i)) barrier.request_stop();
    done = i + 1;
  }
  w.join();
  return done;
}

class RingLogLitmusTest : public ::testing::Test {
 protected:
  void make_topic(const LogParams& params) {
    topic_.emplace(params);
    ASSERT_TRUE(topic_->ok());
    auto r = TopicMap::attach(topic_->guard.bus(), "t", 1, Access::kReadOnly, Access::kReadWrite);
    ASSERT_TRUE(r) << r.error().message();
    reader_ = std::move(r).value();
    auto s = acquire_producer_slot(topic_->map, 0);
    ASSERT_TRUE(s) << s.error().message();
    slot_ = *s;
  }
  std::optional<test::ShmTopic> topic_;
  TopicMap reader_;
  std::uint32_t slot_ = 0;
};

// ---- (a) commit word vs body ---------------------------------------------------

TEST_F(RingLogLitmusTest, CommitThenReadNeverSeesAStaleBody) {
  make_topic({.partitions = 1, .ring_bytes = 64 * 1024, .max_event = 1024, .flags = 0});
  const std::uint64_t seed = test::seed("commit/read litmus");
  RingLogWriter writer(&topic_->map, slot_, false);
  const PartitionView& wv = topic_->part(0);
  const PartitionView& rv = reader_.partition(0);
  constexpr std::uint32_t kSize = 256;  // laps the 64 KiB ring every 256 iterations: stale bodies are there
  Table seen{{"empty: not committed yet", 0}, {"ok: committed, fresh body", 0}};
  Table bad{{"ok: committed, stale or torn body", 0}, {"corrupt header", 0}, {"other status", 0}};
  std::mt19937_64 rng(seed);
  std::vector<std::uint16_t> delays(1024);
  for (auto& d : delays) d = static_cast<std::uint16_t>(rng() % 200);

  const std::uint64_t n = run_pair(
      litmus_iterations(),
      [&](std::uint64_t i) {
        std::uint64_t pos = 0;
        if (writer.try_claim(0, kSize, &pos) != Status::kOk || pos != i * kSize) {
          ADD_FAILURE() << "claim " << i << " failed: " << test::describe_partition(wv);
          return false;
        }
        fill_record(wv, pos, kSize, i);
        writer.commit_record(0, pos, kSize);
        writer.finish(0);
        return true;
      },
      [&](std::uint64_t i) {
        for (std::uint16_t d = delays[i % delays.size()]; d > 0; --d) cpu_relax();
        const std::uint64_t q = i * kSize;
        const RecordHeader* h = nullptr;
        const Status st = read_gated(rv, q, &h);
        std::uint64_t tag = ~0ull;
        if (st == Status::kEmpty) {
          ++seen["empty: not committed yet"];
        } else if (st == Status::kOk) {
          if (check_record(reinterpret_cast<const std::byte*>(h), q, &tag) && tag == i) {
            ++seen["ok: committed, fresh body"];
          } else {
            ++bad["ok: committed, stale or torn body"];
          }
        } else if (st == Status::kCorrupt) {
          ++bad["corrupt header"];
        } else {
          ++bad["other status"];
        }
        return true;
      });
  print_table("commit word vs body (read_gated)", seen, bad, n);
  EXPECT_EQ(n, litmus_iterations());
  for (const auto& [k, c] : bad) EXPECT_EQ(c, 0u) << k;
  EXPECT_GT(seen["ok: committed, fresh body"], 0u);
}

// ---- (b) park vs wake ------------------------------------------------------------

class RingLogParkLitmusTest : public RingLogLitmusTest, public ::testing::WithParamInterface<bool> {};

TEST_P(RingLogParkLitmusTest, ParkThenWakeNeverLosesAWakeUp) {
  const bool fast_wake = GetParam();
  if (fast_wake && !membarrier_register())
    GTEST_SKIP() << "membarrier GLOBAL_EXPEDITED is unavailable (or TSan, which cannot see it)";
  if (!membarrier_usable())
    GTEST_SKIP() << "membarrier unavailable: park_reader caps its timeout at 1 ms, so a timeout proves nothing";
  make_topic({.partitions = 1, .ring_bytes = 64 * 1024, .max_event = 1024, .flags = 0});
  const std::uint64_t seed = test::seed("park/wake litmus");
  auto rs = acquire_reader_slot(reader_, 0);
  ASSERT_TRUE(rs) << rs.error().message();
  const std::uint32_t reader_slot = *rs;
  RingLogWriter writer(&topic_->map, slot_, fast_wake);
  const PartitionView& wv = topic_->part(0);
  const PartitionView& rv = reader_.partition(0);
  constexpr std::uint32_t kSize = 128;
  constexpr std::uint64_t kLongTimeout = 10'000'000'000ull;  // 10 s: only a lost wake-up sleeps this long
  std::mt19937_64 rng(seed);
  std::vector<std::uint16_t> delays(1024);
  for (auto& d : delays) d = static_cast<std::uint16_t>(rng() % 400);

  Table seen{{"committed before the reader parked", 0}, {"parked, returned on the commit", 0},
             {"parked more than once (woken early, re-parked)", 0}};
  Table bad{{"parked, slept to the timeout: lost wake-up", 0}, {"read failed after wake", 0}};
  const PartitionView* parts[] = {&rv};

  const std::uint64_t n = run_pair(
      litmus_iterations(),
      [&](std::uint64_t i) {
        for (std::uint16_t d = delays[(i * 7) % delays.size()]; d > 0; --d) cpu_relax();
        std::uint64_t pos = 0;
        if (writer.try_claim(0, kSize, &pos) != Status::kOk || pos != i * kSize) {
          ADD_FAILURE() << "claim " << i << " failed: " << test::describe_partition(wv);
          return false;
        }
        fill_record(wv, pos, kSize, i);
        writer.commit_record(0, pos, kSize);
        writer.finish(0);  // F1 (or the membarrier fast path), then wake parked readers
        return true;
      },
      [&](std::uint64_t i) {
        for (std::uint16_t d = delays[i % delays.size()]; d > 0; --d) cpu_relax();
        const std::uint64_t at[] = {i * kSize};
        int parks = 0;
        while (!is_committed(rv, at[0])) {
          ++parks;
          if (park_reader(reader_, reader_slot, parts, at, kLongTimeout) == Status::kTimeout) {
            ++bad["parked, slept to the timeout: lost wake-up"];
            std::fprintf(stderr, "[litmus] lost wake-up at iteration %llu: q=%llu committed=%d waiters=%llx %s\n",
                         static_cast<unsigned long long>(i), static_cast<unsigned long long>(at[0]),
                         is_committed(rv, at[0]) ? 1 : 0,
                         static_cast<unsigned long long>(rv.state->waiters.load()),
                         test::describe_partition(rv).c_str());
            return false;
          }
        }
        const RecordHeader* h = nullptr;
        std::uint64_t tag = 0;
        if (read_gated(rv, at[0], &h) != Status::kOk || !check_record(reinterpret_cast<const std::byte*>(h), at[0], &tag) ||
            tag != i) {
          ++bad["read failed after wake"];
          return false;
        }
        ++seen[parks == 0   ? "committed before the reader parked"
               : parks == 1 ? "parked, returned on the commit"
                            : "parked more than once (woken early, re-parked)"];
        return true;
      });
  print_table(fast_wake ? "park vs wake (membarrier fast path)" : "park vs wake (seq_cst fence)", seen, bad, n);
  for (const auto& [k, c] : bad) EXPECT_EQ(c, 0u) << k;
  EXPECT_EQ(n, litmus_iterations());
  EXPECT_GT(seen["parked, returned on the commit"], 0u) << "the race was never exercised";
  EXPECT_EQ(rv.state->waiters.load(), 0u);
  release_reader_slot(reader_, reader_slot);
}

INSTANTIATE_TEST_SUITE_P(FastWake, RingLogParkLitmusTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& p) {
                           return std::string(p.param ? "Membarrier" : "SeqCstFence");
                         });

// ---- (c) lossy copy vs overwrite ----------------------------------------------

TEST_F(RingLogLitmusTest, CopyWhileLappedIsNeverTorn) {
  constexpr std::uint64_t kRing = 4096;
  constexpr std::uint64_t kMax = 1024;
  make_topic({.partitions = 1, .ring_bytes = kRing, .max_event = kMax, .flags = 0});
  const std::uint64_t seed = test::seed("lossy copy litmus");
  RingLogWriter writer(&topic_->map, slot_, false);
  const PartitionView& wv = topic_->part(0);
  const PartitionView& rv = reader_.partition(0);
  std::mt19937_64 wrng(seed);
  std::vector<std::byte> buf(kMax);

  // The record the reader copies in iteration i: the last one the writer
  // published in iteration i - 1, kept in targets[i % 2] (written before the
  // barrier, read after it; the writer fills the other one meanwhile).
  std::uint64_t targets[2] = {0, 0};
  std::uint64_t* next_target = &targets[0];
  std::uint64_t seq = 0;
  Table seen{{"copy ok, body intact", 0}, {"overrun (the tail passed q + ring)", 0},
             {"iterations with >= 1 good copy before the overrun", 0}};
  Table bad{{"copy ok, body torn or stale", 0}, {"empty for a committed record", 0}, {"corrupt", 0},
            {"other status", 0}};

  auto publish_one = [&](std::uint32_t size) {
    std::uint64_t pos = 0;
    if (writer.try_claim(0, size, &pos) != Status::kOk) return false;
    fill_record(wv, pos, size, seq++);
    writer.commit_record(0, pos, size);
    writer.finish(0);
    *next_target = pos;
    return true;
  };
  ASSERT_TRUE(publish_one(512));

  const std::uint64_t n = run_pair(
      litmus_iterations(),
      [&](std::uint64_t i) {
        // Publish until the previous target is certainly overwritten: its
        // bytes all lie more than a ring behind the tail.
        const std::uint64_t until = targets[i % 2] + kRing + kMax;
        next_target = &targets[(i + 1) % 2];
        while (load_tail(wv) < until) {
          if (!publish_one(static_cast<std::uint32_t>(64 * (1 + wrng() % (kMax / 64))))) {
            ADD_FAILURE() << "claim failed: " << test::describe_partition(wv);
            return false;
          }
        }
        return true;
      },
      [&](std::uint64_t i) {
        const std::uint64_t q = targets[i % 2];  // written before the barrier by the writer
        bool good_before = false;
        // Bounded: the writer laps q within this iteration, after which
        // read_copy reports kOverrun. Yield now and then: on a loaded
        // 2-core machine the writer may be waiting for this very core.
        for (std::uint32_t attempt = 1;; ++attempt) {
          if (attempt % 256 == 0) sched_yield();
          std::uint32_t size = 0;
          const Status st = read_copy(rv, q, buf.data(), &size);
          if (st == Status::kOverrun) {
            ++seen["overrun (the tail passed q + ring)"];
            if (good_before) ++seen["iterations with >= 1 good copy before the overrun"];
            return true;
          }
          if (st == Status::kOk) {
            if (check_record(buf.data(), q)) {
              ++seen["copy ok, body intact"];
              good_before = true;
              continue;
            }
            ++bad["copy ok, body torn or stale"];
            std::fprintf(stderr, "[litmus] torn copy at q=%llu size=%u tail=%llu\n",
                         static_cast<unsigned long long>(q), size, static_cast<unsigned long long>(load_tail(rv)));
            return false;
          }
          ++bad[st == Status::kEmpty ? "empty for a committed record" : st == Status::kCorrupt ? "corrupt" : "other status"];
          std::fprintf(stderr, "[litmus] status %d at q=%llu tail=%llu\n", static_cast<int>(st),
                       static_cast<unsigned long long>(q), static_cast<unsigned long long>(load_tail(rv)));
          return false;
        }
      });
  print_table("lossy copy vs overwrite (read_copy on a 4 KiB ring)", seen, bad, n);
  EXPECT_EQ(n, litmus_iterations());
  for (const auto& [k, c] : bad) EXPECT_EQ(c, 0u) << k;
  EXPECT_GT(seen["copy ok, body intact"], 0u);
}

// ---- (d) close vs a claim ---------------------------------------------------------
// Topic delete sets the closed bit in tail; a claim racing with it either
// happened before (kOk) or sees the bit (kClosed). Forbidden: the bit is
// gone afterwards (a later claim or read would never learn the topic is
// closed). Every kind of claim: multi-producer (tail CAS), single-producer
// without membarrier (CAS too), and single-producer with membarrier, where
// the claim moves tail with a plain store and close() runs the C1
// handshake (docs/models/close-exclusive.pml).

enum class CloseCase { kMulti, kSingleCas, kSinglePlain };

class RingLogCloseLitmusTest : public RingLogLitmusTest, public ::testing::WithParamInterface<CloseCase> {};

TEST_P(RingLogCloseLitmusTest, CloseRacingAClaimNeverLosesTheClosedBit) {
  const bool single = GetParam() != CloseCase::kMulti;
  const bool plain = GetParam() == CloseCase::kSinglePlain;
  if (plain && !membarrier_register()) GTEST_SKIP() << "membarrier GLOBAL_EXPEDITED is not available: claims use CAS";
  make_topic({.partitions = 1, .ring_bytes = 64 * 1024, .max_event = 1024, .flags = single ? kLogSingleProducer : 0u});
  const std::uint64_t seed = test::seed("close/claim litmus");
  RingLogWriter writer(&topic_->map, slot_, plain);
  const PartitionView& wv = topic_->part(0);
  std::mt19937_64 rng(seed);
  // Random delays on both sides around a base that adapts (every 64
  // iterations, between the barriers) so that about as many claims come
  // before the close as after it: the fetch_or then keeps landing near the
  // claim, whatever the machine's speed and load.
  std::vector<std::uint16_t> delays(1024), wdelays(1024);
  for (auto& d : delays) d = static_cast<std::uint16_t>(rng() % 48);
  for (auto& d : wdelays) d = static_cast<std::uint16_t>(rng() % 48);
  std::uint32_t wbase = 0, cbase = 0;  // written by the closer between the barriers
  std::uint32_t before = 0, after = 0, step = 4;
  Table seen{{"claim before the close, bit kept", 0}, {"claim saw the bit (kClosed), bit kept", 0}};
  Table bad{{"closed bit lost", 0}, {"other claim status", 0}};
  const std::uint64_t iterations = litmus_iterations() / 10;  // close() wakes 64 futex words: slower

  SpinBarrier barrier(2, 1u << 14);  // the claim's load-to-store window is a few nanoseconds wide
  std::atomic<int> writer_status{0};
  std::thread w([&] {
    for (std::uint64_t i = 0; i < iterations; ++i) {
      if (!barrier.arrive_and_wait()) return;  // start
      for (std::uint32_t d = wbase + wdelays[(i * 5) % wdelays.size()]; d > 0; --d) cpu_relax();
      std::uint64_t pos = 0;
      const Status st = writer.try_claim(0, 64, &pos);
      if (st == Status::kOk) {
        fill_record(wv, pos, 64, i);
        writer.commit_record(0, pos, 64);
        writer.finish(0);
      }
      writer_status.store(static_cast<int>(st), std::memory_order_relaxed);
      if (!barrier.arrive_and_wait()) return;  // done; the closer checks and reopens before the next start
    }
  });
  std::uint64_t n = 0;
  for (std::uint64_t i = 0; i < iterations; ++i) {
    if (!barrier.arrive_and_wait()) break;
    for (std::uint32_t d = cbase + delays[i % delays.size()]; d > 0; --d) cpu_relax();
    topic_->map.close();
    if (!barrier.arrive_and_wait()) break;
    const std::uint64_t raw = wv.part->tail.load();
    const auto st = static_cast<Status>(writer_status.load(std::memory_order_relaxed));
    if ((raw & kTailClosedBit) == 0) {
      ++bad["closed bit lost"];
      std::fprintf(stderr, "[litmus] closed bit lost at iteration %llu: tail=%llu, claim status %d\n",
                   static_cast<unsigned long long>(i), static_cast<unsigned long long>(raw), static_cast<int>(st));
      barrier.request_stop();
    } else if (st == Status::kOk) {
      ++seen["claim before the close, bit kept"];
      ++before;
    } else if (st == Status::kClosed) {
      ++seen["claim saw the bit (kClosed), bit kept"];
      ++after;
    } else {
      ++bad["other claim status"];
    }
    wv.part->tail.fetch_and(~kTailClosedBit);  // reopen for the next iteration (test only)
    if (before + after == 64) {
      // Steps grow with the imbalance's persistence (a yield on a loaded
      // machine is worth thousands of pauses) and shrink near balance.
      if (before > 2 * after) {  // the claim is usually first: delay it
        if (cbase > 0) cbase -= std::min(cbase, step); else wbase += step;
        step = std::min<std::uint32_t>(step * 2, 1u << 14);
      } else if (after > 2 * before) {  // the close is usually first: delay it
        if (wbase > 0) wbase -= std::min(wbase, step); else cbase += step;
        step = std::min<std::uint32_t>(step * 2, 1u << 14);
      } else {
        step = std::max<std::uint32_t>(step / 2, 4);
      }
      before = after = 0;
    }
    n = i + 1;
  }
  w.join();  // a stop request ends both loops at the same barrier
  print_table(plain    ? "close vs claim (single-producer topic, plain store)"
              : single ? "close vs claim (single-producer topic, CAS)"
                       : "close vs claim (multi-producer topic)",
              seen, bad, n);
  for (const auto& [k, c] : bad) EXPECT_EQ(c, 0u) << k;
  EXPECT_EQ(n, iterations);
}

INSTANTIATE_TEST_SUITE_P(Producers, RingLogCloseLitmusTest,
                         ::testing::Values(CloseCase::kMulti, CloseCase::kSingleCas, CloseCase::kSinglePlain),
                         [](const ::testing::TestParamInfo<CloseCase>& p) {
                           switch (p.param) {
                             case CloseCase::kMulti: return std::string("MultiProducer");
                             case CloseCase::kSingleCas: return std::string("SingleProducerCas");
                             case CloseCase::kSinglePlain: return std::string("SingleProducerPlainStore");
                           }
                           return std::string("Unknown");
                         });

}  // namespace
}  // namespace herald::shm
