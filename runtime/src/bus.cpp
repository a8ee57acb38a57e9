#include "herald/bus.hpp"

#include <grp.h>
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <cstddef>
#include <cstring>
#include <vector>

#include "runtime/src/admin.hpp"
#include "runtime/src/bus_impl.hpp"
#include "runtime/src/control.hpp"
#include "runtime/src/groups.hpp"
#include "shm/clock.hpp"
#include "shm/mapping.hpp"
#include "shm/names.hpp"
#include "shm/ring_log.hpp"
#include "shm/slots.hpp"

namespace herald {

// ---------------------------------------------------------------------------
// Bus::Impl
// ---------------------------------------------------------------------------

Result<shm::TopicRecord> Bus::Impl::find_topic(std::string_view topic) const {
  auto rec = registry.find(topic);
  if (!rec) return fail(Errc::kNotFound, "topic '" + shm::printable(topic) + "' does not exist on bus '" + name + "'");
  return *rec;
}

Result<std::shared_ptr<const shm::TopicMap>> Bus::Impl::map_topic(std::string_view topic, shm::Access log,
                                                                  shm::Access state) {
  auto rec = find_topic(topic);
  if (!rec) return fail(std::move(rec).error());
  const int modes = (log == shm::Access::kReadWrite ? 2 : 0) | (state == shm::Access::kReadWrite ? 1 : 0);
  const auto key = std::make_tuple(rec->name, rec->incarnation, modes);
  std::lock_guard lock(mu_);
  if (auto it = maps_.find(key); it != maps_.end()) {
    if (auto live = it->second.lock()) return live;
  }
  auto map = shm::TopicMap::attach(name, rec->name, rec->incarnation, log, state);
  if (!map) {
    if (map.error().code == Errc::kNotFound)
      return fail(Errc::kNotFound, "topic '" + rec->name + "' is registered but its segments are gone (" +
                                       map.error().detail + "); run 'herald doctor'");
    return fail(std::move(map).error());
  }
  auto shared = std::make_shared<const shm::TopicMap>(std::move(map).value());
  maps_[key] = shared;
  return shared;
}

Result<detail::FileLock> Bus::Impl::admin_lock() const {
  return detail::FileLock::acquire(detail::admin_lock_path(run_dir, name));
}

Result<nlohmann::json> Bus::Impl::call_daemon(nlohmann::json request) {
  std::lock_guard lock(daemon_mu_);
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (!daemon_ || daemon_->broken() || daemon_->epoch() != registry_daemon_epoch()) {
      daemon_.reset();
      auto c = detail::connect_bus(&run_dir, name);
      if (!c && c.error().code == Errc::kTimeout) return fail(detail::silent_daemon_error(run_dir, name, c.error()));
      if (!c && c.error().code != Errc::kDaemonUnavailable) return fail(std::move(c).error());  // an impostor
      if (!c && detail::autostart_enabled()) {
        // A bus that was destroyed while we were attached (its registry
        // segment is gone) stays destroyed: a daemon started now would
        // create it again, empty, for a client on its way out.
        if (destroyed())
          // kClosed, as the daemonless path says it (bus.hpp): kDaemonUnavailable
          // is retryable, and a retry loop would wait here for ever.
          return fail(Errc::kClosed, "bus '" + name + "' was destroyed; attach again to make it anew");
        c = detail::start_daemon(name, run_dir);
      }
      if (!c) return fail(std::move(c).error());
      daemon_ = std::move(c).value();
    }
    auto r = daemon_->call(request);
    if (!r && r.error().code == Errc::kDaemonUnavailable && attempt == 0) continue;  // it restarted: once more
    if (!r && r.error().code == Errc::kTimeout) return fail(detail::silent_daemon_error(run_dir, name, r.error()));
    return r;
  }
  return fail(Errc::kDaemonUnavailable, "heraldd is not reachable");
}

// ---------------------------------------------------------------------------
// Bus
// ---------------------------------------------------------------------------

Bus::Bus(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
Bus::Bus(Bus&&) noexcept = default;
Bus& Bus::operator=(Bus&&) noexcept = default;
Bus::~Bus() = default;

namespace detail {
Error moved_from(const char* type) {
  return Error{Errc::kInvalidArgument, std::string("this ") + type +
                                           " was moved from: use the object it was moved to (a moved-from handle may "
                                           "only be assigned to or destroyed)"};
}
const std::string& no_name() noexcept {
  static const std::string empty;
  return empty;
}
}  // namespace detail

const std::string& Bus::name() const noexcept { return impl_ != nullptr ? impl_->name : detail::no_name(); }

namespace {
std::string resolve_bus_name(std::string_view name) {
  if (!name.empty()) return std::string(name);
  if (const char* env = std::getenv("HERALD_BUS"); env != nullptr && *env != '\0') return env;
  return "default";
}
}  // namespace

Result<Bus> Bus::attach(std::string_view name_in) {
  const std::string name = resolve_bus_name(name_in);
  if (auto r = shm::validate_bus_name(name); !r) return fail(std::move(r).error());
  auto dir = detail::run_dir();
  if (!dir) return fail(std::move(dir).error());
  auto reg = shm::Registry::open_or_create(name, 0644);
  // Another user's bus (its registry is 0644): attach read-only. The
  // topics whose modes let us in (a --unix-group we are in) work as usual;
  // creating and deleting topics is the owner's (Registry refuses it).
  if (!reg && reg.error().code == Errc::kPermissionDenied) reg = shm::Registry::open_read_only(name);
  if (!reg) return fail(std::move(reg).error());
  auto impl = std::make_shared<Impl>();
  impl->name = name;
  impl->run_dir = std::move(dir).value();
  impl->registry = std::move(reg).value();
  // Daemon mode if a daemon answers, or if we may start one.
  auto c = detail::connect_bus(&impl->run_dir, name);
  // A daemon that accepts but does not answer (stopped, stuck) still owns
  // the bus: neither start another nor carry on without it, whose members
  // would take partitions it assigns elsewhere once it resumes.
  if (!c && c.error().code == Errc::kTimeout) return fail(detail::silent_daemon_error(impl->run_dir, name, c.error()));
  if (!c && c.error().code != Errc::kDaemonUnavailable) return fail(std::move(c).error());  // an impostor
  if (!c && detail::autostart_enabled()) {
    c = detail::start_daemon(name, impl->run_dir);
    if (!c) return fail(std::move(c).error());
  }
  if (c) {
    impl->daemon_mode = true;
    impl->daemon_ = std::move(c).value();
  }
  return Bus(std::move(impl));
}

Result<void> Bus::destroy(std::string_view name_in) {
  // No default for the one call that deletes everything: "" would mean
  // $HERALD_BUS or "default", whichever the environment says.
  if (name_in.empty())
    return fail(Errc::kInvalidArgument, "Bus::destroy needs the bus's name (it does not default to $HERALD_BUS)");
  const std::string name = resolve_bus_name(name_in);
  if (auto r = shm::validate_bus_name(name); !r) return fail(std::move(r).error());
  // A running daemon removes the bus itself and exits; wait for it (bounded).
  // Without the run directory we could not ask it: removing the segments
  // under a running daemon would split the bus, so that is an error.
  auto run = detail::run_dir();
  if (!run) return fail(std::move(run).error().with_context("destroy bus '" + name + "'"));
  if (auto dir = run) {
    auto c = detail::connect_bus(&*dir, name);
    // A silent daemon would resume serving a bus whose segments are gone,
    // while the next client makes a new registry under the same name.
    if (!c && c.error().code == Errc::kTimeout) {
      Error e = detail::silent_daemon_error(*dir, name, c.error());
      e.detail += " (the bus is left as it was)";
      return fail(std::move(e));
    }
    if (!c && c.error().code != Errc::kDaemonUnavailable) return fail(std::move(c).error());
    if (c) {
      const long pid = (*c)->daemon_pid();
      // Refused (another user's daemon) or not answered: say so, changing
      // nothing, rather than remove what we can and report the bus gone.
      if (auto r = (*c)->call({{"op", "destroy"}}); !r && r.error().code != Errc::kDaemonUnavailable)
        return fail(std::move(r).error().with_context("heraldd (pid " + std::to_string(pid) + ") refused to destroy bus '" +
                                                      name + "'"));
      for (int i = 0; i < 1000 && pid > 0 && shm::process_alive(static_cast<pid_t>(pid), 0); ++i)
        ::usleep(5'000);  // polling for the daemon's exit, bounded at 5 s
      if (pid > 0 && shm::process_alive(static_cast<pid_t>(pid), 0))
        return fail(Errc::kTimeout, "heraldd (pid " + std::to_string(pid) + ") of bus '" + name +
                                        "' did not exit within 5 s of being told to destroy it");
    }
  }
  // Close every topic first so attached clients get kClosed, not a vanished log.
  // The registry's name goes first (our mapping stays readable): a client
  // that learns of the close and leaves its group would otherwise find no
  // daemon, see the registry still there, and autostart one, which made
  // the bus again (Impl::destroyed() checks for the registry).
  if (auto reg = shm::Registry::open(name)) {
    (void)shm::Segment::remove(shm::registry_segment_name(name));
    for (const shm::TopicRecord& t : reg->list()) {
      if (auto m = shm::TopicMap::attach(name, t.name, t.incarnation, shm::Access::kReadWrite,
                                         shm::Access::kReadWrite))
        m->close();
    }
  }
  std::size_t left = 0;
  std::string first_error;
  for (const std::string& seg : shm::Segment::list(shm::bus_segment_prefix(name)))
    if (auto r = shm::Segment::remove(seg); !r && r.error().code != Errc::kNotFound) {
      if (left++ == 0) first_error = r.error().message();
    }
  if (auto dir = detail::run_dir()) {
    for (const std::string& f : {detail::socket_path(*dir, name), detail::daemon_lock_path(*dir, name),
                                 detail::admin_lock_path(*dir, name), detail::daemon_log_path(*dir, name)})
      ::unlink(f.c_str());
  }
  if (left > 0)
    return fail(Errc::kPermissionDenied, std::to_string(left) + " shared-memory segment(s) of bus '" + name +
                                             "' could not be removed (" + first_error +
                                             "); they belong to another user: run as that user or root");
  return {};
}

namespace {
const char* policy_text(Policy p) {
  switch (p) {
    case Policy::kLossless: return "lossless";
    case Policy::kLossy: return "lossy";
    case Policy::kLagOut: return "lag-out";
    case Policy::kDefault: break;
  }
  return "default";
}
}  // namespace

Result<TopicInfo> Bus::create_topic(std::string_view name, const TopicConfig& config) {
  if (impl_ == nullptr) [[unlikely]] return fail(detail::moved_from("Bus"));
  if (impl_->daemon_mode) {
    if (auto r = detail::validate_topic_config(name, config, false); !r)
      return fail(std::move(r).error().with_context("create topic '" + shm::printable(name) + "'"));
    auto r = impl_->call_daemon({{"op", "create_topic"},
                                 {"name", std::string(name)},
                                 {"partitions", config.partitions},
                                 {"ring_bytes", config.ring_bytes},
                                 {"max_event", detail::effective_max_event(config)},
                                 {"policy", policy_text(config.default_policy)},
                                 {"lagout_grace_ms", static_cast<std::uint64_t>(config.lagout_grace.count())},
                                 {"single_producer", config.single_producer},
                                 {"unix_group", config.unix_group}});
    if (!r) return fail(std::move(r).error());
    TopicInfo info;
    info.name = std::string(name);
    info.incarnation = control::get_u64_or(*r, "incarnation", 0);
    info.created_ns = control::get_u64_or(*r, "created_ns", 0);
    info.partitions = config.partitions;
    info.ring_bytes = config.ring_bytes;
    info.max_event = detail::effective_max_event(config);
    info.default_policy = config.default_policy;
    info.single_producer = config.single_producer;
    return info;
  }
  if (impl_->registry.read_only())
    return fail(Errc::kPermissionDenied, "uid " + std::to_string(::geteuid()) + " may not create topics on bus '" +
                                             impl_->name + "' (only its owner or root)");
  auto lock = impl_->admin_lock();
  if (!lock) return fail(std::move(lock).error());
  // A handle that outlived Bus::destroy still maps the unlinked registry:
  // a topic made through it would be segments nobody can find.
  if (impl_->destroyed())
    return fail(Errc::kClosed, "bus '" + impl_->name + "' was destroyed; attach again to make it anew");
  return detail::create_topic_locked(impl_->registry, impl_->name, name, config);
}

Result<void> Bus::delete_topic(std::string_view name, const DeleteOptions& options) {
  if (impl_ == nullptr) [[unlikely]] return fail(detail::moved_from("Bus"));
  if (impl_->daemon_mode) {
    auto r = impl_->call_daemon({{"op", "delete_topic"}, {"name", std::string(name)}, {"force", options.force}});
    if (!r) return fail(std::move(r).error());
    return {};
  }
  if (impl_->registry.read_only())
    return fail(Errc::kPermissionDenied, "uid " + std::to_string(::geteuid()) + " may not delete topics of bus '" +
                                             impl_->name + "' (only its owner or root)");
  auto lock = impl_->admin_lock();
  if (!lock) return fail(std::move(lock).error());
  return detail::delete_topic_locked(impl_->registry, impl_->name, name, options.force);
}

Result<std::vector<TopicInfo>> Bus::list_topics() const {
  if (impl_ == nullptr) [[unlikely]] return fail(detail::moved_from("Bus"));
  std::vector<TopicInfo> out;
  for (const shm::TopicRecord& r : impl_->registry.list()) out.push_back(detail::info_of(r));
  return out;
}

Result<TopicInfo> Bus::describe_topic(std::string_view name) const {
  if (impl_ == nullptr) [[unlikely]] return fail(detail::moved_from("Bus"));
  return detail::describe_topic(impl_->registry, impl_->name, name);
}

}  // namespace herald
