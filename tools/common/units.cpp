#include "tools/common/units.hpp"

#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <ctime>

namespace herald::tools {

namespace {

std::string quoted(std::string_view s) { return "'" + std::string(s) + "'"; }

// Splits "1.5MiB" into 1.5 and "MiB". Only digits and one '.' make the number.
bool split_number(std::string_view text, double* number, std::string_view* unit, bool* integral) {
  std::size_t i = 0;
  bool dot = false, digits = false;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || (text[i] == '.' && !dot))) {
    if (text[i] == '.') dot = true;
    else digits = true;
    ++i;
  }
  if (!digits) return false;
  const std::string num(text.substr(0, i));
  char* end = nullptr;
  *number = std::strtod(num.c_str(), &end);
  if (end != num.c_str() + num.size() || !std::isfinite(*number)) return false;
  *unit = text.substr(i);
  *integral = !dot;
  return true;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace

Parsed<std::uint64_t> parse_size(std::string_view text) {
  Parsed<std::uint64_t> r;
  double n = 0;
  std::string_view unit;
  bool integral = true;
  const std::string form = " (expected bytes or a binary size such as 4096, 64K, 16M, 1G)";
  if (!split_number(text, &n, &unit, &integral)) {
    r.error = "size " + quoted(text) + " is not a number" + form;
    return r;
  }
  const std::string u = lower(unit);
  double mult = 0;
  if (u.empty() || u == "b") mult = 1;
  else if (u == "k" || u == "kb" || u == "kib") mult = 1024.0;
  else if (u == "m" || u == "mb" || u == "mib") mult = 1024.0 * 1024;
  else if (u == "g" || u == "gb" || u == "gib") mult = 1024.0 * 1024 * 1024;
  else if (u == "t" || u == "tb" || u == "tib") mult = 1024.0 * 1024 * 1024 * 1024;
  if (mult == 0) {
    r.error = "size " + quoted(text) + " has an unknown unit " + quoted(unit) + form;
    return r;
  }
  const double v = n * mult;
  if (v >= 18446744073709551615.0 || v != std::floor(v)) {
    r.error = "size " + quoted(text) + " is not a whole number of bytes" + form;
    return r;
  }
  r.value = static_cast<std::uint64_t>(v);
  return r;
}

Parsed<double> parse_rate(std::string_view text) {
  Parsed<double> r;
  std::string_view t = text;
  if (t.size() > 2 && t.substr(t.size() - 2) == "/s") t.remove_suffix(2);
  double n = 0;
  std::string_view unit;
  bool integral = true;
  const std::string form = " (expected events per second such as 500, 100k, 1.5M)";
  if (!split_number(t, &n, &unit, &integral)) {
    r.error = "rate " + quoted(text) + " is not a number" + form;
    return r;
  }
  const std::string u = lower(unit);
  double mult = 0;
  if (u.empty()) mult = 1;
  else if (u == "k") mult = 1e3;
  else if (u == "m") mult = 1e6;
  else if (u == "g") mult = 1e9;
  if (mult == 0) {
    r.error = "rate " + quoted(text) + " has an unknown unit " + quoted(unit) + form;
    return r;
  }
  r.value = n * mult;
  return r;
}

Parsed<std::uint64_t> parse_duration_ns(std::string_view text) {
  Parsed<std::uint64_t> r;
  double n = 0;
  std::string_view unit;
  bool integral = true;
  const std::string form = " (expected a duration such as 5s, 100ms, 250us, 2m, 1h)";
  if (!split_number(text, &n, &unit, &integral)) {
    r.error = "duration " + quoted(text) + " is not a number" + form;
    return r;
  }
  const std::string u = lower(unit);
  double mult = 0;
  if (u == "ns") mult = 1;
  else if (u == "us" || u == "µs") mult = 1e3;
  else if (u == "ms") mult = 1e6;
  else if (u == "s") mult = 1e9;
  else if (u == "m" || u == "min") mult = 60e9;
  else if (u == "h") mult = 3600e9;
  else if (u.empty() && n == 0) mult = 1;
  if (mult == 0) {
    r.error = u.empty() ? "duration " + quoted(text) + " has no unit" + form
                        : "duration " + quoted(text) + " has an unknown unit " + quoted(unit) + form;
    return r;
  }
  const double v = n * mult;
  if (v >= 9.2e18) {
    r.error = "duration " + quoted(text) + " is too long" + form;
    return r;
  }
  r.value = static_cast<std::uint64_t>(std::llround(v));
  return r;
}

Parsed<std::uint64_t> parse_time_ns(std::string_view text, std::uint64_t now_ns) {
  Parsed<std::uint64_t> r;
  const std::string form = " (expected RFC 3339 such as 2024-05-01T12:00:00Z, or a relative time such as -5m)";
  if (!text.empty() && text[0] == '-') {
    auto d = parse_duration_ns(text.substr(1));
    if (!d.ok()) {
      r.error = "time " + quoted(text) + ": " + d.error;
      return r;
    }
    r.value = d.value > now_ns ? 0 : now_ns - d.value;
    return r;
  }
  // YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM); 't', 'z' and a space are accepted too.
  const std::string s(text);
  int Y = 0, M = 0, D = 0, h = 0, m = 0, sec = 0, used = 0;
  char sep = 0;
  if (std::sscanf(s.c_str(), "%4d-%2d-%2d%c%2d:%2d:%2d%n", &Y, &M, &D, &sep, &h, &m, &sec, &used) != 7 ||
      (sep != 'T' && sep != 't' && sep != ' ') || M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 ||
      sec > 60) {
    r.error = "time " + quoted(text) + " is not RFC 3339 or relative" + form;
    return r;
  }
  std::size_t i = static_cast<std::size_t>(used);
  std::uint64_t frac_ns = 0;
  if (i < s.size() && s[i] == '.') {
    ++i;
    std::uint64_t scale = 100'000'000;
    const std::size_t start = i;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) {
      frac_ns += static_cast<std::uint64_t>(s[i] - '0') * scale;
      scale /= 10;
      ++i;
    }
    if (i == start) {
      r.error = "time " + quoted(text) + " has an empty fraction" + form;
      return r;
    }
  }
  long offset_s = 0;
  if (i < s.size() && (s[i] == 'Z' || s[i] == 'z')) {
    ++i;
  } else if (i < s.size() && (s[i] == '+' || s[i] == '-')) {
    int oh = 0, om = 0, n2 = 0;
    if (std::sscanf(s.c_str() + i + 1, "%2d:%2d%n", &oh, &om, &n2) != 2 || n2 != 5 || oh > 23 || om > 59) {
      r.error = "time " + quoted(text) + " has a bad UTC offset" + form;
      return r;
    }
    offset_s = (s[i] == '+' ? 1 : -1) * (oh * 3600L + om * 60L);
    i += 6;
  } else {
    r.error = "time " + quoted(text) + " needs a time zone (Z or +HH:MM)" + form;
    return r;
  }
  if (i != s.size()) {
    r.error = "time " + quoted(text) + " has trailing characters" + form;
    return r;
  }
  tm t{};
  t.tm_year = Y - 1900;
  t.tm_mon = M - 1;
  t.tm_mday = D;
  t.tm_hour = h;
  t.tm_min = m;
  t.tm_sec = sec;
  const time_t secs = timegm(&t) - offset_s;
  if (secs < 0) {
    r.error = "time " + quoted(text) + " is before 1970" + form;
    return r;
  }
  r.value = static_cast<std::uint64_t>(secs) * 1'000'000'000ull + frac_ns;
  return r;
}

Parsed<PartPos> parse_part_pos(std::string_view text) {
  Parsed<PartPos> r;
  const auto colon = text.find(':');
  const std::string form = " (expected PARTITION:POSITION such as 2:4096)";
  if (colon == std::string_view::npos || colon == 0 || colon + 1 == text.size()) {
    r.error = "position " + quoted(text) + " is not PARTITION:POSITION" + form;
    return r;
  }
  const std::string_view a = text.substr(0, colon), b = text.substr(colon + 1);
  auto ra = std::from_chars(a.data(), a.data() + a.size(), r.value.partition);
  auto rb = std::from_chars(b.data(), b.data() + b.size(), r.value.position);
  if (ra.ec != std::errc() || ra.ptr != a.data() + a.size() || rb.ec != std::errc() || rb.ptr != b.data() + b.size()) {
    r.error = "position " + quoted(text) + " is not two whole numbers" + form;
    return r;
  }
  return r;
}

Parsed<Where> parse_where(std::string_view text, std::uint64_t now_ns) {
  Parsed<Where> r;
  const std::string t = lower(text);
  if (t == "earliest" || t == "beginning") {
    r.value.kind = Where::Kind::kEarliest;
    return r;
  }
  if (t == "latest" || t == "end") {
    r.value.kind = Where::Kind::kLatest;
    return r;
  }
  const bool looks_time = !text.empty() && (text[0] == '-' || text.find('T') != std::string_view::npos ||
                                            text.find('t') != std::string_view::npos || text.find('-') == 4);
  if (!looks_time && text.find(':') != std::string_view::npos) {
    auto p = parse_part_pos(text);
    if (!p.ok()) {
      r.error = p.error;
      return r;
    }
    r.value.kind = Where::Kind::kPosition;
    r.value.at = p.value;
    return r;
  }
  auto tm = parse_time_ns(text, now_ns);
  if (!tm.ok()) {
    r.error = "'" + std::string(text) +
              "' is not earliest, latest, beginning, end, PARTITION:POSITION (2:4096), an RFC 3339 time "
              "(2024-05-01T12:00:00Z) or a relative time (-5m)";
    return r;
  }
  r.value.kind = Where::Kind::kTime;
  r.value.time_ns = tm.value;
  return r;
}

// Each unit is chosen by the value as it will print, after rounding: a
// value just under a unit's limit printed "1024.0 KiB", "1000.0k", "60.00s".
std::string format_bytes(double b) {
  char buf[32];
  const double kib = b / 1024, mib = kib / 1024;
  if (b < 1023.5) std::snprintf(buf, sizeof buf, "%.0f B", b);
  else if (kib < 1023.95) std::snprintf(buf, sizeof buf, "%.1f KiB", kib);
  else if (mib < 1023.95) std::snprintf(buf, sizeof buf, "%.1f MiB", mib);
  else std::snprintf(buf, sizeof buf, "%.2f GiB", mib / 1024);
  return buf;
}

std::string format_count(double v) {
  char buf[32];
  if (v < 9999.5) std::snprintf(buf, sizeof buf, "%.0f", v);
  else if (v < 999'950) std::snprintf(buf, sizeof buf, "%.1fk", v / 1e3);
  else if (v < 999'995'000) std::snprintf(buf, sizeof buf, "%.2fM", v / 1e6);
  else std::snprintf(buf, sizeof buf, "%.2fG", v / 1e9);
  return buf;
}

std::string format_duration_ns(std::uint64_t ns) {
  char buf[32];
  if (ns < 1000) {
    std::snprintf(buf, sizeof buf, "%lluns", static_cast<unsigned long long>(ns));
  } else if (ns < 999'950) {
    std::snprintf(buf, sizeof buf, "%.1fus", static_cast<double>(ns) / 1e3);
  } else if (ns < 999'995'000) {
    std::snprintf(buf, sizeof buf, "%.2fms", static_cast<double>(ns) / 1e6);
  } else if (ns < 59'995'000'000ull) {
    std::snprintf(buf, sizeof buf, "%.2fs", static_cast<double>(ns) / 1e9);
  } else {
    // Whole seconds, rounded (59.996 s is 1m00s, not 0m59s).
    const unsigned long long s = (ns + 500'000'000ull) / 1'000'000'000ull;
    if (s < 3600) std::snprintf(buf, sizeof buf, "%llum%02llus", s / 60, s % 60);
    else std::snprintf(buf, sizeof buf, "%lluh%02llum", s / 3600, s / 60 % 60);
  }
  return buf;
}

std::string terminal_text(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  auto escape = [&out](unsigned char c) {
    static const char* hex = "0123456789abcdef";
    out += "\\x";
    out += hex[c >> 4];
    out += hex[c & 15];
  };
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      if ((c >= 0x20 && c != 0x7f) || c == '\t') out += static_cast<char>(c);
      else escape(c);
      ++i;
      continue;
    }
    // A whole, well-formed multi-byte sequence is copied; a C1 control
    // (U+0080..U+009F, C2 80..C2 9F) or a malformed byte is escaped, one
    // byte at a time.
    std::size_t n = (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    bool ok = n != 0 && i + n <= s.size() && !(n == 2 && c < 0xC2);
    for (std::size_t k = 1; ok && k < n; ++k) ok = (static_cast<unsigned char>(s[i + k]) & 0xC0) == 0x80;
    if (ok && c == 0xC2 && static_cast<unsigned char>(s[i + 1]) < 0xA0) ok = false;
    if (!ok) {
      escape(c);
      ++i;
      continue;
    }
    out.append(s.substr(i, n));
    i += n;
  }
  return out;
}

std::string counted(std::uint64_t n, std::string_view one, std::string_view many) {
  std::string s = std::to_string(n) + " ";
  if (n == 1) {
    s += one;
  } else if (!many.empty()) {
    s += many;
  } else {
    s += one;
    s += 's';
  }
  return s;
}

std::string format_time_ns(std::uint64_t ns) {
  const time_t secs = static_cast<time_t>(ns / 1'000'000'000ull);
  tm t{};
  gmtime_r(&secs, &t);
  char buf[48];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03lluZ", t.tm_year + 1900, t.tm_mon + 1, t.tm_mday,
                t.tm_hour, t.tm_min, t.tm_sec, static_cast<unsigned long long>(ns / 1'000'000 % 1000));
  return buf;
}

}  // namespace herald::tools
