#include "runtime/src/event_id.hpp"

#include <cstdio>

#include "shm/topic_map.hpp"

namespace herald {

std::string EventId::to_string() const {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%08llx-%04llx-%04llx-%04llx-%012llx",
                static_cast<unsigned long long>(hi >> 32), static_cast<unsigned long long>((hi >> 16) & 0xffff),
                static_cast<unsigned long long>(hi & 0xffff), static_cast<unsigned long long>(lo >> 48),
                static_cast<unsigned long long>(lo & 0xffffffffffffull));
  return buf;
}

Result<EventId> EventId::parse(std::string_view text) {
  // 8-4-4-4-12 hex digits with dashes, or 32 hex digits.
  std::uint64_t words[2] = {0, 0};
  int digits = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '-' && (i == 8 || i == 13 || i == 18 || i == 23) && text.size() == 36) continue;
    int v = -1;
    if (c >= '0' && c <= '9') v = c - '0';
    else if (c >= 'a' && c <= 'f') v = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') v = c - 'A' + 10;
    if (v < 0 || digits >= 32)
      return fail(Errc::kInvalidArgument, "event id '" + std::string(text) + "' is not a UUID (8-4-4-4-12 hex)");
    std::uint64_t& w = words[digits / 16];
    w = w << 4 | static_cast<std::uint64_t>(v);
    ++digits;
  }
  if (digits != 32)
    return fail(Errc::kInvalidArgument, "event id '" + std::string(text) + "' is not a UUID (8-4-4-4-12 hex)");
  return EventId{words[0], words[1]};
}

namespace detail {
IdGenerator::IdGenerator() : nonce_(shm::random_u64() & 0x3fffffffull) {}
}  // namespace detail

}  // namespace herald
