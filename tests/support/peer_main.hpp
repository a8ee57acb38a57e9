// What the kill -9 test peers (herald_crash_peer, herald_delivery_peer) share:
// `--key=value` arguments, a SIGTERM flag, dying with a message and an exit
// code, and a main() that dispatches on the scenario named by argv[1].
// Each peer is one translation unit, so these live in its own copy.
#pragma once

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <map>
#include <string>
#include <utility>

namespace herald::test::peer {

inline std::atomic<bool> g_stop{false};  // set by SIGTERM
inline std::map<std::string, std::string> g_args;
inline const char* g_name = "peer";

extern "C" inline void on_term(int) { g_stop.store(true); }

inline std::string arg(const std::string& k, const std::string& fallback = "") {
  auto it = g_args.find(k);
  return it == g_args.end() ? fallback : it->second;
}
inline long long arg_i(const std::string& k, long long fallback) {
  auto it = g_args.find(k);
  return it == g_args.end() ? fallback : std::strtoll(it->second.c_str(), nullptr, 10);
}

[[noreturn]] inline void die(int code, const std::string& msg) {
  std::fprintf(stderr, "%s[%d]: %s\n", g_name, ::getpid(), msg.c_str());
  std::fflush(stderr);
  std::_Exit(code);
}

// Parses `argv[2..]` as --key=value into g_args, sets SIGTERM to raise
// g_stop and ignores SIGPIPE, then runs the scenario argv[1] names.
inline int run(int argc, char** argv, const char* name,
               std::initializer_list<std::pair<const char*, int (*)()>> scenarios) {
  g_name = name;
  std::string names;
  for (const auto& sc : scenarios) names += (names.empty() ? "" : "|") + std::string(sc.first);
  if (argc < 2) die(2, std::string("usage: ") + name + " " + names + " --key=value ...");
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--", 0) != 0) die(2, "bad argument " + a);
    const auto eq = a.find('=');
    if (eq == std::string::npos) die(2, "bad argument " + a + " (want --key=value)");
    g_args[a.substr(2, eq - 2)] = a.substr(eq + 1);
  }
  struct sigaction sa {};
  sa.sa_handler = on_term;
  sigaction(SIGTERM, &sa, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
  const std::string scenario = argv[1];
  for (const auto& [s, f] : scenarios)
    if (scenario == s) return f();
  die(2, "unknown scenario " + scenario);
}

}  // namespace herald::test::peer
