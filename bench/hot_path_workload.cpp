// A small fixed workload for instruction-count profiling of the hot path
// (callgrind; perf has no hardware counters on the VMs we measure on):
//
//   valgrind --tool=callgrind --callgrind-out-file=cg.out
//            build/rel/bench/herald_hot_path_workload --mode=publish --events=102400 --size=64
//   callgrind_annotate --inclusive=yes cg.out | head -40
//
// One thread, one partition (a 16 MiB ring by default), a lossless group (or a group-less
// reader for --mode=lossy): rounds of `round` events published, then polled
// (256 a call, or --poll-max), so the ring never fills. Each phase is in its own noinline
// function (produce_round / consume_round) so callgrind's inclusive cost of
// it, divided by --events, is the per-event cost.
//
// Modes: publish (of a Message), payload (publish(payload, partition), the
// overload herald-bench's publish rows call), batch (publish_batch of 32),
// claim (claim/commit), lossy (publish + group-less copying reader), ring
// (the baseline ring, same shape), protocol (herald's log protocol without
// the runtime, bench/support/protocol_record.hpp: RingLogWriter's claim,
// the header written as publish writes it, event clock included, commit and
// finish; the reader peek_gated and a cursor store, as
// herald_protocol_pingpong's protocol stack). payload - protocol is what the
// runtime adds to an event: ids, counters, checks, the Result.
// --ring-bytes sets the ring (default 16 MiB, which misses L2 on every line
// written; 256 KiB stays in L2 and leaves the instructions alone).
// --single-producer creates the topic single-producer (claims by plain store).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <new>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "bench/baseline_spsc_ring.hpp"
#include "bench/support/bench_env.hpp"
#include "bench/support/protocol_record.hpp"
#include "herald/herald.hpp"
#include "shm/clock.hpp"
#include "shm/ring_log.hpp"
#include "shm/topic_map.hpp"

namespace herald::bench {
namespace {

enum class Mode { kPublish, kPayload, kBatch, kClaim, kLossy, kRing, kProtocol };

struct Args {
  std::string mode = "publish";
  Mode m = Mode::kPublish;
  std::uint64_t events = 102400;
  std::size_t size = 64;
  std::size_t round = 1024;
  std::size_t poll_max = 256;  // events per Consumer::poll call (1: the per-poll overhead on every event)
  bool single_producer = false;  // a single-producer topic: claims move tail by plain store
  // The partition's ring (and the baseline ring's): 16 MiB, the default,
  // misses L2 on every line written; a ring that fits in L2 leaves the
  // instructions and stores alone.
  std::uint64_t ring_bytes = 16ull << 20;
};

constexpr std::size_t kBatchN = 32;

using Clock = std::chrono::steady_clock;
double ns_since(Clock::time_point t0) { return std::chrono::duration<double, std::nano>(Clock::now() - t0).count(); }

void report(const char* mode, const Args& a, std::uint64_t events, std::uint64_t bad, double produce_ns,
            double consume_ns) {
  std::printf("%s: %llu events of %zu B, %llu out of sequence; wall ns/event: produce %.1f consume %.1f\n", mode,
              static_cast<unsigned long long>(events), a.size, static_cast<unsigned long long>(bad),
              produce_ns / static_cast<double>(events), consume_ns / static_cast<double>(events));
}

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "herald_hot_path_workload: %s\n", what.c_str());
  cleanup_all();
  std::exit(1);
}

__attribute__((noinline)) void produce_round(Producer& p, const Args& a, std::vector<std::byte>& payload,
                                             std::vector<Message>& batch, std::uint64_t* seq) {
  if (a.m == Mode::kBatch) {
    for (std::size_t i = 0; i < a.round; i += kBatchN) {
      for (auto& m : batch) {
        std::memcpy(const_cast<std::byte*>(m.payload.data()), seq, 8);
        ++*seq;
      }
      auto r = p.publish_batch(batch);
      if (!r) die(r.error().message());
    }
    return;
  }
  for (std::size_t i = 0; i < a.round; ++i) {
    if (a.m == Mode::kClaim) {
      auto c = p.claim(a.size);
      if (!c) die(c.error().message());
      std::memcpy(c->payload().data(), payload.data(), a.size);
      std::memcpy(c->payload().data(), seq, 8);
      if (auto r = c->commit(); !r) die(r.error().message());
    } else if (a.m == Mode::kPayload) {
      std::memcpy(payload.data(), seq, 8);
      auto r = p.publish(Bytes(payload.data(), a.size), 0);
      if (!r) die(r.error().message());
    } else {
      std::memcpy(payload.data(), seq, 8);
      auto r = p.publish({.payload = Bytes(payload.data(), a.size)});
      if (!r) die(r.error().message());
    }
    ++*seq;
  }
}

__attribute__((noinline)) std::uint64_t consume_round(Consumer& c, std::size_t n, std::size_t poll_max,
                                                      std::uint64_t* expect) {
  std::uint64_t bad = 0;
  std::size_t got = 0;
  while (got < n) {
    auto r = c.poll(
        [&](const EventView& e) {
          std::uint64_t s = 0;
          std::memcpy(&s, e.payload().data(), 8);
          bad += s != (*expect)++;
        },
        poll_max);
    if (!r) die(r.error().message());
    got += *r;
  }
  return bad;
}

__attribute__((noinline)) void ring_produce_round(SpscRingWriter& w, const Args& a, std::vector<std::byte>& payload,
                                                  std::uint64_t* seq) {
  for (std::size_t i = 0; i < a.round; ++i) {
    std::memcpy(payload.data(), seq, 8);
    ++*seq;
    if (!w.try_write(payload.data(), a.size)) die("baseline ring full");
  }
  w.publish();
}

__attribute__((noinline)) std::uint64_t ring_consume_round(SpscRingReader& r, std::size_t n, std::uint64_t* expect) {
  std::uint64_t bad = 0;
  std::size_t got = 0;
  while (got < n) {
    got += r.poll(
        [&](const std::byte* p, std::uint64_t) {
          std::uint64_t s = 0;
          std::memcpy(&s, p, 8);
          bad += s != (*expect)++;
        },
        256);
  }
  return bad;
}

int run_ring(const Args& a) {
  const std::uint64_t cap = a.ring_bytes;
  std::vector<std::byte> mem(4096 + cap);
  auto* layout = new (mem.data()) SpscRingLayout;
  ring_init(layout, cap);
  std::byte* data = mem.data() + 4096;
  SpscRingWriter w(layout, data);
  SpscRingReader r(layout, data);
  std::vector<std::byte> payload = make_payload(a.size);
  std::uint64_t seq = 0, expect = 0, bad = 0;
  double pns = 0, cns = 0;
  while (seq < a.events) {
    auto t0 = Clock::now();
    ring_produce_round(w, a, payload, &seq);
    pns += ns_since(t0);
    t0 = Clock::now();
    bad += ring_consume_round(r, a.round, &expect);
    cns += ns_since(t0);
  }
  report("ring", a, seq, bad, pns, cns);
  return bad == 0 ? 0 : 1;
}

// The protocol mode: the shm layer alone on a single-producer topic of its
// own (claims by plain store, as herald-bench's topics), no groups.
__attribute__((noinline)) void protocol_produce_round(shm::RingLogWriter& w, shm::EventClock& clock, const Args& a,
                                                      std::vector<std::byte>& payload, std::uint64_t* seq) {
  for (std::size_t i = 0; i < a.round; ++i) {
    std::memcpy(payload.data(), seq, 8);
    ++*seq;
    if (!protocol_send(w, 0, clock, payload.data(), static_cast<std::uint32_t>(a.size)))
      die("protocol: claim failed");
  }
}

__attribute__((noinline)) std::uint64_t protocol_consume_round(const shm::PartitionView& v, std::uint64_t* read,
                                                               std::atomic<std::uint64_t>& cursor, std::size_t n,
                                                               std::uint64_t* expect) {
  std::uint64_t bad = 0;
  for (std::size_t got = 0; got < n; ++got) {
    const shm::RecordHeader* h = nullptr;
    if (shm::peek_gated(v, *read, &h) != shm::Status::kOk) die("protocol: a published record is not there");
    std::uint64_t s = 0;
    std::memcpy(&s, reinterpret_cast<const std::byte*>(h) + shm::kRecordHeaderBytes, 8);
    bad += s != (*expect)++;
    *read += h->size;
    // Release, as a member's cursor CAS orders its reads before it.
    cursor.store(*read, std::memory_order_release);
  }
  return bad;
}

// The topic is created on the BenchBus's bus, whose destructor removes it
// with every other object of the bus.
int run_protocol(const Args& a, const std::string& bus) {
  const shm::LogParams params{.partitions = 1,
                              .ring_bytes = a.ring_bytes,
                              .max_event = std::min<std::uint64_t>(1ull << 20, a.ring_bytes / 4),
                              .flags = shm::kLogSingleProducer};
  auto topic = shm::TopicMap::create(bus, "proto", 1, params, {});
  if (!topic) die("protocol: " + topic.error().message());
  topic->prefault(0);
  // fast_wake: claims by plain store and no fence before the waiters
  // check, as a herald producer registered for membarrier (nobody parks).
  shm::RingLogWriter w(&*topic, 0, true);
  const shm::PartitionView& v = topic->partition(0);
  shm::EventClock clock;
  std::atomic<std::uint64_t> cursor{0};
  std::vector<std::byte> payload = make_payload(a.size);
  std::uint64_t seq = 0, expect = 0, bad = 0, read = 0;
  double pns = 0, cns = 0;
  while (seq < a.events) {
    auto t0 = Clock::now();
    protocol_produce_round(w, clock, a, payload, &seq);
    pns += ns_since(t0);
    t0 = Clock::now();
    bad += protocol_consume_round(v, &read, cursor, a.round, &expect);
    cns += ns_since(t0);
  }
  report("protocol", a, seq, bad, pns, cns);
  return bad == 0 ? 0 : 1;
}

int run(const Args& a) {
  if (a.m == Mode::kRing) return run_ring(a);
  if (a.round % kBatchN != 0 || a.events % a.round != 0) die("--events must be a multiple of --round, --round of 32");
  BenchBus bb("hot-path");
  if (bb.bus() == nullptr) die(bb.error());
  if (a.m == Mode::kProtocol) return run_protocol(a, bb.name());
  if (auto t = bb.bus()->create_topic(
          "t", {.partitions = 1,
                .ring_bytes = a.ring_bytes,
                .max_event = std::min<std::uint64_t>(1ull << 20, a.ring_bytes / 4),
                .default_policy = Policy::kLossless,
                .single_producer = a.single_producer});
      !t)
    die(t.error().message());
  auto p = bb.bus()->producer("t", {.wait = Wait::kBusySpin});
  if (!p) die(p.error().message());
  ConsumerOptions co{.wait = Wait::kBusySpin};
  if (a.m != Mode::kLossy) co.group = "g";
  auto c = bb.bus()->consumer("t", co);
  if (!c) die(c.error().message());
  std::vector<std::byte> payload = make_payload(a.size);
  std::vector<std::vector<std::byte>> bufs(kBatchN, make_payload(a.size));
  std::vector<Message> batch(kBatchN);
  for (std::size_t i = 0; i < kBatchN; ++i) batch[i].payload = Bytes(bufs[i].data(), a.size);
  std::uint64_t seq = 0, expect = 0, bad = 0;
  double pns = 0, cns = 0;
  while (seq < a.events) {
    auto t0 = Clock::now();
    produce_round(*p, a, payload, batch, &seq);
    pns += ns_since(t0);
    t0 = Clock::now();
    bad += consume_round(*c, a.round, a.poll_max, &expect);
    cns += ns_since(t0);
  }
  report(a.mode.c_str(), a, seq, bad, pns, cns);
  return bad == 0 ? 0 : 1;
}

}  // namespace
}  // namespace herald::bench

int main(int argc, char** argv) {
  herald::bench::init(&argc, argv);
  herald::bench::Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string s = argv[i];
    auto val = [&](const char* flag) -> const char* {
      const std::size_t n = std::strlen(flag);
      return s.compare(0, n, flag) == 0 ? argv[i] + n : nullptr;
    };
    if (const char* v = val("--mode=")) a.mode = v;
    else if (const char* v2 = val("--events=")) a.events = std::strtoull(v2, nullptr, 10);
    else if (const char* v3 = val("--size=")) a.size = std::strtoull(v3, nullptr, 10);
    else if (const char* v4 = val("--round=")) a.round = std::strtoull(v4, nullptr, 10);
    else if (const char* v5 = val("--poll-max=")) a.poll_max = std::strtoull(v5, nullptr, 10);
    else if (const char* v6 = val("--ring-bytes=")) a.ring_bytes = std::strtoull(v6, nullptr, 10);
    else if (s == "--single-producer") a.single_producer = true;
    else {
      std::fprintf(stderr,
                   "usage: herald_hot_path_workload [--mode=publish|payload|batch|claim|lossy|ring|protocol]\n"
                   "                                [--events=N] [--size=B] [--round=N] [--poll-max=N]\n"
                   "                                [--ring-bytes=N] [--single-producer]\n");
      return 2;
    }
  }
  if (a.size < 8) a.size = 8;
  if (a.poll_max == 0) {
    std::fprintf(stderr, "herald_hot_path_workload: --poll-max must be at least 1\n");
    return 2;
  }
  using herald::bench::Mode;
  if (a.mode == "publish") a.m = Mode::kPublish;
  else if (a.mode == "payload") a.m = Mode::kPayload;
  else if (a.mode == "batch") a.m = Mode::kBatch;
  else if (a.mode == "claim") a.m = Mode::kClaim;
  else if (a.mode == "lossy") a.m = Mode::kLossy;
  else if (a.mode == "ring") a.m = Mode::kRing;
  else if (a.mode == "protocol") a.m = Mode::kProtocol;
  else {
    std::fprintf(stderr, "herald_hot_path_workload: unknown --mode=%s\n", a.mode.c_str());
    return 2;
  }
  const int rc = herald::bench::run(a);
  herald::bench::cleanup_all();
  return rc;
}
