// Bus: one namespace of topics on a host. Attach by name; create, list,
// describe and delete topics; make producers and consumers.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "herald/consumer.hpp"
#include "herald/event.hpp"
#include "herald/producer.hpp"
#include "herald/result.hpp"

namespace herald {

struct TopicConfig {
  std::uint32_t partitions = 4;
  std::uint64_t ring_bytes = 16ull << 20;  // per partition; a power of two
  // The largest record (envelope included); at most ring_bytes / 4.
  // 0: 1 MiB, or ring_bytes / 4 when that is smaller.
  std::uint64_t max_event = 0;
  Policy default_policy = Policy::kLagOut; // for groups created without a policy
  std::chrono::milliseconds lagout_grace = std::chrono::seconds(30);
  bool single_producer = false;            // claims by plain store; a second producer is refused
  std::string unix_group{};                  // share with a Unix group: log 0640, state 0660
};

struct PartitionInfo {
  std::uint32_t partition = 0;
  std::uint64_t tail = 0;            // the next position to be written
  std::uint64_t beginning = 0;       // the oldest retained position
  std::uint64_t beginning_time_ns = 0;  // time of the event there (0 if none)
  std::uint64_t events = 0;          // published events (summed over producers)
  std::uint64_t bytes = 0;
  std::uint64_t aborted_records = 0;
};

struct GroupPartitionInfo {
  std::uint32_t partition = 0;
  std::uint64_t committed = 0;
  std::uint64_t lag_bytes = 0;
  std::uint64_t gap_bytes = 0;
  std::uint64_t gaps = 0;
};

struct GroupInfo {
  std::string name{};
  Policy policy = Policy::kLagOut;
  bool gating = false;
  std::uint32_t members = 0;
  std::vector<GroupPartitionInfo> partitions{};
};

struct TopicInfo {
  std::string name{};
  std::uint64_t incarnation = 0;
  std::uint32_t partitions = 0;
  std::uint64_t ring_bytes = 0;
  std::uint64_t max_event = 0;
  Policy default_policy = Policy::kLagOut;
  bool single_producer = false;
  bool dead_letter = false;  // a group's dead-letter topic (<topic>.dlq.<group>)
  std::uint64_t created_ns = 0;
  std::vector<PartitionInfo> partition_info{};  // filled by describe_topic
  std::vector<GroupInfo> groups{};              // filled by describe_topic
};

// A dead letter: the original event (envelope and payload intact, plus its
// herald.dlq.* headers) and why it was dead-lettered.
struct DeadLetter {
  Event event{};
  std::uint64_t dlq_position = 0;      // where it sits in <topic>.dlq.<group>
  std::string topic{};                 // where it came from
  std::uint64_t incarnation = 0;
  std::uint32_t partition = 0;
  std::uint64_t position = 0;
  std::uint64_t time_ns = 0;           // the original event's time
  std::string group{};
  std::string reason{};                // the handler's message, or "consumer crashed"
  std::uint32_t deliveries = 0;
  std::uint64_t first_failure_ns = 0;
  std::uint64_t last_failure_ns = 0;
};

struct RedriveOptions {
  std::optional<std::uint64_t> position{};  // one dead letter (its dlq_position); default: all
  std::string type{};                       // only dead letters of this type
  std::string header_name{};                // only those with this header...
  std::string header_value{};               // ...set to this value
  double rate = 0;                          // events per second; 0: as fast as possible
  std::function<void(std::uint64_t done, std::uint64_t total)> progress{};
};

struct RedriveResult {
  std::uint64_t redriven = 0;  // republished to the topic, for the group only
  std::uint64_t matched = 0;   // dead letters the options selected
  // Selected but not republished, and left pending: the topic cannot take
  // them (with the redrive headers an event within a few hundred bytes of
  // the topic's max_event no longer fits). `refusal` says why, for the
  // first of them; consume such letters from the DLQ topic instead.
  std::uint64_t refused = 0;
  std::string refusal{};
};

struct ResetStep {
  std::uint32_t partition = 0;
  std::uint64_t from = 0;
  std::uint64_t to = 0;
};

struct DeleteOptions {
  bool force = false;  // delete even while producers or consumers are attached (they get kClosed)
};

class Bus {
 public:
  // Attaches to the bus `name` (empty: env HERALD_BUS, else "default"),
  // creating its registry if this is the first use on the host.
  static Result<Bus> attach(std::string_view name = {});
  // Removes every shared-memory object and file of a bus. The name is
  // required (no default). Handles still attached get kClosed from their
  // topics, and create_topic on them fails (kClosed).
  static Result<void> destroy(std::string_view name);

  // A moved-from Bus may be assigned to or destroyed; any other call fails
  // with kInvalidArgument (accessors return zero or empty).
  Bus(Bus&&) noexcept;
  Bus& operator=(Bus&&) noexcept;
  Bus(const Bus&) = delete;
  Bus& operator=(const Bus&) = delete;
  ~Bus();

  Result<TopicInfo> create_topic(std::string_view name, const TopicConfig& config = {});
  Result<void> delete_topic(std::string_view name, const DeleteOptions& options = {});
  Result<std::vector<TopicInfo>> list_topics() const;
  Result<TopicInfo> describe_topic(std::string_view name) const;

  // Groups. Deleting a group also deletes its dead-letter topic; with force
  // while members are attached, their polls then fail with kNotFound (the
  // group is gone; a group made again under the name is a new one). A reset
  // moves every partition's cursor (refused while the group has live
  // members); with execute = false it only returns the plan.
  Result<void> delete_group(std::string_view topic, std::string_view group, bool force = false);
  Result<std::vector<ResetStep>> reset_group(std::string_view topic, std::string_view group, Offset to,
                                             bool execute = true);
  // The same for one partition only (a `PARTITION:POSITION` target names one).
  Result<std::vector<ResetStep>> reset_group(std::string_view topic, std::string_view group, std::uint32_t partition,
                                             Offset to, bool execute = true);

  // Dead letters of a group (not yet redriven or purged), in DLQ order.
  Result<std::vector<DeadLetter>> dead_letters(std::string_view topic, std::string_view group) const;
  // Republishes dead letters to their topic and partition, marked for this
  // group only (other groups skip them), with a herald.redriven-from header;
  // each once, in order. A letter the topic cannot take (too large, see
  // RedriveResult::refused) is left pending and the others go on.
  Result<RedriveResult> redrive(std::string_view topic, std::string_view group, const RedriveOptions& options = {});
  // Drops every dead letter of the group; returns how many.
  Result<std::uint64_t> purge_dead_letters(std::string_view topic, std::string_view group);
  // Drops one: the pending dead letter at `dlq_position` (DeadLetter::
  // dlq_position), e.g. one redrive refused. kNotFound if none is pending
  // there. At the head of the DLQ it frees its room at once (no marker is
  // written, so a full DLQ is no obstacle); behind another pending letter
  // it appends a marker, as redrive does.
  Result<void> purge_dead_letter(std::string_view topic, std::string_view group, std::uint64_t dlq_position);

  // A producer maps every partition's ring into this process's page tables
  // when it is created, and a consumer each partition it is given (~1.3 ms
  // per 16 MiB ring, once per process and topic): publishing and polling
  // then take no page faults (docs/ARCHITECTURE.md, "Prefaulting").
  Result<Producer> producer(std::string_view topic, const ProducerOptions& options = {});
  Result<Consumer> consumer(std::string_view topic, const ConsumerOptions& options = {});

  [[nodiscard]] const std::string& name() const noexcept;

  struct Impl;

 private:
  explicit Bus(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_{};
};

}  // namespace herald
