// Bus, topic and group names, and the shared-memory object names made from
// them (shm/names.hpp).
#include <gtest/gtest.h>

#include <climits>
#include <set>
#include <string>

#include "shm/names.hpp"

namespace herald::shm {
namespace {

using namespace std::string_literals;

TEST(NamesTest, AcceptsValidBusNames) {
  for (const std::string& n : {"default"s, "a"s, "A-b_9"s, std::string(64, 'x'), "0"s, "a-"s, "_"s}) {
    auto r = validate_bus_name(n);
    EXPECT_TRUE(r) << n << ": " << r.error().message();
  }
}

TEST(NamesTest, RejectsInvalidBusNamesNamingTheProblem) {
  struct Case {
    std::string name;
    std::string says;
  };
  for (const Case& c : {Case{"", "empty"}, Case{std::string(65, 'x'), "65 chars"}, Case{"a/b", "'/'"},
                        Case{"a.b", "'.'"}, Case{"..", "'.'"}, Case{"a b", "' '"}, Case{"tab\t", "\\x09"},
                        Case{"nul\0x"s, "\\x00"}, Case{"\x7f", "\\x7f"}, Case{"caf\xc3\xa9", "\\xc3"},
                        Case{"new\nline", "\\x0a"}, Case{"-", "starts with '-'"}, Case{"-x", "starts with '-'"}}) {
    auto r = validate_bus_name(c.name);
    ASSERT_FALSE(r) << printable(c.name);
    EXPECT_EQ(r.error().code, Errc::kInvalidArgument);
    EXPECT_NE(r.error().detail.find(c.says), std::string::npos) << r.error().detail;
    // Control characters never reach the message raw.
    for (char ch : r.error().detail) EXPECT_TRUE(static_cast<unsigned char>(ch) >= 0x20) << r.error().detail;
  }
}

TEST(NamesTest, AcceptsValidTopicAndGroupNames) {
  for (const std::string& n : {"orders"s, "a"s, "a.b"s, "a-b_c.d"s, std::string(100, 'y'), "x."s, "v1.2.3"s,
                              "dlq.x"s, "orders.dlqx"s}) {
    auto r = validate_entity_name(n, "topic");
    EXPECT_TRUE(r) << n << ": " << r.error().message();
    EXPECT_TRUE(validate_entity_name(n, "group"));
  }
}

TEST(NamesTest, RejectsInvalidTopicAndGroupNamesNamingTheProblem) {
  struct Case {
    std::string name;
    std::string says;
  };
  for (const Case& c : {Case{"", "empty"}, Case{std::string(101, 'y'), "101 chars"}, Case{"a/b", "'/'"},
                        Case{"../etc", "'/'"}, Case{"a..b", "'..'"}, Case{"..", "starts with '.'"},
                        Case{".hidden", "starts with '.'"}, Case{"bell\a", "\\x07"}, Case{"esc\x1b[0m", "\\x1b"},
                        Case{"nul\0"s, "\\x00"}, Case{"o.dlq.g", "'.dlq.'"}, Case{"orders.dlq", "ends in '.dlq'"},
                        Case{"a:b", "':'"},
                        Case{"sp ace", "' '"}}) {
    for (const char* what : {"topic", "group"}) {
      auto r = validate_entity_name(c.name, what);
      ASSERT_FALSE(r) << printable(c.name);
      EXPECT_EQ(r.error().code, Errc::kInvalidArgument);
      EXPECT_NE(r.error().detail.find(c.says), std::string::npos) << r.error().detail;
      EXPECT_EQ(r.error().detail.rfind(what, 0), 0u) << "message names the kind first: " << r.error().detail;
    }
  }
}

TEST(NamesTest, DeadLetterNamesOnlyWhenAllowed) {
  const std::string dlq = dlq_topic_name("orders", "billing");
  EXPECT_EQ(dlq, "orders.dlq.billing");
  EXPECT_FALSE(validate_entity_name(dlq, "topic"));
  EXPECT_TRUE(validate_entity_name(dlq, "topic", /*allow_dlq=*/true));
  // The longest DLQ name (100 + 5 + 100) is allowed; one more char is not.
  const std::string longest = dlq_topic_name(std::string(100, 't'), std::string(100, 'g'));
  EXPECT_EQ(longest.size(), kMaxDlqTopicName);
  EXPECT_TRUE(validate_entity_name(longest, "topic", true));
  EXPECT_FALSE(validate_entity_name(longest + "g", "topic", true));
  // allow_dlq does not lift the limit for ordinary names, nor the other rules.
  EXPECT_FALSE(validate_entity_name(std::string(101, 'y'), "topic", true));
  EXPECT_FALSE(validate_entity_name(".x.dlq.y", "topic", true));
  EXPECT_FALSE(validate_entity_name("x.dlq..y", "topic", true));
}

TEST(NamesTest, PrintableEscapesAndCuts) {
  EXPECT_EQ(printable("abc"), "abc");
  EXPECT_EQ(printable("a\nb"), "a\\x0ab");
  EXPECT_EQ(printable("\xff"), "\\xff");
  const std::string cut = printable(std::string(500, 'z'));
  EXPECT_LE(cut.size(), 130u);
  EXPECT_EQ(cut.substr(cut.size() - 3), "...");
}

TEST(NamesTest, SegmentNamesAreStableShortAndDistinct) {
  EXPECT_EQ(registry_segment_name("b"), "herald.b.registry");
  EXPECT_EQ(bus_segment_prefix("b"), "herald.b.");
  EXPECT_EQ(log_segment_name("b", "orders", 0x2a), "herald.b.orders.000000000000002a.log");
  EXPECT_EQ(state_segment_name("b", "orders", 0x2a), "herald.b.orders.000000000000002a.state");
  // FNV-1a 64 reference vectors (stable across builds and versions).
  EXPECT_EQ(fnv1a64(""), 0xcbf29ce484222325ull);
  EXPECT_EQ(fnv1a64("a"), 0xaf63dc4c8601ec8cull);
  EXPECT_EQ(fnv1a64("foobar"), 0x85944171f73967e8ull);

  // The longest names fit in NAME_MAX and keep the bus prefix; long topics
  // (DLQ names) are hashed, and different long names stay different.
  const std::string bus(64, 'b');
  std::set<std::string> seen;
  for (char c = 'a'; c <= 'z'; ++c) {
    const std::string topic = dlq_topic_name(std::string(100, c), std::string(100, 'g'));
    for (const std::string& n : {log_segment_name(bus, topic, ~0ull), state_segment_name(bus, topic, ~0ull)}) {
      EXPECT_LE(n.size(), static_cast<std::size_t>(NAME_MAX)) << n;
      EXPECT_EQ(n.rfind(bus_segment_prefix(bus), 0), 0u) << n;
      EXPECT_EQ(n.find('/'), std::string::npos);
      EXPECT_TRUE(seen.insert(n).second) << "collision: " << n;
    }
  }
  // Different incarnations of one topic never share a segment.
  EXPECT_NE(log_segment_name("b", "t", 1), log_segment_name("b", "t", 2));
  EXPECT_NE(log_segment_name("b", "t", 1), state_segment_name("b", "t", 1));
}

}  // namespace
}  // namespace herald::shm
