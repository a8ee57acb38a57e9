#include "tests/support/daemon_harness.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include "runtime/src/daemon_client.hpp"
#include "runtime/src/groups.hpp"
#include "runtime/src/run_dir.hpp"
#include "shm/clock.hpp"
#include "shm/registry.hpp"
#include "shm/ring_log.hpp"
#include "shm/slots.hpp"
#include "tests/support/test_env.hpp"

extern char** environ;

namespace herald::test {

std::string heraldd_path() { return HERALD_TEST_HERALDD; }
std::string crash_peer_path() { return HERALD_TEST_CRASH_PEER; }

// ---------------------------------------------------------------------------
// Child
// ---------------------------------------------------------------------------

Child Child::spawn(const SpawnOptions& o) {
  std::vector<std::string> env;
  std::set<std::string> replaced;
  for (const auto& [k, v] : o.set_env) replaced.insert(k);
  for (const auto& k : o.unset_env) replaced.insert(k);
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string kv = *e;
    const std::string key = kv.substr(0, kv.find('='));
    if (replaced.count(key) == 0) env.push_back(kv);
  }
  for (const auto& [k, v] : o.set_env) env.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (std::string& s : env) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> args = o.argv;
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, o.stdout_path.empty() ? "/dev/null" : o.stdout_path.c_str(),
                                   O_WRONLY | O_CREAT | O_APPEND, 0600);
  if (!o.stderr_path.empty())
    posix_spawn_file_actions_addopen(&fa, 2, o.stderr_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
  posix_spawn_file_actions_addclosefrom_np(&fa, 3);  // none of the test's descriptors leak into it
  Child c;
  pid_t pid = -1;
  const int r = ::posix_spawn(&pid, args[0].c_str(), &fa, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  if (r != 0) {
    std::fprintf(stderr, "[herald] posix_spawn %s: %s\n", args[0].c_str(), std::strerror(r));
    return c;
  }
  c.pid_ = pid;
  c.start_time_ = shm::process_start_time(pid).value_or(0);
  return c;
}

Child& Child::operator=(Child&& o) noexcept {
  if (this != &o) {
    if (pid_ > 0 && !status_) kill_now();
    pid_ = o.pid_;
    start_time_ = o.start_time_;
    status_ = o.status_;
    o.pid_ = -1;
    o.status_.reset();
  }
  return *this;
}

Child::~Child() {
  if (pid_ > 0 && !status_) kill_now();
}

bool Child::running() {
  if (pid_ <= 0 || status_) return false;
  int st = 0;
  const pid_t r = ::waitpid(pid_, &st, WNOHANG);
  if (r == pid_) {
    status_ = st;
    return false;
  }
  return r == 0;
}

std::optional<int> Child::wait(double seconds) {
  if (pid_ <= 0) return std::nullopt;
  if (status_) return status_;
  wait_until([this] { return !running(); }, seconds,
             [this] { return "child pid " + std::to_string(pid_) + " still running"; });
  return status_;
}

void Child::signal(int sig) const {
  if (pid_ > 0 && !status_) ::kill(pid_, sig);
}

void Child::kill_now() {
  if (pid_ <= 0 || status_) return;
  ::kill(pid_, SIGKILL);
  int st = 0;
  while (::waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
  }
  status_ = st;
}

bool Child::freeze(double seconds) {
  if (pid_ <= 0 || status_) return false;
  ::kill(pid_, SIGSTOP);
  bool stopped = false;
  wait_until(
      [&] {
        int st = 0;
        const pid_t r = ::waitpid(pid_, &st, WUNTRACED | WNOHANG);
        if (r == pid_ && WIFSTOPPED(st)) stopped = true;
        if (r == pid_ && !WIFSTOPPED(st)) status_ = st;  // it died meanwhile
        return stopped || status_.has_value();
      },
      seconds, [this] { return "child pid " + std::to_string(pid_) + " did not stop"; });
  return stopped;
}

std::string describe_status(int st) {
  if (WIFEXITED(st)) return "exited " + std::to_string(WEXITSTATUS(st));
  if (WIFSIGNALED(st)) return "killed by signal " + std::to_string(WTERMSIG(st));
  return "status " + std::to_string(st);
}

bool exited_with(const std::optional<int>& st, int code) { return st && WIFEXITED(*st) && WEXITSTATUS(*st) == code; }
bool killed_by(const std::optional<int>& st, int sig) { return st && WIFSIGNALED(*st) && WTERMSIG(*st) == sig; }

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string tail_of(const std::string& path, std::size_t lines) {
  const std::string all = read_file(path);
  std::size_t pos = all.size();
  for (std::size_t n = 0; n <= lines && pos > 0;) {
    pos = all.rfind('\n', pos - 1);
    if (pos == std::string::npos) return all;
    ++n;
  }
  return all.substr(pos + 1);
}

std::uint64_t env_u64(const char* name, std::uint64_t fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  return std::strtoull(v, nullptr, 0);
}

// ---------------------------------------------------------------------------
// Heraldd
// ---------------------------------------------------------------------------

std::unique_ptr<Heraldd> Heraldd::start(const std::string& bus, const std::string& run_dir,
                                        std::vector<std::string> extra_args,
                                        std::vector<std::pair<std::string, std::string>> extra_env) {
  static std::atomic<int> n{0};
  auto h = std::make_unique<Heraldd>();
  h->bus_ = bus;
  h->run_dir_ = run_dir;
  h->log_ = run_dir + "/heraldd-" + std::to_string(n.fetch_add(1)) + ".stderr";
  SpawnOptions o;
  o.argv = {heraldd_path(), "--foreground", "--bus", bus, "--run-dir", run_dir};
  for (std::string& a : extra_args) o.argv.push_back(std::move(a));
  o.set_env = std::move(extra_env);
  bool crash_set = false;
  for (const auto& [k, v] : o.set_env) crash_set = crash_set || k == "HERALD_CRASH_AT";
  if (!crash_set) o.unset_env.push_back("HERALD_CRASH_AT");
  o.stderr_path = h->log_;
  h->child_ = Child::spawn(o);
  return h;
}

bool Heraldd::wait_ready(double seconds) {
  const std::string sock = detail::socket_path(run_dir_, bus_);
  return wait_until(
      [&] {
        if (!child_.running()) return true;  // reported below
        auto c = detail::DaemonClient::connect(sock);
        return c && (*c)->daemon_pid() == child_.pid();
      },
      seconds, [&] { return "heraldd pid " + std::to_string(child_.pid()) + " not ready; log:\n" + tail_of(log_); }) &&
         child_.running();
}

std::optional<int> Heraldd::stop(double seconds) {
  child_.signal(SIGTERM);
  return child_.wait(seconds);
}

// ---------------------------------------------------------------------------
// Shared-memory views
// ---------------------------------------------------------------------------

std::shared_ptr<shm::TopicMap> attach_topic(const std::string& bus, const std::string& topic) {
  auto reg = shm::Registry::open(bus);
  if (!reg) return nullptr;
  auto rec = reg->find(topic);
  if (!rec) return nullptr;
  auto m = shm::TopicMap::attach(bus, topic, rec->incarnation, shm::Access::kReadWrite, shm::Access::kReadWrite);
  if (!m) return nullptr;
  return std::make_shared<shm::TopicMap>(std::move(m).value());
}

namespace {
const char* claim_state(std::uint64_t w) {
  switch (w & shm::kClaimStateMask) {
    case shm::kClaimEmpty: return "empty";
    case shm::kClaimCandidate: return "candidate";
    case shm::kClaimWon: return "won";
  }
  return "garbage";
}
std::string owner_text(std::uint64_t owner) {
  if (owner == 0) return "free";
  if (owner == shm::kOwnerReclaiming) return "reclaiming";
  return "pid " + std::to_string(owner & 0xffffffffu);
}
}  // namespace

std::string describe_partitions(const shm::TopicMap& m) {
  std::ostringstream o;
  const std::uint32_t hw = std::min(m.log_header()->producer_slots_hw.load(), m.geometry().producer_slots);
  o << "topic '" << m.topic() << "' producer slots in use:";
  for (std::uint32_t s = 0; s < hw; ++s) {
    const std::uint64_t owner = m.producer(s)->owner.load();
    if (owner != 0) o << " [" << s << ": " << owner_text(owner) << "]";
  }
  o << "\n";
  for (std::uint32_t p = 0; p < m.partitions(); ++p) {
    const shm::PartitionView& v = m.partition(p);
    const std::uint64_t raw = v.part->tail.load();
    o << "  partition " << p << ": tail " << (raw & ~shm::kTailClosedBit) << ((raw & shm::kTailClosedBit) ? " (closed)" : "")
      << ", aborted_records " << v.part->aborted_records.load() << ", repaired_claims "
      << v.part->repaired_claims.load() << ", last_repair_ns " << v.part->last_repair_ns.load() << ", max_repair_ns "
      << v.part->max_repair_ns.load() << ", stalled_pid " << v.part->stalled_pid.load() << " at "
      << v.part->stalled_position.load() << ", waiters 0x" << std::hex << v.state->waiters.load() << std::dec
      << "\n";
    for (std::uint32_t s = 0; s < hw; ++s) {
      const std::uint64_t w = v.claims[s].word.load();
      if ((w & shm::kClaimStateMask) == 0) continue;
      o << "    claim slot " << s << " (" << owner_text(m.producer(s)->owner.load()) << "): " << claim_state(w)
        << " at " << (w & ~shm::kClaimStateMask) << " size " << v.claims[s].size.load() << " committed_to "
        << v.claims[s].committed_to.load() << "\n";
    }
  }
  return o.str();
}

std::string describe_groups(const shm::TopicMap& m) {
  std::ostringstream o;
  for (const detail::GroupRecord& g : detail::list_groups(m)) {
    o << "  group '" << g.name << "' (slot " << g.slot << ", flags " << m.group(g.slot)->flags.load() << ", members "
      << m.group(g.slot)->members.load() << ")\n";
    for (std::uint32_t p = 0; p < m.partitions(); ++p) {
      const shm::GroupPartitionLayout* gp = m.group_partition(g.slot, p);
      const std::uint64_t c = gp->cursor.load();
      o << "    p" << p << ": gen " << shm::cursor_gen(c) << " committed " << shm::cursor_pos(c) << " owner_reader "
        << gp->owner_reader.load() << " floor " << gp->gate_floor.load() << " tail " << shm::load_tail(m.partition(p))
        << "\n";
    }
  }
  const std::uint32_t rhw = std::min(m.state_header()->reader_slots_hw.load(), m.state_geometry().reader_slots);
  for (std::uint32_t r = 0; r < rhw; ++r) {
    const shm::ReaderLayout* rd = m.reader(r);
    const std::uint64_t owner = rd->owner.load();
    if (owner == 0) continue;
    o << "  reader " << r << ": " << owner_text(owner) << " group+1 " << rd->group.load() << " flags "
      << rd->flags.load() << " polls " << rd->poll_count.load() << " member " << rd->member_id.load()
      << " assigned 0x" << std::hex << rd->assigned[0].load() << std::dec << " epoch " << rd->assign_epoch.load()
      << "\n";
  }
  return o.str();
}

bool producer_repaired(const shm::TopicMap& m, pid_t pid) {
  const std::uint32_t slots = m.geometry().producer_slots;
  for (std::uint32_t s = 0; s < slots; ++s) {
    const std::uint64_t owner = m.producer(s)->owner.load(std::memory_order_acquire);
    if (owner == shm::kOwnerReclaiming) return false;
    if (owner != 0 && static_cast<pid_t>(owner & 0xffffffffu) == pid) return false;
  }
  return true;
}

bool walk_log(const shm::TopicMap& m, std::uint32_t p, std::uint64_t from, std::uint64_t to, LogWalk* out,
              std::string* why) {
  const shm::PartitionView& v = m.partition(p);
  LogWalk w;
  std::uint64_t x = from;
  while (x < to) {
    if (!shm::is_committed(v, x)) {
      *why = "partition " + std::to_string(p) + ": no committed record at " + std::to_string(x) + " (walking " +
             std::to_string(from) + ".." + std::to_string(to) + ")";
      *out = w;
      return false;
    }
    const shm::RecordHeader* h = v.header_at(x);
    const std::uint64_t size = h->size;
    if (!shm::record_size_ok(size, v.max_event) || x + size > to) {
      *why = "partition " + std::to_string(p) + ": record at " + std::to_string(x) + " has size " +
             std::to_string(size);
      *out = w;
      return false;
    }
    ++w.records;
    if ((h->flags & shm::kRecordAborted) != 0) {
      ++w.aborted_records;
      w.aborted_bytes += size;
    }
    x += size;
  }
  w.end = x;
  *out = w;
  return true;
}

}  // namespace herald::test
