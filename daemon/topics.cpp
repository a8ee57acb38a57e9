// Topics and groups as the daemon administers them: create, delete, reset,
// the registry mirror, and who may use what (SO_PEERCRED vs segment modes).
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "daemon/daemon.hpp"
#include "daemon/state.hpp"
#include "runtime/src/admin.hpp"
#include "runtime/src/control.hpp"
#include "runtime/src/dlq.hpp"
#include "runtime/src/groups.hpp"
#include "shm/names.hpp"
#include "shm/ring_log.hpp"

namespace herald::daemon {

namespace {

// Supplementary groups of a process (/proc/<pid>/status "Groups:").
std::vector<gid_t> groups_of(pid_t pid) {
  std::vector<gid_t> out;
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("Groups:", 0) != 0) continue;
    std::istringstream ss(line.substr(7));
    long g = 0;
    while (ss >> g) out.push_back(static_cast<gid_t>(g));
  }
  return out;
}

Result<Policy> parse_policy(const nlohmann::json& req) {
  auto it = req.find("policy");
  if (it == req.end()) return Policy::kLagOut;
  if (!it->is_string()) return fail(Errc::kInvalidArgument, "\"policy\" must be a string");
  const std::string p = it->get<std::string>();
  if (p == "lossless") return Policy::kLossless;
  if (p == "lossy") return Policy::kLossy;
  if (p == "lag-out" || p == "lagout") return Policy::kLagOut;
  return fail(Errc::kInvalidArgument, "policy '" + shm::printable(p) + "' is not lossless, lossy or lag-out");
}

}  // namespace

Result<void> Daemon::may_use(const Peer& peer, const TopicState& t, bool write) const {
  if (peer.uid == 0) return {};
  struct stat st{};
  const std::string seg = shm::state_segment_name(cfg_.bus, t.rec.name, t.rec.incarnation);
  if (::stat(("/dev/shm/" + seg).c_str(), &st) != 0) return fail(Errc::kNotFound, "topic '" + t.rec.name + "' has no state segment");
  const mode_t need_owner = write ? S_IWUSR : S_IRUSR;
  const mode_t need_group = write ? S_IWGRP : S_IRGRP;
  const mode_t need_other = write ? S_IWOTH : S_IROTH;
  if (peer.uid == st.st_uid && (st.st_mode & need_owner)) return {};
  if (st.st_mode & need_group) {
    if (peer.gid == st.st_gid) return {};
    for (gid_t g : groups_of(peer.pid))
      if (g == st.st_gid) return {};
  }
  if (st.st_mode & need_other) return {};
  return fail(Errc::kPermissionDenied, "uid " + std::to_string(peer.uid) + " may not " + (write ? "write" : "read") +
                                           " topic '" + t.rec.name + "' (owner uid " + std::to_string(st.st_uid) +
                                           ", gid " + std::to_string(st.st_gid) + ")");
}

Result<Daemon::TopicState*> Daemon::topic(const std::string& name) {
  auto it = topics_.find(name);
  if (it == topics_.end()) {
    refresh_topics();
    it = topics_.find(name);
  }
  if (it == topics_.end())
    return fail(Errc::kNotFound, "topic '" + shm::printable(name) + "' does not exist on bus '" + cfg_.bus + "'");
  return it->second.get();
}

void Daemon::refresh_topics() {
  const std::vector<shm::TopicRecord> list = reg_.list();
  std::set<std::string> present;
  for (const shm::TopicRecord& rec : list) {
    present.insert(rec.name);
    auto it = topics_.find(rec.name);
    if (it != topics_.end() && it->second->rec.incarnation == rec.incarnation) continue;
    if (it != topics_.end()) forget_topic(rec.name);  // re-created under the same name
    auto map = shm::TopicMap::attach(cfg_.bus, rec.name, rec.incarnation, shm::Access::kReadWrite,
                                     shm::Access::kReadWrite);
    if (!map) {
      if (map.error().code != Errc::kNotReady)
        log("topic '" + rec.name + "' is registered but cannot be attached: " + map.error().message());
      continue;
    }
    auto t = std::make_unique<TopicState>();
    t->rec = rec;
    t->map = std::make_shared<shm::TopicMap>(std::move(map).value());
    t->producers.assign(t->map->geometry().producer_slots, {});
    t->claims.assign(std::size_t{t->map->partitions()} * t->map->geometry().producer_slots, {});
    TopicState& ref = *t;
    topics_[rec.name] = std::move(t);
    restore_groups(ref);
  }
  std::vector<std::string> gone;
  for (const auto& [name, t] : topics_)
    if (present.count(name) == 0) gone.push_back(name);
  for (const std::string& name : gone) forget_topic(name);
}

void Daemon::forget_topic(const std::string& name) {
  std::vector<std::uint64_t> ids;
  for (const auto& [id, m] : members_)
    if (m->topic == name) ids.push_back(id);
  for (std::uint64_t id : ids) members_.erase(id);  // their clients get kClosed from the log
  for (auto it = groups_.begin(); it != groups_.end();) it = it->first.first == name ? groups_.erase(it) : std::next(it);
  topics_.erase(name);
}

nlohmann::json Daemon::op_create_topic(const Peer& peer, const nlohmann::json& req) {
  const std::uint64_t id = control::get_u64_or(req, "id", 0);
  auto name = control::get_string(req, "name", shm::kMaxDlqTopicName + 1);
  if (!name) return control::error_response(id, name.error());
  TopicConfig c;
  c.partitions = static_cast<std::uint32_t>(std::min<std::uint64_t>(control::get_u64_or(req, "partitions", 4), UINT32_MAX));
  c.ring_bytes = control::get_u64_or(req, "ring_bytes", c.ring_bytes);
  c.max_event = control::get_u64_or(req, "max_event", c.max_event);
  c.single_producer = control::get_bool_or(req, "single_producer", false);
  c.lagout_grace = std::chrono::milliseconds(control::get_u64_or(req, "lagout_grace_ms", 30'000));
  auto policy = parse_policy(req);
  if (!policy) return control::error_response(id, policy.error());
  c.default_policy = *policy;
  if (auto g = req.find("unix_group"); g != req.end() && g->is_string()) c.unix_group = g->get<std::string>();
  // Creating topics is the bus owner's (the daemon's user) or root's: the
  // registry is theirs (0644), as it is without a daemon.
  if (peer.uid != 0 && peer.uid != ::geteuid())
    return control::error_response(
        id, Error{Errc::kPermissionDenied, "uid " + std::to_string(peer.uid) + " may not create topics on bus '" +
                                               cfg_.bus + "' (only its owner, uid " + std::to_string(::geteuid()) +
                                               ", or root)"});
  auto lock = detail::FileLock::acquire(detail::admin_lock_path(cfg_.run_dir, cfg_.bus));
  if (!lock) return control::error_response(id, lock.error());
  auto info = detail::create_topic_locked(reg_, cfg_.bus, *name, c);
  if (!info) return control::error_response(id, info.error());
  refresh_topics();
  log("topic '" + info->name + "' created by pid " + std::to_string(peer.pid) + " (" + std::to_string(c.partitions) +
      " partitions, ring " + std::to_string(c.ring_bytes) + ")");
  nlohmann::json r = control::ok_response(id);
  r["incarnation"] = info->incarnation;
  r["created_ns"] = info->created_ns;
  return r;
}

nlohmann::json Daemon::op_delete_topic(const Peer& peer, const nlohmann::json& req) {
  const std::uint64_t id = control::get_u64_or(req, "id", 0);
  auto name = control::get_string(req, "name", shm::kMaxDlqTopicName + 1);
  if (!name) return control::error_response(id, name.error());
  const bool force = control::get_bool_or(req, "force", false);
  auto t = topic(*name);
  if (!t) return control::error_response(id, t.error());
  if (auto ok = may_use(peer, **t, true); !ok) return control::error_response(id, ok.error());
  auto lock = detail::FileLock::acquire(detail::admin_lock_path(cfg_.run_dir, cfg_.bus));
  if (!lock) return control::error_response(id, lock.error());
  auto r = detail::delete_topic_locked(reg_, cfg_.bus, *name, force);
  if (!r) return control::error_response(id, r.error());
  forget_topic(*name);
  log("topic '" + *name + "' deleted by pid " + std::to_string(peer.pid) + (force ? " (forced)" : ""));
  return control::ok_response(id);
}

nlohmann::json Daemon::op_delete_group(const Peer& peer, const nlohmann::json& req) {
  const std::uint64_t id = control::get_u64_or(req, "id", 0);
  auto tname = control::get_string(req, "topic", shm::kMaxDlqTopicName + 1);
  auto gname = control::get_string(req, "group", shm::kMaxTopicName + 1);
  if (!tname) return control::error_response(id, tname.error());
  if (!gname) return control::error_response(id, gname.error());
  const bool force = control::get_bool_or(req, "force", false);
  auto t = topic(*tname);
  if (!t) return control::error_response(id, t.error());
  if (auto ok = may_use(peer, **t, true); !ok) return control::error_response(id, ok.error());
  auto rec = detail::find_group(*(*t)->map, *gname);
  if (!rec)
    return control::error_response(id, Error{Errc::kNotFound, "group '" + shm::printable(*gname) +
                                                                  "' does not exist on topic '" + *tname + "'"});
  if (auto r = detail::refuse_internal(*rec, *tname); !r) return control::error_response(id, r.error());
  auto gs = groups_.find({*tname, rec->slot});
  if (gs != groups_.end() && !gs->second->members.empty() && !force)
    return control::error_response(
        id, Error{Errc::kBusy, "group '" + *gname + "' has " + std::to_string(gs->second->members.size()) +
                                   " live members; stop them or delete with force"});
  auto lock = detail::FileLock::acquire(detail::admin_lock_path(cfg_.run_dir, cfg_.bus));
  if (!lock) return control::error_response(id, lock.error());
  if (gs != groups_.end()) {
    const std::vector<std::uint64_t> ids = gs->second->members;
    for (std::uint64_t mid : ids) members_.erase(mid);  // fenced by the generation bump below
    groups_.erase(gs);
  }
  if (auto r = detail::delete_group(*(*t)->map, rec->slot); !r) return control::error_response(id, r.error());
  detail::delete_dlqs_locked(reg_, cfg_.bus, *tname, rec->name);
  refresh_topics();
  log("group '" + *gname + "' of topic '" + *tname + "' deleted by pid " + std::to_string(peer.pid));
  return control::ok_response(id);
}

nlohmann::json Daemon::op_reset_group(const Peer& peer, const nlohmann::json& req) {
  const std::uint64_t id = control::get_u64_or(req, "id", 0);
  auto tname = control::get_string(req, "topic", shm::kMaxDlqTopicName + 1);
  auto gname = control::get_string(req, "group", shm::kMaxTopicName + 1);
  auto kind = control::get_string(req, "to", 16);
  if (!tname) return control::error_response(id, tname.error());
  if (!gname) return control::error_response(id, gname.error());
  if (!kind) return control::error_response(id, kind.error());
  const bool execute = control::get_bool_or(req, "execute", false);
  Offset where;
  if (*kind == "earliest") where = Offset::earliest();
  else if (*kind == "latest") where = Offset::latest();
  else if (*kind == "position") where = Offset::at(control::get_u64_or(req, "value", 0));
  else if (*kind == "time") where = Offset::at_time(control::get_u64_or(req, "value", 0));
  else return control::error_response(id, Error{Errc::kInvalidArgument, "reset target '" + shm::printable(*kind) + "' is not earliest, latest, position or time"});
  const std::int64_t only = req.contains("partition") && req["partition"].is_number_unsigned()
                                ? static_cast<std::int64_t>(req["partition"].get<std::uint64_t>())
                                : -1;
  auto t = topic(*tname);
  if (!t) return control::error_response(id, t.error());
  if (auto ok = may_use(peer, **t, true); !ok) return control::error_response(id, ok.error());
  const shm::TopicMap& m = *(*t)->map;
  auto rec = detail::find_group(m, *gname);
  if (!rec)
    return control::error_response(id, Error{Errc::kNotFound, "group '" + shm::printable(*gname) +
                                                                  "' does not exist on topic '" + *tname + "'"});
  if (auto r = detail::refuse_internal(*rec, *tname); !r) return control::error_response(id, r.error());
  auto gs = groups_.find({*tname, rec->slot});
  if (execute && gs != groups_.end() && !gs->second->members.empty())
    return control::error_response(
        id, Error{Errc::kBusy, "group '" + *gname + "' has " + std::to_string(gs->second->members.size()) +
                                   " live members; stop them before resetting its cursors"});
  auto steps = detail::reset_group_cursors(m, rec->slot, where, only, execute);
  if (!steps) return control::error_response(id, steps.error());
  nlohmann::json plan = nlohmann::json::array();
  for (const ResetStep& st : *steps) plan.push_back({{"partition", st.partition}, {"from", st.from}, {"to", st.to}});
  if (execute) log("group '" + *gname + "' of topic '" + *tname + "' reset to " + *kind + " by pid " + std::to_string(peer.pid));
  nlohmann::json r = control::ok_response(id);
  r["plan"] = plan;
  r["executed"] = execute;
  return r;
}

}  // namespace herald::daemon
