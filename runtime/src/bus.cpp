#include "herald/bus.hpp"

#include <grp.h>
#include <unistd.h>

#include <cstdlib>
#include <cstddef>
#include <cstring>
#include <vector>

#include "runtime/src/admin.hpp"
#include "runtime/src/bus_impl.hpp"
#include "runtime/src/groups.hpp"
#include "shm/clock.hpp"
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

// ---------------------------------------------------------------------------
// Bus
// ---------------------------------------------------------------------------

Bus::Bus(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
Bus::Bus(Bus&&) noexcept = default;
Bus& Bus::operator=(Bus&&) noexcept = default;
Bus::~Bus() = default;

const std::string& Bus::name() const noexcept { return impl_->name; }

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
  if (!reg) return fail(std::move(reg).error());
  auto impl = std::make_shared<Impl>();
  impl->name = name;
  impl->run_dir = std::move(dir).value();
  impl->registry = std::move(reg).value();
  return Bus(std::move(impl));
}

Result<void> Bus::destroy(std::string_view name_in) {
  const std::string name = resolve_bus_name(name_in);
  if (auto r = shm::validate_bus_name(name); !r) return fail(std::move(r).error());
  // Close every topic first so attached clients get kClosed, not a vanished log.
  if (auto reg = shm::Registry::open(name)) {
    for (const shm::TopicRecord& t : reg->list()) {
      if (auto m = shm::TopicMap::attach(name, t.name, t.incarnation, shm::Access::kReadWrite,
                                         shm::Access::kReadWrite))
        m->close();
    }
  }
  for (const std::string& seg : shm::Segment::list(shm::bus_segment_prefix(name))) (void)shm::Segment::remove(seg);
  if (auto dir = detail::run_dir()) {
    for (const std::string& f : {detail::socket_path(*dir, name), detail::daemon_lock_path(*dir, name),
                                 detail::admin_lock_path(*dir, name), detail::daemon_log_path(*dir, name)})
      ::unlink(f.c_str());
  }
  return {};
}

Result<TopicInfo> Bus::create_topic(std::string_view name, const TopicConfig& config) {
  auto lock = impl_->admin_lock();
  if (!lock) return fail(std::move(lock).error());
  return detail::create_topic_locked(impl_->registry, impl_->name, name, config);
}

Result<void> Bus::delete_topic(std::string_view name, const DeleteOptions& options) {
  auto lock = impl_->admin_lock();
  if (!lock) return fail(std::move(lock).error());
  return detail::delete_topic_locked(impl_->registry, impl_->name, name, options.force);
}

Result<std::vector<TopicInfo>> Bus::list_topics() const {
  std::vector<TopicInfo> out;
  for (const shm::TopicRecord& r : impl_->registry.list()) out.push_back(detail::info_of(r));
  return out;
}

Result<TopicInfo> Bus::describe_topic(std::string_view name) const {
  return detail::describe_topic(impl_->registry, impl_->name, name);
}

}  // namespace herald
