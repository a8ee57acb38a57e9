// Starting helper processes (posix_spawn of this same binary) and reading
// their one-line summaries; bounded waits that kill by pid on timeout.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace herald::tools {

struct Child {
  pid_t pid = -1;
  int out_fd = -1;  // the child's stdout (a pipe), or -1
};

// Spawns `path` with `args` (argv[0] included); captures stdout if asked.
Child spawn(const std::string& path, const std::vector<std::string>& args, bool capture_stdout);
// Waits up to timeout_ms for the child; kills it (SIGKILL) on timeout.
// Returns the exit status (as from waitpid), or -1 on timeout.
int wait_child(Child& c, int timeout_ms);
// Everything the child wrote to stdout until it closed it, waiting at most
// timeout_ms (then returns what arrived; the caller's wait_child kills it).
std::string read_all(Child& c, int timeout_ms);
// The path of the running executable (/proc/self/exe).
std::string self_exe();

}  // namespace herald::tools
