// The one parser of command-line sizes, rates, durations, times and
// positions (tools/common/units.cpp), and the exec handler's header names.
#include <gtest/gtest.h>

#include "tools/common/units.hpp"
#include "tools/exec_handler.hpp"

namespace herald::tools {
namespace {

TEST(UnitsTest, SizesAreBinary) {
  EXPECT_EQ(parse_size("4096").value, 4096u);
  EXPECT_EQ(parse_size("64K").value, 65536u);
  EXPECT_EQ(parse_size("64k").value, 65536u);
  EXPECT_EQ(parse_size("16M").value, 16u << 20);
  EXPECT_EQ(parse_size("16MiB").value, 16u << 20);
  EXPECT_EQ(parse_size("1G").value, 1ull << 30);
  EXPECT_EQ(parse_size("1.5K").value, 1536u);
  EXPECT_EQ(parse_size("2T").value, 2ull << 40);
  for (const char* bad : {"", "K", "12Q", "-1", "1.3", "0x10", "1e3", "10 K"}) {
    const auto r = parse_size(bad);
    EXPECT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.error.find("64K"), std::string::npos) << "the message shows the form: " << r.error;
  }
}

TEST(UnitsTest, RatesAreDecimal) {
  EXPECT_DOUBLE_EQ(parse_rate("500").value, 500);
  EXPECT_DOUBLE_EQ(parse_rate("100k").value, 100'000);
  EXPECT_DOUBLE_EQ(parse_rate("1.5M").value, 1'500'000);
  EXPECT_DOUBLE_EQ(parse_rate("2k/s").value, 2000);
  EXPECT_FALSE(parse_rate("fast").ok());
  EXPECT_FALSE(parse_rate("10x").ok());
}

TEST(UnitsTest, DurationsNeedAUnit) {
  EXPECT_EQ(parse_duration_ns("5s").value, 5'000'000'000u);
  EXPECT_EQ(parse_duration_ns("100ms").value, 100'000'000u);
  EXPECT_EQ(parse_duration_ns("250us").value, 250'000u);
  EXPECT_EQ(parse_duration_ns("2m").value, 120'000'000'000u);
  EXPECT_EQ(parse_duration_ns("1h").value, 3'600'000'000'000u);
  EXPECT_EQ(parse_duration_ns("1.5s").value, 1'500'000'000u);
  EXPECT_EQ(parse_duration_ns("7ns").value, 7u);
  EXPECT_EQ(parse_duration_ns("0").value, 0u);
  const auto r = parse_duration_ns("5");
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.error.find("no unit"), std::string::npos) << r.error;
  EXPECT_FALSE(parse_duration_ns("5 s").ok());
  EXPECT_FALSE(parse_duration_ns("5d").ok());
  EXPECT_FALSE(parse_duration_ns("s").ok());
}

TEST(UnitsTest, TimesAreRfc3339OrRelative) {
  EXPECT_EQ(parse_time_ns("1970-01-01T00:00:01Z", 0).value, 1'000'000'000u);
  EXPECT_EQ(parse_time_ns("2024-05-01T12:00:00Z", 0).value, 1714564800ull * 1'000'000'000u);
  EXPECT_EQ(parse_time_ns("2024-05-01T14:00:00+02:00", 0).value, 1714564800ull * 1'000'000'000u);
  EXPECT_EQ(parse_time_ns("2024-05-01T11:30:00.25-00:30", 0).value, 1714564800ull * 1'000'000'000u + 250'000'000u);
  EXPECT_EQ(parse_time_ns("2024-05-01 12:00:00z", 0).value, 1714564800ull * 1'000'000'000u);
  EXPECT_EQ(parse_time_ns("-5m", 1'000'000'000'000u).value, 1'000'000'000'000u - 300'000'000'000u);
  EXPECT_EQ(parse_time_ns("-5m", 1).value, 0u);  // clamped at the epoch
  for (const char* bad : {"2024-05-01T12:00:00", "2024-13-01T00:00:00Z", "yesterday", "-5", "2024-05-01T12:00:00Zjunk",
                          "2024-05-01T12:00:00.Z", "2024-05-01T12:00:00+2"})
    EXPECT_FALSE(parse_time_ns(bad, 0).ok()) << bad;
}

TEST(UnitsTest, PositionsAndWhere) {
  EXPECT_EQ(parse_part_pos("2:4096").value.partition, 2u);
  EXPECT_EQ(parse_part_pos("2:4096").value.position, 4096u);
  for (const char* bad : {"2", ":1", "1:", "a:1", "1:b", "1:2:3", "-1:0"}) EXPECT_FALSE(parse_part_pos(bad).ok()) << bad;
  EXPECT_EQ(parse_where("earliest", 0).value.kind, Where::Kind::kEarliest);
  EXPECT_EQ(parse_where("beginning", 0).value.kind, Where::Kind::kEarliest);
  EXPECT_EQ(parse_where("latest", 0).value.kind, Where::Kind::kLatest);
  EXPECT_EQ(parse_where("END", 0).value.kind, Where::Kind::kLatest);
  EXPECT_EQ(parse_where("3:128", 0).value.kind, Where::Kind::kPosition);
  EXPECT_EQ(parse_where("3:128", 0).value.at.position, 128u);
  EXPECT_EQ(parse_where("-10s", 20'000'000'000u).value.kind, Where::Kind::kTime);
  EXPECT_EQ(parse_where("-10s", 20'000'000'000u).value.time_ns, 10'000'000'000u);
  EXPECT_EQ(parse_where("2024-05-01T12:00:00Z", 0).value.kind, Where::Kind::kTime);
  EXPECT_FALSE(parse_where("soon", 0).ok());
  EXPECT_FALSE(parse_where("1:x", 0).ok());
}

TEST(UnitsTest, Formatting) {
  EXPECT_EQ(format_bytes(512), "512 B");
  EXPECT_EQ(format_bytes(65536), "64.0 KiB");
  EXPECT_EQ(format_bytes(16.0 * 1024 * 1024), "16.0 MiB");
  EXPECT_EQ(format_count(812), "812");
  EXPECT_EQ(format_count(806400), "806.4k");
  EXPECT_EQ(format_count(3.48e6), "3.48M");
  EXPECT_EQ(format_duration_ns(850), "850ns");
  EXPECT_EQ(format_duration_ns(12'400), "12.4us");
  EXPECT_EQ(format_duration_ns(125'000'000'000ull), "2m05s");
  EXPECT_EQ(format_time_ns(1714564800ull * 1'000'000'000u + 123'000'000u), "2024-05-01T12:00:00.123Z");
  // What format_time_ns prints, parse_time_ns reads back.
  EXPECT_EQ(parse_time_ns(format_time_ns(1714564800123000000ull), 0).value, 1714564800123000000ull);
}

// The unit is chosen after rounding (an exploratory pass found "1024 B",
// "1024.0 KiB", "1000.0k", "1000.0us" and "60.00s").
TEST(UnitsTest, NoValueRoundsUpToItsUnitsLimit) {
  EXPECT_EQ(format_bytes(1023), "1023 B");
  EXPECT_EQ(format_bytes(1023.6), "1.0 KiB");
  EXPECT_EQ(format_bytes(1024.0 * 1024 - 1), "1.0 MiB");
  EXPECT_EQ(format_bytes(1024.0 * 1024 * 1024 - 1), "1.00 GiB");
  EXPECT_EQ(format_count(9999), "9999");
  EXPECT_EQ(format_count(9999.7), "10.0k");
  EXPECT_EQ(format_count(999'999), "1.00M");
  EXPECT_EQ(format_count(999'999'999), "1.00G");
  EXPECT_EQ(format_duration_ns(999'999), "1.00ms");
  EXPECT_EQ(format_duration_ns(999'999'999), "1.00s");
  EXPECT_EQ(format_duration_ns(59'999'000'000ull), "1m00s");
  EXPECT_EQ(format_duration_ns(3'599'600'000'000ull), "1h00m");
  EXPECT_EQ(format_duration_ns(61'000'000'000ull), "1m01s");
}

TEST(UnitsTest, TerminalText) {
  EXPECT_EQ(terminal_text("plain text\twith a tab"), "plain text\twith a tab");
  EXPECT_EQ(terminal_text("caf\xc3\xa9 \xe2\x82\xac"), "caf\xc3\xa9 \xe2\x82\xac");  // UTF-8 stays
  EXPECT_EQ(terminal_text("\x1b[2Jx\n"), "\\x1b[2Jx\\x0a");                     // escape sequences do not
  EXPECT_EQ(terminal_text(std::string_view("a\0b", 3)), "a\\x00b");
  EXPECT_EQ(terminal_text("\x7f"), "\\x7f");
  EXPECT_EQ(terminal_text("\xc2\x9b"), "\\xc2\\x9b");  // C1 CSI
  EXPECT_EQ(terminal_text("\xff\xc3"), "\\xff\\xc3");  // not UTF-8; a sequence cut short
}

TEST(UnitsTest, CountedNouns) {
  EXPECT_EQ(counted(1, "partition"), "1 partition");
  EXPECT_EQ(counted(0, "partition"), "0 partitions");
  EXPECT_EQ(counted(4, "partition"), "4 partitions");
  EXPECT_EQ(counted(1, "failed delivery", "failed deliveries"), "1 failed delivery");
  EXPECT_EQ(counted(2, "failed delivery", "failed deliveries"), "2 failed deliveries");
}

TEST(ExecHandlerTest, HeaderEnvironmentNames) {
  EXPECT_EQ(header_env_name("tenant"), "HERALD_H_TENANT");
  EXPECT_EQ(header_env_name("x-trace.id"), "HERALD_H_X_TRACE_ID");
  EXPECT_EQ(header_env_name("Content-MD5"), "HERALD_H_CONTENT_MD5");
}

}  // namespace
}  // namespace herald::tools
