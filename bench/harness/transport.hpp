// herald-bench's transport interface: what every row's transport (herald in
// its modes, the baseline ring, and each peer) provides to the harness.
//
// Process model. The coordinator (herald-bench's main process, single
// threaded) builds a transport's Host for one repetition of one row, then
// fork()s the row's processes: producers and consumers (or the two sides of a
// ping-pong). A child inherits the Host by fork and builds its Sender /
// Receiver from it; the harness loops (runner.cpp) drive them, so the loops,
// pacing, stamping and verification are the same code for every transport.
// After the children exit the coordinator destroys the Host (removing queues,
// stopping a daemon it started). Nothing here is virtual on the per-message
// path: the loops are templates instantiated per transport (make_transport).
//
// Routes. A route is one logical channel (a topic, a ring, a queue, a
// socket pair, a stream). throughput / latency / mpsc use route 0; pingpong
// uses route 0 (ping, side A -> side B) and route 1 (pong, B -> A); fanout
// has every consumer read route 0 and each must see every message.
//
// A transport type T provides:
//
//   static constexpr std::string_view kName;      // "zeromq", the --peers name
//   static std::string describe(const RowSpec&);  // what one message includes,
//                                                 // for the table's footnote
//   static std::string skip_reason(const RowSpec&);  // "" when the row can run;
//                                                 // else why not (missing
//                                                 // package, foreign RouDi,
//                                                 // no broadcast for fanout…)
//   struct Host {                                 // built in the coordinator
//     explicit Host(const RowSpec&);              // throws BenchError
//     ~Host();                                    // removes what it made
//   };
//   struct Sender {                               // built in a child
//     Sender(Host&, const RowSpec&, Endpoint);    // throws BenchError
//     // Sends one message, or returns false when the transport is full right
//     // now (the harness then waits per the row's WaitMode and retries).
//     // Blocking transports may block instead (bounded; throw on timeout).
//     bool try_send(const std::byte* p, std::size_t n);
//     void flush();                               // make everything sent visible
//   };
//   struct Receiver {                             // built in a child
//     Receiver(Host&, const RowSpec&, Endpoint);  // throws BenchError
//     // Delivers up to `max` messages to f(const std::byte*, std::size_t),
//     // returns how many. With WaitMode::kSpin it never blocks in the kernel;
//     // otherwise it may block up to `timeout` for the first message.
//     template <class F> std::size_t poll(F&& f, std::size_t max,
//                                         std::chrono::milliseconds timeout);
//   };
//
// A Sender may also provide a zero-copy path; the loops use it when
// `zero_copy()` is true (herald's "claim" mode):
//     bool zero_copy() const;
//     // Reserves n bytes in the transport, calls fill(std::byte*) to write
//     // the message in place, then publishes it; false when full right now
//     // (nothing reserved, fill not called).
//     template <class Fill> bool try_send_with(std::size_t n, Fill&& fill);
// Batching is a Sender's own business (herald's "batch" mode gathers
// messages in try_send and publishes them together; flush() publishes the
// rest). The loops call flush() whenever they are about to wait (a paced
// producer ahead of its schedule, a ping waiting for its pong) and after the
// end marker.
//
// End of a stream: each producer's last message is an end marker (seq =
// kEndSeq, message.hpp) whose stamp_ns field holds how many messages that
// producer sent before it, so a consumer knows it got all of them.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

namespace herald::bench {

enum class Scenario { kThroughput, kLatency, kPingPong, kFanout, kMpsc };

// How a side waits when there is nothing to read / no room to write.
//   kSpin:  busy-poll (never enters the kernel on an empty poll).
//   kYield: poll, sched_yield between empty polls (oversubscribed rows).
//   kBlock: the transport's own blocking wait (futex park for herald, a
//           blocking recv for sockets), bounded by the poll timeout.
enum class WaitMode { kSpin, kYield, kBlock };

// One row of the table, one repetition of it.
struct RowSpec {
  Scenario scenario = Scenario::kThroughput;
  std::string transport;     // kName of the transport
  std::string mode;          // transport-specific: herald "publish" | "batch" | "claim"; "" otherwise
  WaitMode wait = WaitMode::kSpin;
  std::size_t size = 64;     // payload bytes (>= kMinMessage)
  std::uint64_t count = 0;   // messages per producer (0: until duration_ns)
  std::uint64_t duration_ns = 0;  // producers stop after this long (0: after count)
  double rate = 0;           // latency: messages/s per producer; 0 = as fast as possible
  int producers = 1;
  int consumers = 1;
  std::size_t ring_bytes = std::size_t{16} << 20;  // per route, for transports with a ring
  std::string unique;        // unique among all rows of this run: prefix shm / socket names with it
  pid_t run_pid = 0;         // the coordinator's pid: with `unique`, unique among runs at once
  std::string workdir;       // a private temporary folder for this run (sockets, config files)
  bool pin = false;          // children pinned to distinct cores (never two spinners on one)
  bool oversubscribed = false;  // fewer cores than busy processes: `wait` is kYield or kBlock, never kSpin
};

// Which end of which route a Sender / Receiver is.
struct Endpoint {
  int route = 0;  // 0 or 1 (pingpong's pong)
  int index = 0;  // producer index (mpsc) or consumer index (fanout), from 0
};

// An error that fails the row (not the run): the harness prints it and goes on.
struct BenchError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::string_view scenario_name(Scenario s) noexcept;
std::string_view wait_name(WaitMode w) noexcept;

}  // namespace herald::bench
