// herald itself, through its public API (bus.hpp, producer.hpp,
// consumer.hpp): one topic per route (1 partition, the default 16 MiB ring,
// multi-producer claims), one lossless consumer group per consumer (fanout:
// three groups; otherwise "g0"), daemonless (HERALD_NO_AUTOSTART=1, set by
// herald-bench) on a bus of its own per repetition, destroyed with every
// /dev/shm object by ~Host.
//
// RowSpec::mode selects the producer path: "publish" (Producer::publish of
// a payload, one event per call: the overload that takes no Message, as a
// caller publishing payload-only events would call it), "batch"
// (Producer::publish_batch of up to kBatch events, each written by the
// harness into its slot of a batch buffer whose Messages are built once;
// flush() publishes the rest) or "claim"
// (Producer::claim + Claim::commit, the message written in place). The
// consumer always uses Consumer::poll, whose handler sees the event in the
// log (zero copy: a lossless member's own partition), committing per poll.
// WaitMode maps to herald's Wait: kSpin -> kBusySpin, kYield -> kSpinYield,
// kBlock -> kPark (futex), for the consumer and the producer alike.
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <utility>
#include <string>
#include <string_view>
#include <vector>

#include "bench/harness/runner.hpp"
#include "bench/harness/transport.hpp"
#include "herald/herald.hpp"

namespace herald::bench {

struct HeraldTransport {
  static constexpr std::string_view kName = "herald";
  static constexpr std::size_t kBatch = 64;
  static std::string describe(const RowSpec& spec);
  // Every scenario but mpsc has one producer per topic: single-producer topics.
  static bool single_producer(const RowSpec& spec);
  static std::string skip_reason(const RowSpec& spec);

  struct Host {
    explicit Host(const RowSpec& spec);
    ~Host();
    Host(const Host&) = delete;
    Host& operator=(const Host&) = delete;
    std::string bus_name;
    std::optional<Bus> bus;
  };

  enum class Mode { kPublish, kBatch, kClaim };

  // The producer side, every mode's state and out-of-line parts; the loops
  // see it through ModeTransport<M>::Sender below.
  class Sender {
   public:
    Sender(Host& host, const RowSpec& spec, Endpoint ep);
    bool publish(const std::byte* p, std::size_t n) {
      auto r = producer_->publish(Bytes(p, n), 0);
      if (r) return true;
      return retry_or_throw(r.error());
    }
    // batch: the harness writes each message straight into its slot of the
    // gather buffer, as a caller building a batch would (the one copy is
    // publish_batch's, into the log); claim: into the log itself.
    template <class Fill>
    bool gather_with(std::size_t n, Fill&& fill) {
      std::byte* slot = next_slot(n);
      if (slot == nullptr) return false;
      fill(slot);
      return commit_slot();
    }
    template <class Fill>
    bool claim_with(std::size_t n, Fill&& fill) {
      auto c = producer_->claim(n, meta_);
      if (!c) return retry_or_throw(c.error());
      fill(c->payload().data());
      if (auto r = c->commit(); !r) return retry_or_throw(r.error());
      return true;
    }
    bool gather(const std::byte* p, std::size_t n);
    void flush();

   private:
    std::byte* next_slot(std::size_t n);  // the gather slot for the next message; nullptr while back-pressured
    bool commit_slot();                   // counts the slot's message; publishes a full batch
    bool drain();  // publishes the gathered events; false while back-pressured
    static bool retry_or_throw(const Error& e);

    Mode mode_ = Mode::kPublish;
    std::optional<Bus> bus_;
    std::optional<Producer> producer_;
    Message meta_{.partition = 0};
    std::size_t size_ = 0;
    std::vector<std::byte> gathered_;  // kBatch messages of size_ bytes
    std::vector<Message> batch_;       // views of gathered_
    std::size_t pending_ = 0, done_ = 0;
  };

  class Receiver {
   public:
    Receiver(Host& host, const RowSpec& spec, Endpoint ep);
    template <class F>
    std::size_t poll(F&& f, std::size_t max, std::chrono::milliseconds timeout) {
      auto n = consumer_->poll(
          [&f](const EventView& e) {
            const auto s = e.payload();
            f(s.data(), s.size());
          },
          max, timeout);
      if (!n) throw BenchError("poll: " + n.error().message());
      return *n;
    }

   private:
    std::optional<Bus> bus_;
    std::optional<Consumer> consumer_;
  };

  // One mode as a transport of its own, so that each mode's loops are an
  // instantiation of their own (runner.hpp): with the mode a run-time
  // switch inside one loop, a change to one mode's inlined path moved the
  // others' code and their numbers (publish_batch 65M -> 58M events/s close
  // when publish stopped building a Message; bench/RESULTS.md, "sixth
  // session").
  template <Mode M>
  struct ModeTransport {
    using Host = HeraldTransport::Host;
    using Receiver = HeraldTransport::Receiver;
    class Sender {
     public:
      Sender(Host& host, const RowSpec& spec, Endpoint ep) : s_(host, spec, ep) {}
      bool try_send(const std::byte* p, std::size_t n) {
        if constexpr (M == Mode::kBatch) return s_.gather(p, n);
        else return s_.publish(p, n);
      }
      // Zero-copy for batch and claim only: publish has no try_send_with,
      // so its loop has no such branch at all (runner.hpp, ZeroCopySender).
      [[nodiscard]] static constexpr bool zero_copy() noexcept
        requires(M != Mode::kPublish)
      {
        return true;
      }
      template <class Fill>
        requires(M != Mode::kPublish)
      bool try_send_with(std::size_t n, Fill&& fill) {
        if constexpr (M == Mode::kBatch) return s_.gather_with(n, std::forward<Fill>(fill));
        else return s_.claim_with(n, std::forward<Fill>(fill));
      }
      void flush() { s_.flush(); }

     private:
      HeraldTransport::Sender s_;
    };
  };
};

}  // namespace herald::bench
