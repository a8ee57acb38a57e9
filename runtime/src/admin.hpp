// Topic administration shared by heraldd and the daemonless runtime. The
// caller holds the bus admin lock (run_dir.hpp FileLock on admin_lock_path).
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>

#include "herald/bus.hpp"
#include "herald/result.hpp"
#include "shm/registry.hpp"
#include "shm/topic_map.hpp"

namespace herald::detail {

struct CreateTopicOptions {
  bool internal = false;  // a DLQ topic made by herald: its name may hold ".dlq."
  std::uint32_t extra_flags = 0;  // shm::LogFlags
};

Result<TopicInfo> create_topic_locked(shm::Registry& reg, const std::string& bus, std::string_view name,
                                      const TopicConfig& config, const CreateTopicOptions& opts = {});
Result<void> delete_topic_locked(shm::Registry& reg, const std::string& bus, std::string_view name, bool force);

// Live producers and consumers attached to a topic: "pid 12 (producer), ...".
std::string users_of(const shm::TopicMap& m);
TopicInfo info_of(const shm::TopicRecord& r);
Result<TopicInfo> describe_topic(const shm::Registry& reg, const std::string& bus, std::string_view name);
// The max_event a config asks for: its own, or the default for its ring.
inline std::uint64_t effective_max_event(const TopicConfig& c) noexcept {
  constexpr std::uint64_t kDefaultMaxEvent = 1ull << 20;
  return c.max_event != 0 ? c.max_event : std::min(kDefaultMaxEvent, c.ring_bytes / 4);
}
Result<void> validate_topic_config(std::string_view name, const TopicConfig& c, bool internal);

}  // namespace herald::detail
