// Bus::Impl: the attached registry and the topic mappings shared by this
// process's producers and consumers.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>

#include "herald/bus.hpp"
#include "runtime/src/run_dir.hpp"
#include "shm/registry.hpp"
#include "shm/topic_map.hpp"

namespace herald {

struct Bus::Impl {
  std::string name;
  std::string run_dir;
  shm::Registry registry;

  // Maps one topic (by name, at its current incarnation) with the given
  // access; reuses a live mapping of the same incarnation and modes.
  Result<std::shared_ptr<const shm::TopicMap>> map_topic(std::string_view topic, shm::Access log,
                                                        shm::Access state);
  Result<shm::TopicRecord> find_topic(std::string_view topic) const;
  Result<detail::FileLock> admin_lock() const;

 private:
  std::mutex mu_;
  std::map<std::tuple<std::string, std::uint64_t, int>, std::weak_ptr<const shm::TopicMap>> maps_;
};

}  // namespace herald
