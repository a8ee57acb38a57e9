// herald error codes, split by what the caller should do about them.
#pragma once

#include <cstdint>
#include <string_view>

namespace herald {

enum class Errc : std::uint8_t {
  // --- retry: the condition may clear by itself --------------------------
  kBackPressured,      // a gating group has not consumed enough; nothing was claimed
  kTimeout,            // a bounded wait ran out
  kNotReady,           // a segment is still being created (layout version 0)
  kDaemonUnavailable,  // no heraldd answers on the bus socket
  kBusy,               // in use (a topic with attached clients, a lock held)
  // --- stop: retrying the same call will not help -----------------------
  kClosed,             // the topic was deleted (or re-created) under us
  kTooLarge,           // an event larger than the topic's max_event
  kInvalidArgument,    // bad input: names, sizes, positions, options
  kNotFound,           // no such bus, topic or group
  kAlreadyExists,      // a topic or group of that name exists
  kCorrupt,            // shared memory failed validation (magic, sizes, a record header)
  kVersionMismatch,    // a segment made by an incompatible layout version
  kFenced,             // this member's generation is stale: it no longer owns the partition
  kNoSpace,            // /dev/shm (or a table in a segment) is full
  kPermissionDenied,   // the OS or the daemon refused access
  kIo,                 // another operating-system error
  kProtocol,           // a malformed control-plane message
  kLimit,              // a fixed table (producers, readers, groups, topics) is full
  kOverrun,            // events were overwritten before this reader read them (on_overrun = kError): seek on
  // New codes go last (control.cpp's errc_from_name walks up to the last).
};

constexpr std::string_view to_string(Errc e) noexcept {
  switch (e) {
    case Errc::kBackPressured: return "back-pressured";
    case Errc::kTimeout: return "timeout";
    case Errc::kNotReady: return "not-ready";
    case Errc::kDaemonUnavailable: return "daemon-unavailable";
    case Errc::kBusy: return "busy";
    case Errc::kClosed: return "closed";
    case Errc::kTooLarge: return "too-large";
    case Errc::kInvalidArgument: return "invalid-argument";
    case Errc::kNotFound: return "not-found";
    case Errc::kAlreadyExists: return "already-exists";
    case Errc::kCorrupt: return "corrupt";
    case Errc::kVersionMismatch: return "version-mismatch";
    case Errc::kFenced: return "fenced";
    case Errc::kNoSpace: return "no-space";
    case Errc::kPermissionDenied: return "permission-denied";
    case Errc::kIo: return "io";
    case Errc::kProtocol: return "protocol";
    case Errc::kLimit: return "limit";
    case Errc::kOverrun: return "overrun";
  }
  return "unknown";
}

// True for codes where the same call may succeed later without changing it.
constexpr bool is_retryable(Errc e) noexcept {
  return e == Errc::kBackPressured || e == Errc::kTimeout || e == Errc::kNotReady ||
         e == Errc::kDaemonUnavailable || e == Errc::kBusy;
}

}  // namespace herald
