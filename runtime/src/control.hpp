// The control protocol between clients and heraldd (docs/ARCHITECTURE.md,
// "Control protocol"). Version 1:
//
//   frame    := length (u32, little-endian, 1..65536) body
//   body     := a UTF-8 JSON object
//   request  := {"v":1, "id":<u64>, "op":"<name>", ...arguments}
//   response := {"v":1, "id":<same>, "ok":true, ...results}
//             | {"v":1, "id":<same>, "ok":false, "code":"<errc>", "error":"<detail>"}
//
// A frame of length 0 or over 64 KiB, a body that is not a JSON object, or a
// "v" other than 1 is answered with one error response (id 0) and the
// connection is closed; the daemon carries on.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "herald/errc.hpp"
#include "herald/result.hpp"

namespace herald::control {

inline constexpr std::uint32_t kVersion = 1;
inline constexpr std::size_t kMaxFrame = 64 * 1024;

// A frame holding `body` (the caller keeps bodies under kMaxFrame).
std::string encode(const nlohmann::json& body);

// Splits a byte stream into frames.
class FrameReader {
 public:
  // Appends received bytes. Returns false (and sets error()) on a bad length.
  bool feed(const char* data, std::size_t n);
  // The next complete frame body, if any.
  std::optional<std::string> next();
  [[nodiscard]] const std::string& error() const noexcept { return error_; }
  [[nodiscard]] std::size_t buffered() const noexcept { return buf_.size() - pos_; }

 private:
  std::string buf_;
  std::size_t pos_ = 0;
  std::string error_;
};

// Parses and checks a body: a JSON object with "v" == 1.
Result<nlohmann::json> parse(std::string_view body);

nlohmann::json ok_response(std::uint64_t id);
nlohmann::json error_response(std::uint64_t id, const Error& e);
// The Error carried by a response with "ok": false.
Error response_error(const nlohmann::json& r);
Errc errc_from_name(std::string_view name) noexcept;

// Typed argument access with errors that name the field.
Result<std::string> get_string(const nlohmann::json& j, const char* key, std::size_t max_len = 4096);
Result<std::uint64_t> get_u64(const nlohmann::json& j, const char* key);
std::uint64_t get_u64_or(const nlohmann::json& j, const char* key, std::uint64_t fallback);
bool get_bool_or(const nlohmann::json& j, const char* key, bool fallback);

}  // namespace herald::control
