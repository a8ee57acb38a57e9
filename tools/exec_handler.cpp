#include "tools/exec_handler.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "tools/common/units.hpp"

extern char** environ;

namespace herald::tools {

namespace {

std::uint64_t mono_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<std::uint64_t>(ts.tv_nsec);
}

// Environment values cannot hold NUL bytes: cut there.
std::string env_value(std::string_view v) {
  const auto nul = v.find('\0');
  return std::string(nul == std::string_view::npos ? v : v.substr(0, nul));
}

std::vector<std::string> build_env(const EventView& e) {
  std::vector<std::string> env;
  for (char** p = environ; p != nullptr && *p != nullptr; ++p) {
    if (std::strncmp(*p, "HERALD_H_", 9) == 0) continue;  // ours only
    env.emplace_back(*p);
  }
  auto set = [&](const std::string& name, std::string_view value) {
    const std::string prefix = name + "=";
    std::erase_if(env, [&](const std::string& s) { return s.rfind(prefix, 0) == 0; });
    env.push_back(prefix + env_value(value));
  };
  set("HERALD_TOPIC", e.topic());
  set("HERALD_PARTITION", std::to_string(e.partition()));
  set("HERALD_POSITION", std::to_string(e.position()));
  set("HERALD_ID", e.id().to_string());
  set("HERALD_TYPE", e.type());
  set("HERALD_KEY", e.key());
  set("HERALD_SOURCE", e.source());
  set("HERALD_TIME", format_time_ns(e.time_ns()));
  set("HERALD_TIME_NS", std::to_string(e.time_ns()));
  set("HERALD_CORRELATION_ID", e.correlation_id());
  set("HERALD_CAUSATION_ID", e.causation_id());
  set("HERALD_CONTENT_TYPE", e.content_type());
  set("HERALD_DELIVERY", std::to_string(e.delivery()));
  for (std::size_t i = 0; i < e.header_count(); ++i) {
    const Header h = e.header_at(i);
    const std::string name = header_env_name(h.name);
    bool seen = false;  // the first header of a name wins (as EventView::header)
    for (const std::string& s : env) seen = seen || s.rfind(name + "=", 0) == 0;
    if (!seen) env.push_back(name + "=" + env_value(h.value));
  }
  return env;
}

int pidfd_open(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

}  // namespace

std::string header_env_name(std::string_view header) {
  std::string out = "HERALD_H_";
  for (char c : header) {
    if (c >= 'a' && c <= 'z') out += static_cast<char>(c - 'a' + 'A');
    else if ((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) out += c;
    else out += '_';
  }
  return out;
}

ExecResult run_exec(const std::string& command, const EventView& e, std::uint64_t timeout_ns) {
  ExecResult res;
  int in[2];
  if (::pipe2(in, O_CLOEXEC) != 0) {
    res.reason = std::string("could not start the command: pipe: ") + std::strerror(errno);
    return res;
  }
  std::vector<std::string> env = build_env(e);
  std::vector<char*> envp;
  for (std::string& s : env) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::string sh = "/bin/sh", dash_c = "-c", cmd = command;
  // Through setpriv(1) (util-linux, always on Debian) where there is one:
  // it sets a parent-death signal and execs the shell, so a command still
  // running when `herald consume` is killed (kill -9, the OOM killer) is
  // killed too, instead of living on with nobody to wait for it or time it
  // out. posix_spawn has no way to set one itself. The signal reaches the
  // shell (which runs a simple command as itself: dash execs it); a
  // pipeline's other processes are its own to end. Without setpriv, the
  // shell as before.
  std::string setpriv = "/usr/bin/setpriv", pdeathsig = "--pdeathsig", kill = "KILL", dashes = "--";
  const bool wrap = ::access(setpriv.c_str(), X_OK) == 0;
  char* plain_argv[] = {sh.data(), dash_c.data(), cmd.data(), nullptr};
  char* wrapped_argv[] = {setpriv.data(), pdeathsig.data(), kill.data(), dashes.data(),
                          sh.data(),      dash_c.data(),    cmd.data(),  nullptr};
  char** argv = wrap ? wrapped_argv : plain_argv;
  const std::string& program = wrap ? setpriv : sh;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in[0], STDIN_FILENO);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setpgroup(&attr, 0);  // its own group: a timeout kills the whole script
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  sigset_t deflt;
  sigemptyset(&deflt);
  sigaddset(&deflt, SIGPIPE);
  sigaddset(&deflt, SIGINT);
  sigaddset(&deflt, SIGTERM);
  posix_spawnattr_setsigdefault(&attr, &deflt);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, program.c_str(), &fa, &attr, argv, envp.data());
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  ::close(in[0]);
  if (rc != 0) {
    ::close(in[1]);
    res.reason = "could not start " + program + ": " + std::strerror(rc);
    return res;
  }
  const std::uint64_t deadline = mono_ns() + timeout_ns;
  // Feed the payload (non-blocking, bounded by the deadline); a script that
  // does not read it simply closes the pipe (EPIPE is ignored).
  ::fcntl(in[1], F_SETFL, O_NONBLOCK);
  const std::string_view data = e.payload_text();
  std::size_t off = 0;
  bool timed_out = false;
  while (off < data.size()) {
    const ssize_t n = ::write(in[1], data.data() + off, data.size() - off);
    if (n > 0) {
      off += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      const std::uint64_t now = mono_ns();
      if (now >= deadline) {
        timed_out = true;
        break;
      }
      pollfd p{in[1], POLLOUT, 0};
      ::poll(&p, 1, static_cast<int>(std::min<std::uint64_t>((deadline - now) / 1'000'000 + 1, 100)));
      continue;
    }
    break;  // EPIPE: the script does not want (the rest of) it
  }
  ::close(in[1]);
  const int pfd = pidfd_open(pid);
  int status = 0;
  for (;;) {
    const pid_t w = ::waitpid(pid, &status, WNOHANG);
    if (w == pid) break;
    const std::uint64_t now = mono_ns();
    if (timed_out || now >= deadline) {
      timed_out = true;
      ::kill(-pid, SIGKILL);
      ::kill(pid, SIGKILL);
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      break;
    }
    const int ms = static_cast<int>(std::min<std::uint64_t>((deadline - now) / 1'000'000 + 1, 100));
    if (pfd >= 0) {
      pollfd p{pfd, POLLIN, 0};
      ::poll(&p, 1, ms);
    } else {
      ::usleep(1000);  // no pidfd: poll the child's exit
    }
  }
  if (pfd >= 0) ::close(pfd);
  if (timed_out) {
    res.reason = "timed out after " + format_duration_ns(timeout_ns) + " (killed)";
  } else if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
    res.ok = true;
  } else if (WIFEXITED(status)) {
    res.reason = "exit status " + std::to_string(WEXITSTATUS(status));
  } else if (WIFSIGNALED(status)) {
    res.reason = "killed by signal " + std::to_string(WTERMSIG(status)) + " (" + strsignal(WTERMSIG(status)) + ")";
  } else {
    res.reason = "ended with status " + std::to_string(status);
  }
  return res;
}

}  // namespace herald::tools
