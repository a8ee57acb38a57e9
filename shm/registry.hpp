// The bus registry (registry_layout.hpp): find, list, insert and erase topic
// entries. Reads never block (each entry is a seqlock); mutations must hold
// the bus admin lock (one writer at a time).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "herald/result.hpp"
#include "shm/log_layout.hpp"
#include "shm/mapping.hpp"
#include "shm/registry_layout.hpp"
#include "shm/state_layout.hpp"

namespace herald::shm {

// A consistent snapshot of one topic entry.
struct TopicRecord {
  std::uint32_t slot = 0;
  std::string name;
  std::uint64_t incarnation = 0;
  LogParams params;
  std::uint32_t mode = 0600;
  std::int64_t gid = -1;
  GroupPolicy default_policy = GroupPolicy::kLagOut;
  std::uint64_t created_ns = 0;
  std::uint64_t lagout_grace_ms = 30'000;
};

class Registry {
 public:
  // Opens the bus registry, creating it if missing (mode 0666 & ~umask is
  // not used: 0600, or `mode` when given).
  static Result<Registry> open_or_create(const std::string& bus, unsigned mode = 0600);
  static Result<Registry> open(const std::string& bus);
  // Maps an existing registry READ-ONLY (stat, doctor, metrics): works while
  // the daemon is down and cannot disturb the bus. Only the lock-free reads
  // (find, list, topics_epoch, header loads) may be used on it.
  static Result<Registry> open_read_only(const std::string& bus);
  static Result<void> remove(const std::string& bus);

  // Lock-free reads.
  std::optional<TopicRecord> find(std::string_view topic) const;
  std::vector<TopicRecord> list() const;
  std::uint64_t topics_epoch() const noexcept;

  // Under the admin lock: adds a topic with a fresh incarnation.
  Result<TopicRecord> insert(TopicRecord rec);
  // Under the admin lock: frees the entry if it still holds `incarnation`.
  Result<void> erase(std::string_view topic, std::uint64_t incarnation);

  RegistryHeaderLayout* header() const noexcept { return reinterpret_cast<RegistryHeaderLayout*>(seg_.data()); }
  const std::string& bus() const noexcept { return bus_; }
  [[nodiscard]] bool read_only() const noexcept { return read_only_; }

 private:
  TopicEntryLayout* entry(std::uint32_t i) const noexcept {
    return reinterpret_cast<TopicEntryLayout*>(seg_.data() + RegistryGeometry{}.topics_off) + i;
  }
  std::optional<TopicRecord> read_entry(std::uint32_t i) const;
  static Result<Registry> open_mapped(const std::string& bus, Access access);
  std::string bus_;
  Segment seg_;
  bool read_only_ = false;  // open_read_only: insert and erase refuse
};

Result<void> validate_registry_segment(const std::byte* base, std::uint64_t bytes);

}  // namespace herald::shm
