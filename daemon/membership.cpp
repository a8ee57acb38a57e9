// Consumer groups: join, leave, assignment (sticky-cooperative and range),
// cooperative revocation with acknowledgement, fencing by generation, stuck
// members, lag-out demotion and re-promotion, and rebuilding all of it after
// a daemon restart.
//
// Moving partition p from member A to member B:
//   1. revoke: p leaves A's mirrored bitmap (A's epoch bumps, A is woken);
//   2. A notices in poll(), commits what it handled of p, calls on_revoked
//      and acks; or A dies, or misses its deadline (max_poll_interval);
//   3. assign: the daemon bumps p's cursor generation by CAS (a zombie A's
//      later commit fails with kFenced), points owner_reader at B and sets p
//      in B's bitmap (B's epoch bumps, B is woken); B resumes at the cursor.
#include <algorithm>
#include <climits>
#include <numeric>

#include "daemon/daemon.hpp"
#include "daemon/state.hpp"
#include "runtime/src/control.hpp"
#include "runtime/src/dlq.hpp"
#include "runtime/src/groups.hpp"
#include "shm/clock.hpp"
#include "shm/futex.hpp"
#include "shm/names.hpp"
#include "shm/ring_log.hpp"
#include "shm/slots.hpp"

namespace herald::daemon {

namespace {

Result<Offset> parse_start(const nlohmann::json& req) {
  auto it = req.find("start");
  if (it == req.end() || !it->is_string()) return Offset::earliest();
  const std::string s = it->get<std::string>();
  const std::uint64_t v = control::get_u64_or(req, "start_value", 0);
  if (s == "earliest") return Offset::earliest();
  if (s == "latest") return Offset::latest();
  if (s == "position") return Offset::at(v);
  if (s == "time") return Offset::at_time(v);
  return fail(Errc::kInvalidArgument, "start '" + shm::printable(s) + "' is not earliest, latest, position or time");
}

}  // namespace

Daemon::GroupState& Daemon::group_state(TopicState& t, std::uint32_t slot, const std::string& name, int policy) {
  auto key = std::make_pair(t.rec.name, slot);
  auto it = groups_.find(key);
  if (it != groups_.end()) return *it->second;
  auto g = std::make_unique<GroupState>();
  g->topic = t.rec.name;
  g->name = name;
  g->slot = slot;
  g->policy = static_cast<shm::GroupPolicy>(policy);
  g->lagout_grace_ns = t.map->group(slot)->lagout_grace_ms.load(std::memory_order_relaxed) * 1'000'000ull;
  const std::uint32_t n = t.map->partitions();
  g->owner.assign(n, 0);
  g->revoking.assign(n, 0);
  g->revoke_deadline.assign(n, 0);
  g->empty_since_ns = clock_();
  GroupState& ref = *g;
  groups_[key] = std::move(g);
  return ref;
}

nlohmann::json Daemon::op_join(ConnId conn, const Peer& peer, const nlohmann::json& req) {
  const std::uint64_t id = control::get_u64_or(req, "id", 0);
  auto tname = control::get_string(req, "topic", shm::kMaxDlqTopicName + 1);
  auto gname = control::get_string(req, "group", shm::kMaxTopicName + 1);
  auto reader = control::get_u64(req, "reader");
  if (!tname) return control::error_response(id, tname.error());
  if (!gname) return control::error_response(id, gname.error());
  if (!reader) return control::error_response(id, reader.error());
  if (auto v = shm::validate_entity_name(*gname, "group"); !v) return control::error_response(id, v.error());
  auto start = parse_start(req);
  if (!start) return control::error_response(id, start.error());
  auto t = topic(*tname);
  if (!t) return control::error_response(id, t.error());
  TopicState& ts = **t;
  if (auto ok = may_use(peer, ts, true); !ok) return control::error_response(id, ok.error());
  const shm::TopicMap& m = *ts.map;
  if (*reader >= m.state_geometry().reader_slots)
    return control::error_response(id, Error{Errc::kInvalidArgument, "reader slot " + std::to_string(*reader) + " does not exist"});
  const auto r = static_cast<std::uint32_t>(*reader);
  const std::uint64_t slot_owner = m.reader(r)->owner.load(std::memory_order_acquire);
  if ((slot_owner & 0xffffffffu) != static_cast<std::uint64_t>(peer.pid))
    return control::error_response(id, Error{Errc::kPermissionDenied, "reader slot " + std::to_string(r) +
                                                                          " belongs to pid " +
                                                                          std::to_string(slot_owner & 0xffffffffu) +
                                                                          ", not to the caller (pid " +
                                                                          std::to_string(peer.pid) + ")"});
  // Watch the client before anything names it. A client that sent "join"
  // and exited before we got here is gone already: watch() runs
  // process_exited() now, while there is no member of it to remove (a
  // member made first would be removed by it and then used: freed memory).
  if (!watch(peer.pid, peer.start_time))
    return control::error_response(id, Error{Errc::kNotFound, "client pid " + std::to_string(peer.pid) +
                                                                  " exited before its join was handled"});
  // Find or create the group (creation under the bus admin lock).
  int policy_req = -1;
  if (auto p = req.find("policy"); p != req.end() && p->is_string()) {
    const std::string ps = p->get<std::string>();
    if (ps == "lossless") policy_req = static_cast<int>(shm::GroupPolicy::kLossless);
    else if (ps == "lossy") policy_req = static_cast<int>(shm::GroupPolicy::kLossy);
    else if (ps == "lag-out") policy_req = static_cast<int>(shm::GroupPolicy::kLagOut);
    else if (ps != "default")
      return control::error_response(id, Error{Errc::kInvalidArgument, "policy '" + shm::printable(ps) + "' is not lossless, lossy or lag-out"});
  }
  auto rec = detail::find_group(m, *gname);
  if (!rec || detail::dlq_missing(reg_, ts.rec, *gname)) {
    auto lock = detail::FileLock::acquire(detail::admin_lock_path(cfg_.run_dir, cfg_.bus));
    if (!lock) return control::error_response(id, lock.error());
    detail::NewGroup ng;
    ng.name = *gname;
    ng.policy = policy_req >= 0 ? static_cast<shm::GroupPolicy>(policy_req) : ts.rec.default_policy;
    ng.lagout_grace_ms = ts.rec.lagout_grace_ms;
    bool made = false;
    auto joined = detail::ensure_group_locked(reg_, cfg_.bus, m, ts.rec, ng, *start, &made);
    if (!joined) return control::error_response(id, joined.error());
    rec = std::move(joined).value();
    if (made) log("group '" + *gname + "' created on topic '" + *tname + "' (" + detail::policy_name(ng.policy) + ")");
    refresh_topics();
  }
  if (policy_req >= 0 && static_cast<shm::GroupPolicy>(policy_req) != rec->policy)
    return control::error_response(
        id, Error{Errc::kInvalidArgument, "group '" + rec->name + "' exists with policy " +
                                              detail::policy_name(rec->policy) + ", not " +
                                              detail::policy_name(static_cast<shm::GroupPolicy>(policy_req))});
  GroupState& g = group_state(ts, rec->slot, rec->name, static_cast<int>(rec->policy));
  m.reader(r)->group.store(rec->slot + 1, std::memory_order_relaxed);

  auto mem = std::make_unique<Member>();
  mem->id = next_member_id_++;
  mem->conn = conn;
  mem->pid = peer.pid;
  mem->start_time = peer.start_time;
  mem->topic = ts.rec.name;
  mem->group = rec->slot;
  mem->reader = r;
  const std::string assignor = req.contains("assignor") && req["assignor"].is_string() ? req["assignor"].get<std::string>() : "sticky";
  if (assignor != "sticky" && assignor != "range")
    return control::error_response(id, Error{Errc::kInvalidArgument, "assignor '" + shm::printable(assignor) + "' is not sticky or range"});
  mem->assignor = assignor == "range" ? Assignor::kRange : Assignor::kSticky;
  mem->max_poll_interval_ns =
      control::get_u64_or(req, "max_poll_interval_ms", cfg_.default_max_poll_interval_ns / 1'000'000) * 1'000'000ull;
  mem->last_poll_count = m.reader(r)->poll_count.load(std::memory_order_relaxed);
  mem->last_progress_ns = mem->last_moved_ns = clock_();
  Member& ref = *mem;
  members_[mem->id] = std::move(mem);
  g.members.push_back(ref.id);
  g.empty_since_ns = 0;
  m.group(g.slot)->members.store(static_cast<std::uint32_t>(g.members.size()), std::memory_order_relaxed);
  if (g.policy == shm::GroupPolicy::kLagOut &&
      (m.group(g.slot)->flags.load(std::memory_order_acquire) & shm::kGroupGating) == 0)
    promote(g);
  rebalance(g);
  log("member " + std::to_string(ref.id) + " (pid " + std::to_string(peer.pid) + ") joined group '" + g.name +
      "' of topic '" + g.topic + "'");
  nlohmann::json resp = control::ok_response(id);
  resp["member_id"] = ref.id;
  resp["group_slot"] = g.slot;
  resp["epoch"] = epoch_;
  return resp;
}

nlohmann::json Daemon::op_rejoin(ConnId conn, const Peer& peer, const nlohmann::json& req) {
  const std::uint64_t id = control::get_u64_or(req, "id", 0);
  auto tname = control::get_string(req, "topic", shm::kMaxDlqTopicName + 1);
  auto reader = control::get_u64(req, "reader");
  if (!tname) return control::error_response(id, tname.error());
  if (!reader) return control::error_response(id, reader.error());
  // A member kept from before the restart: same topic, reader slot and pid.
  for (auto& [mid, m] : members_) {
    if (!m->restored || m->topic != *tname || m->reader != *reader || m->pid != peer.pid) continue;
    m->restored = false;
    m->conn = conn;
    m->start_time = peer.start_time;
    if (auto a = req.find("assignor"); a != req.end() && a->is_string())
      m->assignor = a->get<std::string>() == "range" ? Assignor::kRange : Assignor::kSticky;
    m->max_poll_interval_ns = control::get_u64_or(req, "max_poll_interval_ms", m->max_poll_interval_ns / 1'000'000) * 1'000'000ull;
    m->last_progress_ns = m->last_moved_ns = clock_();
    auto t = topics_.find(m->topic);
    if (t != topics_.end()) m->last_poll_count = t->second->map->reader(m->reader)->poll_count.load(std::memory_order_relaxed);
    mirror(*m);
    log("member " + std::to_string(mid) + " (pid " + std::to_string(peer.pid) + ") rejoined after the restart");
    nlohmann::json resp = control::ok_response(id);
    resp["member_id"] = mid;
    resp["group_slot"] = m->group;
    resp["epoch"] = epoch_;
    return resp;
  }
  // Not kept (it came back too late, or this daemon never knew it): a fresh join.
  return op_join(conn, peer, req);
}

nlohmann::json Daemon::op_leave(ConnId conn, const nlohmann::json& req) {
  const std::uint64_t id = control::get_u64_or(req, "id", 0);
  auto mid = control::get_u64(req, "member_id");
  if (!mid) return control::error_response(id, mid.error());
  auto it = members_.find(*mid);
  if (it == members_.end() || it->second->conn != conn)
    return control::error_response(id, Error{Errc::kNotFound, "no member " + std::to_string(*mid) + " on this connection"});
  remove_member(*mid, "left the group");
  return control::ok_response(id);
}

nlohmann::json Daemon::op_ack(ConnId conn, const nlohmann::json& req) {
  const std::uint64_t id = control::get_u64_or(req, "id", 0);
  auto mid = control::get_u64(req, "member_id");
  if (!mid) return control::error_response(id, mid.error());
  auto it = members_.find(*mid);
  if (it == members_.end() || it->second->conn != conn)
    return control::error_response(id, Error{Errc::kNotFound, "no member " + std::to_string(*mid) + " on this connection"});
  Member& m = *it->second;
  auto g = groups_.find({m.topic, m.group});
  if (g == groups_.end()) return control::ok_response(id);
  auto parts = req.find("partitions");
  if (parts == req.end() || !parts->is_array())
    return control::error_response(id, Error{Errc::kProtocol, "\"partitions\" must be an array"});
  for (const auto& pj : *parts) {
    if (!pj.is_number_unsigned()) continue;
    const std::uint64_t p = pj.get<std::uint64_t>();
    if (p >= g->second->owner.size() || g->second->revoking[p] != m.id) continue;
    // Revocation done: the member committed and let go of p.
    g->second->revoking[p] = 0;
    g->second->owner[p] = 0;
    m.owned.reset(p);
    g->second->dirty = true;
  }
  rebalance(*g->second);
  return control::ok_response(id);
}

void Daemon::remove_member(std::uint64_t id, const char* why) {
  auto it = members_.find(id);
  if (it == members_.end()) return;
  Member& m = *it->second;
  auto t = topics_.find(m.topic);
  auto g = groups_.find({m.topic, m.group});
  if (g != groups_.end()) {
    GroupState& gs = *g->second;
    for (std::uint32_t p = 0; p < gs.owner.size(); ++p) {
      if (gs.owner[p] != id) continue;
      gs.owner[p] = 0;
      gs.revoking[p] = 0;
      if (t != topics_.end()) {
        shm::GroupPartitionLayout* gp = t->second->map->group_partition(gs.slot, p);
        std::uint32_t mine = m.reader + 1;
        gp->owner_reader.compare_exchange_strong(mine, 0, std::memory_order_acq_rel);
        gp->lease.store(shm::kNoLease, std::memory_order_release);
      }
    }
    std::erase(gs.members, id);
    if (gs.members.empty()) gs.empty_since_ns = clock_();
    if (t != topics_.end())
      t->second->map->group(gs.slot)->members.store(static_cast<std::uint32_t>(gs.members.size()), std::memory_order_relaxed);
    gs.dirty = true;
  }
  if (t != topics_.end()) {
    const shm::TopicMap& map = *t->second->map;
    shm::ReaderLayout* r = map.reader(m.reader);
    const std::uint64_t owner = r->owner.load(std::memory_order_acquire);
    if ((owner & 0xffffffffu) == static_cast<std::uint64_t>(m.pid) && !shm::process_alive(m.pid, m.start_time)) {
      // The process died: release its waiter bits and its reader slot.
      std::uint64_t expect = owner;
      if (r->owner.compare_exchange_strong(expect, shm::kOwnerReclaiming, std::memory_order_acq_rel))
        shm::reclaim_reader_slot(map, m.reader);
    } else if ((owner & 0xffffffffu) == static_cast<std::uint64_t>(m.pid)) {
      // Alive (it left, or lost its place): it owns nothing any more.
      m.owned.reset();
      for (auto& w : r->assigned) w.store(0, std::memory_order_relaxed);
      r->assign_epoch.fetch_add(1, std::memory_order_release);
    }
  }
  log("member " + std::to_string(id) + " (pid " + std::to_string(m.pid) + ") removed: " + why);
  members_.erase(it);
}

std::vector<std::uint64_t> Daemon::target(const GroupState& g, const std::vector<std::uint64_t>& eligible) const {
  const std::size_t n = g.owner.size();
  std::vector<std::uint64_t> out(n, 0);
  if (eligible.empty()) return out;
  std::vector<std::uint64_t> ms = eligible;
  std::sort(ms.begin(), ms.end());
  const std::size_t mcount = ms.size();
  const std::size_t base = n / mcount, extra = n % mcount;
  const Assignor kind = members_.at(ms.front())->assignor;
  if (kind == Assignor::kRange) {
    std::size_t p = 0;
    for (std::size_t i = 0; i < mcount; ++i)
      for (std::size_t k = 0; k < base + (i < extra ? 1 : 0); ++k) out[p++] = ms[i];
    return out;
  }
  // Sticky: keep what each member owns up to its quota; the extra +1 quotas
  // go to those owning most now, so as few partitions as possible move.
  std::map<std::uint64_t, std::size_t> owns;
  for (std::uint64_t mid : ms) owns[mid] = 0;
  for (std::size_t p = 0; p < n; ++p)
    if (g.owner[p] != 0 && g.revoking[p] != g.owner[p] && owns.count(g.owner[p])) ++owns[g.owner[p]];
  std::vector<std::uint64_t> by_load = ms;
  std::stable_sort(by_load.begin(), by_load.end(),
                   [&](std::uint64_t a, std::uint64_t b) { return owns[a] > owns[b]; });
  std::map<std::uint64_t, std::size_t> quota, count;
  for (std::size_t i = 0; i < mcount; ++i) quota[by_load[i]] = base + (i < extra ? 1 : 0);
  for (std::size_t p = 0; p < n; ++p) {
    const std::uint64_t o = g.owner[p];
    if (o == 0 || g.revoking[p] == o || !quota.count(o) || count[o] >= quota[o]) continue;
    out[p] = o;
    ++count[o];
  }
  std::size_t next = 0;
  for (std::uint64_t mid : ms) {
    while (count[mid] < quota[mid]) {
      while (next < n && out[next] != 0) ++next;
      if (next >= n) break;
      out[next] = mid;
      ++count[mid];
    }
  }
  return out;
}

void Daemon::rebalance(GroupState& g) {
  g.dirty = false;
  auto t = topics_.find(g.topic);
  if (t == topics_.end()) return;
  std::vector<std::uint64_t> eligible;
  for (std::uint64_t mid : g.members)
    if (!members_.at(mid)->stuck) eligible.push_back(mid);
  const std::vector<std::uint64_t> want = target(g, eligible);
  for (std::uint32_t p = 0; p < g.owner.size(); ++p) {
    const std::uint64_t cur = g.owner[p];
    if (cur == want[p]) continue;
    if (cur != 0) {
      if (g.revoking[p] == cur) continue;  // waiting for its ack
      Member& c = *members_.at(cur);
      if (c.restored || c.stuck) {
        revoke(g, p, /*forced=*/true);
      } else {
        revoke(g, p, /*forced=*/false);
        continue;
      }
    }
    if (want[p] != 0) assign(g, p, *members_.at(want[p]));
  }
  t->second->map->group(g.slot)->rebalances.fetch_add(1, std::memory_order_relaxed);
}

void Daemon::assign(GroupState& g, std::uint32_t p, Member& m) {
  const shm::TopicMap& map = *topics_.at(g.topic)->map;
  shm::GroupPartitionLayout* gp = map.group_partition(g.slot, p);
  // Fence whoever held p before: a new generation by CAS; their commit,
  // which CASes from the old word, now fails with kFenced.
  std::uint64_t c = gp->cursor.load(std::memory_order_acquire);
  while (!gp->cursor.compare_exchange_weak(c, shm::pack_cursor(shm::cursor_gen(c) + 1, shm::cursor_pos(c)),
                                           std::memory_order_seq_cst)) {
  }
  gp->lease.store(shm::kNoLease, std::memory_order_release);
  gp->owner_reader.store(m.reader + 1, std::memory_order_release);
  g.owner[p] = m.id;
  g.revoking[p] = 0;
  m.owned.set(p);
  mirror(m);
}

void Daemon::revoke(GroupState& g, std::uint32_t p, bool forced) {
  const std::uint64_t cur = g.owner[p];
  auto it = members_.find(cur);
  if (!forced) {
    g.revoking[p] = cur;
    g.revoke_deadline[p] = clock_() + (it != members_.end() ? it->second->max_poll_interval_ns : 0);
    if (it != members_.end()) mirror(*it->second);
    return;
  }
  g.owner[p] = 0;
  g.revoking[p] = 0;
  auto t = topics_.find(g.topic);
  if (t != topics_.end()) {
    shm::GroupPartitionLayout* gp = t->second->map->group_partition(g.slot, p);
    gp->owner_reader.store(0, std::memory_order_release);
    gp->lease.store(shm::kNoLease, std::memory_order_release);
  }
  if (it != members_.end()) {
    it->second->owned.reset(p);
    mirror(*it->second);
  }
  g.dirty = true;
}

void Daemon::mirror(Member& m) {
  auto t = topics_.find(m.topic);
  auto g = groups_.find({m.topic, m.group});
  if (t == topics_.end() || g == groups_.end()) return;
  const shm::TopicMap& map = *t->second->map;
  shm::ReaderLayout* r = map.reader(m.reader);
  std::uint64_t words[shm::kAssignWords] = {};
  for (std::uint32_t p = 0; p < g->second->owner.size(); ++p)
    if (m.owned.test(p) && g->second->revoking[p] != m.id) words[p / 64] |= 1ull << (p % 64);
  for (std::uint32_t w = 0; w < shm::kAssignWords; ++w) r->assigned[w].store(words[w], std::memory_order_relaxed);
  r->member_id.store(m.id, std::memory_order_relaxed);
  // Release: pairs with the member's acquire after it sees a new epoch; the
  // bitmap and the cursor generations written before are visible to it.
  r->assign_epoch.fetch_add(1, std::memory_order_release);
  // Wake it if it is parked, so it acts on the change now.
  map.wake(m.reader)->seq.fetch_add(1, std::memory_order_release);
  shm::futex_wake(&map.wake(m.reader)->seq, INT_MAX);
}

void Daemon::check_members() {
  const std::uint64_t now = clock_();
  std::vector<std::uint64_t> expired;
  for (auto& [id, mp] : members_) {
    Member& m = *mp;
    auto t = topics_.find(m.topic);
    if (t == topics_.end()) continue;
    if (m.restored) {
      if (now >= m.rejoin_deadline_ns) expired.push_back(id);
      continue;
    }
    const shm::ReaderLayout* r = t->second->map->reader(m.reader);
    const std::uint64_t pc = r->poll_count.load(std::memory_order_relaxed);
    const bool in_poll = (r->flags.load(std::memory_order_relaxed) & shm::kReaderInPoll) != 0;
    auto g = groups_.find({m.topic, m.group});
    if (pc != m.last_poll_count) m.last_moved_ns = now;
    // In poll() (parked, or spinning) a member is idle, not stuck: unless
    // its process is stopped (SIGSTOP, a debugger). Then it cannot wake for
    // what arrives, and its partitions would wait for it for good (a
    // lossless topic's producers with them). /proc is read only for a member
    // whose poll count has not moved for max_poll_interval: a parked member
    // counts every timed wake (50 ms), so that is a spinning one or a
    // stopped one.
    const bool idle_in_poll =
        in_poll && (now - m.last_moved_ns <= m.max_poll_interval_ns || !shm::process_stopped(static_cast<pid_t>(m.pid)));
    if (pc != m.last_poll_count || idle_in_poll) {
      m.last_poll_count = pc;
      m.last_progress_ns = now;
      if (m.stuck) {
        m.stuck = false;
        log("member " + std::to_string(id) + " (pid " + std::to_string(m.pid) + ") is polling again");
        if (g != groups_.end()) g->second->dirty = true;
      }
    } else if (!m.stuck && now - m.last_progress_ns > m.max_poll_interval_ns) {
      m.stuck = true;
      log("member " + std::to_string(id) + " (pid " + std::to_string(m.pid) + ") " +
          (in_poll ? "is stopped inside poll() and has not polled for over "
                   : "has been outside poll() for over ") +
          std::to_string(m.max_poll_interval_ns / 1'000'000) + " ms: its partitions move");
      if (g != groups_.end()) {
        for (std::uint32_t p = 0; p < g->second->owner.size(); ++p)
          if (g->second->owner[p] == id) revoke(*g->second, p, /*forced=*/true);
      }
    }
  }
  for (std::uint64_t id : expired) remove_member(id, "did not rejoin within the grace after the daemon restart");
  // Revocations past their deadline are forced.
  for (auto& [key, g] : groups_) {
    for (std::uint32_t p = 0; p < g->revoking.size(); ++p) {
      if (g->revoking[p] == 0 || now < g->revoke_deadline[p]) continue;
      log("member " + std::to_string(g->revoking[p]) + " did not release partition " + std::to_string(p) + " of group '" +
          g->name + "' in time: it is fenced");
      revoke(*g, p, /*forced=*/true);
    }
  }
}

void Daemon::check_lagout() {
  const std::uint64_t now = clock_();
  for (auto& [key, g] : groups_) {
    if (g->policy != shm::GroupPolicy::kLagOut) continue;
    if (!g->members.empty()) {
      g->empty_since_ns = 0;
      continue;
    }
    if (g->empty_since_ns == 0) g->empty_since_ns = now;
    if (now - g->empty_since_ns < g->lagout_grace_ns) continue;
    auto t = topics_.find(g->topic);
    if (t == topics_.end()) continue;
    const shm::TopicMap& map = *t->second->map;
    shm::GroupLayout* gl = map.group(g->slot);
    if ((gl->flags.load(std::memory_order_acquire) & shm::kGroupGating) == 0) continue;
    // Demote: the group stops gating, so a dead service cannot stall its
    // producers; it reads as lossy until a member returns.
    gl->flags.fetch_and(~static_cast<std::uint32_t>(shm::kGroupGating), std::memory_order_seq_cst);
    gl->demotions.fetch_add(1, std::memory_order_relaxed);
    map.state_header()->groups_epoch.fetch_add(1, std::memory_order_release);
    for (std::uint32_t p = 0; p < map.partitions(); ++p) shm::wake_producers(map.partition(p));
    log("group '" + g->name + "' of topic '" + g->topic + "' has had no member for " +
        std::to_string(g->lagout_grace_ns / 1'000'000) + " ms: demoted to lossy (producers no longer wait for it)");
  }
}

void Daemon::promote(GroupState& g) {
  auto t = topics_.find(g.topic);
  if (t == topics_.end()) return;
  const shm::TopicMap& map = *t->second->map;
  shm::GroupLayout* gl = map.group(g.slot);
  // Re-adding a gate: the Disruptor rule, as for a new group (groups.cpp).
  for (std::uint32_t p = 0; p < map.partitions(); ++p)
    map.group_partition(g.slot, p)->gate_floor.store(shm::load_tail(map.partition(p)), std::memory_order_seq_cst);
  gl->flags.fetch_or(shm::kGroupGating, std::memory_order_seq_cst);
  for (std::uint32_t p = 0; p < map.partitions(); ++p) {
    const std::uint64_t t1 = map.partition(p).part->tail.load(std::memory_order_seq_cst) & ~shm::kTailClosedBit;
    map.group_partition(g.slot, p)->gate_floor.store(t1, std::memory_order_seq_cst);
  }
  gl->promotions.fetch_add(1, std::memory_order_relaxed);
  map.state_header()->groups_epoch.fetch_add(1, std::memory_order_release);
  log("group '" + g.name + "' of topic '" + g.topic + "' has a member again: promoted back to gating");
}

void Daemon::restore_groups(TopicState& t) {
  const shm::TopicMap& map = *t.map;
  const std::uint64_t now = clock_();
  for (const detail::GroupRecord& rec : detail::list_groups(map)) {
    if (groups_.count({t.rec.name, rec.slot}) != 0) continue;
    GroupState& g = group_state(t, rec.slot, rec.name, static_cast<int>(rec.policy));
    // Owners recorded in shared memory whose process lives are kept as
    // restored members for the rejoin grace: a daemon restart moves nothing.
    for (std::uint32_t p = 0; p < map.partitions(); ++p) {
      shm::GroupPartitionLayout* gp = map.group_partition(rec.slot, p);
      const std::uint32_t o = gp->owner_reader.load(std::memory_order_acquire);
      if (o == 0) continue;
      const std::uint32_t r = o - 1;
      bool alive = false;
      pid_t pid = 0;
      std::uint64_t start = 0;
      if (r < map.state_geometry().reader_slots) {
        const shm::ReaderLayout* rd = map.reader(r);
        const std::uint64_t owner = rd->owner.load(std::memory_order_acquire);
        pid = static_cast<pid_t>(owner & 0xffffffffu);
        start = rd->start_time.load(std::memory_order_relaxed);
        alive = owner != 0 && owner != shm::kOwnerReclaiming && rd->group.load(std::memory_order_relaxed) == rec.slot + 1 &&
                shm::process_alive(pid, start);
      }
      if (!alive) {
        gp->owner_reader.store(0, std::memory_order_release);
        continue;
      }
      Member* m = nullptr;
      for (auto& [mid, mem] : members_)
        if (mem->restored && mem->topic == t.rec.name && mem->reader == r) m = mem.get();
      if (m == nullptr) {
        // Watched first: if it died since the check above, process_exited()
        // runs before a member of it exists (see op_join).
        if (!watch(pid, start)) {
          gp->owner_reader.store(0, std::memory_order_release);
          continue;
        }
        auto mem = std::make_unique<Member>();
        mem->id = next_member_id_++;
        mem->pid = pid;
        mem->start_time = start;
        mem->topic = t.rec.name;
        mem->group = rec.slot;
        mem->reader = r;
        mem->max_poll_interval_ns = cfg_.default_max_poll_interval_ns;
        mem->restored = true;
        mem->rejoin_deadline_ns = now + cfg_.rejoin_grace_ns;
        mem->last_progress_ns = now;
        m = mem.get();
        g.members.push_back(mem->id);
        members_[mem->id] = std::move(mem);
      }
      m->owned.set(p);
      g.owner[p] = m->id;
    }
    g.empty_since_ns = g.members.empty() ? now : 0;
    // Partitions nobody owns now (their owner died while no daemon ran, or
    // none had one) go to the members at the next rebalance; without it a
    // live member kept only what it had, and the rest was read by no one
    // (on a lossless topic, producers stalled) until another member joined.
    // Restored members keep what they own: the rebalance moves only free
    // partitions until the grace decides about the rest.
    for (std::uint32_t p = 0; p < map.partitions() && !g.members.empty(); ++p)
      if (g.owner[p] == 0) g.dirty = true;
  }
}

}  // namespace herald::daemon
