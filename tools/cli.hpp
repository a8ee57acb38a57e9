// What every `herald` command shares: the context (bus, --json, terminal),
// the error contract (exit 0 ok, 1 runtime error, 2 usage error; one line
// "herald: error: <what was wrong and what to do>" on stderr), option
// helpers for sizes, rates and durations, tables, and the JSON shapes of
// events and stats. Each tools/cmd_*.cpp registers its subcommands with
// add_*_commands() and a handler per subcommand.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "herald/herald.hpp"
#include "tools/common/units.hpp"

namespace herald::tools {

// Thrown by a handler for bad input found after parsing: exit status 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Context {
  std::string bus_option;  // --bus as given (empty: $HERALD_BUS, else "default")
  bool json = false;       // --json
  bool tty = false;        // stdout is a terminal: colours, progress, live views
  bool terminal = false;   // stdout is a terminal, NO_COLOR or not: payloads are shown escaped
  std::map<const CLI::App*, std::function<int()>> handlers;

  [[nodiscard]] std::string bus() const;
  // Attaches to the bus (starting heraldd unless HERALD_NO_AUTOSTART=1).
  Result<Bus> attach() const;
  void on(const CLI::App* cmd, std::function<int()> fn) { handlers[cmd] = std::move(fn); }
};

// Prints "herald: error: <what>" (and a hint when the code suggests one) and
// returns 1.
int runtime_error(const std::string& what);
int runtime_error(const Error& e, const std::string& context = {});
[[noreturn]] void usage_error(const std::string& what);

// Option value checkers that also convert: "16M" -> 16777216 (bytes),
// "5s" -> 5000000000 (ns), "100k" -> 100000 (events/s).
CLI::Validator size_arg();
CLI::Validator duration_arg();
CLI::Validator rate_arg();
// A whole number of at least `min` (digits only: no sign, no fraction, no
// unit), at most INT64_MAX: "-1" or "99999999999999999999" never wrap.
CLI::Validator count_arg(std::uint64_t min);
// Checks a name of a topic or group ([A-Za-z0-9._-], 1..100).
CLI::Validator name_arg(const char* what);

// Converts a parsed `--from`/`--to` value to an Offset (kPosition keeps the
// position; the partition is Where::at.partition).
Offset to_offset(const Where& w);
// Parses --from/--to text or throws UsageError.
Where where_or_usage(const std::string& text, const char* option);

// A text table: columns aligned, a header row, right-aligned numbers.
class Table {
 public:
  explicit Table(std::vector<std::string> header) : header_(std::move(header)) {}
  void row(std::vector<std::string> cells) { rows_.push_back(std::move(cells)); }
  [[nodiscard]] bool empty() const noexcept { return rows_.empty(); }
  // `bold_header` only on a terminal.
  [[nodiscard]] std::string render(bool bold_header = false, const std::string& indent = "") const;

 private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
};

// ANSI styles (empty strings unless on a terminal).
struct Style {
  bool on = false;
  [[nodiscard]] const char* bold() const { return on ? "\033[1m" : ""; }
  [[nodiscard]] const char* dim() const { return on ? "\033[2m" : ""; }
  [[nodiscard]] const char* red() const { return on ? "\033[31m" : ""; }
  [[nodiscard]] const char* green() const { return on ? "\033[32m" : ""; }
  [[nodiscard]] const char* yellow() const { return on ? "\033[33m" : ""; }
  [[nodiscard]] const char* cyan() const { return on ? "\033[36m" : ""; }
  [[nodiscard]] const char* reset() const { return on ? "\033[0m" : ""; }
};

// One event as a JSON object with every envelope field; the payload as
// `data` (valid UTF-8) or `data_base64`.
nlohmann::json event_json(const EventView& e);
std::string base64(std::string_view bytes);
bool valid_utf8(std::string_view s);
// Prints one JSON value on one line (JSON lines) and flushes when asked.
void print_json_line(const nlohmann::json& j, bool flush = false);
// Stats snapshots as JSON (herald stat --json, herald groups --json, ...).
nlohmann::json topic_stats_json(const TopicStats& t);
nlohmann::json group_stats_json(const GroupStats& g);
nlohmann::json bus_stats_json(const BusStats& s);

// Reads `c` (a group-less reader) up to `tails`, each partition's tail when
// the caller looked, handing `on` every event before them: the retained
// events tail and trace print. A claim a producer left open holds a reader
// there until it is committed or repaired, so it stops after 20 empty
// looks of `look` each (what it did not reach: c.position(p) < tails[p]);
// a stop signal ends it as well. Errors are the poll's (kClosed: deleted).
Result<void> read_to_tails(Consumer& c, const std::vector<std::uint64_t>& tails,
                           const std::function<void(const EventView&)>& on, std::chrono::milliseconds look);

// SIGINT / SIGTERM set a flag that long-running commands poll.
void install_stop_signals();
bool stop_requested() noexcept;

// Registration of each command family (tools/cmd_*.cpp).
void add_topic_commands(CLI::App& app, Context& ctx);
void add_publish_command(CLI::App& app, Context& ctx);
void add_consume_commands(CLI::App& app, Context& ctx);  // consume, tail
void add_trace_command(CLI::App& app, Context& ctx);
void add_groups_commands(CLI::App& app, Context& ctx);
void add_dlq_commands(CLI::App& app, Context& ctx);
void add_stat_command(CLI::App& app, Context& ctx);
void add_daemon_commands(CLI::App& app, Context& ctx);   // daemon start|stop|status, bus destroy
void add_doctor_command(CLI::App& app, Context& ctx);
void add_demo_commands(CLI::App& app, Context& ctx);
void add_bench_command(CLI::App& app, Context& ctx);    // runs bench/'s herald-bench

}  // namespace herald::tools
