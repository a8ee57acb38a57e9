// `herald bench ...`: runs herald-bench, bench/'s multi-process harness (the
// only binary that links the peers' libraries), with the same arguments. It
// is looked for next to this `herald` binary, then in the build tree this
// one was built in, then on PATH.
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "tools/cli.hpp"

namespace herald::tools {

namespace {

bool executable(const std::string& path) { return ::access(path.c_str(), X_OK) == 0; }

std::string self_dir() {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return {};
  std::string p(buf, static_cast<std::size_t>(n));
  return p.substr(0, p.rfind('/'));
}

[[noreturn]] void exec_bench(const std::string& path, const std::vector<std::string>& args, bool search) {
  std::vector<char*> argv;
  std::string arg0 = "herald-bench";
  argv.push_back(arg0.data());
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::fflush(nullptr);
  if (search) ::execvp(path.c_str(), argv.data());
  else ::execv(path.c_str(), argv.data());
  const int e = errno;
  std::fprintf(stderr, "herald: error: cannot run %s: %s\n", path.c_str(), std::strerror(e));
  std::exit(1);
}

int run_bench(std::vector<std::string> args, bool json) {
  bool has_json = false;
  for (const std::string& a : args) has_json = has_json || a == "--json";
  if (json && !has_json) args.push_back("--json");  // `herald --json bench ...`
  std::vector<std::string> looked;
  if (const std::string dir = self_dir(); !dir.empty()) {
    // Installed side by side, or the build tree's tools/ next to bench/.
    for (const std::string& p : {dir + "/herald-bench", dir + "/../bench/herald-bench"}) {
      if (executable(p)) exec_bench(p, args, false);
      looked.push_back(p);
    }
  }
#ifdef HERALD_BENCH_BUILD_PATH
  if (executable(HERALD_BENCH_BUILD_PATH)) exec_bench(HERALD_BENCH_BUILD_PATH, args, false);
  looked.push_back(HERALD_BENCH_BUILD_PATH);
#endif
  const char* path = std::getenv("PATH");
  if (path != nullptr) {
    std::string dirs = path;
    for (std::size_t at = 0; at <= dirs.size();) {
      const std::size_t colon = dirs.find(':', at);
      const std::string d = dirs.substr(at, colon == std::string::npos ? std::string::npos : colon - at);
      if (!d.empty() && executable(d + "/herald-bench")) exec_bench(d + "/herald-bench", args, false);
      if (colon == std::string::npos) break;
      at = colon + 1;
    }
  }
  std::string where;
  for (const std::string& l : looked) where += l + ", ";
  return runtime_error("herald-bench not found (looked at " + where +
                       "and on PATH); build it with `cmake --build <build dir> --target herald-bench` "
                       "(HERALD_BUILD_BENCH=ON)");
}

}  // namespace

void add_bench_command(CLI::App& app, Context& ctx) {
  auto* cmd = app.add_subcommand(
      "bench", "compare herald with the baseline ring and its peers, in processes (runs herald-bench; "
               "`herald bench --help` lists its options)");
  cmd->fallthrough(false);  // nothing after `bench` is the parent's (--json before it is)
  cmd->prefix_command();    // every argument after `bench` goes to herald-bench as it is
  cmd->set_help_flag();     // --help too
  ctx.on(cmd, [cmd, &ctx] { return run_bench(cmd->remaining(), ctx.json); });
}

}  // namespace herald::tools
