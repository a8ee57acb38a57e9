// Where a herald ping-pong's time goes: one message in flight between two
// processes, through three stacks, interleaved repetition by repetition in
// one run (the vCPU placement of a VM changes from minute to minute, so only
// numbers taken side by side compare):
//
//   ring      the baseline SPSC ring (baseline_spsc_ring.hpp), 64 B payload
//             in a 72 B record, its index published per message.
//   protocol  herald's log protocol alone, the shm layer without the
//             runtime (bench/support/protocol_record.hpp): RingLogWriter::
//             try_claim of a 128 B record (48 B header, payload), the header
//             written as publish writes it (event clock included, read
//             before the claim), commit_record + finish; the reader
//             peek_gated, copies the payload and CASes a cursor word, as a
//             group member commits. A single-producer topic, no groups.
//   herald    the public API: Producer::publish(payload, partition),
//             Consumer::poll(max 1) of a lossless group member, committed
//             per poll (herald-bench's "herald publish spin" row).
//
// Each waiting side looks again after a `pause`, as herald-bench's spin rows
// and herald's Wait::kBusySpin do. Round trip / 2 per message, p50/p90/p99
// per stack and repetition, then the medians and herald's ratios. Every echo
// is checked (its sequence number); a wrong one fails the run.
//
//   herald_protocol_pingpong [--round-trips=N] [--reps=N] [--rate=R] [--group-less]
//
// --group-less: the API stack's readers are group-less consumers, which
// read by copy (read_copy, validated against tail) instead of in place.
//
// --rate=R: one way instead, paced: side A sends message i at its intended
// time (start + i/R, read from CLOCK_MONOTONIC, waited for with `pause`)
// with that time in the payload; side B records when it has the message
// minus that time (so a late send counts, as in herald-bench's latency
// rows). This is herald-bench's "latency" scenario through the same three
// stacks, to find which layer a gap that depends on the rate lives in.
//
// bench/RESULTS.md ("Where a ping-pong hop goes") has what it showed: the
// protocol alone is as fast as the ring, and herald's extra time per hop is
// the runtime's instructions between seeing a record and committing the
// reply.
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <string_view>
#include <vector>

#include "bench/baseline_spsc_ring.hpp"
#include "bench/support/bench_env.hpp"
#include "bench/support/protocol_record.hpp"
#include "bench/support/round_trip.hpp"
#include "herald/herald.hpp"
#include "shm/clock.hpp"
#include "shm/futex.hpp"
#include "shm/mapping.hpp"
#include "shm/ring_log.hpp"
#include "shm/topic_map.hpp"

namespace herald::bench {
namespace {

constexpr std::size_t kPayload = 64;
constexpr std::uint64_t kRingBytes = 16ull << 20;
constexpr int kWarmup = 1000;  // round trips before the measured ones

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "herald_protocol_pingpong: %s\n", what.c_str());
  cleanup_all();
  std::exit(1);
}

struct Percentiles {
  double p50 = 0, p90 = 0, p99 = 0;
};

// Of a hop (round trip / 2), or in the paced mode of the one-way latency.
Percentiles percentiles(std::vector<std::uint64_t>& rtt, bool one_way) {
  std::sort(rtt.begin(), rtt.end());
  const double div = one_way ? 1 : 2;
  auto at = [&](double q) { return static_cast<double>(rtt[static_cast<std::size_t>(q * static_cast<double>(rtt.size() - 1))]) / div; };
  return {at(0.50), at(0.90), at(0.99)};
}

// The sequence number travels in the payload's first 8 bytes.
std::uint64_t seq_of(const std::byte* p) {
  std::uint64_t s = 0;
  std::memcpy(&s, p, sizeof s);
  return s;
}

// The paced mode's shared state: the receiver's latencies, written by the
// child process into a shared anonymous mapping the parent reads after it
// exits. Set in main before any stack runs.
struct Paced {
  double rate = 0;                       // messages/s; 0: ping-pong
  std::uint64_t* lat = nullptr;          // [round_trips] one-way latencies, ns
  std::size_t cap = 0;
};
Paced g_paced;
bool g_group_less = false;  // --group-less

// Runs `pong` in a child process (it exits with 0 when every message came
// in order) and `ping` here; returns ping's round trips. A failed child is a
// failed run.
// In the paced mode the child's latencies are returned instead.
template <class Pong, class Ping>
std::vector<std::uint64_t> two_processes(const char* what, Pong&& pong, Ping&& ping) {
  const pid_t kid = ::fork();
  if (kid < 0) die(std::string("fork: ") + std::strerror(errno));
  if (kid == 0) ::_exit(pong() ? 0 : 1);
  std::vector<std::uint64_t> rtt = ping();
  int status = 0;
  if (::waitpid(kid, &status, 0) != kid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
    die(std::string(what) + ": the pong side failed (a message out of sequence, or an error)");
  if (g_paced.rate > 0) rtt.assign(g_paced.lat, g_paced.lat + g_paced.cap);
  return rtt;
}

// The paced mode's loops (--rate): side A sends, side B receives and times.
// The intended send time travels in the payload's second 8 bytes.
template <class Recv>
bool paced_recv_loop(int messages, Recv&& recv) {
  std::byte buf[kPayload];
  for (int i = 0; i < messages + kWarmup; ++i) {
    recv(buf);
    const std::uint64_t now = shm::monotonic_ns();
    if (seq_of(buf) != static_cast<std::uint64_t>(i)) return false;
    std::uint64_t stamp = 0;
    std::memcpy(&stamp, buf + 8, sizeof stamp);
    if (i >= kWarmup) g_paced.lat[i - kWarmup] = now > stamp ? now - stamp : 0;
  }
  return true;
}

template <class Send>
std::vector<std::uint64_t> paced_send_loop(int messages, Send&& send) {
  std::byte buf[kPayload] = {};
  const double interval = 1e9 / g_paced.rate;
  const std::uint64_t start = shm::monotonic_ns() + 1'000'000;  // the receiver is waiting by then
  for (int i = 0; i < messages + kWarmup; ++i) {
    const std::uint64_t seq = static_cast<std::uint64_t>(i);
    const std::uint64_t stamp = start + static_cast<std::uint64_t>(static_cast<double>(i) * interval);
    while (shm::monotonic_ns() < stamp) shm::cpu_relax();
    std::memcpy(buf, &seq, sizeof seq);
    std::memcpy(buf + 8, &stamp, sizeof stamp);
    send(buf);
  }
  return {};
}

// Pong side's loop, shared by the three stacks: wait for message i, check
// it is i, echo it. False on a message out of sequence.
template <class Send, class Recv>
bool pong_loop(int round_trips, Send&& send, Recv&& recv) {
  std::byte buf[kPayload];
  for (int i = 0; i < round_trips + kWarmup; ++i) {
    recv(buf);
    if (seq_of(buf) != static_cast<std::uint64_t>(i)) return false;
    send(buf);
  }
  return true;
}

// Ping side's loop, shared by the three stacks: send i, wait for the echo
// of i, time it.
template <class Send, class Recv>
std::vector<std::uint64_t> ping_loop(const char* what, int round_trips, Send&& send, Recv&& recv) {
  std::vector<std::uint64_t> rtt;
  rtt.reserve(static_cast<std::size_t>(round_trips));
  std::byte buf[kPayload] = {};
  for (int i = 0; i < round_trips + kWarmup; ++i) {
    const std::uint64_t seq = static_cast<std::uint64_t>(i);
    std::memcpy(buf, &seq, sizeof seq);
    const std::uint64_t t0 = shm::monotonic_ns();
    send(buf);
    recv(buf);
    const std::uint64_t t1 = shm::monotonic_ns();
    if (seq_of(buf) != seq)
      die(std::string(what) + ": echo " + std::to_string(seq_of(buf)) + " for message " + std::to_string(seq));
    if (i >= kWarmup) rtt.push_back(t1 - t0);
  }
  return rtt;
}

// Side B of a stack: echoes (ping-pong) or receives and times (paced).
template <class Send, class Recv>
bool side_b(int n, Send&& send, Recv&& recv) {
  if (g_paced.rate > 0) return paced_recv_loop(n, recv);
  return pong_loop(n, send, recv);
}
// Side A of a stack: sends and times round trips, or sends paced.
template <class Send, class Recv>
std::vector<std::uint64_t> side_a(const char* what, int n, Send&& send, Recv&& recv) {
  if (g_paced.rate > 0) return paced_send_loop(n, send);
  return ping_loop(what, n, send, recv);
}

std::vector<std::uint64_t> run_ring(int round_trips) {
  // Two rings (there and back) in one shared anonymous mapping, populated
  // (here and in the child) so that neither side takes page faults while
  // measured.
  const std::size_t one = 4096 + kRingBytes;
  void* m = ::mmap(nullptr, 2 * one, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (m == MAP_FAILED) die(std::string("mmap: ") + std::strerror(errno));
  auto* mem = static_cast<std::byte*>(m);
  auto* there = reinterpret_cast<SpscRingLayout*>(mem);
  auto* back = reinterpret_cast<SpscRingLayout*>(mem + one);
  ring_init(there, kRingBytes);
  ring_init(back, kRingBytes);
  std::byte* there_data = mem + 4096;
  std::byte* back_data = mem + one + 4096;
  auto recv_from = [](SpscRingReader& r, std::byte* buf) {
    while (r.poll([&](const std::byte* p, std::uint64_t n) { std::memcpy(buf, p, std::min<std::uint64_t>(n, kPayload)); },
                  1) == 0)
      shm::cpu_relax();
  };
  auto send_to = [](SpscRingWriter& w, const std::byte* buf) {
    while (!w.try_write(buf, kPayload)) shm::cpu_relax();
  };
  auto rtt = two_processes(
      "ring",
      [&] {
        // fork() does not copy a shared mapping's page-table entries: the
        // child populates its own, or it faults once per page of its first lap.
        shm::populate_pages(mem, 2 * one);
        SpscRingReader r(there, there_data);
        SpscRingWriter w(back, back_data, 1);
        return side_b(
            round_trips, [&](const std::byte* b) { send_to(w, b); }, [&](std::byte* b) { recv_from(r, b); });
      },
      [&] {
        SpscRingWriter w(there, there_data, 1);
        SpscRingReader r(back, back_data);
        return side_a(
            "ring", round_trips, [&](const std::byte* b) { send_to(w, b); }, [&](std::byte* b) { recv_from(r, b); });
      });
  ::munmap(m, 2 * one);
  return rtt;
}

// One direction of the protocol stack: a writer on one topic, a reader
// (and its cursor word) on the other.
struct ProtocolSide {
  shm::RingLogWriter writer;  // on the outgoing topic
  const shm::PartitionView* in;
  std::uint64_t read = 0;
  std::atomic<std::uint64_t>* cursor;
  shm::EventClock clock;

  void send(const std::byte* buf) {
    while (!protocol_send(writer, 0, clock, buf, kPayload)) shm::cpu_relax();
  }
  void recv(std::byte* buf) {
    const shm::RecordHeader* h = nullptr;
    while (shm::peek_gated(*in, read, &h) != shm::Status::kOk) shm::cpu_relax();
    std::memcpy(buf, reinterpret_cast<const std::byte*>(h) + shm::kRecordHeaderBytes, kPayload);
    read += h->size;
    // As a group member's commit: a CAS from the value it last saw.
    std::uint64_t seen = cursor->load(std::memory_order_relaxed);
    cursor->compare_exchange_strong(seen, read, std::memory_order_seq_cst);
  }
};

std::vector<std::uint64_t> run_protocol(const std::string& bus, int rep, int round_trips) {
  const shm::LogParams params{.partitions = 1, .ring_bytes = kRingBytes, .max_event = 1u << 20,
                              .flags = shm::kLogSingleProducer};
  const std::string there_name = "there" + std::to_string(rep), back_name = "back" + std::to_string(rep);
  auto there = shm::TopicMap::create(bus, there_name, 1, params, {});
  if (!there) die("protocol: " + there.error().message());
  auto back = shm::TopicMap::create(bus, back_name, 1, params, {});
  if (!back) die("protocol: " + back.error().message());
  there->prefault(0);
  back->prefault(0);
  // The two cursor words, one per reader, on lines of their own.
  void* m = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) die(std::string("mmap: ") + std::strerror(errno));
  auto* cursors = new (m) std::atomic<std::uint64_t>[64]{};
  // fast_wake: single-producer claims by plain store, no fence before the
  // waiters check (herald's producers register for membarrier to get this;
  // nobody parks here).
  auto rtt = two_processes(
      "protocol",
      [&] {
        there->prefault(0);  // the child's own page tables, as for the ring
        back->prefault(0);
        ProtocolSide s{shm::RingLogWriter(&*back, 1, true), &there->partition(0), 0, &cursors[0], {}};
        return side_b(
            round_trips, [&](const std::byte* b) { s.send(b); }, [&](std::byte* b) { s.recv(b); });
      },
      [&] {
        ProtocolSide s{shm::RingLogWriter(&*there, 0, true), &back->partition(0), 0, &cursors[32], {}};
        return side_a(
            "protocol", round_trips, [&](const std::byte* b) { s.send(b); }, [&](std::byte* b) { s.recv(b); });
      });
  ::munmap(m, 4096);
  shm::TopicMap::remove(bus, there_name, 1);
  shm::TopicMap::remove(bus, back_name, 1);
  return rtt;
}

std::vector<std::uint64_t> run_herald(Bus& bus, const std::string& bus_name, int rep, int round_trips) {
  const TopicConfig cfg{.partitions = 1, .ring_bytes = kRingBytes, .default_policy = Policy::kLossless,
                        .single_producer = true};
  const std::string there = "api-there" + std::to_string(rep), back = "api-back" + std::to_string(rep);
  for (const auto& t : {there, back})
    if (auto r = bus.create_topic(t, cfg); !r) die("herald: " + r.error().message());
  const ConsumerOptions co{.group = g_group_less ? "" : "g", .policy = Policy::kLossless,
                           .start = Offset::earliest(), .wait = Wait::kBusySpin};
  const ProducerOptions po{.wait = Wait::kBusySpin};
  auto send_to = [](Producer& p, const std::byte* b) {
    if (auto r = p.publish(Bytes(b, kPayload), 0); !r) die(r.error().message());
  };
  auto recv_from = [](Consumer& c, std::byte* b) {
    for (;;) {
      auto n = c.poll([&](const EventView& e) { std::memcpy(b, e.payload().data(), kPayload); }, 1,
                      std::chrono::milliseconds(100));
      if (!n) die(n.error().message());
      if (*n == 1) return;
    }
  };
  auto rtt = two_processes(
      "herald",
      [&] {
        auto b2 = Bus::attach(bus_name);
        if (!b2) return false;
        auto c = b2->consumer(there, co);
        auto p = b2->producer(back, po);
        if (!c || !p) return false;
        return side_b(
            round_trips, [&](const std::byte* b) { send_to(*p, b); }, [&](std::byte* b) { recv_from(*c, b); });
      },
      [&] {
        auto c = bus.consumer(back, co);
        if (!c) die("herald: " + c.error().message());
        auto p = bus.producer(there, po);
        if (!p) die("herald: " + p.error().message());
        return side_a(
            "herald", round_trips, [&](const std::byte* b) { send_to(*p, b); }, [&](std::byte* b) { recv_from(*c, b); });
      });
  for (const auto& t : {there, back}) (void)bus.delete_topic(t);
  return rtt;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

}  // namespace
}  // namespace herald::bench

int main(int argc, char** argv) {
  using namespace herald::bench;
  init(&argc, argv);
  int round_trips = 100000, reps = 6;
  for (int i = 1; i < argc; ++i) {
    if (std::sscanf(argv[i], "--round-trips=%d", &round_trips) == 1 && round_trips > 0) continue;
    if (std::sscanf(argv[i], "--reps=%d", &reps) == 1 && reps > 0) continue;
    if (std::sscanf(argv[i], "--rate=%lf", &g_paced.rate) == 1 && g_paced.rate > 0 && g_paced.rate <= 1e8) continue;
    if (std::string_view(argv[i]) == "--group-less") {
      g_group_less = true;
      continue;
    }
    std::fprintf(stderr,
                 "usage: herald_protocol_pingpong [--round-trips=N] [--reps=N] [--rate=R (1..1e8 messages/s)] "
                 "[--group-less] "
                 "(got '%s')\n",
                 argv[i]);
    return 2;
  }
  const bool paced = g_paced.rate > 0;
  if (paced) {
    g_paced.cap = static_cast<std::size_t>(round_trips);
    void* m = ::mmap(nullptr, g_paced.cap * sizeof(std::uint64_t), PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (m == MAP_FAILED) die(std::string("mmap: ") + std::strerror(errno));
    g_paced.lat = static_cast<std::uint64_t*>(m);
  }
  if (g_group_less) std::printf("(the API stack's readers: group-less consumers, reading by copy)\n");
  BenchBus bb("pingpong");
  if (bb.bus() == nullptr) die("bus: " + bb.error());
  const char* names[] = {"ring", "protocol", "herald"};
  std::vector<double> p50[3];
  if (paced)
    std::printf("64 B one way between two processes, paced at %.0f/s, latency from the intended send time, %d "
                "messages per repetition\n",
                g_paced.rate, round_trips);
  else
    std::printf("64 B ping-pong between two processes, round trip / 2, %d round trips per repetition\n", round_trips);
  std::printf("| rep | line round trip | stack | p50 | p90 | p99 |\n|---:|---:|---|---:|---:|---:|\n");
  for (int rep = 0; rep < reps; ++rep) {
    const double line = cache_line_round_trip_ns(-1, -1);
    for (int s = 0; s < 3; ++s) {
      std::fprintf(stderr, "rep %d/%d: %s\n", rep + 1, reps, names[s]);
      std::vector<std::uint64_t> rtt = s == 0   ? run_ring(round_trips)
                                       : s == 1 ? run_protocol(bb.name(), rep, round_trips)
                                                : run_herald(*bb.bus(), bb.name(), rep, round_trips);
      const Percentiles pc = percentiles(rtt, paced);
      p50[s].push_back(pc.p50);
      std::printf("| %d | %.0f ns | %s | %.1f ns | %.1f ns | %.1f ns |\n", rep + 1, line, names[s], pc.p50, pc.p90,
                  pc.p99);
      std::fflush(stdout);
    }
  }
  const double ring = median(p50[0]), protocol = median(p50[1]), api = median(p50[2]);
  std::printf("\nmedians of p50: ring %.1f ns, protocol %.1f ns (%.2fx the ring), herald %.1f ns (%.2fx the ring, "
              "%.2fx the protocol)\n",
              ring, protocol, protocol / ring, api, api / ring, api / protocol);
  return 0;
}
