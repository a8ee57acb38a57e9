// herald::Result<T>: a small std::expected-shaped type. No exception crosses
// herald's API; failures are values that name what was wrong.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

#include "herald/errc.hpp"

namespace herald {

struct Error {
  Errc code{Errc::kIo};
  std::string detail;  // names the bad input, e.g. "max_event=70000 > ring/4=65536"

  // Prefixes context as the error travels up: "attach partition 3: ...".
  [[nodiscard]] Error with_context(std::string_view context) && {
    std::string d;
    d.reserve(context.size() + 2 + detail.size());
    d.append(context).append(": ").append(detail);
    return Error{code, std::move(d)};
  }
  [[nodiscard]] Error with_context(std::string_view context) const& {
    return Error(*this).with_context(context);
  }
  // "<code>: <detail>", for logs and the CLI.
  [[nodiscard]] std::string message() const {
    std::string m(to_string(code));
    if (!detail.empty()) m.append(": ").append(detail);
    return m;
  }
};

inline Error make_error(Errc code, std::string detail) { return Error{code, std::move(detail)}; }

namespace detail {
// value() on an error is a programming error: print it and abort (no
// exception may cross the API).
[[noreturn]] inline void abort_on_bad_access(const Error& e) {
  std::fprintf(stderr, "herald: Result::value() on an error: %s\n", e.message().c_str());
  std::abort();
}
// So is error() on a success (it threw std::bad_variant_access out of
// Result<T>, and made up an error for Result<void>).
[[noreturn]] inline void abort_on_bad_error_access() {
  std::fprintf(stderr, "herald: Result::error() on a success (test the Result first)\n");
  std::abort();
}
}  // namespace detail

// Marker so `return herald::fail(...)` converts to any Result<T>.
struct Unexpected {
  Error error;
};
inline Unexpected fail(Errc code, std::string detail) { return Unexpected{Error{code, std::move(detail)}}; }
inline Unexpected fail(Error e) { return Unexpected{std::move(e)}; }

template <class T>
class [[nodiscard]] Result {
 public:
  using value_type = T;
  Result(T v) : v_(std::in_place_index<0>, std::move(v)) {}  // NOLINT: implicit like std::expected
  Result(Unexpected u) : v_(std::in_place_index<1>, std::move(u.error)) {}  // NOLINT
  Result(Error e) : v_(std::in_place_index<1>, std::move(e)) {}  // NOLINT
  // Constructs the value in place (like std::expected's in_place_t): for a
  // value whose address matters or that is costly to move.
  template <class... A>
  explicit Result(std::in_place_t, A&&... args) : v_(std::in_place_index<0>, std::forward<A>(args)...) {}

  [[nodiscard]] bool has_value() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return has_value(); }

  // value() on an error aborts with the message (see detail::abort_on_bad_access).
  T& value() & { check(); return std::get<0>(v_); }
  const T& value() const& { check(); return std::get<0>(v_); }
  // By value, not T&&: `for (auto& x : f().value())` then binds to a
  // prvalue whose lifetime is extended, instead of into a dead temporary.
  T value() && { check(); return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  // error() on a success aborts with a message, as value() on an error.
  const Error& error() const& {
    if (v_.index() != 1) detail::abort_on_bad_error_access();
    return *std::get_if<1>(&v_);
  }
  Error&& error() && {
    if (v_.index() != 1) detail::abort_on_bad_error_access();
    return std::move(*std::get_if<1>(&v_));
  }

  template <class U>
  T value_or(U&& fallback) const& {
    return has_value() ? std::get<0>(v_) : static_cast<T>(std::forward<U>(fallback));
  }

 private:
  void check() const {
    if (v_.index() != 0) detail::abort_on_bad_access(std::get<1>(v_));
  }
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Unexpected u) : err_(std::move(u.error)), ok_(false) {}  // NOLINT
  Result(Error e) : err_(std::move(e)), ok_(false) {}  // NOLINT
  [[nodiscard]] bool has_value() const noexcept { return ok_; }
  explicit operator bool() const noexcept { return ok_; }
  void value() const {
    if (!ok_) detail::abort_on_bad_access(err_);
  }
  const Error& error() const& {
    if (ok_) detail::abort_on_bad_error_access();
    return err_;
  }
  Error&& error() && {
    if (ok_) detail::abort_on_bad_error_access();
    return std::move(err_);
  }

 private:
  Error err_{};
  bool ok_{true};
};

}  // namespace herald
