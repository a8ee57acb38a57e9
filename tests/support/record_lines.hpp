// The line files the delivery crash tests' children append to (records,
// sinks, skips; tests/support/herald_delivery_peer.cpp) and the tests read
// (tests/crash/delivery_fixture.hpp).
//
// Each line is ONE write(2) to a file opened O_APPEND, but one write is not
// atomic against SIGKILL: a regular-file write copies page by page and stops
// early once a fatal signal is pending, so a child killed "wherever it is"
// can leave the first part of a line without its '\n'. Such a line is an
// effect that did not complete. The next child to open the file ends it with
// kTornMark before it appends (members of one file run one after the other),
// and every reader skips it, so writer and readers agree that it did not
// happen: the event is handled again, and that handling is its first effect.
#pragma once

#include <string>
#include <string_view>

namespace herald::test {

// Ends a torn line; a complete line never ends with it.
inline constexpr std::string_view kTornMark = " #torn";

// Calls fn(line) for each complete line of text: ended by '\n' and not torn.
template <typename Fn>
void for_each_complete_line(std::string_view text, Fn&& fn) {
  for (std::size_t at = 0; at < text.size();) {
    const std::size_t nl = text.find('\n', at);
    if (nl == std::string_view::npos) return;  // torn, and nobody has appended since
    const std::string_view line = text.substr(at, nl - at);
    at = nl + 1;
    if (line.size() >= kTornMark.size() && line.substr(line.size() - kTornMark.size()) == kTornMark) continue;
    fn(line);
  }
}

}  // namespace herald::test
