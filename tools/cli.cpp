#include "tools/cli.hpp"

#include <signal.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>

namespace herald::tools {

// ---- context and errors ----------------------------------------------------

std::string Context::bus() const {
  if (!bus_option.empty()) return bus_option;
  if (const char* env = std::getenv("HERALD_BUS"); env != nullptr && *env != '\0') return env;
  return "default";
}

Result<Bus> Context::attach() const { return Bus::attach(bus()); }

namespace {
std::string hint(Errc code, const std::string& detail) {
  auto has = [&](const char* s) { return detail.find(s) != std::string::npos; };
  switch (code) {
    case Errc::kDaemonUnavailable: return "start it with 'herald daemon start', or check 'herald daemon status'";
    case Errc::kNotFound:
      if (has("does not exist on bus") && has("topic")) return "see 'herald topic list'";
      if (has("group")) return "see 'herald groups TOPIC'";
      if (has("bus")) return "create a topic first ('herald topic create NAME')";
      return "";
    case Errc::kBackPressured:
      return "a gating group is not consuming: see 'herald groups' (raise --deadline to wait longer)";
    case Errc::kNoSpace:
      if (has("make the rings smaller")) return "see 'herald doctor'";
      if (has("position space")) return "";
      return "free space in /dev/shm or use smaller rings; see 'herald doctor'";
    case Errc::kPermissionDenied:
      // Only for a topic's segments: other refusals (the run directory, a
      // daemon's rule, an impostor) carry their own advice.
      if (has("/dev/shm/") && !has("belong to another user")) return "run as the bus owner or a member of the topic's Unix group";
      return "";
    case Errc::kVersionMismatch: return "the bus was made by another herald version: destroy it or use that version";
    case Errc::kCorrupt: return "run 'herald doctor'";
    default: return "";
  }
}
}  // namespace

int runtime_error(const std::string& what) {
  std::fprintf(stderr, "herald: error: %s\n", what.c_str());
  std::fflush(stderr);
  return 1;
}

int runtime_error(const Error& e, const std::string& context) {
  // A detail that already starts with the context ("create topic 't'") is
  // not prefixed with it again.
  std::string msg = context.empty() || e.detail.rfind(context, 0) == 0 ? e.detail : context + ": " + e.detail;
  if (e.detail.empty()) msg += std::string(to_string(e.code));
  const std::string h = hint(e.code, e.detail);
  if (!h.empty() && msg.find("'herald ") == std::string::npos) msg += "; " + h;
  return runtime_error(msg);
}

void usage_error(const std::string& what) { throw UsageError(what); }

// ---- option helpers ---------------------------------------------------------

CLI::Validator size_arg() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        auto r = parse_size(s);
        if (!r.ok()) return r.error;
        s = std::to_string(r.value);
        return {};
      },
      "SIZE", "size");
}

CLI::Validator duration_arg() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        auto r = parse_duration_ns(s);
        if (!r.ok()) return r.error;
        s = std::to_string(r.value);
        return {};
      },
      "DURATION", "duration");
}

CLI::Validator count_arg(std::uint64_t min) {
  return CLI::Validator(
      [min](std::string& s) -> std::string {
        std::uint64_t v = 0;
        const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
        if (s.empty() || ec == std::errc::invalid_argument || end != s.data() + s.size())
          return "'" + s + "' is not a whole number";
        if (ec == std::errc::result_out_of_range || v > static_cast<std::uint64_t>(INT64_MAX))
          return "'" + s + "' is too large (at most " + std::to_string(INT64_MAX) + ")";
        if (v < min) return "must be at least " + std::to_string(min) + ", not " + s;
        return {};
      },
      "N", "count");
}

CLI::Validator rate_arg() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        auto r = parse_rate(s);
        if (!r.ok()) return r.error;
        if (r.value <= 0) return "rate '" + s + "' must be positive";
        char buf[64];
        std::snprintf(buf, sizeof buf, "%.17g", r.value);
        s = buf;
        return {};
      },
      "RATE", "rate");
}

CLI::Validator name_arg(const char* what) {
  return CLI::Validator(
      [what](std::string& s) -> std::string {
        bool ok = !s.empty() && s.size() <= 100 && s[0] != '.' && s[0] != '-' && s.find("..") == std::string::npos;
        for (char c : s)
          ok = ok && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                      c == '_' || c == '-');
        if (ok) return {};
        return std::string(what) + " name '" + s +
               "' is not 1-100 characters of [A-Za-z0-9._-] (no leading '.' or '-', no '..')";
      },
      "NAME", "name");
}

Offset to_offset(const Where& w) {
  switch (w.kind) {
    case Where::Kind::kEarliest: return Offset::earliest();
    case Where::Kind::kLatest: return Offset::latest();
    case Where::Kind::kPosition: return Offset::at(w.at.position);
    case Where::Kind::kTime: return Offset::at_time(w.time_ns);
  }
  return Offset::earliest();
}

Where where_or_usage(const std::string& text, const char* option) {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  const auto now = static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<std::uint64_t>(ts.tv_nsec);
  auto w = parse_where(text, now);
  if (!w.ok()) usage_error(std::string(option) + ": " + w.error);
  return w.value;
}

// ---- tables -------------------------------------------------------------------

namespace {
bool numeric(const std::string& s) {
  if (s.empty() || s == "-") return !s.empty();
  const char c = s[0];
  return (c >= '0' && c <= '9') || ((c == '+' || c == '-') && s.size() > 1 && s[1] >= '0' && s[1] <= '9');
}
std::size_t display_width(const std::string& s) {
  std::size_t n = 0;
  for (char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80 ? 1u : 0u;  // UTF-8 code points
  return n;
}
}  // namespace

std::string Table::render(bool bold_header, const std::string& indent) const {
  std::vector<std::size_t> w(header_.size(), 0);
  for (std::size_t i = 0; i < header_.size(); ++i) w[i] = display_width(header_[i]);
  for (const auto& r : rows_)
    for (std::size_t i = 0; i < r.size() && i < w.size(); ++i) w[i] = std::max(w[i], display_width(r[i]));
  std::string out;
  auto line = [&](const std::vector<std::string>& cells, bool header) {
    std::string l = indent;
    for (std::size_t i = 0; i < w.size(); ++i) {
      const std::string cell = i < cells.size() ? cells[i] : "";
      const std::size_t pad = w[i] - std::min(w[i], display_width(cell));
      const bool right = !header && numeric(cell) && i > 0;
      if (right) l.append(pad, ' ');
      l += cell;
      if (!right && i + 1 < w.size()) l.append(pad, ' ');
      if (i + 1 < w.size()) l += "  ";
    }
    while (!l.empty() && l.back() == ' ') l.pop_back();
    if (header && bold_header) l = "\033[1m" + l + "\033[0m";
    out += l + "\n";
  };
  line(header_, true);
  for (const auto& r : rows_) line(r, false);
  return out;
}

// ---- JSON -----------------------------------------------------------------------

bool valid_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (std::size_t k = 1; k < n; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    if (n == 2 && c < 0xC2) return false;  // overlong
    i += n;
  }
  return true;
}

std::string base64(std::string_view in) {
  static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    const std::uint32_t v = static_cast<std::uint32_t>(static_cast<unsigned char>(in[i])) << 16 |
                            static_cast<std::uint32_t>(static_cast<unsigned char>(in[i + 1])) << 8 |
                            static_cast<unsigned char>(in[i + 2]);
    out += t[v >> 18 & 63];
    out += t[v >> 12 & 63];
    out += t[v >> 6 & 63];
    out += t[v & 63];
  }
  if (i < in.size()) {
    std::uint32_t v = static_cast<std::uint32_t>(static_cast<unsigned char>(in[i])) << 16;
    if (i + 1 < in.size()) v |= static_cast<std::uint32_t>(static_cast<unsigned char>(in[i + 1])) << 8;
    out += t[v >> 18 & 63];
    out += t[v >> 12 & 63];
    out += i + 1 < in.size() ? t[v >> 6 & 63] : '=';
    out += '=';
  }
  return out;
}

nlohmann::json event_json(const EventView& e) {
  nlohmann::json j;
  j["topic"] = std::string(e.topic());
  j["partition"] = e.partition();
  j["position"] = e.position();
  j["id"] = e.id().to_string();
  j["time"] = format_time_ns(e.time_ns());
  j["time_ns"] = e.time_ns();
  j["type"] = std::string(e.type());
  j["source"] = std::string(e.source());
  const std::string key(e.key());
  if (valid_utf8(key)) j["key"] = key;
  else j["key_base64"] = base64(key);
  j["correlation_id"] = std::string(e.correlation_id());
  j["causation_id"] = std::string(e.causation_id());
  j["content_type"] = std::string(e.content_type());
  nlohmann::json hs = nlohmann::json::object();
  for (std::size_t i = 0; i < e.header_count(); ++i) {
    const Header h = e.header_at(i);
    const std::string v(h.value);
    // The first header of a name wins, as in EventView::header and --exec's
    // HERALD_H_* variables.
    if (hs.contains(std::string(h.name))) continue;
    hs[std::string(h.name)] = valid_utf8(v) ? nlohmann::json(v) : nlohmann::json(base64(v));
  }
  j["headers"] = std::move(hs);
  j["delivery"] = e.delivery();
  const std::string_view data = e.payload_text();
  if (valid_utf8(data)) j["data"] = std::string(data);
  else j["data_base64"] = base64(data);
  return j;
}

void print_json_line(const nlohmann::json& j, bool flush) {
  const std::string s = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  std::fwrite(s.data(), 1, s.size(), stdout);
  std::fputc('\n', stdout);
  if (flush) std::fflush(stdout);
}

nlohmann::json group_stats_json(const GroupStats& g) {
  nlohmann::json j = {{"name", g.name},
                      {"policy", policy_name(g.policy)},
                      {"gating", g.gating},
                      {"internal", g.internal},
                      {"members", g.members},
                      {"max_deliveries", g.max_deliveries},
                      {"demotions", g.demotions},
                      {"promotions", g.promotions},
                      {"rebalances", g.rebalances},
                      {"lag_bytes", g.lag_bytes},
                      {"lag_events", g.lag_events},
                      {"lag_seconds", g.lag_seconds},
                      {"gap_bytes", g.gap_bytes},
                      {"overwritten_bytes", g.overwritten_bytes},
                      {"gaps", g.gaps},
                      {"dead_letters", g.dead_letters},
                      {"dlq_topic", g.dlq_topic},
                      {"dlq_depth", g.dlq_depth}};
  nlohmann::json ps = nlohmann::json::array();
  for (const GroupPartitionStats& p : g.partitions)
    ps.push_back({{"partition", p.partition},
                  {"committed", p.committed},
                  {"generation", p.generation},
                  {"lag_bytes", p.lag_bytes},
                  {"lag_events", p.lag_events},
                  {"lag_seconds", p.lag_seconds},
                  {"gate_floor", p.gate_floor},
                  {"gap_bytes", p.gap_bytes},
                  {"overwritten_bytes", p.overwritten_bytes},
                  {"gaps", p.gaps},
                  {"dead_letters", p.dead_letters},
                  {"dlq_stalled", p.dlq_stalled},
                  {"owner_pid", p.owner_pid},
                  {"inflight_position", p.inflight_position},
                  {"inflight_deliveries", p.inflight_deliveries}});
  j["partitions"] = std::move(ps);
  return j;
}

nlohmann::json topic_stats_json(const TopicStats& t) {
  nlohmann::json j = {{"name", t.name},
                      {"incarnation", t.incarnation},
                      {"partitions", t.partitions},
                      {"ring_bytes", t.ring_bytes},
                      {"max_event", t.max_event},
                      {"default_policy", policy_name(t.default_policy)},
                      {"single_producer", t.single_producer},
                      {"dead_letter_topic", t.dead_letter_topic},
                      {"created", format_time_ns(t.created_ns)},
                      {"created_ns", t.created_ns},
                      {"segment_bytes", t.segment_bytes},
                      {"events", t.events},
                      {"bytes", t.bytes},
                      {"aborted_records", t.aborted_records},
                      {"backpressure_waits", t.backpressure_waits}};
  if (!t.error.empty()) j["error"] = t.error;
  nlohmann::json parts = nlohmann::json::array();
  for (const PartitionStats& p : t.partition_stats) {
    nlohmann::json stalled = nlohmann::json::array();
    for (const StalledClaim& c : p.stalled)
      stalled.push_back({{"pid", c.pid},
                         {"tid", c.tid},
                         {"owner_alive", c.owner_alive},
                         {"position", c.position},
                         {"bytes", c.bytes},
                         {"held_ns", c.held_ns}});
    parts.push_back({{"partition", p.partition},
                     {"tail", p.tail},
                     {"beginning", p.beginning},
                     {"beginning_time_ns", p.beginning_time_ns},
                     {"closed", p.closed},
                     {"events", p.events},
                     {"bytes", p.bytes},
                     {"claims", p.claims},
                     {"backpressure_waits", p.backpressure_waits},
                     {"aborted_records", p.aborted_records},
                     {"repaired_claims", p.repaired_claims},
                     {"last_repair_ns", p.last_repair_ns},
                     {"max_repair_ns", p.max_repair_ns},
                     {"ignored_gates", p.ignored_gates},
                     {"stalled_claims_reported", p.stalled_claims_reported},
                     {"parked_producers", p.parked_producers},
                     {"parked_readers", p.parked_readers},
                     {"stalled_claims", std::move(stalled)}});
  }
  j["partition_stats"] = std::move(parts);
  nlohmann::json groups = nlohmann::json::array();
  for (const GroupStats& g : t.groups) groups.push_back(group_stats_json(g));
  j["groups"] = std::move(groups);
  nlohmann::json members = nlohmann::json::array();
  for (const MemberStats& m : t.members)
    members.push_back({{"reader_slot", m.reader_slot},
                       {"pid", m.pid},
                       {"alive", m.alive},
                       {"stopped", m.stopped},
                       {"group", m.group},
                       {"member_id", m.member_id},
                       {"partitions", m.partitions},
                       {"in_poll", m.in_poll},
                       {"poll_count", m.poll_count},
                       {"since_last_poll_ns", m.since_last_poll_ns},
                       {"events", m.events}});
  j["members"] = std::move(members);
  nlohmann::json producers = nlohmann::json::array();
  for (const ProducerSlotStats& p : t.producers)
    producers.push_back({{"slot", p.slot},
                         {"pid", p.pid},
                         {"tid", p.tid},
                         {"alive", p.alive},
                         {"stopped", p.stopped},
                         {"producer_id", p.producer_id},
                         {"events", p.events},
                         {"bytes", p.bytes},
                         {"claims", p.claims},
                         {"backpressure_waits", p.backpressure_waits}});
  j["producers"] = std::move(producers);
  return j;
}

nlohmann::json bus_stats_json(const BusStats& s) {
  nlohmann::json topics = nlohmann::json::array();
  for (const TopicStats& t : s.topics) topics.push_back(topic_stats_json(t));
  return {{"bus", s.bus},
          {"time", format_time_ns(s.time_ns)},
          {"time_ns", s.time_ns},
          {"daemon",
           {{"pid", s.daemon.pid}, {"alive", s.daemon.alive}, {"stopped", s.daemon.stopped}, {"epoch", s.daemon.epoch}}},
          {"topics", std::move(topics)}};
}

// ---- signals ----------------------------------------------------------------------

namespace {
std::atomic<bool> g_stop{false};
void on_stop_signal(int) { g_stop.store(true, std::memory_order_relaxed); }
}  // namespace

Result<void> read_to_tails(Consumer& c, const std::vector<std::uint64_t>& tails,
                           const std::function<void(const EventView&)>& on, std::chrono::milliseconds look) {
  // A partition the caller did not see (the topic re-created meanwhile
  // with more): read as far as it goes.
  auto tail_of = [&](std::uint32_t p) { return p < tails.size() ? tails[p] : UINT64_MAX; };
  auto caught_up = [&] {
    for (std::uint32_t p : c.assignment())
      if (c.position(p) < tail_of(p)) return false;
    return true;
  };
  for (int empty = 0; !caught_up() && empty < 20 && !stop_requested();) {
    auto n = c.poll(
        [&](const EventView& e) {
          if (e.position() < tail_of(e.partition())) on(e);  // later ones arrived after the caller looked
        },
        4096, look);
    if (!n) return fail(std::move(n).error());
    empty = *n == 0 ? empty + 1 : 0;
  }
  return {};
}

void install_stop_signals() {
  struct sigaction sa{};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

bool stop_requested() noexcept { return g_stop.load(std::memory_order_relaxed); }

}  // namespace herald::tools
