// The event envelope (CloudEvents names where they exist): id, type, source,
// time, key, correlation and causation ids, headers, content type, payload.
// Position and partition are assigned by the log.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "herald/result.hpp"

namespace herald {

// A 128-bit, time-ordered event id (UUIDv7 layout: 48-bit ms timestamp,
// version 7, 74 bits of per-producer counter and randomness).
struct EventId {
  std::uint64_t hi = 0;
  std::uint64_t lo = 0;
  [[nodiscard]] bool empty() const noexcept { return hi == 0 && lo == 0; }
  // "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
  [[nodiscard]] std::string to_string() const;
  static Result<EventId> parse(std::string_view text);
  friend bool operator==(const EventId&, const EventId&) = default;
  friend auto operator<=>(const EventId&, const EventId&) = default;
};

// A view of bytes; converts from the usual byte and text containers.
class Bytes {
 public:
  constexpr Bytes() = default;
  constexpr Bytes(const std::byte* p, std::size_t n) : p_(p), n_(n) {}
  Bytes(std::span<const std::byte> s) : p_(s.data()), n_(s.size()) {}  // NOLINT: implicit by design
  Bytes(std::span<const std::uint8_t> s)  // NOLINT
      : p_(reinterpret_cast<const std::byte*>(s.data())), n_(s.size()) {}
  Bytes(std::string_view s) : p_(reinterpret_cast<const std::byte*>(s.data())), n_(s.size()) {}  // NOLINT
  Bytes(const std::string& s) : Bytes(std::string_view(s)) {}  // NOLINT
  Bytes(const char* s) : Bytes(std::string_view(s)) {}  // NOLINT
  Bytes(const std::vector<std::byte>& v) : p_(v.data()), n_(v.size()) {}  // NOLINT
  Bytes(const std::vector<std::uint8_t>& v)  // NOLINT
      : p_(reinterpret_cast<const std::byte*>(v.data())), n_(v.size()) {}
  [[nodiscard]] const std::byte* data() const noexcept { return p_; }
  [[nodiscard]] std::size_t size() const noexcept { return n_; }
  [[nodiscard]] bool empty() const noexcept { return n_ == 0; }
  [[nodiscard]] std::span<const std::byte> span() const noexcept { return {p_, n_}; }
  [[nodiscard]] std::string_view text() const noexcept { return {reinterpret_cast<const char*>(p_), n_}; }

 private:
  const std::byte* p_ = nullptr;
  std::size_t n_ = 0;
};

struct Header {
  std::string_view name{};
  std::string_view value{};
};

// What a producer publishes. Views only: nothing is copied until publish.
struct Message {
  std::string_view key{};            // partitioning key; same key, same partition, same order
  std::string_view type{};           // e.g. "OrderPlaced"
  Bytes payload{};
  std::string_view source{};         // default: the producer's `source` option
  std::string_view correlation_id{};
  std::string_view causation_id{};
  std::string_view content_type{};   // e.g. "application/json"
  std::span<const Header> headers{};
  EventId id{};                    // empty: generated (time-ordered)
  std::uint64_t time_ns = 0;       // 0: now (CLOCK_REALTIME)
  std::int32_t partition = -1;     // -1: by key (Kafka's murmur2), no key: sticky round-robin
  // Idempotent producers (ProducerOptions::producer_id != 0): the event's
  // sequence; 0 means the producer's last sequence + 1. A sequence at or
  // below the last one committed is not published again (Published::duplicate).
  // At most kMaxSequence (kInvalidArgument past it).
  std::uint64_t sequence = 0;
};

inline constexpr std::uint64_t kMaxSequence = (1ull << 63) - 1;

// Limits of the envelope's variable fields (bytes).
inline constexpr std::size_t kMaxKeyBytes = 65535;
inline constexpr std::size_t kMaxShortField = 255;  // type, source, content type, correlation and causation ids
inline constexpr std::size_t kMaxHeaders = 64;
inline constexpr std::size_t kMaxHeaderName = 255;
inline constexpr std::size_t kMaxHeaderValue = 65535;

class Event;

// A read-only view of one event. Zero-copy where the bytes are protected by a
// gate (a lossless member's own partition); otherwise it points into the
// consumer's preallocated copy buffer. Valid until the handler returns (or
// the next call on the consumer for pull-style reads).
class EventView {
 public:
  EventView() = default;
  [[nodiscard]] EventId id() const noexcept;
  [[nodiscard]] std::uint64_t time_ns() const noexcept;
  [[nodiscard]] std::string_view key() const noexcept;
  [[nodiscard]] std::string_view type() const noexcept { return field(kType); }
  [[nodiscard]] std::string_view source() const noexcept { return field(kSource); }
  [[nodiscard]] std::string_view content_type() const noexcept { return field(kContentType); }
  [[nodiscard]] std::string_view correlation_id() const noexcept { return field(kCorrelation); }
  [[nodiscard]] std::string_view causation_id() const noexcept { return field(kCausation); }
  // Inline: most handlers read the payload of every event.
  //
  // Every accessor stays inside the record's size as it was when the event
  // was delivered (size_): a zero-copy view's bytes are gated only while
  // the member holds its partition, and a handler that runs past
  // max_poll_interval can find them overwritten (consumer.hpp). Then it
  // reads wrong bytes, but never outside the record: no garbage length
  // can take it past the mapping.
  [[nodiscard]] std::span<const std::byte> payload() const noexcept {
    if (rec_ == nullptr) return {};
    std::uint32_t len = 0;
    std::uint16_t key_len = 0, meta_len = 0;
    std::memcpy(&len, rec_ + kRecPayloadLenAt, sizeof len);
    std::memcpy(&key_len, rec_ + kRecKeyLenAt, sizeof key_len);
    std::memcpy(&meta_len, rec_ + kRecMetaLenAt, sizeof meta_len);
    const std::size_t at = kRecHeaderBytes + key_len + meta_len;
    if (at > size_ || len > size_ - at) [[unlikely]] return {};
    return {rec_ + at, len};
  }
  [[nodiscard]] std::string_view payload_text() const noexcept {
    const auto p = payload();
    return {reinterpret_cast<const char*>(p.data()), p.size()};
  }
  // Headers in publish order; header(name) is the first with that name.
  [[nodiscard]] std::size_t header_count() const noexcept;
  [[nodiscard]] Header header_at(std::size_t i) const noexcept;
  [[nodiscard]] std::optional<std::string_view> header(std::string_view name) const noexcept;

  [[nodiscard]] std::string_view topic() const noexcept { return topic_; }
  [[nodiscard]] std::uint32_t partition() const noexcept { return partition_; }
  [[nodiscard]] std::uint64_t position() const noexcept { return position_; }
  // The position right after this event: what a commit of it stores.
  [[nodiscard]] std::uint64_t next_position() const noexcept { return position_ + size_; }
  // 1 on the first delivery; more after a failed handler's retries, and for
  // the one event a member was inside when it died. Events delivered again
  // only because they were not committed yet (kManual, a crash between
  // commits) say 1 (DELIVERY.md).
  [[nodiscard]] std::uint32_t delivery() const noexcept { return delivery_; }

  [[nodiscard]] Event to_event() const;

  // Internal: built by the runtime over a validated record.
  enum Field : std::uint8_t { kType = 1, kSource, kContentType, kCorrelation, kCausation, kHeader, kProducerSeq };
  // The (producer id, sequence) of an idempotent producer's event; {0, 0} if none.
  [[nodiscard]] std::pair<std::uint64_t, std::uint64_t> producer_sequence() const noexcept;
  static EventView over(const std::byte* record, std::string_view topic, std::uint32_t partition,
                        std::uint64_t position, std::uint32_t delivery) noexcept;
  // The same with the record's size already known (the consumer's hot path).
  static EventView over(const std::byte* record, std::string_view topic, std::uint32_t partition,
                        std::uint64_t position, std::uint32_t delivery, std::uint32_t size) noexcept {
    EventView v;
    v.rec_ = record;
    v.topic_ = topic;
    v.partition_ = partition;
    v.position_ = position;
    v.size_ = size;
    v.delivery_ = delivery;
    return v;
  }

 private:
  friend class Event;
  [[nodiscard]] std::string_view field(Field f) const noexcept;
  // Where payload() finds its lengths in the record header (checked against
  // shm::RecordHeader in envelope.cpp).
  static constexpr std::size_t kRecHeaderBytes = 48;
  static constexpr std::size_t kRecPayloadLenAt = 12;  // u32
  static constexpr std::size_t kRecKeyLenAt = 42;      // u16
  static constexpr std::size_t kRecMetaLenAt = 44;     // u16
  const std::byte* rec_ = nullptr;
  std::string_view topic_{};
  std::uint64_t position_ = 0;
  std::uint32_t partition_ = 0;
  std::uint32_t size_ = 0;
  std::uint32_t delivery_ = 0;
};

// An owned copy of an event; the same accessors as EventView.
class Event {
 public:
  Event() = default;
  [[nodiscard]] const EventView& view() const noexcept { return view_; }
  [[nodiscard]] EventId id() const noexcept { return view_.id(); }
  [[nodiscard]] std::uint64_t time_ns() const noexcept { return view_.time_ns(); }
  [[nodiscard]] std::string_view key() const noexcept { return view_.key(); }
  [[nodiscard]] std::string_view type() const noexcept { return view_.type(); }
  [[nodiscard]] std::string_view source() const noexcept { return view_.source(); }
  [[nodiscard]] std::string_view content_type() const noexcept { return view_.content_type(); }
  [[nodiscard]] std::string_view correlation_id() const noexcept { return view_.correlation_id(); }
  [[nodiscard]] std::string_view causation_id() const noexcept { return view_.causation_id(); }
  [[nodiscard]] std::span<const std::byte> payload() const noexcept { return view_.payload(); }
  [[nodiscard]] std::string_view payload_text() const noexcept { return view_.payload_text(); }
  [[nodiscard]] std::size_t header_count() const noexcept { return view_.header_count(); }
  [[nodiscard]] Header header_at(std::size_t i) const noexcept { return view_.header_at(i); }
  [[nodiscard]] std::optional<std::string_view> header(std::string_view n) const noexcept { return view_.header(n); }
  [[nodiscard]] std::string_view topic() const noexcept { return topic_; }
  [[nodiscard]] std::uint32_t partition() const noexcept { return view_.partition(); }
  [[nodiscard]] std::uint64_t position() const noexcept { return view_.position(); }
  [[nodiscard]] std::uint64_t next_position() const noexcept { return view_.next_position(); }
  [[nodiscard]] std::uint32_t delivery() const noexcept { return view_.delivery(); }

  Event(const Event& o) { *this = o; }
  Event& operator=(const Event& o);
  Event(Event&& o) noexcept { *this = std::move(o); }
  Event& operator=(Event&& o) noexcept;

 private:
  friend class EventView;
  std::vector<std::byte> bytes_{};
  std::string topic_{};
  EventView view_;
};

}  // namespace herald
