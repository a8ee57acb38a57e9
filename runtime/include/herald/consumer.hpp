// Consumer: reads a topic, as a member of a consumer group (each group has
// its own committed cursor per partition and sees every event) or as a
// group-less reader (tail and replay tools; never holds producers back).
//
// One thread at a time, as a Producer: make one Consumer per thread (they
// may be members of one group). poll(), commit() or seek() from another
// thread while one of them runs is refused (kInvalidArgument); only
// commit_async() may be called from anywhere. A handle belongs to the process
// that made it: a child forked with it alive must not use it (make a Bus of
// its own); destroying it there leaves the parent's membership and slots
// alone. The same holds for Producer and Claim.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "herald/event.hpp"
#include "herald/producer.hpp"
#include "herald/result.hpp"

namespace herald {

// What a group's backpressure does when its consumers fall a ring behind.
enum class Policy : std::uint8_t {
  kDefault,   // the topic's default (lag-out unless configured)
  kLossless,  // producers wait for the group: nothing published since it gates is overwritten unread
              // (older history, read after a start at earliest or a seek back, is read lossy)
  kLossy,     // producers never wait; a group that falls behind loses events, counted as gaps
  kLagOut,    // lossless while a member is alive; lossy once all are gone past the grace
};

// Where reading starts.
struct Offset {
  enum class Kind : std::uint8_t { kEarliest, kLatest, kPosition, kTime };
  Kind kind = Kind::kEarliest;
  std::uint64_t value = 0;
  static constexpr Offset earliest() noexcept { return {Kind::kEarliest, 0}; }
  static constexpr Offset latest() noexcept { return {Kind::kLatest, 0}; }
  // A position (an event's position(), or next_position()) is a byte offset
  // in one partition's log: as a consumer's start it is refused unless the
  // consumer reads one partition; seek(partition, at(pos)) names its own.
  static constexpr Offset at(std::uint64_t position) noexcept { return {Kind::kPosition, position}; }
  static constexpr Offset at_time(std::uint64_t time_ns) noexcept { return {Kind::kTime, time_ns}; }
};

// Where a reader goes when its position was overwritten (a lossy or demoted
// lag-out group, a group-less reader), like Kafka's auto.offset.reset. The
// gap is always counted and reported, exactly in bytes. kError fails the
// poll with kOverrun until the caller seeks; what is overwritten meanwhile
// is counted too, as more of the same gap.
enum class OffsetReset : std::uint8_t { kEarliest, kLatest, kError };

// When the group's cursor moves.
enum class CommitMode : std::uint8_t {
  kAfterHandle,   // at-least-once (default): each polled batch is committed after its handler calls return
  kBeforeHandle,  // at-most-once: committed before the handler runs (a lease protects the bytes meanwhile)
  kManual,        // only commit() moves the cursor
};

// How a group's partitions are spread over its members (heraldd decides).
enum class Assignor : std::uint8_t {
  kSticky,  // cooperative-sticky: balanced, and only the partitions that must move are revoked
  kRange,   // contiguous ranges in member order (Kafka's range)
};

// Partitions changing hands, reported inside poll().
using PartitionsCallback = std::function<void(std::span<const std::uint32_t>)>;

// A handler's verdict. A handler may also return void (success) or bool.
struct HandlerResult {
  bool ok = true;
  std::string reason{};
  static HandlerResult success() { return {}; }
  static HandlerResult failure(std::string why) { return {false, std::move(why)}; }
};
// A negative acknowledgement: the event is retried (with backoff, in order)
// and dead-lettered after max_deliveries.
inline HandlerResult nack(std::string reason) { return HandlerResult::failure(std::move(reason)); }

// Backoff between deliveries of a failing event: initial, times multiplier
// per retry, at most max. The partition waits; other partitions go on.
// Backoff between deliveries of a failing event: initial, then times
// multiplier each time, at most max. Checked when the consumer is made:
// 0 <= initial <= max <= kMaxRetryWait, multiplier finite and >= 1.
struct RetryPolicy {
  std::chrono::milliseconds initial = std::chrono::milliseconds(100);
  double multiplier = 2.0;
  std::chrono::milliseconds max = std::chrono::seconds(10);
};
inline constexpr std::chrono::milliseconds kMaxRetryWait = std::chrono::hours(24 * 365);

// Events a lossy read could not get (overwritten before this group read them).
struct GapReport {
  std::uint32_t partition = 0;
  std::uint64_t from = 0;   // the position the group was at
  std::uint64_t to = 0;     // where it resumed (per on_overrun); with kError, up to where bytes
                            // are known lost so far (tail - ring: not an event boundary)
  std::uint64_t bytes = 0;  // to - from
};

struct ConsumerOptions {
  std::string group{};                   // empty: a group-less reader
  Policy policy = Policy::kDefault;    // used when this call creates the group
  Offset start = Offset::earliest();   // a new group's cursor, or a group-less reader's start
  OffsetReset on_overrun = OffsetReset::kEarliest;
  std::vector<std::uint32_t> partitions{};  // group-less readers: which partitions (empty: all)
  CommitMode commit_mode = CommitMode::kAfterHandle;
  Wait wait = Wait::kPark;
  // After a poll drained a burst (at least 16 events), the next time a poll
  // finds nothing and would wait, it first pauses this long: the producer
  // gets ahead on lines no reader is touching, and the next drain takes a
  // run of finished records instead of chasing the one being written.
  // herald-bench, 64 B, two processes: publish_batch +5 % (vCPUs close) to
  // +23 % (far apart). A poll that drains one event at a time (request and
  // reply, paced streams) never pauses, nor does a poll with no timeout.
  // Zero: never.
  std::chrono::nanoseconds burst_settle = std::chrono::nanoseconds(1500);
  // Group membership (with heraldd):
  Assignor assignor = Assignor::kSticky;
  // A member outside poll() longer than this is stuck: its partitions move
  // to the others (it gets them back, if the assignor says so, once it polls).
  std::chrono::milliseconds max_poll_interval = std::chrono::seconds(30);
  PartitionsCallback on_assigned{};  // newly owned (reading starts at the committed cursor)
  PartitionsCallback on_revoked{};   // given up in a rebalance; handled events were committed first
  PartitionsCallback on_lost{};      // taken away without a chance to commit (this member was fenced)
  // Delivery (at-least-once groups): a failing event is retried with backoff
  // and, after max_deliveries deliveries (crashes inside the handler
  // included), moved to the group's dead-letter topic `<topic>.dlq.<group>`.
  // 0: retry forever; at most 1023.
  std::uint32_t max_deliveries = 5;
  RetryPolicy retry{};
  std::function<void(const GapReport&)> on_gap{};
};

struct ConsumerStats {
  std::uint64_t events = 0;     // handled successfully (poll) or returned (next)
  std::uint64_t gap_bytes = 0;  // lost to overruns (lossy reading), exact in bytes
  std::uint64_t gaps = 0;       // number of overruns
  std::uint64_t aborted_skipped = 0;  // aborted records passed over
  std::uint64_t failures = 0;         // handler failures (each is retried or dead-lettered)
  std::uint64_t dead_lettered = 0;    // events moved to the group's DLQ
  std::uint64_t skipped_redrives = 0; // redriven events meant for another group
};

// A non-owning, non-allocating reference to a callable (the handler).
template <class Sig>
class FunctionRef;
template <class R, class... A>
class FunctionRef<R(A...)> {
 public:
  template <class F>
    requires(!std::is_same_v<std::remove_cvref_t<F>, FunctionRef>)
  FunctionRef(F&& f) noexcept  // NOLINT: implicit by design
      : obj_(const_cast<void*>(static_cast<const void*>(&f))),
        call_([](void* o, A... a) -> R { return (*static_cast<std::remove_reference_t<F>*>(o))(std::forward<A>(a)...); }) {}
  R operator()(A... a) const { return call_(obj_, std::forward<A>(a)...); }

 private:
  void* obj_;
  R (*call_)(void*, A...);
};

class Consumer {
 public:
  // A moved-from Consumer may be assigned to or destroyed; any other call fails
  // with kInvalidArgument (accessors return zero or empty).
  Consumer(Consumer&&) noexcept;
  Consumer& operator=(Consumer&&) noexcept;
  Consumer(const Consumer&) = delete;
  Consumer& operator=(const Consumer&) = delete;
  ~Consumer();

  // Delivers up to `max` events to handler(const EventView&), waiting up to
  // `timeout` for the first one. Returns how many were handled. The handler
  // may return void, bool or HandlerResult; an exception it throws is a
  // failure and does not escape. An event this poll moves to the dead-letter
  // topic counts against `max` as well (stats().dead_lettered counts it),
  // and ends the wait as a handled one does.
  template <class F>
  Result<std::size_t> poll(F&& handler, std::size_t max = 256, std::chrono::nanoseconds timeout = {}) {
    // The handler as poll_impl calls it: true for success; a failure's
    // reason goes into `reason` (a string the consumer owns). So an event
    // that succeeds builds and destroys no std::string: a HandlerResult per
    // event cost an out-of-line string destructor call per event.
    auto wrapped = [&handler](const EventView& e, std::string& reason) -> bool {
      using R = std::invoke_result_t<F&, const EventView&>;
      if constexpr (std::is_void_v<R>) {
        handler(e);
        return true;
      } else if constexpr (std::is_same_v<R, bool>) {
        if (handler(e)) return true;
        reason = "handler returned false";
        return false;
      } else {
        HandlerResult verdict(handler(e));
        if (verdict.ok) return true;
        reason = std::move(verdict.reason);
        return false;
      }
    };
    return poll_impl(HandlerRef(wrapped), max, timeout);
  }

  // Pulls one event (an owned copy), waiting up to `timeout`; kTimeout if none.
  // kAfterHandle: the event is handled after next() returns, so it is
  // committed once the caller comes back: by the next next(), poll(),
  // commit() or seek(), or when the Consumer is destroyed normally (not
  // while an exception unwinds). A process that dies before gets it
  // delivered again (delivery() 2). kBeforeHandle commits it before it is
  // returned; kManual leaves it to commit(), and counts a death while the
  // caller holds it as a delivery too (max_deliveries, the DLQ).
  Result<Event> next(std::chrono::nanoseconds timeout = {});

  // Commits everything handled so far (a no-op when nothing is pending).
  Result<void> commit();
  // Commits `position` (a next_position() of a handled event) on a partition.
  Result<void> commit(std::uint32_t partition, std::uint64_t position);
  // Commits at the start of the next poll (coalescing many calls into one
  // CAS per partition). A commit is a CAS in shared memory, so the
  // synchronous commit() costs tens of nanoseconds already; this only saves
  // repeated ones in a per-event loop.
  void commit_async() noexcept;

  // Moves the read position (and, in a group, the committed cursor). Not
  // from inside this consumer's handler (kInvalidArgument), nor are poll()
  // and next(): the running poll would undo the seek, and a nested poll
  // would deliver the event being handled again.
  Result<void> seek(std::uint32_t partition, Offset where);
  Result<void> seek(Offset where);  // every assigned partition

  [[nodiscard]] std::vector<std::uint32_t> assignment() const;
  [[nodiscard]] std::uint64_t position(std::uint32_t partition) const noexcept;  // next read position
  Result<std::uint64_t> committed(std::uint32_t partition) const;
  [[nodiscard]] ConsumerStats stats() const noexcept;
  [[nodiscard]] const std::string& topic() const noexcept;
  [[nodiscard]] const std::string& group() const noexcept;

  struct Impl;

 private:
  friend class Bus;
  explicit Consumer(std::unique_ptr<Impl> impl);
  using HandlerRef = FunctionRef<bool(const EventView&, std::string& reason)>;
  // pull: next()'s poll (its event stays in flight after the handler; see
  // Impl::pulled in consumer.cpp). *dead_lettered: events this poll moved
  // to the DLQ (read while the poll still holds the consumer).
  Result<std::size_t> poll_impl(HandlerRef handler, std::size_t max, std::chrono::nanoseconds timeout,
                                bool pull = false, std::size_t* dead_lettered = nullptr);
  std::unique_ptr<Impl> impl_{};
};

}  // namespace herald
