// A topic incarnation's two segments, created or attached, validated and
// mapped, with typed accessors for every region. Attach is a validator: magic,
// then layout version (both printed on mismatch), then kind, incarnation,
// parameters, every stored offset against the recomputed geometry, and the
// mapping size; nothing read from shared memory is used before it passes.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "herald/result.hpp"
#include "shm/log_layout.hpp"
#include "shm/mapping.hpp"
#include "shm/record_layout.hpp"
#include "shm/state_layout.hpp"

namespace herald::shm {

// Checks what a topic is created with; messages name the bad value.
Result<void> validate_log_params(const LogParams& p);

// Everything one partition's readers and writers touch, resolved to
// addresses once at attach. Plain pointers into this process's mappings.
struct PartitionView {
  std::uint32_t index = 0;
  PartitionLayout* part = nullptr;          // log segment
  std::byte* ring = nullptr;                // double-mapped: ring[i] == ring[i + ring_bytes]
  std::atomic<std::uint64_t>* boundary = nullptr;  // [ring_bytes / 4096]
  ClaimSlotLayout* claims = nullptr;        // [producer_slots]
  PartitionStateLayout* state = nullptr;    // state segment
  std::uint64_t ring_bytes = 0;
  std::uint64_t mask = 0;                   // ring_bytes - 1
  std::uint64_t max_event = 0;
  std::uint64_t salt = 0;
  std::uint64_t index_mask = 0;             // entries - 1
  std::uint32_t producer_slots = 0;

  RecordHeader* header_at(std::uint64_t pos) const noexcept {
    return reinterpret_cast<RecordHeader*>(ring + (pos & mask));
  }
  std::byte* bytes_at(std::uint64_t pos) const noexcept { return ring + (pos & mask); }
  std::atomic<std::uint64_t>& boundary_for(std::uint64_t page_pos) const noexcept {
    return boundary[(page_pos / kIndexPageBytes) & index_mask];
  }
};

class TopicMap {
 public:
  struct Perms {
    SegmentPerms log;
    SegmentPerms state;
  };

  // Creates both segments of (bus, topic, incarnation), initialises them and
  // stores their layout versions last. Both mapped read-write.
  static Result<TopicMap> create(const std::string& bus, const std::string& topic, std::uint64_t incarnation,
                                 const LogParams& params, const Perms& perms);
  // Attaches to existing segments. Producers: log RW, state RO. Consumers:
  // log RO, state RW. heraldd: both RW.
  static Result<TopicMap> attach(const std::string& bus, const std::string& topic, std::uint64_t incarnation,
                                 Access log_access, Access state_access);
  // Unlinks both segments (missing ones are fine).
  static void remove(const std::string& bus, const std::string& topic, std::uint64_t incarnation);

  TopicMap();
  TopicMap(TopicMap&&) noexcept;
  TopicMap& operator=(TopicMap&&) noexcept;
  ~TopicMap();

  const LogGeometry& geometry() const noexcept { return geo_; }
  const StateGeometry& state_geometry() const noexcept { return sgeo_; }
  std::uint32_t partitions() const noexcept { return geo_.params.partitions; }
  std::uint64_t incarnation() const noexcept { return incarnation_; }
  const std::string& topic() const noexcept { return topic_; }
  const std::string& bus() const noexcept { return bus_; }
  Access log_access() const noexcept { return log_.access(); }
  Access state_access() const noexcept { return state_.access(); }

  const PartitionView& partition(std::uint32_t p) const noexcept { return views_[p]; }
  // Installs this process's page tables for partition p's ring, once per
  // TopicMap and process (Segment::DoubleMap::populate): producers call it
  // for every partition when they attach, consumers for each partition they
  // are given, so the data path takes no page faults. ~1.3 ms per 16 MiB.
  // A child that inherits the TopicMap by fork() populates again: fork does
  // not copy a shared mapping's page-table entries.
  void prefault(std::uint32_t p) const noexcept;
  LogHeaderLayout* log_header() const noexcept { return reinterpret_cast<LogHeaderLayout*>(log_.data()); }
  StateHeaderLayout* state_header() const noexcept { return reinterpret_cast<StateHeaderLayout*>(state_.data()); }
  ReaderWakeLayout* wake(std::uint32_t r) const noexcept {
    return reinterpret_cast<ReaderWakeLayout*>(log_.data() + geo_.wake_off) + r;
  }
  ProducerSlotLayout* producer(std::uint32_t s) const noexcept {
    return reinterpret_cast<ProducerSlotLayout*>(log_.data() + geo_.producers_off) + s;
  }
  ProducerCountersLayout* counters(std::uint32_t s, std::uint32_t p) const noexcept {
    return reinterpret_cast<ProducerCountersLayout*>(log_.data() + geo_.counters_off) +
           (std::uint64_t{s} * geo_.params.partitions + p);
  }
  GroupLayout* group(std::uint32_t g) const noexcept {
    return reinterpret_cast<GroupLayout*>(state_.data() + sgeo_.groups_off) + g;
  }
  GroupPartitionLayout* group_partition(std::uint32_t g, std::uint32_t p) const noexcept {
    return reinterpret_cast<GroupPartitionLayout*>(state_.data() + sgeo_.group_partition_off(g, p));
  }
  ReaderLayout* reader(std::uint32_t r) const noexcept {
    return reinterpret_cast<ReaderLayout*>(state_.data() + sgeo_.readers_off) + r;
  }

  // Topic delete: sets the closed bit in every partition's tail (needs the
  // log mapped read-write) and wakes every parked reader and producer. On a
  // single-producer topic it also makes sure a claim by plain store racing
  // with it did not erase the bit (C1, ring_log.hpp); that waits for at most
  // a few instructions of a live producer's claim.
  void close() const noexcept;
  bool closed() const noexcept;
  // True once a close() began (LogHeaderLayout::close_started): only then
  // can a tail hold the closed bit. Reads a line no producer writes.
  bool close_started() const noexcept {
    // Relaxed: nothing is concluded from the word but "read the tails now";
    // the tails' own acquire loads decide closure, and a reader that finds
    // no bit yet (the close is half-way) looks again later.
    return log_header()->close_started.load(std::memory_order_relaxed) != 0;
  }

 private:
  void keep_closed_bit_against_plain_claims() const noexcept;
  Result<void> map_rings();
  void build_views();

  std::string bus_, topic_;
  std::uint64_t incarnation_ = 0;
  Segment log_, state_;
  std::vector<Segment::DoubleMap> rings_;
  // Per ring: the pid of the process whose prefault() ran (0: none yet).
  // Relaxed: it only saves a repeat.
  std::unique_ptr<std::atomic<pid_t>[]> prefaulted_;
  std::vector<PartitionView> views_;
  LogGeometry geo_{};
  StateGeometry sgeo_{};
};

// Validation of segment headers, exposed for tests and fuzzing: checks a
// mapping of `bytes` bytes that claims to be a log (state) segment.
Result<LogGeometry> validate_log_segment(const std::byte* base, std::uint64_t bytes, std::uint64_t incarnation);
Result<StateGeometry> validate_state_segment(const std::byte* base, std::uint64_t bytes, std::uint64_t incarnation,
                                             std::uint32_t partitions);

// 64 random bits from getrandom (never 0).
std::uint64_t random_u64() noexcept;

}  // namespace herald::shm
