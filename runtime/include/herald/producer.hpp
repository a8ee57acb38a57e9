// Producer: appends events to a topic's partitions. One thread at a time
// (checked in debug builds); make one Producer per publishing thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "herald/event.hpp"
#include "herald/result.hpp"

namespace herald {

// How a blocked call waits: burn a core (lowest latency), spin then yield,
// or spin, yield, then park on a futex (~0% CPU when idle; the default).
enum class Wait : std::uint8_t { kBusySpin, kSpinYield, kPark };

struct ProducerOptions {
  // How long publish waits when a gating group has not caught up, then
  // returns Errc::kBackPressured having published nothing. Zero: do not wait.
  std::chrono::nanoseconds deadline = std::chrono::seconds(1);
  Wait wait = Wait::kPark;
  // Default `source` for events that do not name one.
  std::string source{};
  // Idempotence identity: a producer restarted with the same id learns its
  // last committed sequence (0: none). One live producer per id and topic:
  // a second one is refused (kBusy) while the first lives.
  std::uint64_t producer_id = 0;
};

// Where an event landed.
struct Published {
  std::uint32_t partition = 0;
  std::uint64_t position = 0;
  EventId id{};
  // An idempotent producer's sequence at or below its last committed one
  // (a retry of an event written before, or a sequence that went back: the
  // check is a high-water mark, so sequences must increase): not published,
  // and partition and position are 0 (where the first one landed is not
  // looked up).
  bool duplicate = false;
};

struct ProducerStats {
  std::uint64_t events = 0;
  std::uint64_t bytes = 0;
  std::uint64_t backpressure_waits = 0;
};

class Claim;
namespace detail {
struct ProducerFactory;  // the runtime's internal producers (dead letters, redrives)
}

class Producer {
 public:
  // A moved-from Producer may be assigned to or destroyed; any other call fails
  // with kInvalidArgument (accessors return zero or empty).
  Producer(Producer&&) noexcept;
  Producer& operator=(Producer&&) noexcept;
  Producer(const Producer&) = delete;
  Producer& operator=(const Producer&) = delete;
  ~Producer();

  // Copies one event into the log. Errors: kTooLarge (names the sizes),
  // kInvalidArgument (a field over its limit, a bad partition),
  // kBackPressured (the deadline passed), kClosed (the topic was deleted).
  Result<Published> publish(const Message& m);
  // The same for an event that is its payload alone (id and time filled by
  // the runtime, no key, no envelope field): what publish(Message{.payload
  // = payload, .partition = partition}) does, without building and then
  // checking a ~180-byte Message. Its stores cost a producer that runs at
  // tens of millions of events a second ~4 ns per event (bench/RESULTS.md,
  // "sixth session"). partition -1: sticky round-robin.
  Result<Published> publish(Bytes payload, std::int32_t partition = -1);

  // Publishes many events, in batch order: one clock read, one claim and one
  // wake-up check per run of consecutive events bound for the same
  // partition (per ring/4 of bytes). Every event is validated
  // before anything is claimed, so bad input publishes nothing. If a claim
  // then fails (kBackPressured, kClosed), the events claimed before it stay
  // published: the result is an error when none were, else a value with
  // `published` < batch.size() and `error` saying why it stopped. The
  // published events are exactly the first `published` of the batch, so
  // retrying batch.subspan(published) publishes each event once. An
  // idempotent producer leaves out an event whose sequence was committed
  // already; it counts in `published` (it is done with) and in `duplicates`
  // (it was not written again).
  struct BatchResult {
    std::size_t published = 0;
    std::size_t duplicates = 0;  // of `published`: idempotent duplicates, not written
    std::optional<Error> error;
  };
  Result<BatchResult> publish_batch(std::span<const Message> batch);

  // Zero-copy: reserves room for `payload_bytes` with `meta`'s envelope
  // (its payload is ignored), to fill in place and commit.
  Result<Claim> claim(std::size_t payload_bytes, const Message& meta);
  // The same for a payload-only event (id and time by the runtime, sticky
  // partition): claim(payload_bytes, Message{}) without building one. (A
  // default argument built a ~180-byte Message on every call. With this
  // overload, one thread, a 64 B claim + commit went 26.9 -> 24.6 ns, the
  // medians in bench/RESULTS.md, "twelfth session".)
  Result<Claim> claim(std::size_t payload_bytes);

  // The partition a key maps to (Kafka's default partitioner). An empty key
  // is no key to publish: such events are spread (sticky), so this is not
  // where a keyless event goes.
  [[nodiscard]] std::uint32_t partition_for(std::string_view key) const noexcept;
  [[nodiscard]] std::uint32_t partitions() const noexcept;
  [[nodiscard]] const std::string& topic() const noexcept;
  [[nodiscard]] std::size_t max_event() const noexcept;
  // The largest payload an event with this envelope can carry; 0 for an
  // envelope publish would refuse.
  [[nodiscard]] std::size_t max_payload(const Message& meta = {}) const noexcept;
  [[nodiscard]] ProducerStats stats() const noexcept;
  // Idempotent producers: the highest sequence committed under this
  // producer_id, learned from the log when the producer was created.
  [[nodiscard]] std::uint64_t last_sequence() const noexcept;

  struct Impl;

 private:
  friend class Bus;
  friend class Claim;
  friend struct detail::ProducerFactory;
  explicit Producer(std::unique_ptr<Impl> impl);
  // Both claims' quick path: a plain event that fits, no claim pending.
  Result<Claim> claim_payload_only(std::int32_t partition, std::size_t payload_bytes);
  std::unique_ptr<Impl> impl_{};
};

// A zero-copy claim: write the payload in place, then commit(). Dropped
// without commit it aborts itself (an aborted record readers skip). At most
// one claim per producer is pending; a Claim must not outlive its Producer
// (if it does, the Producer aborts it and the Claim becomes empty).
class Claim {
 public:
  // Only Producer can make a Key: Producer::claim() builds the Claim in its
  // final place (inside the returned Result), where the producer points at it.
  class Key {
    friend class Producer;
    Key() = default;
  };

  Claim() = default;
  // Inline, and defined in producer.cpp, the one file that can make a Key:
  // claim() inlines it, so the event id and the other fields go from
  // registers to the Claim. Out of line, the id was passed on the stack as
  // two 8-byte stores and read back as one 16-byte load, which store
  // forwarding cannot serve (a stall on every claim).
  inline Claim(Key, Producer::Impl* impl, std::span<std::byte> payload, std::uint32_t partition,
               std::uint64_t position, EventId id, std::uint64_t sequence) noexcept;
  Claim(Claim&&) noexcept;
  Claim& operator=(Claim&&) noexcept;
  Claim(const Claim&) = delete;
  Claim& operator=(const Claim&) = delete;
  ~Claim() {
    if (impl_ != nullptr) abort();  // inline: after commit() there is nothing to do, not even a call
  }

  // The payload bytes to fill (the size asked for at claim()).
  [[nodiscard]] std::span<std::byte> payload() const noexcept { return payload_; }
  // Publishes the first `used` bytes of the payload (default: all of it).
  Result<Published> commit(std::size_t used = SIZE_MAX);
  // Gives the claim up; readers skip it.
  void abort() noexcept;
  [[nodiscard]] bool pending() const noexcept { return impl_ != nullptr; }
  [[nodiscard]] std::uint32_t partition() const noexcept { return partition_; }
  [[nodiscard]] std::uint64_t position() const noexcept { return position_; }

 private:
  friend class Producer;
  Producer::Impl* impl_ = nullptr;  // the producer's state (stable across moves of the Producer)
  std::span<std::byte> payload_{};
  std::uint32_t partition_ = 0;
  std::uint64_t position_ = 0;
  EventId id_{};
  std::uint64_t sequence_ = 0;
};

}  // namespace herald
