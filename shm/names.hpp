// Names: validation of bus, topic and group names, and the names of the
// shared-memory objects and files a bus uses.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "herald/result.hpp"

namespace herald::shm {

inline constexpr std::size_t kMaxBusName = 64;
inline constexpr std::size_t kMaxTopicName = 100;
inline constexpr std::size_t kMaxDlqTopicName = 205;  // <topic>.dlq.<group>
// The group every dead-letter topic keeps its own cursor in (kGroupInternal).
inline constexpr const char* kDlqCursorGroupName = "herald-dlq";

// Bus names: [A-Za-z0-9_-], 1..64 chars.
Result<void> validate_bus_name(std::string_view name);
// Topic and group names: [A-Za-z0-9._-], 1..100 chars, no leading '.', no
// "..". `what` is "topic" or "group" (used in the message). Unless
// allow_dlq (the runtime makes those itself, and listings read back what
// older versions made), names holding ".dlq." or ending in ".dlq" are
// refused, and so is the group name kDlqCursorGroupName.
Result<void> validate_entity_name(std::string_view name, std::string_view what, bool allow_dlq = false);

// The name of a group's dead-letter topic: `<topic>.dlq.<group>`.
std::string dlq_topic_name(std::string_view topic, std::string_view group);

// Shared-memory object names (under /dev/shm). Long names hash the topic so
// the whole stays well under NAME_MAX.
std::string registry_segment_name(std::string_view bus);
std::string log_segment_name(std::string_view bus, std::string_view topic, std::uint64_t incarnation);
std::string state_segment_name(std::string_view bus, std::string_view topic, std::uint64_t incarnation);
// Every segment of a bus starts with this prefix ("herald.<bus>.").
std::string bus_segment_prefix(std::string_view bus);

// FNV-1a 64, for hashing long names (stable across builds and versions).
std::uint64_t fnv1a64(std::string_view s) noexcept;

// Renders a byte string for an error message: printable ASCII as is, the
// rest as \xNN, cut at 120 chars.
std::string printable(std::string_view s);

}  // namespace herald::shm
