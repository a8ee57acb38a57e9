// Dead-letter topics: `<topic>.dlq.<group>`, made with the group (1
// partition), gated by an internal lossless cursor ("herald-dlq") that only
// redrive and purge move, so a dead letter is kept until someone deals with
// it. A DLQ has no DLQ. Records are flagged kRecordDeadLetter and carry the
// original envelope plus the herald.dlq.* headers below.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "herald/bus.hpp"
#include "herald/event.hpp"
#include "runtime/src/groups.hpp"
#include "shm/names.hpp"
#include "shm/registry.hpp"

namespace herald::detail {

inline constexpr const char* kDlqCursorGroup = shm::kDlqCursorGroupName;
inline constexpr const char* kHdrTopic = "herald.dlq.topic";
inline constexpr const char* kHdrIncarnation = "herald.dlq.incarnation";
inline constexpr const char* kHdrPartition = "herald.dlq.partition";
inline constexpr const char* kHdrPosition = "herald.dlq.position";
inline constexpr const char* kHdrTime = "herald.dlq.time";
inline constexpr const char* kHdrGroup = "herald.dlq.group";
inline constexpr const char* kHdrReason = "herald.dlq.reason";
inline constexpr const char* kHdrDeliveries = "herald.dlq.deliveries";
inline constexpr const char* kHdrFirstFailure = "herald.dlq.first-failure";
inline constexpr const char* kHdrLastFailure = "herald.dlq.last-failure";
// A resolution marker (appended to the DLQ by redrive and purge).
inline constexpr const char* kResolvedType = "herald.dlq.resolved";
inline constexpr const char* kHdrResolves = "herald.dlq.resolves";
inline constexpr const char* kHdrAction = "herald.dlq.action";
// On a redriven event in the source topic.
inline constexpr const char* kHdrRedrivenFrom = "herald.redriven-from";
inline constexpr const char* kHdrRedriveGroup = "herald.redrive.group";

// The DLQ of a topic: room for the source's largest event plus headers.
TopicConfig dlq_config(const shm::TopicRecord& source);
// Under the admin lock: creates the group's DLQ topic and its cursor group
// if they are missing.
Result<void> ensure_dlq_locked(shm::Registry& reg, const std::string& bus, const shm::TopicRecord& source,
                               const std::string& group);
// Whether a group of `source` lacks its DLQ topic (a DLQ topic has none):
// made with the group, it may be missing after a failed creation or a
// forced delete of the DLQ topic; a member's join makes it again.
inline bool dlq_missing(const shm::Registry& reg, const shm::TopicRecord& source, const std::string& group) {
  return (source.params.flags & shm::kLogDeadLetterTopic) == 0 && !reg.find(shm::dlq_topic_name(source.name, group));
}
// Under the admin lock, what a join needs (daemonless and heraldd's): the
// group `ng.name` of `topic`, made if missing with every partition's cursor
// at `start`, and its DLQ topic, made if missing. A group made here whose
// DLQ cannot be made is undone: one whose first failing event has nowhere
// to go is worse than none. `*made` (optional) says whether it was made.
Result<GroupRecord> ensure_group_locked(shm::Registry& reg, const std::string& bus, const shm::TopicMap& topic,
                                        const shm::TopicRecord& source, const NewGroup& ng, const Offset& start,
                                        bool* made = nullptr);
// Under the admin lock: deletes the DLQ topic of one group, or of every
// group of a topic (group empty).
void delete_dlqs_locked(shm::Registry& reg, const std::string& bus, const std::string& topic,
                        const std::string& group);

// The message that dead-letters `e` (owns the strings its views point to).
struct DeadLetterMessage {
  std::vector<std::string> strings;
  std::vector<Header> headers;
  Message message;
};
void build_dead_letter(const EventView& e, const shm::TopicRecord& source, const std::string& group,
                       const std::string& reason, std::uint32_t deliveries, std::uint64_t first_failure_ns,
                       std::uint64_t last_failure_ns, DeadLetterMessage* out);
// Reads the herald.dlq.* headers of a DLQ record; nullopt if it is not one.
std::optional<DeadLetter> parse_dead_letter(const EventView& e, std::uint64_t dlq_position);

}  // namespace herald::detail
