// The harness loops every transport runs through, and the type-erased entry
// herald-bench keeps per transport.
//
// One repetition of one row (run_rep<T>): the coordinator builds T::Host,
// forks the consumers (or the pong side), waits until each says it is ready
// (its Receiver attached), forks the producers (or the ping side), waits for
// them, then releases every producer at once by closing the "go" pipe. Each
// child reports back through a pipe of its own (ChildReport, then a latency
// histogram where it measured one) and _exits. Every wait is bounded: a
// child gives up at its own deadline with a reason, and one that still runs
// later is killed by pid (Rep's destructor); the row then fails with the
// reason, the run goes on.
//
// Verification, in every consumer: the message's size and checksum
// (message.hpp), per-producer sequence order (a gap is loss, a step back is
// reordering or duplication), and the end markers' counts. The coordinator
// also checks each consumer received what the producers say they sent.
//
// Hot loops: templates instantiated per transport, no virtual call, no
// allocation, no std::function per message; the clock is read per message
// only where it is the measurement (paced producers, latency consumers).
#pragma once

#include <sched.h>
#include <sys/types.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "bench/harness/message.hpp"
#include "bench/harness/transport.hpp"
#include "tools/common/histogram.hpp"

namespace herald::bench {

inline constexpr int kMaxProducers = 8;

// What one child process reports (binary, through its pipe).
struct ChildReport {
  std::uint32_t ok = 0;
  std::uint32_t has_histogram = 0;  // a tools::Histogram follows
  std::uint64_t received = 0;       // data messages (end markers not counted)
  std::uint64_t sent = 0;           // producers: data messages sent
  std::uint64_t first_ns = 0;       // consumers: first data message; producers: start (after go)
  std::uint64_t last_ns = 0;        // consumers: the last end marker; producers: end
                                    // (rates: from the first producer's start to a consumer's last_ns)
  std::uint64_t lost = 0, out_of_order = 0, corrupt = 0;
  char error[320] = {};
};
static_assert(std::is_trivially_copyable_v<ChildReport>);
static_assert(std::is_trivially_copyable_v<tools::Histogram>);

// One repetition of one row, as the coordinator sees it.
struct RepResult {
  bool ok = false;        // ran to the end and verified
  std::string error;      // why not
  std::uint64_t events = 0;            // data messages per consumer (the slowest one's count)
  double seconds = 0;                  // first producer's start -> the slowest consumer's last message
  double events_per_s = 0;             // headline: the slowest consumer (pingpong: round trips/s)
  std::vector<double> consumer_rates;  // one per consumer (fanout: one per group)
  std::shared_ptr<tools::Histogram> latency;  // latency / pingpong, ns
};

// A transport, type-erased (no per-message call goes through it).
struct TransportEntry {
  std::string name;
  std::string (*describe)(const RowSpec&) = nullptr;
  std::string (*skip_reason)(const RowSpec&) = nullptr;
  RepResult (*run)(const RowSpec&) = nullptr;
};

namespace detail {

// A child's end of the plumbing.
struct ChildIo {
  int fd = -1;                 // report pipe (write end)
  int go_fd = -1;              // read end of the go pipe (EOF = go)
  std::uint64_t deadline_ns = 0;  // CLOCK_MONOTONIC: give up (with a reason) after this
  bool reported = false;
  void ready() noexcept;       // "R": attached, waiting for go
  bool wait_go() noexcept;     // false at the deadline
  void send(const ChildReport& r, const tools::Histogram* h) noexcept;
  [[nodiscard]] bool late() const noexcept { return mono_ns() > deadline_ns; }
};

// Fills r.error (truncated) from printf-style arguments.
void set_error(ChildReport& r, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

// The processes of one repetition (coordinator side).
class Rep {
 public:
  explicit Rep(const RowSpec& spec);
  ~Rep();  // kills (SIGKILL, by pid) and reaps any child still running
  Rep(const Rep&) = delete;
  Rep& operator=(const Rep&) = delete;

  // Forks a child that runs body(ChildIo&) -> exit code and _exits.
  template <class Body>
  void start(std::string label, bool producer, Body&& body) {
    ChildIo io;
    if (!fork_child(std::move(label), producer, &io)) return;  // coordinator (or fork failed: recorded)
    int rc = 1;
    try {
      rc = body(io);
    } catch (const std::exception& e) {
      ChildReport r;
      set_error(r, "%s", e.what());
      io.send(r, nullptr);
    }
    child_exit(io, rc);
  }
  // Until every child started so far said "ready" (false: error() says why).
  bool wait_ready();
  void go();
  // Until every child reported and exited (bounded); false: error() says why.
  bool wait_done();
  [[nodiscard]] const std::string& error() const noexcept { return error_; }
  RepResult failed() const;
  // The row's result from the children's reports (after wait_done).
  RepResult collect() const;
  // Child i (in start order): its pid, and its report (false if it sent none).
  [[nodiscard]] pid_t pid(std::size_t i) const noexcept;
  bool report(std::size_t i, ChildReport* out) const;

 private:
  struct Proc;
  bool fork_child(std::string label, bool producer, ChildIo* io);
  [[noreturn]] static void child_exit(ChildIo& io, int rc) noexcept;
  bool pump(std::uint64_t until_ns, bool for_ready);

  const RowSpec& spec_;
  std::vector<std::unique_ptr<Proc>> procs_;
  std::vector<int> cpus_;
  int go_read_ = -1, go_write_ = -1;
  std::uint64_t budget_ns_ = 0;
  std::uint64_t started_ns_ = 0;
  std::string error_;
};

// How a side waits between empty polls / full sends.
inline void idle(WaitMode w) noexcept {
  if (w == WaitMode::kSpin) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  } else {
    ::sched_yield();
  }
}

template <class S>
concept ZeroCopySender = requires(S& s, std::size_t n) {
  { s.zero_copy() } -> std::same_as<bool>;
  { s.try_send_with(n, [](std::byte*) {}) } -> std::same_as<bool>;
};

// Calls try_once until it sends, waiting per `wait` between tries; false
// when the row's deadline passes first (checked every 1024 tries).
template <class F>
inline bool send_retrying(F&& try_once, WaitMode wait, ChildIo& io) {
  for (std::uint32_t spins = 0;; ++spins) {
    if (try_once()) return true;
    if ((spins & 1023) == 1023 && io.late()) return false;
    idle(wait);
  }
}

// Sends one message (retrying while the transport is full, bounded).
template <class S>
inline bool send_one(S& s, std::byte* buf, std::size_t size, std::uint64_t seq, std::uint32_t producer,
                     std::uint64_t stamp, WaitMode wait, ChildIo& io) {
  bool copy = true;
  if constexpr (ZeroCopySender<S>) copy = !s.zero_copy();
  if (copy) write_message(buf, size, seq, producer, stamp);
  return send_retrying(
      [&] {
        if constexpr (ZeroCopySender<S>) {
          if (s.zero_copy())
            return s.try_send_with(size, [&](std::byte* p) { write_message(p, size, seq, producer, stamp); });
        }
        return s.try_send(buf, size);
      },
      wait, io);
}

// Per-producer order, sizes and checksums of what one consumer receives.
struct Verifier {
  std::size_t size = 0;
  int producers = 1;
  int ends = 0;
  std::array<std::uint64_t, kMaxProducers> next{};
  std::array<std::uint64_t, kMaxProducers> end_count{};
  std::array<bool, kMaxProducers> ended{};
  std::uint64_t received = 0, lost = 0, out_of_order = 0, corrupt = 0;

  // Checks one message; fills h. False for an end marker or a corrupt one.
  bool on_message(const std::byte* p, std::size_t n, MessageHeader& h) noexcept {
    if (n != size || !check_message(p, n, h) || h.producer >= static_cast<std::uint32_t>(producers)) {
      ++corrupt;
      return false;
    }
    const std::uint32_t k = h.producer;
    if (h.seq == kEndSeq) {
      if (!ended[k]) ++ends;
      ended[k] = true;
      end_count[k] = h.stamp_ns;
      return false;
    }
    ++received;
    if (h.seq == next[k]) {
      ++next[k];
    } else if (h.seq > next[k]) {
      lost += h.seq - next[k];
      next[k] = h.seq + 1;
    } else {
      ++out_of_order;  // a step back: reordered or duplicated
    }
    return true;
  }
  [[nodiscard]] bool done() const noexcept { return ends >= producers; }
  // After the end markers: what never arrived.
  void finish(ChildReport& r) noexcept {
    for (std::size_t k = 0; k < static_cast<std::size_t>(producers); ++k)
      if (ended[k] && end_count[k] > next[k]) lost += end_count[k] - next[k];
    r.received = received;
    r.lost = lost;
    r.out_of_order = out_of_order;
    r.corrupt = corrupt;
    r.ok = done() && lost == 0 && out_of_order == 0 && corrupt == 0;
    if (!done())
      set_error(r, "gave up at the deadline: %d of %d end markers, %llu messages", ends, producers,
                static_cast<unsigned long long>(received));
    else if (!r.ok)
      set_error(r, "verification failed: %llu lost, %llu reordered or duplicated, %llu corrupt",
                static_cast<unsigned long long>(lost), static_cast<unsigned long long>(out_of_order),
                static_cast<unsigned long long>(corrupt));
  }
};

constexpr std::chrono::milliseconds kPollTimeout{50};

// ---- the loops -------------------------------------------------------------

template <class T>
int consumer_child(typename T::Host& host, const RowSpec& spec, Endpoint ep, ChildIo& io) {
  typename T::Receiver r(host, spec, ep);
  const bool latency = spec.scenario == Scenario::kLatency;
  std::unique_ptr<tools::Histogram> hist = latency ? std::make_unique<tools::Histogram>() : nullptr;
  Verifier v;
  v.size = spec.size;
  v.producers = spec.producers;
  ChildReport rep;
  io.ready();
  std::uint64_t first = 0;
  auto on = [&](const std::byte* p, std::size_t n) {
    MessageHeader h;
    if (v.on_message(p, n, h)) {
      if (latency) {
        const std::uint64_t now = mono_ns();
        hist->record(now > h.stamp_ns ? now - h.stamp_ns : 0);
      }
      if (first == 0) first = mono_ns();
    }
  };
  for (std::uint32_t idle_polls = 0; !v.done();) {
    if (r.poll(on, 256, kPollTimeout) == 0) {
      if ((++idle_polls & 255) == 0 && io.late()) break;
      idle(spec.wait);
    }
  }
  rep.last_ns = mono_ns();
  rep.first_ns = first;
  v.finish(rep);
  io.send(rep, hist.get());
  return rep.ok ? 0 : 1;
}

template <class T>
int producer_child(typename T::Host& host, const RowSpec& spec, Endpoint ep, ChildIo& io) {
  typename T::Sender s(host, spec, ep);
  std::vector<std::byte> buf(spec.size);
  ChildReport rep;
  io.ready();
  if (!io.wait_go()) {
    set_error(rep, "no go signal before the deadline");
    io.send(rep, nullptr);
    return 1;
  }
  const auto producer = static_cast<std::uint32_t>(ep.index);
  const double interval = spec.rate > 0 ? 1e9 / spec.rate : 0;
  const std::uint64_t start = mono_ns();
  std::uint64_t seq = 0;
  for (;; ++seq) {
    if (spec.count != 0 && seq >= spec.count) break;
    if (spec.duration_ns != 0 && (seq & 255) == 0 && mono_ns() - start >= spec.duration_ns) break;
    std::uint64_t stamp = 0;
    if (interval > 0) {
      stamp = start + static_cast<std::uint64_t>(static_cast<double>(seq) * interval);
      if (mono_ns() < stamp) {
        s.flush();  // about to wait: make everything sent so far visible
        while (mono_ns() < stamp) idle(spec.oversubscribed ? WaitMode::kYield : WaitMode::kSpin);
      }
    }
    if (!send_one(s, buf.data(), spec.size, seq, producer, stamp, spec.wait, io)) {
      set_error(rep, "message %llu: the transport stayed full until the deadline",
                static_cast<unsigned long long>(seq));
      io.send(rep, nullptr);
      return 1;
    }
  }
  rep.sent = seq;
  if (!send_one(s, buf.data(), spec.size, kEndSeq, producer, seq, spec.wait, io)) {
    set_error(rep, "end marker: the transport stayed full until the deadline");
    io.send(rep, nullptr);
    return 1;
  }
  s.flush();
  rep.first_ns = start;
  rep.last_ns = mono_ns();
  rep.ok = 1;
  io.send(rep, nullptr);
  return 0;
}

// Ping-pong, side B: echoes every message of route 0 on route 1, from
// inside the receive handler, as a request/reply service does: the reply
// leaves before the transport's own work after a delivery (herald's cursor
// commit, the ring's read index), which then overlaps the reply's flight.
// The request is copied into a private buffer and echoed from there, as
// before: echoed straight from the delivered bytes (the request's lines in
// the peer's ring), the ring's 64 B hop took ~40 ns longer far apart, and
// herald's no less (bench/RESULTS.md, "ninth session").
template <class T>
int pong_child(typename T::Host& host, const RowSpec& spec, ChildIo& io) {
  typename T::Receiver r(host, spec, Endpoint{0, 0});
  typename T::Sender s(host, spec, Endpoint{1, 0});
  std::vector<std::byte> buf(spec.size);
  Verifier v;
  v.size = spec.size;
  ChildReport rep;
  io.ready();
  bool stuck = false;  // an echo found no room before the deadline
  auto on = [&](const std::byte* p, std::size_t n) {
    MessageHeader h;
    v.on_message(p, n, h);
    if (n != spec.size) return;  // counted as corrupt by the verifier
    std::memcpy(buf.data(), p, n);
    if (!send_retrying([&] { return s.try_send(buf.data(), n); }, spec.wait, io)) {
      stuck = true;
      return;
    }
    s.flush();
  };
  for (std::uint32_t idle_polls = 0; !v.done() && !stuck;) {
    if (r.poll(on, 1, kPollTimeout) == 0) {
      if ((++idle_polls & 255) == 0 && io.late()) break;
      idle(spec.wait);
    }
  }
  v.finish(rep);
  if (stuck) {
    set_error(rep, "an echo found no room on route 1 before the deadline");
    rep.ok = 0;
  }
  io.send(rep, nullptr);
  return rep.ok ? 0 : 1;
}

// Ping-pong, side A: sends on route 0, waits for the echo on route 1,
// records round trip / 2. The round trip ends when the echo reaches the
// receive handler (the clock is read there, as the latency rows read it),
// not when the transport's poll returns after its own bookkeeping.
template <class T>
int ping_child(typename T::Host& host, const RowSpec& spec, ChildIo& io) {
  typename T::Receiver r(host, spec, Endpoint{1, 0});
  typename T::Sender s(host, spec, Endpoint{0, 0});
  std::vector<std::byte> buf(spec.size);
  auto hist = std::make_unique<tools::Histogram>();
  Verifier v;
  v.size = spec.size;
  ChildReport rep;
  io.ready();
  if (!io.wait_go()) {
    set_error(rep, "no go signal before the deadline");
    io.send(rep, nullptr);
    return 1;
  }
  MessageHeader last{};
  bool fresh = false;
  std::uint64_t t1 = 0;
  auto on = [&](const std::byte* p, std::size_t n) {
    t1 = mono_ns();
    fresh = v.on_message(p, n, last) || last.seq == kEndSeq;
  };
  const std::uint64_t start = mono_ns();
  std::uint64_t seq = 0;
  bool ok = true;
  for (;; ++seq) {
    const bool end = (spec.count != 0 && seq >= spec.count) ||
                     (spec.duration_ns != 0 && mono_ns() - start >= spec.duration_ns);
    const std::uint64_t want = end ? kEndSeq : seq;
    const std::uint64_t t0 = mono_ns();
    if (!send_one(s, buf.data(), spec.size, want, 0, end ? seq : t0, spec.wait, io)) {
      ok = false;
      break;
    }
    s.flush();
    fresh = false;
    for (std::uint32_t idle_polls = 0; !fresh;) {
      if (r.poll(on, 1, kPollTimeout) == 0) {
        if ((++idle_polls & 255) == 0 && io.late()) break;
        idle(spec.wait);
      }
    }
    if (!fresh || last.seq != want) {
      ok = false;
      break;
    }
    if (end) break;
    hist->record((t1 - t0) / 2);
  }
  rep.sent = seq;
  rep.first_ns = start;
  rep.last_ns = mono_ns();
  v.finish(rep);
  if (!ok && rep.error[0] == '\0')
    set_error(rep, "round trip %llu: no echo before the deadline", static_cast<unsigned long long>(seq));
  rep.ok = rep.ok && ok;
  io.send(rep, hist.get());
  return rep.ok ? 0 : 1;
}

// One repetition of one row with transport T.
template <class T>
RepResult run_rep(const RowSpec& spec) {
  try {
    typename T::Host host(spec);
    Rep rep(spec);  // declared after host: its children are gone before the host is torn down
    if (spec.scenario == Scenario::kPingPong) {
      rep.start("pong side", false, [&](ChildIo& io) { return pong_child<T>(host, spec, io); });
      if (!rep.wait_ready()) return rep.failed();
      rep.start("ping side", true, [&](ChildIo& io) { return ping_child<T>(host, spec, io); });
    } else {
      for (int c = 0; c < spec.consumers; ++c)
        rep.start("consumer " + std::to_string(c), false,
                  [&](ChildIo& io) { return consumer_child<T>(host, spec, Endpoint{0, c}, io); });
      if (!rep.wait_ready()) return rep.failed();
      for (int p = 0; p < spec.producers; ++p)
        rep.start("producer " + std::to_string(p), true,
                  [&](ChildIo& io) { return producer_child<T>(host, spec, Endpoint{0, p}, io); });
    }
    if (!rep.wait_ready()) return rep.failed();
    rep.go();
    if (!rep.wait_done()) return rep.failed();
    return rep.collect();
  } catch (const std::exception& e) {
    RepResult r;
    r.error = e.what();
    return r;
  }
}

}  // namespace detail

template <class T>
TransportEntry make_transport() {
  return TransportEntry{std::string(T::kName), &T::describe, &T::skip_reason, &detail::run_rep<T>};
}

}  // namespace herald::bench
