// The processes of one repetition: fork, readiness, go, reports, bounded
// waits, kill by pid. The coordinator is single threaded; children are
// forked from it and never return into it (they _exit).
#include "bench/harness/runner.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdarg>
#include <cstdio>
#include <cstring>

namespace herald::bench {

std::string_view scenario_name(Scenario s) noexcept {
  switch (s) {
    case Scenario::kThroughput: return "throughput";
    case Scenario::kLatency: return "latency";
    case Scenario::kPingPong: return "pingpong";
    case Scenario::kFanout: return "fanout";
    case Scenario::kMpsc: return "mpsc";
  }
  return "?";
}

std::string_view wait_name(WaitMode w) noexcept {
  switch (w) {
    case WaitMode::kSpin: return "spin";
    case WaitMode::kYield: return "yield";
    case WaitMode::kBlock: return "park";
  }
  return "?";
}

namespace detail {

namespace {

constexpr std::uint64_t kReadyTimeoutNs = 20'000'000'000ull;  // attach, start a broker client, ...
constexpr std::uint64_t kGraceNs = 5'000'000'000ull;          // after a child's own deadline, before SIGKILL

bool write_all(int fd, const void* p, std::size_t n) noexcept {
  const auto* b = static_cast<const char*>(p);
  while (n > 0) {
    const ssize_t w = ::write(fd, b, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    b += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}

// How long a repetition may take: the row's duration or its count at a
// pessimistic 20k messages/s (or the paced rate), plus a fixed margin.
std::uint64_t budget_ns(const RowSpec& s) {
  double secs = 30;
  if (s.duration_ns != 0) secs += static_cast<double>(s.duration_ns) / 1e9;
  if (s.count != 0) {
    const double rate = s.rate > 0 ? std::min(s.rate, 20'000.0) : 20'000.0;
    secs += static_cast<double>(s.count) / rate;
  }
  return static_cast<std::uint64_t>(secs * 1e9);
}

std::vector<int> allowed_cpus() {
  std::vector<int> cpus;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) == 0)
    for (int c = 0; c < CPU_SETSIZE; ++c)
      if (CPU_ISSET(static_cast<std::size_t>(c), &set)) cpus.push_back(c);
  return cpus;
}

std::string status_text(int st) {
  if (WIFEXITED(st)) return "exited " + std::to_string(WEXITSTATUS(st));
  if (WIFSIGNALED(st)) return std::string("killed by signal ") + std::to_string(WTERMSIG(st)) + " (" +
                              ::strsignal(WTERMSIG(st)) + ")";
  return "status " + std::to_string(st);
}

}  // namespace

void set_error(ChildReport& r, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(r.error, sizeof r.error, fmt, ap);
  va_end(ap);
}

void ChildIo::ready() noexcept { (void)write_all(fd, "R", 1); }

bool ChildIo::wait_go() noexcept {
  for (;;) {
    const std::uint64_t now = mono_ns();
    if (now >= deadline_ns) return false;
    pollfd p{go_fd, POLLIN, 0};
    const int ms = static_cast<int>(std::min<std::uint64_t>((deadline_ns - now) / 1'000'000 + 1, 1000));
    if (::poll(&p, 1, ms) > 0) {
      char c;
      const ssize_t n = ::read(go_fd, &c, 1);
      if (n == 0) return true;  // EOF: the coordinator closed the go pipe
      if (n < 0 && errno != EINTR && errno != EAGAIN) return false;
    }
  }
}

void ChildIo::send(const ChildReport& r, const tools::Histogram* h) noexcept {
  if (reported) return;
  reported = true;
  ChildReport copy = r;
  copy.has_histogram = h != nullptr;
  (void)write_all(fd, "D", 1);
  (void)write_all(fd, &copy, sizeof copy);
  if (h != nullptr) (void)write_all(fd, h, sizeof *h);
}

struct Rep::Proc {
  std::string label;
  bool producer = false;
  pid_t pid = -1;
  int fd = -1;          // read end of its report pipe
  std::string buf;      // what it wrote
  bool eof = false;
  bool reaped = false;
  int status = 0;
  [[nodiscard]] bool ready() const { return !buf.empty() && buf[0] == 'R'; }
  [[nodiscard]] bool settled() const { return ready() || eof; }  // ready, or gone (an early report)
  // Where its report starts ("D" after the optional "R"), or npos.
  [[nodiscard]] std::size_t report_at() const {
    const std::size_t at = ready() ? 1 : 0;
    return buf.size() >= at + 1 + sizeof(ChildReport) && buf[at] == 'D' ? at + 1 : std::string::npos;
  }
};

Rep::Rep(const RowSpec& spec) : spec_(spec), budget_ns_(budget_ns(spec)), started_ns_(mono_ns()) {
  if (spec.pin && !spec.oversubscribed) cpus_ = allowed_cpus();
  int go[2];
  if (::pipe2(go, O_CLOEXEC) != 0) throw BenchError(std::string("pipe: ") + std::strerror(errno));
  go_read_ = go[0];
  go_write_ = go[1];
}

Rep::~Rep() {
  for (auto& p : procs_) {
    if (p->pid > 0 && !p->reaped) {
      ::kill(p->pid, SIGKILL);
      while (::waitpid(p->pid, &p->status, 0) < 0 && errno == EINTR) {
      }
      p->reaped = true;
    }
    if (p->fd >= 0) ::close(p->fd);
  }
  if (go_read_ >= 0) ::close(go_read_);
  if (go_write_ >= 0) ::close(go_write_);
}

bool Rep::fork_child(std::string label, bool producer, ChildIo* io) {
  auto proc = std::make_unique<Proc>();
  proc->label = std::move(label);
  proc->producer = producer;
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    error_ = proc->label + ": pipe: " + std::strerror(errno);
    return false;
  }
  const int cpu = cpus_.empty() ? -1 : cpus_[procs_.size() % cpus_.size()];
  std::fflush(nullptr);  // nothing buffered is written twice
  const pid_t pid = ::fork();
  if (pid < 0) {
    error_ = proc->label + ": fork: " + std::strerror(errno);
    ::close(fds[0]);
    ::close(fds[1]);
    return false;
  }
  if (pid == 0) {
    // The child: default signals, dies with the coordinator, pinned if asked.
    std::signal(SIGINT, SIG_DFL);
    std::signal(SIGTERM, SIG_DFL);
    std::signal(SIGHUP, SIG_DFL);
    std::signal(SIGPIPE, SIG_IGN);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    ::close(fds[0]);
    ::close(go_write_);
    if (cpu >= 0) {
      cpu_set_t set;
      CPU_ZERO(&set);
      CPU_SET(static_cast<std::size_t>(cpu), &set);
      (void)::sched_setaffinity(0, sizeof set, &set);
    }
    io->fd = fds[1];
    io->go_fd = go_read_;
    io->deadline_ns = mono_ns() + kReadyTimeoutNs + budget_ns_;
    return true;
  }
  ::close(fds[1]);
  proc->pid = pid;
  proc->fd = fds[0];
  procs_.push_back(std::move(proc));
  return false;
}

void Rep::child_exit(ChildIo& io, int rc) noexcept {
  if (!io.reported) {
    ChildReport r;
    set_error(r, "ended without a report (exit code %d)", rc);
    io.send(r, nullptr);
  }
  std::fflush(stderr);
  ::_exit(rc);
}

// Reads whatever the children wrote until `until_ns`, or until every child
// is ready (for_ready) / has closed its pipe.
bool Rep::pump(std::uint64_t until_ns, bool for_ready) {
  for (;;) {
    std::vector<pollfd> fds;
    std::vector<Proc*> who;
    bool all = true;
    for (auto& p : procs_) {
      if (for_ready ? p->settled() : p->eof) continue;
      all = false;
      if (!p->eof) {
        fds.push_back({p->fd, POLLIN, 0});
        who.push_back(p.get());
      }
    }
    if (all) return true;
    if (fds.empty()) return false;  // someone closed its pipe without becoming ready
    const std::uint64_t now = mono_ns();
    if (now >= until_ns) return false;
    const int ms = static_cast<int>(std::min<std::uint64_t>((until_ns - now) / 1'000'000 + 1, 500));
    const int n = ::poll(fds.data(), fds.size(), ms);
    if (n < 0 && errno != EINTR) return false;
    if (n < 0) return false;  // a signal (SIGINT): the caller gives up and the destructors clean up
    for (std::size_t i = 0; i < fds.size(); ++i) {
      if (fds[i].revents == 0) continue;
      char chunk[65536];
      const ssize_t r = ::read(fds[i].fd, chunk, sizeof chunk);
      if (r > 0) who[i]->buf.append(chunk, static_cast<std::size_t>(r));
      else if (r == 0 || (errno != EINTR && errno != EAGAIN)) who[i]->eof = true;
    }
  }
}

bool Rep::wait_ready() {
  if (!error_.empty()) return false;
  const bool ok = pump(mono_ns() + kReadyTimeoutNs, true);
  for (auto& p : procs_) {
    if (!p->ready()) {
      // Not ready: it reported an error early, died, or hung.
      std::string why = "did not become ready within 20 s";
      if (const std::size_t at = p->report_at(); at != std::string::npos) {
        ChildReport r;
        std::memcpy(&r, p->buf.data() + at, sizeof r);
        why = r.error;
      } else if (p->eof) {
        why = "exited before it was ready";
      }
      error_ = p->label + " (pid " + std::to_string(p->pid) + "): " + why;
      return false;
    }
  }
  return ok;
}

void Rep::go() {
  ::close(go_write_);
  go_write_ = -1;
}

bool Rep::wait_done() {
  const std::uint64_t until = mono_ns() + kReadyTimeoutNs + budget_ns_ + kGraceNs;
  const bool ok = pump(until, false);
  for (auto& p : procs_) {
    if (!p->eof) {
      ::kill(p->pid, SIGKILL);
      if (error_.empty())
        error_ = p->label + " (pid " + std::to_string(p->pid) + ") still ran " +
                 std::to_string((budget_ns_ + kReadyTimeoutNs + kGraceNs) / 1'000'000'000ull) + " s after it started; killed";
    }
    while (!p->reaped) {
      const pid_t r = ::waitpid(p->pid, &p->status, 0);
      if (r == p->pid || (r < 0 && errno != EINTR)) p->reaped = true;
    }
  }
  return ok && error_.empty();
}

pid_t Rep::pid(std::size_t i) const noexcept { return i < procs_.size() ? procs_[i]->pid : -1; }

bool Rep::report(std::size_t i, ChildReport* out) const {
  if (i >= procs_.size()) return false;
  const std::size_t at = procs_[i]->report_at();
  if (at == std::string::npos) return false;
  std::memcpy(out, procs_[i]->buf.data() + at, sizeof *out);
  return true;
}

RepResult Rep::failed() const {
  RepResult r;
  r.error = error_.empty() ? "failed" : error_;
  return r;
}

RepResult Rep::collect() const {
  RepResult res;
  std::uint64_t sent_total = 0;
  std::uint64_t start = 0;  // the first producer's start: rates span the whole pipeline
  std::vector<std::pair<const Proc*, ChildReport>> consumers;
  for (const auto& p : procs_) {
    const std::size_t at = p->report_at();
    if (at == std::string::npos) {
      res.error = p->label + " (pid " + std::to_string(p->pid) + "): no report, " + status_text(p->status);
      return res;
    }
    ChildReport r;
    std::memcpy(&r, p->buf.data() + at, sizeof r);
    if (!r.ok) {
      res.error = p->label + " (pid " + std::to_string(p->pid) + "): " + r.error;
      return res;
    }
    if (!WIFEXITED(p->status) || WEXITSTATUS(p->status) != 0) {
      res.error = p->label + " (pid " + std::to_string(p->pid) + "): " + status_text(p->status);
      return res;
    }
    if (r.has_histogram) {
      const std::size_t h = at + sizeof(ChildReport);
      if (p->buf.size() < h + sizeof(tools::Histogram)) {
        res.error = p->label + ": truncated histogram";
        return res;
      }
      res.latency = std::make_shared<tools::Histogram>();
      std::memcpy(static_cast<void*>(res.latency.get()), p->buf.data() + h, sizeof(tools::Histogram));
    }
    if (spec_.scenario == Scenario::kPingPong) {
      if (p->producer) {  // the ping side measured the round trips
        res.events = r.sent;
        res.seconds = static_cast<double>(r.last_ns - r.first_ns) / 1e9;
        res.events_per_s = res.seconds > 0 ? static_cast<double>(r.sent) / res.seconds : 0;
        res.consumer_rates = {res.events_per_s};
      }
      continue;
    }
    if (p->producer) {
      sent_total += r.sent;
      if (start == 0 || r.first_ns < start) start = r.first_ns;
    } else {
      consumers.emplace_back(p.get(), r);
    }
  }
  if (spec_.scenario != Scenario::kPingPong) {
    double slowest = 0;
    for (const auto& [p, r] : consumers) {
      if (r.received != sent_total) {
        res.error = p->label + " received " + std::to_string(r.received) + " messages, the producers sent " +
                    std::to_string(sent_total);
        return res;
      }
      const double secs = r.last_ns > start ? static_cast<double>(r.last_ns - start) / 1e9 : 0;
      const double rate = secs > 0 ? static_cast<double>(r.received) / secs : 0;
      res.consumer_rates.push_back(rate);
      if (slowest == 0 || rate < slowest) {
        slowest = rate;
        res.seconds = secs;
      }
    }
    res.events = sent_total;
    res.events_per_s = slowest;
  }
  res.ok = true;
  return res;
}

}  // namespace detail
}  // namespace herald::bench
