// herald::read_stats: everything a bus's shared memory says about it — topics,
// partitions, groups, members, producers and the daemon — read READ-ONLY
// (like aeron-stat): it works while heraldd is down, never attaches as a
// producer or consumer, and cannot disturb the bus. Every value read from
// shared memory is validated (bounded, clamped or skipped) before use; a
// topic whose segments fail validation is reported with `error` set.
//
// A snapshot is not atomic across fields: each counter is read once,
// relaxed or acquire, while producers and consumers keep running. Rates
// come from two snapshots (BusStats::mono_ns is the snapshot's clock).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "herald/consumer.hpp"
#include "herald/result.hpp"

namespace herald {

// A claim held longer than the report time (DESIGN.md: 1 s) by a producer,
// or left behind by a dead producer and not yet repaired.
struct StalledClaim {
  std::uint32_t partition = 0;
  std::uint32_t producer_slot = 0;
  std::int64_t pid = 0;
  std::uint32_t tid = 0;
  bool owner_alive = false;     // false: waits for heraldd's repair
  std::uint64_t position = 0;
  std::uint64_t bytes = 0;
  std::uint64_t held_ns = 0;    // since the claim was won (0 if unknown)
};

struct PartitionStats {
  std::uint32_t partition = 0;
  std::uint64_t tail = 0;               // next position to be written (= bytes ever written)
  std::uint64_t beginning = 0;          // oldest retained position
  std::uint64_t beginning_time_ns = 0;  // time of the oldest retained event (0: none)
  bool closed = false;                  // the topic was deleted under us
  // Publish totals, summed over the producer slots' counter rows.
  std::uint64_t events = 0;
  std::uint64_t bytes = 0;              // record bytes (envelope and padding included)
  std::uint64_t claims = 0;
  std::uint64_t backpressure_waits = 0;
  // Repair and health counters (heraldd and producers).
  std::uint64_t aborted_records = 0;
  std::uint64_t repaired_claims = 0;
  std::uint64_t last_repair_ns = 0;
  std::uint64_t max_repair_ns = 0;
  std::uint64_t ignored_gates = 0;
  std::uint64_t stalled_claims_reported = 0;  // ever, by heraldd
  std::int64_t reported_stall_pid = 0;        // heraldd's current report (0: none)
  std::uint64_t reported_stall_position = 0;
  std::uint32_t parked_producers = 0;         // producers waiting under backpressure
  std::uint32_t parked_readers = 0;           // readers parked on this partition
  std::vector<StalledClaim> stalled{};        // computed now from the claim slots
};

struct GroupPartitionStats {
  std::uint32_t partition = 0;
  std::uint64_t committed = 0;
  std::uint32_t generation = 0;
  std::uint64_t lag_bytes = 0;          // tail - committed
  std::uint64_t lag_events = 0;         // estimate: lag_bytes / the partition's average record size
  double lag_seconds = 0;               // now - time of the oldest unconsumed event (0: caught up);
                                        // with overwritten_bytes, of the oldest retained one: a lower bound
  // Of lag_bytes: overwritten before the group read them (its cursor is
  // older than the oldest retained event). A gap it has yet to count: it is
  // added to gap_bytes when a member next reads the partition.
  std::uint64_t overwritten_bytes = 0;
  std::uint64_t gate_floor = 0;
  std::uint64_t gap_bytes = 0;
  std::uint64_t gaps = 0;
  std::uint64_t dead_letters = 0;       // moved to the DLQ from this partition
  bool dlq_stalled = false;             // a dead letter waits for room in a full DLQ
  std::int64_t owner_pid = 0;           // the member that owns it (0: none)
  std::uint32_t owner_reader = 0;       // its reader slot + 1 (0: none)
  std::uint64_t inflight_position = 0;  // the event being (re)delivered, when deliveries > 0
  std::uint32_t inflight_deliveries = 0;
  std::uint64_t committed_ns = 0;       // CLOCK_REALTIME of the last commit (0: never)
};

struct GroupStats {
  std::string name{};
  std::uint32_t slot = 0;
  Policy policy = Policy::kLagOut;
  bool gating = false;                  // producers honour its gates now
  bool internal = false;                // the DLQ's own cursor ("herald-dlq")
  std::uint32_t members = 0;            // live members (reader slots of live processes)
  std::uint32_t max_deliveries = 0;
  std::uint64_t lagout_grace_ms = 0;
  std::uint64_t created_ns = 0;
  std::uint64_t demotions = 0;
  std::uint64_t promotions = 0;
  std::uint64_t rebalances = 0;
  std::string dlq_topic{};              // `<topic>.dlq.<group>` if it exists
  std::uint64_t dlq_depth = 0;          // dead letters pending (not redriven or purged)
  std::vector<GroupPartitionStats> partitions{};
  // Sums over partitions.
  std::uint64_t lag_bytes = 0, lag_events = 0, gap_bytes = 0, gaps = 0, dead_letters = 0, overwritten_bytes = 0;
  double lag_seconds = 0;               // the largest over partitions
};

// A reader slot in use: a group member or a group-less reader (tail).
struct MemberStats {
  std::uint32_t reader_slot = 0;
  std::int64_t pid = 0;
  bool alive = false;
  bool stopped = false;                 // alive but stopped (SIGSTOP, a debugger): it reads nothing
  std::string group{};                  // empty: a group-less reader
  std::uint64_t member_id = 0;          // heraldd's id (0 in daemonless mode)
  std::vector<std::uint32_t> partitions{};  // assigned (daemon mode) or owned
  bool in_poll = false;
  std::uint64_t poll_count = 0;
  std::uint64_t since_last_poll_ns = 0;  // since the last poll began (or waited), within a coarse clock tick
  std::uint64_t events = 0;
  std::uint64_t attached_ns = 0;
};

// A producer slot in use (one producing thread).
struct ProducerSlotStats {
  std::uint32_t slot = 0;
  std::int64_t pid = 0;
  std::uint32_t tid = 0;
  bool alive = false;
  bool stopped = false;                 // alive but stopped (SIGSTOP, a debugger)
  std::uint64_t producer_id = 0;
  std::uint64_t attached_ns = 0;
  // This owner's counts over every partition, since it took the slot (the
  // partition totals keep what earlier owners of the slot counted).
  std::uint64_t events = 0, bytes = 0, claims = 0, backpressure_waits = 0;
};

struct TopicStats {
  std::string name{};
  std::uint64_t incarnation = 0;
  std::uint32_t partitions = 0;
  std::uint64_t ring_bytes = 0;
  std::uint64_t max_event = 0;
  Policy default_policy = Policy::kLagOut;
  bool single_producer = false;
  bool dead_letter_topic = false;       // `<topic>.dlq.<group>`
  std::uint32_t mode = 0;               // permission bits of its segments
  std::int64_t gid = -1;
  std::uint64_t created_ns = 0;
  std::uint64_t lagout_grace_ms = 0;
  std::uint64_t segment_bytes = 0;      // log + state
  std::string error{};                  // set when the segments could not be read (the rest is empty)
  std::vector<PartitionStats> partition_stats{};
  std::vector<GroupStats> groups{};
  std::vector<MemberStats> members{};
  std::vector<ProducerSlotStats> producers{};
  // Sums over partitions.
  std::uint64_t events = 0, bytes = 0, tail_bytes = 0, aborted_records = 0, backpressure_waits = 0;
};

struct DaemonStats {
  std::int64_t pid = 0;                 // as recorded in the registry (0: none)
  bool alive = false;
  bool stopped = false;                 // alive but stopped (SIGSTOP, a debugger): answers nobody
  std::uint64_t epoch = 0;
};

struct BusStats {
  std::string bus{};
  std::uint64_t time_ns = 0;            // CLOCK_REALTIME when the snapshot was taken
  std::uint64_t mono_ns = 0;            // CLOCK_MONOTONIC, for rates between snapshots
  DaemonStats daemon{};
  std::vector<TopicStats> topics{};
};

struct StatsOptions {
  bool dlq_depth = true;                // scan DLQ topics for pending dead letters
  bool lag_time = true;                 // read the oldest unconsumed event of each group partition
  std::string topic{};                  // only this topic (and its DLQs); empty: all
};

// One shared-memory object of a bus in /dev/shm (herald doctor).
struct SegmentInfo {
  std::string name{};       // under /dev/shm
  std::string kind{};       // "registry", "log", "state" or "unknown"
  std::string topic{};      // the registered topic it belongs to (empty: none)
  bool registered = false;  // the registry, or a segment of a registered topic incarnation
  std::uint64_t bytes = 0;
  std::uint32_t mode = 0;   // permission bits
  std::uint32_t uid = 0, gid = 0;
  std::uint32_t expected_mode = 0;  // what the registry says it should be (0: unknown)
};

// Every /dev/shm object named for the bus, and whether the registry knows
// it; plus registered topics whose segments are missing (bytes 0, name
// empty, topic set). Read-only.
Result<std::vector<SegmentInfo>> bus_segments(std::string_view bus = {});

// Reads the bus (empty name: $HERALD_BUS, else "default") read-only.
// kNotFound if the bus has no registry.
Result<BusStats> read_stats(std::string_view bus = {}, const StatsOptions& options = {});

// "lossless", "lossy", "lag-out".
const char* policy_name(Policy p) noexcept;

}  // namespace herald
