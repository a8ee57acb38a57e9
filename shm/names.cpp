#include "shm/names.hpp"

#include <cstdio>

namespace herald::shm {

std::string printable(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (out.size() >= 120) {
      out += "...";
      break;
    }
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7f) {
      out += c;
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", u);
      out += buf;
    }
  }
  return out;
}

namespace {
bool is_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }
}  // namespace

Result<void> validate_bus_name(std::string_view name) {
  if (name.empty()) return fail(Errc::kInvalidArgument, "bus name is empty (use [A-Za-z0-9_-], 1-64 chars)");
  if (name.size() > kMaxBusName)
    return fail(Errc::kInvalidArgument, "bus name '" + printable(name) + "' is " + std::to_string(name.size()) +
                                            " chars; the limit is 64");
  for (char c : name) {
    if (!is_alnum(c) && c != '_' && c != '-')
      return fail(Errc::kInvalidArgument, "bus name '" + printable(name) + "' holds '" + printable({&c, 1}) +
                                              "'; use only [A-Za-z0-9_-]");
  }
  if (name.front() == '-') return fail(Errc::kInvalidArgument, "bus name '" + printable(name) + "' starts with '-'");
  return {};
}

Result<void> validate_entity_name(std::string_view name, std::string_view what, bool allow_dlq) {
  const std::string w(what);
  if (name.empty()) return fail(Errc::kInvalidArgument, w + " name is empty (use [A-Za-z0-9._-], 1-100 chars)");
  const bool dlq = name.find(".dlq.") != std::string_view::npos;
  const std::size_t limit = allow_dlq && dlq ? kMaxDlqTopicName : kMaxTopicName;
  if (name.size() > limit)
    return fail(Errc::kInvalidArgument, w + " name '" + printable(name) + "' is " + std::to_string(name.size()) +
                                            " chars; the limit is " + std::to_string(limit));
  for (char c : name) {
    if (!is_alnum(c) && c != '_' && c != '-' && c != '.')
      return fail(Errc::kInvalidArgument, w + " name '" + printable(name) + "' holds '" + printable({&c, 1}) +
                                              "'; use only [A-Za-z0-9._-]");
  }
  if (name.front() == '.')
    return fail(Errc::kInvalidArgument, w + " name '" + printable(name) + "' starts with '.'");
  // A leading '-' reads as an option to every command line that names it
  // (herald's own hints included).
  if (name.front() == '-')
    return fail(Errc::kInvalidArgument, w + " name '" + printable(name) + "' starts with '-'");
  if (name.find("..") != std::string_view::npos)
    return fail(Errc::kInvalidArgument, w + " name '" + printable(name) + "' holds '..'");
  if (!allow_dlq && dlq)
    return fail(Errc::kInvalidArgument, w + " name '" + printable(name) +
                                            "' holds '.dlq.', which only dead-letter topics made by herald use");
  // A DLQ is named TOPIC.dlq.GROUP. Topic 'a.dlq' with group 'g' and topic
  // 'a' with group 'dlq.g' would share 'a.dlq.dlq.g': with no name ending
  // in '.dlq' (and none holding '.dlq.'), the first '.dlq.' of a DLQ's name
  // is where its topic ends, so every (topic, group) has a DLQ of its own.
  if (!allow_dlq && name.size() >= 4 && name.substr(name.size() - 4) == ".dlq")
    return fail(Errc::kInvalidArgument, w + " name '" + printable(name) +
                                            "' ends in '.dlq', which would make dead-letter topic names ambiguous");
  if (!allow_dlq && what == "group" && name == kDlqCursorGroupName)
    return fail(Errc::kInvalidArgument, "group name '" + printable(name) +
                                            "' is reserved: it is each dead-letter topic's own cursor");
  return {};
}

std::string dlq_topic_name(std::string_view topic, std::string_view group) {
  std::string n(topic);
  n.append(".dlq.").append(group);
  return n;
}

std::uint64_t fnv1a64(std::string_view s) noexcept {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (char c : s) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ull;
  }
  return h;
}

namespace {
std::string hex16(std::uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

// herald.<bus>.<topic>.<incarnation>.<suffix>; a DLQ topic name can reach
// 100 chars, so anything past 120 chars of topic is replaced by its hash.
std::string topic_segment_name(std::string_view bus, std::string_view topic, std::uint64_t incarnation,
                               std::string_view suffix) {
  std::string n = bus_segment_prefix(bus);
  if (topic.size() <= 120) {
    n.append(topic);
  } else {
    n.append("h").append(hex16(fnv1a64(topic)));
  }
  n.append(".").append(hex16(incarnation)).append(".").append(suffix);
  return n;
}
}  // namespace

std::string bus_segment_prefix(std::string_view bus) {
  std::string n("herald.");
  n.append(bus).append(".");
  return n;
}

std::string registry_segment_name(std::string_view bus) { return bus_segment_prefix(bus) + "registry"; }

std::string log_segment_name(std::string_view bus, std::string_view topic, std::uint64_t incarnation) {
  return topic_segment_name(bus, topic, incarnation, "log");
}

std::string state_segment_name(std::string_view bus, std::string_view topic, std::uint64_t incarnation) {
  return topic_segment_name(bus, topic, incarnation, "state");
}

}  // namespace herald::shm
