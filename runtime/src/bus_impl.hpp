// Bus::Impl: the attached registry and the topic mappings shared by this
// process's producers and consumers.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>

#include <nlohmann/json.hpp>

#include "herald/bus.hpp"
#include "runtime/src/daemon_client.hpp"
#include "runtime/src/run_dir.hpp"
#include "shm/mapping.hpp"
#include "shm/names.hpp"
#include "shm/registry.hpp"
#include "shm/topic_map.hpp"

namespace herald {

struct Bus::Impl {
  friend class Bus;
  std::string name;
  std::string run_dir;
  shm::Registry registry;

  // Maps one topic (by name, at its current incarnation) with the given
  // access; reuses a live mapping of the same incarnation and modes.
  Result<std::shared_ptr<const shm::TopicMap>> map_topic(std::string_view topic, shm::Access log,
                                                        shm::Access state);
  Result<shm::TopicRecord> find_topic(std::string_view topic) const;
  Result<detail::FileLock> admin_lock() const;
  // Whether Bus::destroy removed this bus since we attached: its registry
  // segment is gone (we still map the unlinked one). Autostart and
  // create_topic refuse then, or they would make the bus again / orphans.
  bool destroyed() const { return !shm::Segment::exists(shm::registry_segment_name(name)); }

  // Daemon mode: a heraldd answered (or was started) at attach, and admin,
  // joins and rebalances go through it. Daemonless mode (no daemon and
  // HERALD_NO_AUTOSTART=1): the runtime administers under the admin lock and
  // group members take free partitions themselves.
  bool daemon_mode = false;
  // Calls heraldd, reconnecting (and restarting it when autostart is on)
  // if the connection broke or another daemon took over (epoch changed).
  Result<nlohmann::json> call_daemon(nlohmann::json request);
  [[nodiscard]] std::uint64_t registry_daemon_epoch() const noexcept {
    return registry.header()->daemon_epoch.load(std::memory_order_acquire);
  }

 private:
  std::mutex daemon_mu_;
  std::unique_ptr<detail::DaemonClient> daemon_;
  std::mutex mu_;
  std::map<std::tuple<std::string, std::uint64_t, int>, std::weak_ptr<const shm::TopicMap>> maps_;
};

namespace detail {
// Calls on a moved-from Bus, Producer or Consumer fail with this
// (kInvalidArgument) instead of dereferencing the null Impl; accessors
// return zero, empty, or no_name(). One predictable test of a pointer the
// call loads anyway.
[[gnu::cold, gnu::noinline]] Error moved_from(const char* type);
const std::string& no_name() noexcept;

struct ProducerFactory {
  // A producer with record flags set on every record it writes.
  static Result<Producer> make(const std::shared_ptr<Bus::Impl>& bus, std::string_view topic,
                               const ProducerOptions& options, std::uint16_t record_flags);
};
}  // namespace detail

}  // namespace herald
