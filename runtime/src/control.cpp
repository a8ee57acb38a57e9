#include "runtime/src/control.hpp"

#include <cstring>

namespace herald::control {

std::string encode(const nlohmann::json& body) {
  // Invalid UTF-8 in a string becomes U+FFFD rather than an exception.
  const std::string s = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  std::string out;
  out.resize(4 + s.size());
  const auto n = static_cast<std::uint32_t>(s.size());
  out[0] = static_cast<char>(n & 0xff);
  out[1] = static_cast<char>((n >> 8) & 0xff);
  out[2] = static_cast<char>((n >> 16) & 0xff);
  out[3] = static_cast<char>((n >> 24) & 0xff);
  std::memcpy(out.data() + 4, s.data(), s.size());
  return out;
}

bool FrameReader::feed(const char* data, std::size_t n) {
  if (!error_.empty()) return false;
  // Drop consumed frames: fully, or once they are half the buffer, so a
  // client pipelining frames that straddle reads cannot grow it forever.
  if (pos_ > 0 && (pos_ == buf_.size() || pos_ >= buf_.size() / 2)) {
    buf_.erase(0, pos_);
    pos_ = 0;
  }
  buf_.append(data, n);
  // Check the length of the next frame as soon as it is complete, so an
  // oversized one is refused before its body is buffered.
  if (buf_.size() - pos_ >= 4) {
    const auto* p = reinterpret_cast<const unsigned char*>(buf_.data() + pos_);
    const std::uint32_t len = std::uint32_t{p[0]} | std::uint32_t{p[1]} << 8 | std::uint32_t{p[2]} << 16 |
                              std::uint32_t{p[3]} << 24;
    if (len == 0 || len > kMaxFrame) {
      error_ = "frame length " + std::to_string(len) + " is outside 1.." + std::to_string(kMaxFrame);
      return false;
    }
  }
  return true;
}

std::optional<std::string> FrameReader::next() {
  if (!error_.empty() || buf_.size() - pos_ < 4) return std::nullopt;
  const auto* p = reinterpret_cast<const unsigned char*>(buf_.data() + pos_);
  const std::uint32_t len =
      std::uint32_t{p[0]} | std::uint32_t{p[1]} << 8 | std::uint32_t{p[2]} << 16 | std::uint32_t{p[3]} << 24;
  if (len == 0 || len > kMaxFrame) {
    error_ = "frame length " + std::to_string(len) + " is outside 1.." + std::to_string(kMaxFrame);
    return std::nullopt;
  }
  if (buf_.size() - pos_ - 4 < len) return std::nullopt;
  std::string body = buf_.substr(pos_ + 4, len);
  pos_ += 4 + len;
  // A following frame's length is checked now too.
  if (buf_.size() - pos_ >= 4) {
    const auto* q = reinterpret_cast<const unsigned char*>(buf_.data() + pos_);
    const std::uint32_t next_len = std::uint32_t{q[0]} | std::uint32_t{q[1]} << 8 | std::uint32_t{q[2]} << 16 |
                                   std::uint32_t{q[3]} << 24;
    if (next_len == 0 || next_len > kMaxFrame)
      error_ = "frame length " + std::to_string(next_len) + " is outside 1.." + std::to_string(kMaxFrame);
  }
  return body;
}

Result<nlohmann::json> parse(std::string_view body) {
  nlohmann::json j = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return fail(Errc::kProtocol, "request body is not valid JSON");
  if (!j.is_object()) return fail(Errc::kProtocol, "request body is not a JSON object");
  auto v = j.find("v");
  if (v == j.end() || !v->is_number_unsigned())
    return fail(Errc::kProtocol, "request has no protocol version \"v\"");
  if (v->get<std::uint64_t>() != kVersion)
    return fail(Errc::kVersionMismatch, "protocol version " + v->dump() + " is not supported (this daemon speaks 1)");
  return j;
}

nlohmann::json ok_response(std::uint64_t id) { return {{"v", kVersion}, {"id", id}, {"ok", true}}; }

nlohmann::json error_response(std::uint64_t id, const Error& e) {
  return {{"v", kVersion}, {"id", id}, {"ok", false}, {"code", std::string(to_string(e.code))}, {"error", e.detail}};
}

Errc errc_from_name(std::string_view name) noexcept {
  for (int i = 0; i <= static_cast<int>(Errc::kOverrun); ++i) {  // the last Errc
    const auto e = static_cast<Errc>(i);
    if (to_string(e) == name) return e;
  }
  return Errc::kProtocol;
}

Error response_error(const nlohmann::json& r) {
  Error e{Errc::kProtocol, "malformed daemon response"};
  if (!r.is_object()) return e;
  if (auto c = r.find("code"); c != r.end() && c->is_string()) e.code = errc_from_name(c->get<std::string>());
  if (auto d = r.find("error"); d != r.end() && d->is_string()) e.detail = d->get<std::string>();
  return e;
}

Result<std::string> get_string(const nlohmann::json& j, const char* key, std::size_t max_len) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_string()) return fail(Errc::kProtocol, std::string("\"") + key + "\" must be a string");
  const auto& s = it->get_ref<const std::string&>();
  if (s.size() > max_len)
    return fail(Errc::kProtocol, std::string("\"") + key + "\" is longer than " + std::to_string(max_len));
  return s;
}

namespace {
// A non-negative integer (nlohmann stores small literals built in C++ as
// signed; from text they parse as unsigned).
bool non_negative_integer(const nlohmann::json& v) {
  return v.is_number_unsigned() || (v.is_number_integer() && v.get<std::int64_t>() >= 0);
}
}  // namespace

Result<std::uint64_t> get_u64(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !non_negative_integer(*it))
    return fail(Errc::kProtocol, std::string("\"") + key + "\" must be an unsigned integer");
  return it->get<std::uint64_t>();
}

std::uint64_t get_u64_or(const nlohmann::json& j, const char* key, std::uint64_t fallback) {
  auto it = j.find(key);
  return it != j.end() && non_negative_integer(*it) ? it->get<std::uint64_t>() : fallback;
}

bool get_bool_or(const nlohmann::json& j, const char* key, bool fallback) {
  auto it = j.find(key);
  return it != j.end() && it->is_boolean() ? it->get<bool>() : fallback;
}

}  // namespace herald::control
