#include "daemon/daemon.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <string_view>

#include "daemon/state.hpp"
#include "runtime/src/control.hpp"
#include "runtime/src/daemon_client.hpp"
#include "shm/clock.hpp"
#include "shm/names.hpp"
#include "shm/slots.hpp"

namespace herald::daemon {

Daemon::Daemon(Config cfg, Clock clock, Logger log)
    : cfg_(std::move(cfg)), clock_(std::move(clock)), logger_(std::move(log)) {}

Daemon::~Daemon() {
  // Leave the bus state in shared memory for the next daemon; only say we
  // are gone, if we are still the registered daemon.
  if (reg_.header() != nullptr) {
    std::uint64_t me = static_cast<std::uint64_t>(::getpid());
    reg_.header()->daemon_pid.compare_exchange_strong(me, 0, std::memory_order_acq_rel);
  }
}

void Daemon::log(const std::string& line) const {
  if (logger_) logger_(line);
}

Result<std::unique_ptr<Daemon>> Daemon::open(Config cfg, Clock clock, Logger log) {
  if (auto r = shm::validate_bus_name(cfg.bus); !r) return fail(std::move(r).error());
  std::unique_ptr<Daemon> d(new Daemon(std::move(cfg), std::move(clock), std::move(log)));
  if (auto r = d->start(); !r) return fail(std::move(r).error());
  return d;
}

namespace {
// A live process named heraldd (a pid the registry names may have been
// reused by something else since that daemon died).
bool is_live_heraldd(pid_t pid) {
  if (pid <= 0 || !shm::process_alive(pid, 0)) return false;
  const int fd = ::open(("/proc/" + std::to_string(pid) + "/comm").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return true;  // cannot tell: the safe answer
  char buf[32] = {};
  const ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  return n > 0 && std::string_view(buf, static_cast<std::size_t>(n)).substr(0, 7) == "heraldd";
}
}  // namespace

Result<void> Daemon::start() {
  if (cfg_.take_lock) {
    const std::string path = detail::daemon_lock_path(cfg_.run_dir, cfg_.bus);
    auto lock = detail::FileLock::try_acquire(path);
    if (!lock) {
      // The holder wrote its pid when it took the lock; one that is not
      // alive is stale (the winner of a start race has not written its own
      // yet, or the lock is held by a process that never wrote one).
      const long pid = detail::daemon_lock_holder(cfg_.run_dir, cfg_.bus);
      const std::string holder = pid > 0 && shm::process_alive(static_cast<pid_t>(pid), 0) ? "pid " + std::to_string(pid)
                                                                                            : "another process";
      if (lock.error().code == Errc::kBusy) return fail(Errc::kBusy, detail::lock_held_error(cfg_.bus, holder, path));
      return fail(std::move(lock).error());
    }
    const std::string pid = std::to_string(::getpid()) + "\n";
    if (::ftruncate(lock->fd(), 0) != 0 || ::pwrite(lock->fd(), pid.data(), pid.size(), 0) < 0) {
      // The pid in the file is a courtesy for the error message above.
    }
    lock_ = std::move(lock).value();
  }
  auto reg = shm::Registry::open_or_create(cfg_.bus, 0644);
  if (!reg) return fail(std::move(reg).error());
  reg_ = std::move(reg).value();
  started_ns_ = clock_();
  {
    shm::RegistryHeaderLayout* h = reg_.header();
    // One daemon per bus. The lock above is one per run directory, and the
    // run directory depends on the user (/run/herald for root, /tmp/herald
    // for others who cannot write it): root and a user sharing a bus would
    // each start one, and the two would rebalance against each other. The
    // registry names the daemon serving the bus: take it over only from a
    // dead one (a CAS, so two starting at once cannot both win).
    const auto me = static_cast<std::uint64_t>(::getpid());
    std::uint64_t cur = h->daemon_pid.load(std::memory_order_acquire);
    for (;;) {
      const auto other = static_cast<pid_t>(cur);
      if (cur != 0 && cur != me && is_live_heraldd(other))
        return fail(Errc::kBusy, "bus '" + cfg_.bus + "' already has a running heraldd (pid " + std::to_string(other) +
                                     ") with another run directory than " + cfg_.run_dir +
                                     " (another user's? set HERALD_RUN_DIR alike for every user of the bus)");
      // The pid alone decides (is_live_heraldd asks /proc, not the start
      // time stored after this): a failed CAS re-reads the pid another
      // starting daemon just stored and checks it again. acq_rel/acquire
      // keeps the start time and epoch stores below after our win.
      if (h->daemon_pid.compare_exchange_weak(cur, me, std::memory_order_acq_rel, std::memory_order_acquire)) break;
    }
    h->daemon_start_time.store(shm::self_start_time(), std::memory_order_relaxed);
    // Release: a client that sees the new epoch sees our pid too. Clients
    // compare the epoch in poll() to notice a restarted daemon.
    epoch_ = h->daemon_epoch.fetch_add(1, std::memory_order_acq_rel) + 1;
  }
  refresh_topics();
  for (auto& [name, t] : topics_) restore_groups(*t);
  scan_slots();
  next_scan_ns_ = clock_() + cfg_.scan_interval_ns;
  log("heraldd " + std::to_string(::getpid()) + " serving bus '" + cfg_.bus + "' (epoch " + std::to_string(epoch_) +
      ", " + std::to_string(topics_.size()) + " topics, " + std::to_string(members_.size()) +
      " members kept for the rejoin grace)");
  return {};
}

nlohmann::json Daemon::handle(ConnId conn, const Peer& peer, const nlohmann::json& req) {
  const std::uint64_t id = control::get_u64_or(req, "id", 0);
  auto op = control::get_string(req, "op", 64);
  if (!op) return control::error_response(id, op.error());
  nlohmann::json resp;
  try {
    const std::string& o = *op;
    if (o == "hello") {
      resp = control::ok_response(id);
      resp["daemon_pid"] = ::getpid();
      resp["epoch"] = epoch_;
      resp["bus"] = cfg_.bus;
    } else if (o == "ping") {
      resp = control::ok_response(id);
    } else if (o == "create_topic") {
      resp = op_create_topic(peer, req);
    } else if (o == "delete_topic") {
      resp = op_delete_topic(peer, req);
    } else if (o == "join") {
      resp = op_join(conn, peer, req);
    } else if (o == "rejoin") {
      resp = op_rejoin(conn, peer, req);
    } else if (o == "leave") {
      resp = op_leave(conn, req);
    } else if (o == "ack") {
      resp = op_ack(conn, req);
    } else if (o == "producer") {
      resp = op_producer(peer, req);
    } else if (o == "delete_group") {
      resp = op_delete_group(peer, req);
    } else if (o == "reset_group") {
      resp = op_reset_group(peer, req);
    } else if (o == "shutdown") {
      // The socket is 0666 (any user may use the topics its modes allow);
      // stopping the daemon is its user's or root's, as destroy is.
      if (peer.uid != 0 && peer.uid != ::geteuid())
        return control::error_response(id, Error{Errc::kPermissionDenied, "only the daemon's user or root may stop heraldd"});
      stop_ = true;
      resp = control::ok_response(id);
    } else if (o == "destroy") {
      if (peer.uid != 0 && peer.uid != ::geteuid())
        return control::error_response(id, Error{Errc::kPermissionDenied, "only the daemon's user or root may destroy the bus"});
      stop_ = destroy_ = true;
      resp = control::ok_response(id);
    } else {
      return control::error_response(id, Error{Errc::kProtocol, "unknown op '" + shm::printable(o) + "'"});
    }
  } catch (const std::exception& ex) {
    // nlohmann throws on a type mismatch we did not check: a malformed
    // request, never a reason to stop the daemon.
    return control::error_response(id, Error{Errc::kProtocol, std::string("malformed request: ") + ex.what()});
  }
  resp["id"] = id;
  return resp;
}

void Daemon::disconnected(ConnId conn) {
  std::vector<std::uint64_t> gone;
  for (auto& [id, m] : members_)
    if (m->conn == conn) gone.push_back(id);
  for (std::uint64_t id : gone) remove_member(id, "connection closed");
}

std::uint64_t Daemon::next_deadline() const noexcept {
  std::uint64_t next = next_scan_ns_;
  for (const auto& [key, g] : groups_) {
    for (std::size_t p = 0; p < g->revoking.size(); ++p)
      if (g->revoking[p] != 0) next = std::min(next, g->revoke_deadline[p]);
  }
  return next;
}

void Daemon::do_work() {
  for (const auto& [pid, start] : pids_.exited()) process_exited(pid, start);
  repair_dead_producers();
  const std::uint64_t now = clock_();
  if (now >= next_scan_ns_) {
    refresh_topics();
    scan_slots();
    next_scan_ns_ = now + cfg_.scan_interval_ns;
  }
  check_members();
  check_lagout();
  for (auto& [key, g] : groups_)
    if (g->dirty) rebalance(*g);
}

std::vector<Daemon::MemberInfo> Daemon::members() const {
  std::vector<MemberInfo> out;
  for (const auto& [id, m] : members_) {
    MemberInfo mi;
    mi.id = id;
    mi.pid = m->pid;
    mi.topic = m->topic;
    auto g = groups_.find({m->topic, m->group});
    if (g != groups_.end()) mi.group = g->second->name;
    mi.reader = m->reader;
    for (std::uint32_t p = 0; p < shm::kMaxPartitions; ++p)
      if (m->owned.test(p)) mi.owned.push_back(p);
    mi.stuck = m->stuck;
    mi.restored = m->restored;
    out.push_back(std::move(mi));
  }
  return out;
}

std::vector<std::uint32_t> Daemon::owned_by(std::uint64_t member) const {
  std::vector<std::uint32_t> out;
  auto it = members_.find(member);
  if (it == members_.end()) return out;
  for (std::uint32_t p = 0; p < shm::kMaxPartitions; ++p)
    if (it->second->owned.test(p)) out.push_back(p);
  return out;
}

bool Daemon::group_gating(const std::string& topic, const std::string& group) const {
  for (const auto& [key, g] : groups_) {
    if (g->topic != topic || g->name != group) continue;
    auto t = topics_.find(topic);
    if (t == topics_.end()) return false;
    return (t->second->map->group(g->slot)->flags.load(std::memory_order_acquire) & shm::kGroupGating) != 0;
  }
  return false;
}

void Daemon::destroy_bus() {
  for (auto& [name, t] : topics_) t->map->close();
  members_.clear();
  groups_.clear();
  topics_.clear();
  for (const std::string& seg : shm::Segment::list(shm::bus_segment_prefix(cfg_.bus))) (void)shm::Segment::remove(seg);
  for (const std::string& f : {detail::socket_path(cfg_.run_dir, cfg_.bus), detail::admin_lock_path(cfg_.run_dir, cfg_.bus),
                               detail::daemon_log_path(cfg_.run_dir, cfg_.bus),
                               detail::daemon_lock_path(cfg_.run_dir, cfg_.bus)})
    ::unlink(f.c_str());
  log("bus '" + cfg_.bus + "' destroyed");
}

}  // namespace herald::daemon
