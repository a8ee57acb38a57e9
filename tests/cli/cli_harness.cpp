#include "tests/cli/cli_harness.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "herald/bus.hpp"

extern char** environ;

namespace herald::test {

std::string herald_path() { return HERALD_CLI_PATH; }
std::string heraldd_path() { return HERALD_DAEMON_PATH; }

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

int decode(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

// A command put before herald's path (setpriv, to run it as another user).
thread_local std::vector<std::string> t_prefix;

pid_t spawn_herald(const std::vector<std::string>& args, int* in_fd, int* out_fd, int* err_fd) {
  int in[2], out[2], err[2];
  if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) return -1;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in[0], 0);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  posix_spawn_file_actions_adddup2(&fa, err[1], 2);
  std::vector<std::string> argv_s = t_prefix;
  argv_s.push_back(herald_path());
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  const int rc = ::posix_spawnp(&pid, argv_s[0].c_str(), &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  ::close(in[0]);
  ::close(out[1]);
  ::close(err[1]);
  if (rc != 0) {
    ::close(in[1]);
    ::close(out[0]);
    ::close(err[0]);
    return -1;
  }
  *in_fd = in[1];
  *out_fd = out[0];
  *err_fd = err[0];
  return pid;
}

void read_some(int fd, std::string* into) {
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) {
      into->append(buf, static_cast<std::size_t>(n));
      continue;
    }
    return;
  }
}

}  // namespace

std::string CliRun::describe() const {
  return "exit " + std::to_string(status) + "\n--- stdout ---\n" + out.substr(0, 4000) + "\n--- stderr ---\n" +
         err.substr(0, 4000);
}

nlohmann::json CliRun::json() const {
  auto j = nlohmann::json::parse(out, nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << "stdout is not one JSON document: " << describe();
  return j;
}

std::vector<nlohmann::json> CliRun::json_lines() const {
  std::vector<nlohmann::json> out_lines;
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    auto j = nlohmann::json::parse(line, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << "not a JSON line: " << line;
    out_lines.push_back(std::move(j));
  }
  return out_lines;
}

CliRun herald(const std::vector<std::string>& args, const std::string& input, double timeout_s) {
  CliRun r;
  int in = -1, out = -1, err = -1;
  const pid_t pid = spawn_herald(args, &in, &out, &err);
  if (pid < 0) {
    r.err = "could not start " + herald_path();
    return r;
  }
  // Feed stdin from a thread so a large input cannot deadlock with output.
  std::thread feeder([in, &input] {
    std::size_t off = 0;
    while (off < input.size()) {
      const ssize_t n = ::write(in, input.data() + off, input.size() - off);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      off += static_cast<std::size_t>(n);
    }
    ::close(in);
  });
  ::fcntl(out, F_SETFL, O_NONBLOCK);
  ::fcntl(err, F_SETFL, O_NONBLOCK);
  const double deadline = now_s() + timeout_s;
  bool out_open = true, err_open = true;
  int status = 0;
  bool exited = false;
  while (out_open || err_open || !exited) {
    if (!exited && ::waitpid(pid, &status, WNOHANG) == pid) exited = true;
    if (now_s() > deadline) {
      ::kill(pid, SIGKILL);
      if (!exited) ::waitpid(pid, &status, 0);
      r.err += "\n[harness] killed after " + std::to_string(timeout_s) + "s";
      read_some(out, &r.out);
      read_some(err, &r.err);
      ::close(out);
      ::close(err);
      feeder.join();
      r.status = -1;
      return r;
    }
    pollfd p[2] = {{out_open ? out : -1, POLLIN, 0}, {err_open ? err : -1, POLLIN, 0}};
    ::poll(p, 2, 20);
    if (out_open && (p[0].revents & (POLLIN | POLLHUP)) != 0) {
      const std::size_t before = r.out.size();
      read_some(out, &r.out);
      if (r.out.size() == before && (p[0].revents & POLLHUP) != 0) out_open = false;
    }
    if (err_open && (p[1].revents & (POLLIN | POLLHUP)) != 0) {
      const std::size_t before = r.err.size();
      read_some(err, &r.err);
      if (r.err.size() == before && (p[1].revents & POLLHUP) != 0) err_open = false;
    }
  }
  ::close(out);
  ::close(err);
  feeder.join();
  r.status = decode(status);
  return r;
}

void Background::drain() {
  if (out_fd >= 0) read_some(out_fd, &out);
  if (err_fd >= 0) read_some(err_fd, &err);
}

int Background::stop(double timeout_s) {
  if (pid <= 0) return -1;
  ::kill(pid, SIGTERM);
  const double deadline = now_s() + timeout_s;
  int status = 0;
  for (;;) {
    drain();
    if (::waitpid(pid, &status, WNOHANG) == pid) break;
    if (now_s() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      status = -1;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));  // polling a child's exit
  }
  drain();
  pid = -1;
  return status < 0 ? -1 : decode(status);
}

int Background::wait_exit(double timeout_s) {
  if (pid <= 0) return -1;
  const double deadline = now_s() + timeout_s;
  int status = 0;
  for (;;) {
    drain();
    if (::waitpid(pid, &status, WNOHANG) == pid) break;
    if (now_s() > deadline) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));  // polling a child's exit, bounded
  }
  drain();
  pid = -1;
  return decode(status);
}

Background::~Background() {
  if (pid > 0) stop(2);
  if (out_fd >= 0) ::close(out_fd);
  if (err_fd >= 0) ::close(err_fd);
}

Background herald_background(const std::vector<std::string>& args) {
  Background b;
  int in = -1;
  b.pid = spawn_herald(args, &in, &b.out_fd, &b.err_fd);
  if (in >= 0) ::close(in);
  if (b.out_fd >= 0) ::fcntl(b.out_fd, F_SETFL, O_NONBLOCK);
  if (b.err_fd >= 0) ::fcntl(b.err_fd, F_SETFL, O_NONBLOCK);
  return b;
}

void CliTest::SetUp() {
  guard_ = std::make_unique<BusGuard>();
  ::setenv("HERALD_DAEMON", heraldd_path().c_str(), 1);
  ::unsetenv("HERALD_BUS");
}

void CliTest::TearDown() {
  stop_daemon();
  (void)Bus::destroy(bus());
  guard_.reset();
}

CliRun herald_as(unsigned uid, const std::vector<std::string>& args, double timeout_s) {
  const std::string id = std::to_string(uid);
  t_prefix = {"setpriv", "--reuid=" + id, "--regid=" + id, "--clear-groups", "--"};
  CliRun r = herald(args, "", timeout_s);
  t_prefix.clear();
  return r;
}

CliRun CliTest::h(std::vector<std::string> args, const std::string& input, double timeout_s) {
  args.insert(args.begin(), {"--bus", bus()});
  return herald(args, input, timeout_s);
}

Background CliTest::hb(std::vector<std::string> args) {
  args.insert(args.begin(), {"--bus", bus()});
  return herald_background(args);
}

long CliTest::daemon_pid() {
  CliRun r = h({"daemon", "status", "--json"});
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  if (j.is_discarded() || !j.value("running", false)) return 0;
  return j.value("pid", 0L);
}

namespace {
// Alive and not a zombie (an orphaned daemon is reaped by whatever init is).
bool running(long pid) {
  if (::kill(static_cast<pid_t>(pid), 0) != 0) return false;
  std::ifstream st("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(st, line);
  const auto rp = line.rfind(')');
  return rp == std::string::npos || rp + 2 >= line.size() || line[rp + 2] != 'Z';
}
}  // namespace

void CliTest::stop_daemon() {
  const long pid = daemon_pid();
  if (pid <= 0) return;
  ::kill(static_cast<pid_t>(pid), SIGTERM);
  wait_until([&] { return !running(pid); }, 10,
             [&] { return "heraldd pid " + std::to_string(pid) + " still running after SIGTERM"; });
}

}  // namespace herald::test
