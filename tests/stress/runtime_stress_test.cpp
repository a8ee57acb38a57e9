// Runtime stress, in one process (so TSan sees every thread): many
// producers into ONE partition with lossless groups reading concurrently,
// by publish and by publish_batch, with spin-then-yield and with parking
// consumers; a zero-copy claim held while others publish more than a ring;
// lossy readers racing the producers that overwrite them.
//
// Seeded (the seed is printed; HERALD_SEED replays), counts scaled by
// HERALD_STRESS_SCALE and further down under TSan, and bounded: a run that
// stops making progress fails with counts, tails and cursors, it never hangs.
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "herald/herald.hpp"
#include "tests/support/bus_fixture.hpp"
#include "tests/support/payload.hpp"
#include "tests/support/test_env.hpp"

namespace herald {
namespace {

using std::chrono::milliseconds;

// Generous: a bound that turns a hang into a failure, never a timing check.
constexpr double kDeadlineSeconds = 240;

std::uint64_t events_per_producer(std::uint64_t n) {
  const std::uint64_t v = test::scaled(n);
  return test::under_tsan() ? std::max<std::uint64_t>(v / 2, 1000) : v;
}

// Joins its threads on every way out of a test (an ASSERT returning early
// included) after raising `stop`, so a failing test never leaves a thread
// running. Declare it after everything its threads use.
class Threads {
 public:
  explicit Threads(std::atomic<bool>& stop) : stop_(stop) {}
  Threads(const Threads&) = delete;
  Threads& operator=(const Threads&) = delete;
  ~Threads() { join(); }
  template <class F>
  void start(F&& f) {
    threads_.emplace_back(std::forward<F>(f));
  }
  void join() {
    stop_.store(true);
    for (auto& t : threads_)
      if (t.joinable()) t.join();
    threads_.clear();
  }

 private:
  std::atomic<bool>& stop_;
  std::vector<std::thread> threads_;
};

// One reader's view of the stream: per producer, the next sequence number
// it must see. Exactly once and in order <=> every event is the next one.
struct Tally {
  explicit Tally(std::size_t producers) : next(producers, 0) {}
  std::vector<std::uint64_t> next;
  std::uint64_t events = 0;
  std::uint64_t bad_checksum = 0;
  std::uint64_t out_of_order = 0;  // duplicates, losses and reorders all land here
  std::uint64_t backwards = 0;     // duplicates and reorders only (a lossy reader may skip forward)
  std::string first_problem;

  void see(const EventView& e) {
    auto s = test::check_payload(e.payload());
    if (!s || s->producer >= next.size()) {
      if (bad_checksum++ == 0 && first_problem.empty())
        first_problem = "bad payload at position " + std::to_string(e.position());
      return;
    }
    if (s->seq != next[s->producer]) {
      if (s->seq < next[s->producer]) ++backwards;
      if (out_of_order++ == 0 && first_problem.empty())
        first_problem = "producer " + std::to_string(s->producer) + ": got seq " + std::to_string(s->seq) +
                        ", expected " + std::to_string(next[s->producer]) + " at position " +
                        std::to_string(e.position());
      next[s->producer] = s->seq + 1;
    } else {
      ++next[s->producer];
    }
    ++events;
  }
};

class RuntimeConcurrentTest : public test::BusFixture<> {
 protected:
  // Tails, beginnings, counters and every group's cursor, for failure output.
  std::string state_of(const std::string& topic) const {
    auto info = bus_->describe_topic(topic);
    if (!info) return "describe_topic failed: " + info.error().message();
    std::ostringstream s;
    for (const auto& p : info->partition_info)
      s << " p" << p.partition << "{tail=" << p.tail << " beginning=" << p.beginning << " events=" << p.events
        << " aborted=" << p.aborted_records << "}";
    for (const auto& g : info->groups)
      for (const auto& gp : g.partitions)
        s << " " << g.name << "/p" << gp.partition << "{committed=" << gp.committed << " lag=" << gp.lag_bytes
          << " gap=" << gp.gap_bytes << "}";
    return s.str();
  }

  struct Options {
    int producers = 4;
    int groups = 2;
    std::uint64_t per_producer = 250'000;
    bool batch = false;
    Wait producer_wait = Wait::kSpinYield;
    Wait consumer_wait = Wait::kSpinYield;
  };

  // N producer threads into one partition, one consumer thread per lossless
  // group: every group must see every event exactly once, per-producer order
  // kept, every payload intact.
  void run_many_to_one(const Options& o) {
    const std::uint64_t seed = test::seed(::testing::UnitTest::GetInstance()->current_test_info()->name());
    const std::uint64_t per = events_per_producer(o.per_producer);
    const std::uint64_t total = per * static_cast<std::uint64_t>(o.producers);
    ASSERT_TRUE(bus_->create_topic("s", {.partitions = 1, .ring_bytes = 1 << 18, .max_event = 4096,
                                         .default_policy = Policy::kLossless}));

    std::atomic<bool> stop{false};
    std::vector<std::unique_ptr<Tally>> tallies;
    std::vector<std::atomic<std::uint64_t>> seen(static_cast<std::size_t>(o.groups));
    std::vector<std::string> consumer_errors(static_cast<std::size_t>(o.groups));
    std::vector<std::atomic<std::uint64_t>> published(static_cast<std::size_t>(o.producers));
    std::vector<std::atomic<std::uint64_t>> backpressured(static_cast<std::size_t>(o.producers));
    std::vector<std::string> producer_errors(static_cast<std::size_t>(o.producers));
    Threads threads(stop);
    for (int g = 0; g < o.groups; ++g) tallies.push_back(std::make_unique<Tally>(static_cast<std::size_t>(o.producers)));
    // Groups first, so they gate from position 0.
    for (int g = 0; g < o.groups; ++g) {
      auto c = bus_->consumer("s", {.group = "g" + std::to_string(g), .wait = o.consumer_wait});
      ASSERT_TRUE(c) << c.error().message();
      threads.start([&, g, consumer = std::make_shared<Consumer>(std::move(c).value())] {
        Tally& t = *tallies[static_cast<std::size_t>(g)];
        while (!stop.load(std::memory_order_relaxed) && t.events < total) {
          auto n = consumer->poll([&](const EventView& e) { t.see(e); }, 256, milliseconds(20));
          if (!n) {
            consumer_errors[static_cast<std::size_t>(g)] = n.error().message();
            return;
          }
          seen[static_cast<std::size_t>(g)].store(t.events, std::memory_order_relaxed);
        }
        seen[static_cast<std::size_t>(g)].store(t.events, std::memory_order_relaxed);
      });
    }
    for (int pi = 0; pi < o.producers; ++pi) {
      auto pr = bus_->producer("s", {.deadline = milliseconds(100), .wait = o.producer_wait});
      ASSERT_TRUE(pr) << pr.error().message();
      threads.start([&, pi, producer = std::make_shared<Producer>(std::move(pr).value())] {
        const auto id = static_cast<std::uint32_t>(pi);
        test::SplitMix rng(seed + id);
        std::vector<std::string> payloads;
        std::vector<Message> batch;
        std::uint64_t seq = 0;
        while (seq < per && !stop.load(std::memory_order_relaxed)) {
          const std::uint64_t k = o.batch ? std::min<std::uint64_t>(rng.in(1, 48), per - seq) : 1;
          payloads.clear();
          for (std::uint64_t j = 0; j < k; ++j)
            payloads.push_back(test::make_payload(rng.in(test::kStampBytes, 600), {id, 0, seq + j}));
          std::uint64_t done = 0;
          while (done < k && !stop.load(std::memory_order_relaxed)) {
            if (o.batch) {
              batch.clear();
              for (std::uint64_t j = done; j < k; ++j) batch.push_back({.payload = payloads[j]});
              auto r = producer->publish_batch(batch);
              if (r) {
                done += r->published;  // a partial batch: the rest is retried, in order
                if (r->error && r->error->code != Errc::kBackPressured) {
                  producer_errors[static_cast<std::size_t>(pi)] = r->error->message();
                  return;
                }
                if (r->error) backpressured[static_cast<std::size_t>(pi)].fetch_add(1, std::memory_order_relaxed);
              } else if (r.error().code == Errc::kBackPressured) {
                backpressured[static_cast<std::size_t>(pi)].fetch_add(1, std::memory_order_relaxed);
              } else {
                producer_errors[static_cast<std::size_t>(pi)] = r.error().message();
                return;
              }
            } else {
              auto r = producer->publish({.payload = payloads[done]});
              if (r) {
                ++done;
              } else if (r.error().code == Errc::kBackPressured) {
                backpressured[static_cast<std::size_t>(pi)].fetch_add(1, std::memory_order_relaxed);
              } else {
                producer_errors[static_cast<std::size_t>(pi)] = r.error().message();
                return;
              }
            }
          }
          seq += done;
          published[static_cast<std::size_t>(pi)].store(seq, std::memory_order_relaxed);
        }
      });
    }

    auto progress = [&] {
      std::ostringstream s;
      s << "published";
      for (auto& p : published) s << " " << p.load();
      s << " (backpressured";
      for (auto& b : backpressured) s << " " << b.load();
      s << ") seen";
      for (auto& x : seen) s << " " << x.load();
      s << " of " << total << ";" << state_of("s");
      return s.str();
    };
    const bool finished = test::wait_until(
        [&] {
          for (std::size_t g = 0; g < seen.size(); ++g)
            if (seen[g].load() < total && consumer_errors[g].empty()) return false;
          return true;
        },
        kDeadlineSeconds, progress);
    const std::string at_end = progress();
    threads.join();

    EXPECT_TRUE(finished) << at_end;
    for (std::size_t pi = 0; pi < producer_errors.size(); ++pi)
      EXPECT_EQ(producer_errors[pi], "") << "producer " << pi;
    for (std::size_t g = 0; g < tallies.size(); ++g) {
      const Tally& t = *tallies[g];
      SCOPED_TRACE("group g" + std::to_string(g));
      EXPECT_EQ(consumer_errors[g], "");
      EXPECT_EQ(t.bad_checksum, 0u) << t.first_problem;
      EXPECT_EQ(t.out_of_order, 0u) << t.first_problem;
      EXPECT_EQ(t.events, total) << at_end;
      for (std::size_t pi = 0; pi < t.next.size(); ++pi)
        EXPECT_EQ(t.next[pi], per) << "producer " << pi << ": " << at_end;
    }
    const auto info = bus_->describe_topic("s").value();
    EXPECT_EQ(info.partition_info[0].events, total);
    for (const auto& g : info.groups) EXPECT_EQ(g.partitions[0].lag_bytes, 0u) << g.name << ": " << at_end;
  }
};

TEST_F(RuntimeConcurrentTest, FourProducersOnePartitionTwoLosslessGroupsSpinYield) {
  run_many_to_one({});
}

TEST_F(RuntimeConcurrentTest, FourBatchProducersOnePartitionTwoLosslessGroups) {
  run_many_to_one({.batch = true});
}

TEST_F(RuntimeConcurrentTest, ParkingConsumersAreWokenUnderLoad) {
  // The park/wake path: consumers (and producers under backpressure) sleep
  // on futexes; a lost wake-up shows as a stall until the 50 ms safety net,
  // never as a failure, so this checks correctness of delivery under parking.
  run_many_to_one({.per_producer = 100'000, .producer_wait = Wait::kPark, .consumer_wait = Wait::kPark});
}

// A producer that holds a zero-copy claim while the others publish more than
// a ring is never lapped: the others are back-pressured (or wait) at one ring
// past the held claim, the claimed bytes stay as written, and after the
// commit everything flows again — the lossless group included, which waited
// at the held record.
TEST_F(RuntimeConcurrentTest, HeldClaimIsNeverLappedAndEverythingFlowsAfterItsCommit) {
  const std::uint64_t seed = test::seed("HeldClaimIsNeverLapped");
  constexpr std::uint64_t kRing = 1 << 16;
  ASSERT_TRUE(bus_->create_topic("c", {.partitions = 1, .ring_bytes = kRing, .max_event = 1024}));
  constexpr int kOthers = 2;
  // Each other producer publishes 3 rings' worth (records of 64..640 bytes).
  const std::uint64_t per = 3 * kRing / 352;
  const std::uint64_t total = 1 + per * kOthers;

  auto group = bus_->consumer("c", {.group = "audit", .policy = Policy::kLossless, .wait = Wait::kSpinYield}).value();
  auto holder = bus_->producer("c").value();
  const std::size_t held_len = 500;
  auto claim = holder.claim(held_len);
  ASSERT_TRUE(claim) << claim.error().message();
  test::make_payload(claim->payload().data(), held_len, {0, 0, 0});
  const std::uint64_t held_pos = bus_->describe_topic("c").value().partition_info[0].tail - 576;

  std::atomic<bool> stop{false};
  std::atomic<bool> committed{false};
  Tally tally(kOthers + 1);
  std::atomic<std::uint64_t> seen{0};
  std::string consumer_error;
  std::vector<std::atomic<std::uint64_t>> published(kOthers);
  std::vector<std::atomic<std::uint64_t>> refused_before_commit(kOthers);
  std::vector<std::string> errors(kOthers);
  Threads threads(stop);
  threads.start([&, c = std::make_shared<Consumer>(std::move(group))] {
    while (!stop.load() && tally.events < total) {
      auto n = c->poll([&](const EventView& e) { tally.see(e); }, 256, milliseconds(20));
      if (!n) {
        consumer_error = n.error().message();
        return;
      }
      seen.store(tally.events);
    }
    seen.store(tally.events);
  });
  for (int i = 0; i < kOthers; ++i) {
    auto pr = bus_->producer("c", {.deadline = milliseconds(5), .wait = Wait::kSpinYield});
    ASSERT_TRUE(pr) << pr.error().message();
    threads.start([&, i, p = std::make_shared<Producer>(std::move(pr).value())] {
      const auto id = static_cast<std::uint32_t>(i + 1);
      test::SplitMix rng(seed + id);
      std::uint64_t seq = 0;
      while (seq < per && !stop.load()) {
        const std::string payload = test::make_payload(rng.in(test::kStampBytes, 592), {id, 0, seq});
        auto r = p->publish({.payload = payload});
        if (r) {
          published[static_cast<std::size_t>(i)].store(++seq);
        } else if (r.error().code == Errc::kBackPressured) {
          if (!committed.load()) refused_before_commit[static_cast<std::size_t>(i)].fetch_add(1);
        } else {
          errors[static_cast<std::size_t>(i)] = r.error().message();
          return;
        }
      }
    });
  }
  auto progress = [&] {
    std::ostringstream s;
    s << "held at " << held_pos << "; published";
    for (auto& p : published) s << " " << p.load();
    s << "; refused";
    for (auto& r : refused_before_commit) s << " " << r.load();
    s << "; seen " << seen.load() << " of " << total << ";" << state_of("c");
    return s.str();
  };

  // Both others end up refused: they cannot claim past held_pos + ring.
  const bool blocked = test::wait_until(
      [&] {
        for (std::size_t i = 0; i < kOthers; ++i)
          if (refused_before_commit[i].load() < 3 && errors[i].empty()) return false;
        return true;
      },
      kDeadlineSeconds, progress);
  EXPECT_TRUE(blocked) << progress();
  const auto info = bus_->describe_topic("c").value();
  EXPECT_LE(info.partition_info[0].tail, held_pos + kRing) << "a producer claimed over the held record: " << progress();
  EXPECT_LE(info.groups[0].partitions[0].committed, held_pos) << "the group passed an uncommitted record";
  // The claimed bytes are exactly as the holder wrote them: nobody lapped them.
  EXPECT_TRUE(test::check_payload(claim->payload())) << "held claim overwritten: " << progress();
  EXPECT_LT(seen.load(), total);

  committed.store(true);
  auto done = claim->commit();
  ASSERT_TRUE(done) << done.error().message();
  EXPECT_EQ(done->position, held_pos);
  const bool flowed = test::wait_until([&] { return seen.load() >= total || !consumer_error.empty(); },
                                       kDeadlineSeconds, progress);
  const std::string at_end = progress();
  threads.join();
  EXPECT_TRUE(flowed) << at_end;
  for (const auto& e : errors) EXPECT_EQ(e, "");
  EXPECT_EQ(consumer_error, "");
  EXPECT_EQ(tally.bad_checksum, 0u) << tally.first_problem;
  EXPECT_EQ(tally.out_of_order, 0u) << tally.first_problem;
  EXPECT_EQ(tally.events, total) << at_end;
  EXPECT_EQ(tally.next[0], 1u) << "the held event was delivered once";
  for (int i = 1; i <= kOthers; ++i) EXPECT_EQ(tally.next[static_cast<std::size_t>(i)], per) << "producer " << i;
}

// Lossy readers racing producers that overwrite them: never a torn event
// (every delivered payload passes its checksum), per-producer order kept,
// and the gaps exact in bytes: delivered + lost == everything published.
TEST_F(RuntimeConcurrentTest, LossyReadersRacingOverwritesNeverDeliverTornEvents) {
  const std::uint64_t seed = test::seed("LossyReadersRacingOverwrites");
  constexpr std::uint64_t kRing = 1 << 14;
  ASSERT_TRUE(bus_->create_topic("l", {.partitions = 1, .ring_bytes = kRing, .max_event = 2048}));
  constexpr int kProducers = 2;
  const std::uint64_t per = events_per_producer(100'000);

  struct Reader {
    std::unique_ptr<Consumer> consumer;
    Tally tally{kProducers};
    std::uint64_t delivered_bytes = 0;
    std::string error;
    std::atomic<bool> done{false};
  };
  std::vector<std::unique_ptr<Reader>> readers;
  for (int r = 0; r < 2; ++r) {
    auto c = r == 0 ? bus_->consumer("l", {.group = "dash", .policy = Policy::kLossy, .wait = Wait::kSpinYield})
                    : bus_->consumer("l", {.wait = Wait::kSpinYield});
    ASSERT_TRUE(c) << c.error().message();
    readers.push_back(std::make_unique<Reader>());
    readers.back()->consumer = std::make_unique<Consumer>(std::move(c).value());
  }
  std::atomic<int> producers_done{0};
  std::vector<std::string> errors(kProducers);
  std::atomic<bool> stop{false};
  Threads threads(stop);
  for (auto& rd : readers) {
    threads.start([&, r = rd.get()] {
      // Read until the producers are done and the reader is at the tail.
      while (!stop.load()) {
        const bool last = producers_done.load() == kProducers;
        auto n = r->consumer->poll(
            [&](const EventView& e) {
              r->tally.see(e);
              r->delivered_bytes += e.next_position() - e.position();
            },
            64, milliseconds(1));
        if (!n) {
          r->error = n.error().message();
          break;
        }
        if (last && *n == 0) break;
      }
      r->done.store(true);
    });
  }
  for (int i = 0; i < kProducers; ++i) {
    auto pr = bus_->producer("l", {.wait = Wait::kSpinYield});
    ASSERT_TRUE(pr) << pr.error().message();
    threads.start([&, i, p = std::make_shared<Producer>(std::move(pr).value())] {
      const auto id = static_cast<std::uint32_t>(i);
      test::SplitMix rng(seed + id);
      // Producer 0 publishes one event per call (records padded to whole
      // lines); producer 1 publishes batches of 1..16, whose records are
      // packed 16-byte aligned, so the readers resynchronise inside batches.
      std::vector<std::string> payloads;
      std::vector<Message> batch;
      for (std::uint64_t seq = 0; seq < per && !stop.load();) {
        const std::uint64_t n = i == 0 ? 1 : std::min<std::uint64_t>(rng.in(1, 16), per - seq);
        payloads.clear();
        batch.clear();
        for (std::uint64_t k = 0; k < n; ++k)
          payloads.push_back(test::make_payload(rng.in(test::kStampBytes, 1900), {id, 0, seq + k}));
        for (const auto& pl : payloads) batch.push_back({.payload = pl});
        std::string error;
        if (i == 0) {
          auto r = p->publish(batch[0]);
          if (!r) error = r.error().message();
        } else {
          auto r = p->publish_batch(batch);
          if (!r) error = r.error().message();
          else if (r->published != n) error = "a batch stopped part way: " + r->error->message();
        }
        if (!error.empty()) {
          errors[static_cast<std::size_t>(i)] = error;
          break;
        }
        seq += n;
      }
      producers_done.fetch_add(1);
    });
  }
  // Bounded: producers never wait (nothing gates), readers stop at the tail.
  const bool finished =
      test::wait_until([&] { return producers_done.load() == kProducers; }, kDeadlineSeconds) &&
      test::wait_until(
          [&] {
            for (auto& rd : readers)
              if (!rd->done.load()) return false;
            return true;
          },
          kDeadlineSeconds);
  threads.join();
  EXPECT_TRUE(finished);

  const auto info = bus_->describe_topic("l").value();
  const std::uint64_t tail = info.partition_info[0].tail;
  for (const auto& e : errors) EXPECT_EQ(e, "");
  for (std::size_t r = 0; r < readers.size(); ++r) {
    SCOPED_TRACE(r == 0 ? "lossy group" : "group-less reader");
    const Reader& rd = *readers[r];
    const ConsumerStats st = rd.consumer->stats();
    EXPECT_EQ(rd.error, "");
    EXPECT_EQ(rd.tally.bad_checksum, 0u) << rd.tally.first_problem;
    // Lossy: a per-producer sequence may jump forward (a gap), never back.
    EXPECT_EQ(rd.tally.backwards, 0u) << rd.tally.first_problem;
    for (std::size_t pi = 0; pi < kProducers; ++pi) EXPECT_LE(rd.tally.next[pi], per);
    EXPECT_EQ(rd.delivered_bytes + st.gap_bytes, tail)
        << "delivered " << rd.delivered_bytes << " + gaps " << st.gap_bytes << " (" << st.gaps << ") != tail";
    EXPECT_EQ(rd.consumer->position(0), tail);
    std::fprintf(stderr, "[herald] %s: %llu events delivered, %llu gaps, %llu bytes lost, of %llu\n",
                 r == 0 ? "lossy group" : "group-less reader", static_cast<unsigned long long>(rd.tally.events),
                 static_cast<unsigned long long>(st.gaps), static_cast<unsigned long long>(st.gap_bytes),
                 static_cast<unsigned long long>(per * kProducers));
  }
}

}  // namespace
}  // namespace herald
