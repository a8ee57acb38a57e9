// `herald consume --exec CMD`: runs CMD through /bin/sh -c for one event,
// payload on stdin, envelope in HERALD_* environment variables, in its own
// process group; exit 0 acknowledges, anything else (non-zero exit, a
// signal, passing the timeout) is a failure with a reason.
#pragma once

#include <cstdint>
#include <string>

#include "herald/event.hpp"

namespace herald::tools {

struct ExecResult {
  bool ok = false;
  std::string reason;  // "exit status 3", "killed by signal 9", "timed out after 30.00s", "could not start ..."
};

// The environment variable a header is passed in: HERALD_H_ + the name in
// upper case with every other character than [A-Z0-9] as '_'.
std::string header_env_name(std::string_view header);

ExecResult run_exec(const std::string& command, const EventView& e, std::uint64_t timeout_ns);

}  // namespace herald::tools
