#include "runtime/src/envelope.hpp"

#include <cstddef>
#include <cstring>

#include "shm/names.hpp"
#include "shm/record_layout.hpp"

namespace herald {

namespace {
constexpr std::size_t kHdr = shm::kRecordHeaderBytes;

const shm::RecordHeader& hdr(const std::byte* rec) { return *reinterpret_cast<const shm::RecordHeader*>(rec); }

// Walks the meta TLV list of a record of `size` bytes; calls f(tag, name,
// value) for each entry until f returns true. Stops silently at the first
// malformed entry, and reads nothing if the lengths do not fit the record
// (bytes overwritten under a view: event.hpp, payload()).
template <class F>
void walk_meta(const std::byte* rec, std::size_t size, F&& f) noexcept {
  if (rec == nullptr) return;
  const shm::RecordHeader& h = hdr(rec);
  const std::size_t key_len = h.key_len, n = h.meta_len;
  if (kHdr + key_len + n > size) return;
  const auto* p = reinterpret_cast<const std::uint8_t*>(rec + kHdr + key_len);
  std::size_t i = 0;
  while (i < n) {
    const std::uint8_t tag = p[i++];
    if (tag >= EventView::kType && tag <= EventView::kCausation) {
      if (i >= n) return;
      const std::size_t len = p[i++];
      if (len > n - i) return;
      if (f(tag, std::string_view{}, std::string_view(reinterpret_cast<const char*>(p + i), len))) return;
      i += len;
    } else if (tag == EventView::kProducerSeq) {
      if (n - i < 16) return;
      if (f(tag, std::string_view{}, std::string_view(reinterpret_cast<const char*>(p + i), 16))) return;
      i += 16;
    } else if (tag == EventView::kHeader) {
      if (n - i < 3) return;
      const std::size_t nl = p[i];
      const std::size_t vl = std::size_t{p[i + 1]} | std::size_t{p[i + 2]} << 8;
      i += 3;
      if (nl > n - i || vl > n - i - nl) return;
      const std::string_view name(reinterpret_cast<const char*>(p + i), nl);
      const std::string_view value(reinterpret_cast<const char*>(p + i + nl), vl);
      if (f(tag, name, value)) return;
      i += nl + vl;
    } else {
      return;  // unknown tag: stop (a newer writer's field, or garbage)
    }
  }
}
}  // namespace

EventView EventView::over(const std::byte* record, std::string_view topic, std::uint32_t partition,
                          std::uint64_t position, std::uint32_t delivery) noexcept {
  // payload() (inline in event.hpp) reads the header at these offsets.
  static_assert(EventView::kRecHeaderBytes == shm::kRecordHeaderBytes);
  static_assert(EventView::kRecPayloadLenAt == offsetof(shm::RecordHeader, payload_len));
  static_assert(EventView::kRecKeyLenAt == offsetof(shm::RecordHeader, key_len));
  static_assert(EventView::kRecMetaLenAt == offsetof(shm::RecordHeader, meta_len));
  static_assert(sizeof(shm::RecordHeader::payload_len) == 4 && sizeof(shm::RecordHeader::key_len) == 2 &&
                sizeof(shm::RecordHeader::meta_len) == 2);
  EventView v;
  v.rec_ = record;
  v.topic_ = topic;
  v.partition_ = partition;
  v.position_ = position;
  v.size_ = hdr(record).size;
  v.delivery_ = delivery;
  return v;
}

EventId EventView::id() const noexcept { return rec_ ? EventId{hdr(rec_).id_hi, hdr(rec_).id_lo} : EventId{}; }
std::uint64_t EventView::time_ns() const noexcept { return rec_ ? hdr(rec_).time_ns : 0; }
std::string_view EventView::key() const noexcept {
  if (rec_ == nullptr) return {};
  const std::size_t n = hdr(rec_).key_len;
  if (kHdr + n > size_) return {};  // overwritten under the view (see walk_meta)
  return {reinterpret_cast<const char*>(rec_ + kHdr), n};
}
std::string_view EventView::field(Field f) const noexcept {
  std::string_view out;
  walk_meta(rec_, size_, [&](std::uint8_t tag, std::string_view, std::string_view value) {
    if (tag == f) {
      out = value;
      return true;
    }
    return false;
  });
  return out;
}

std::pair<std::uint64_t, std::uint64_t> EventView::producer_sequence() const noexcept {
  std::pair<std::uint64_t, std::uint64_t> out{0, 0};
  walk_meta(rec_, size_, [&](std::uint8_t tag, std::string_view, std::string_view value) {
    if (tag != kProducerSeq) return false;
    std::memcpy(&out.first, value.data(), 8);
    std::memcpy(&out.second, value.data() + 8, 8);
    return true;
  });
  return out;
}

std::size_t EventView::header_count() const noexcept {
  std::size_t n = 0;
  walk_meta(rec_, size_, [&](std::uint8_t tag, std::string_view, std::string_view) {
    n += tag == kHeader;
    return false;
  });
  return n;
}

Header EventView::header_at(std::size_t i) const noexcept {
  Header out;
  std::size_t k = 0;
  walk_meta(rec_, size_, [&](std::uint8_t tag, std::string_view name, std::string_view value) {
    if (tag != kHeader) return false;
    if (k++ == i) {
      out = {name, value};
      return true;
    }
    return false;
  });
  return out;
}

std::optional<std::string_view> EventView::header(std::string_view name) const noexcept {
  std::optional<std::string_view> out;
  walk_meta(rec_, size_, [&](std::uint8_t tag, std::string_view n, std::string_view value) {
    if (tag == kHeader && n == name) {
      out = value;
      return true;
    }
    return false;
  });
  return out;
}

Event EventView::to_event() const {
  Event e;
  if (rec_ == nullptr) return e;
  e.bytes_.assign(rec_, rec_ + size_);  // the size at delivery: see walk_meta
  e.topic_.assign(topic_);
  e.view_ = *this;
  e.view_.rec_ = e.bytes_.data();
  e.view_.topic_ = e.topic_;
  return e;
}

Event& Event::operator=(const Event& o) {
  if (this == &o) return *this;
  bytes_ = o.bytes_;
  topic_ = o.topic_;
  view_ = o.view_;
  view_.rec_ = bytes_.empty() ? nullptr : bytes_.data();
  view_.topic_ = topic_;
  return *this;
}

Event& Event::operator=(Event&& o) noexcept {
  if (this == &o) return *this;
  bytes_ = std::move(o.bytes_);
  topic_ = std::move(o.topic_);
  view_ = o.view_;
  view_.rec_ = bytes_.empty() ? nullptr : bytes_.data();
  view_.topic_ = topic_;  // the string may have moved its bytes (small-string buffer)
  o.view_ = EventView{};
  return *this;
}

namespace detail {

std::size_t meta_size(const Message& m, std::string_view source, const char** bad, bool with_seq,
                      bool internal) noexcept {
  std::size_t n = with_seq ? kSeqEntryBytes : 0;
  auto shortf = [&](std::string_view v, const char* name) {
    if (v.empty()) return true;
    if (v.size() > kMaxShortField) {
      *bad = name;
      return false;
    }
    n += 2 + v.size();
    return true;
  };
  if (!shortf(m.type, "type") || !shortf(m.source.empty() ? source : m.source, "source") ||
      !shortf(m.content_type, "content_type") || !shortf(m.correlation_id, "correlation_id") ||
      !shortf(m.causation_id, "causation_id"))
    return SIZE_MAX;
  if (m.headers.size() > kMaxHeaders + (internal ? kReservedHeaders : 0)) {
    *bad = "headers";
    return SIZE_MAX;
  }
  for (const Header& h : m.headers) {
    if (h.name.empty() || h.name.size() > kMaxHeaderName || h.value.size() > kMaxHeaderValue) {
      *bad = "header";
      return SIZE_MAX;
    }
    n += 4 + h.name.size() + h.value.size();
  }
  if (n > (internal ? kMaxMeta : kMaxUserMeta)) {
    *bad = "meta";
    return SIZE_MAX;
  }
  return n;
}

void encode_meta(std::byte* out, const Message& m, std::string_view source, std::uint64_t producer_id,
                 std::uint64_t sequence) noexcept {
  auto* p = reinterpret_cast<std::uint8_t*>(out);
  auto shortf = [&](std::uint8_t tag, std::string_view v) {
    if (v.empty()) return;
    *p++ = tag;
    *p++ = static_cast<std::uint8_t>(v.size());
    std::memcpy(p, v.data(), v.size());
    p += v.size();
  };
  shortf(EventView::kType, m.type);
  shortf(EventView::kSource, m.source.empty() ? source : m.source);
  shortf(EventView::kContentType, m.content_type);
  shortf(EventView::kCorrelation, m.correlation_id);
  shortf(EventView::kCausation, m.causation_id);
  for (const Header& h : m.headers) {
    *p++ = EventView::kHeader;
    *p++ = static_cast<std::uint8_t>(h.name.size());
    *p++ = static_cast<std::uint8_t>(h.value.size() & 0xff);
    *p++ = static_cast<std::uint8_t>(h.value.size() >> 8);
    std::memcpy(p, h.name.data(), h.name.size());
    p += h.name.size();
    std::memcpy(p, h.value.data(), h.value.size());
    p += h.value.size();
  }
  if (producer_id != 0) {
    *p++ = EventView::kProducerSeq;
    std::memcpy(p, &producer_id, 8);
    std::memcpy(p + 8, &sequence, 8);
  }
}

Error meta_error(const Message& m, const char* bad) {
  const std::string what(bad);
  if (what == "headers")
    return Error{Errc::kInvalidArgument, std::to_string(m.headers.size()) + " headers; the limit is " +
                                             std::to_string(kMaxHeaders)};
  if (what == "header") {
    for (const Header& h : m.headers) {
      if (h.name.empty()) return Error{Errc::kInvalidArgument, "a header has an empty name"};
      if (h.name.size() > kMaxHeaderName)
        return Error{Errc::kInvalidArgument, "header name '" + shm::printable(h.name) + "' is " +
                                                 std::to_string(h.name.size()) + " bytes; the limit is 255"};
      if (h.value.size() > kMaxHeaderValue)
        return Error{Errc::kInvalidArgument, "header '" + shm::printable(h.name) + "' value is " +
                                                 std::to_string(h.value.size()) + " bytes; the limit is 65535"};
    }
  }
  if (what == "meta")
    return Error{Errc::kInvalidArgument, "headers and envelope fields exceed " + std::to_string(kMaxUserMeta) +
                                             " bytes together (65535 less " + std::to_string(kReservedMeta) +
                                             " kept for a dead letter's headers)"};
  std::string_view v = what == "type"             ? m.type
                       : what == "source"         ? m.source
                       : what == "content_type"   ? m.content_type
                       : what == "correlation_id" ? m.correlation_id
                                                  : m.causation_id;
  return Error{Errc::kInvalidArgument,
               what + " is " + std::to_string(v.size()) + " bytes; the limit is " + std::to_string(kMaxShortField)};
}

}  // namespace detail
}  // namespace herald
