// herald publish TOPIC [DATA]: one event (DATA), or one event per stdin line
// (plain, or --jsonl objects). The stdin path is built for throughput: a
// large read buffer, Message views straight into it (no copy per line), and
// publish_batch (one claim per partition and ring/4 bytes). Under
// backpressure it waits and never drops a line; --deadline bounds each wait.
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <deque>
#include <optional>

#include "tools/cli.hpp"

namespace herald::tools {

namespace {

struct PublishArgs {
  std::string topic;
  std::optional<std::string> data;
  std::string key, type, source, correlation_id, causation_id, content_type;
  std::vector<std::string> headers;  // K=V
  std::int32_t partition = -1;
  bool jsonl = false;
  std::uint64_t deadline_ns = 0;  // 0: wait as long as it takes
  std::size_t batch = 4096;
};

std::uint64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<std::uint64_t>(ts.tv_nsec);
}

std::string decode_base64(std::string_view in, bool* ok) {
  auto val = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
  };
  std::string out;
  std::uint32_t acc = 0;
  int bits = 0;
  *ok = true;
  for (char c : in) {
    if (c == '=' || c == '\n' || c == '\r') continue;
    const int v = val(c);
    if (v < 0) {
      *ok = false;
      return {};
    }
    acc = acc << 6 | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>(acc >> bits & 0xff);
    }
  }
  return out;
}

class Publisher {
 public:
  Publisher(const Context& ctx, const PublishArgs& a, Producer& p) : ctx_(ctx), a_(a), p_(p) {
    for (const std::string& h : a.headers) {  // checked by publish(): NAME=VALUE, each name once
      const auto eq = h.find('=');
      header_store_.emplace_back(h.substr(0, eq), h.substr(eq + 1));
    }
    for (const auto& [n, v] : header_store_) headers_.push_back({n, v});
  }

  Message base() const {
    Message m;
    m.key = a_.key;
    m.type = a_.type;
    m.source = a_.source;
    m.correlation_id = a_.correlation_id;
    m.causation_id = a_.causation_id;
    m.content_type = a_.content_type;
    m.headers = headers_;
    m.partition = a_.partition;
    return m;
  }

  int one(const std::string& data) {
    Message m = base();
    m.payload = Bytes(data);
    for (;;) {
      auto r = p_.publish(m);
      if (!r && r.error().code == Errc::kBackPressured && a_.deadline_ns == 0) continue;  // wait on
      if (!r) return fail_with(r.error(), 0);
      if (ctx_.json) {
        print_json_line({{"topic", a_.topic}, {"partition", r->partition}, {"position", r->position},
                         {"id", r->id.to_string()}});
      } else {
        std::printf("partition %u position %llu id %s\n", r->partition, static_cast<unsigned long long>(r->position),
                    r->id.to_string().c_str());
      }
      return 0;
    }
  }

  int stream() {
    std::vector<char> buf(4u << 20);
    std::size_t have = 0;
    const std::uint64_t start = now_ns();
    next_progress_ = start + 500'000'000ull;
    bool eof = false;
    while (!eof) {
      if (have == buf.size()) buf.resize(buf.size() * 2);  // one line longer than the buffer
      const ssize_t n = ::read(STDIN_FILENO, buf.data() + have, buf.size() - have);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return runtime_error(std::string("read stdin: ") + std::strerror(errno));
      if (n == 0) eof = true;
      have += static_cast<std::size_t>(n);
      std::size_t end = have;
      if (!eof) {
        const void* nl = memrchr(buf.data(), '\n', have);
        if (nl == nullptr) continue;  // no whole line yet
        end = static_cast<std::size_t>(static_cast<const char*>(nl) - buf.data()) + 1;
      }
      if (int rc = lines(std::string_view(buf.data(), end)); rc != 0) return rc;
      std::memmove(buf.data(), buf.data() + end, have - end);
      have -= end;
    }
    const double secs = static_cast<double>(now_ns() - start) / 1e9;
    const double rate = secs > 0 ? static_cast<double>(published_) / secs : 0;
    if (ctx_.tty) std::fprintf(stderr, "\r\033[K");
    if (ctx_.json) {
      print_json_line({{"topic", a_.topic}, {"published", published_}, {"seconds", secs}, {"events_per_s", rate}});
    } else {
      std::printf("published %s to '%s' in %.3fs (%s events/s)\n", counted(published_, "event").c_str(),
                  a_.topic.c_str(), secs, format_count(rate).c_str());
    }
    return 0;
  }

 private:
  // Publishes every line of `text` (whole lines; the last may lack '\n').
  int lines(std::string_view text) {
    msgs_.clear();
    arena_.clear();
    arena_headers_.clear();
    std::size_t pos = 0;
    const std::uint64_t first_line = line_no_ + 1;
    while (pos < text.size()) {
      const void* nl = std::memchr(text.data() + pos, '\n', text.size() - pos);
      const std::size_t e = nl ? static_cast<std::size_t>(static_cast<const char*>(nl) - text.data()) : text.size();
      std::string_view line = text.substr(pos, e - pos);
      pos = e + 1;
      ++line_no_;
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (a_.jsonl) {
        if (line.find_first_not_of(" \t") == std::string_view::npos) continue;
        if (std::string bad = json_line(line); !bad.empty()) {
          // The lines before it are published first, as in plain mode, and
          // the message says how many went out.
          if (int rc = flush(first_line); rc != 0) return rc;
          return runtime_error("line " + std::to_string(line_no_) + ": " + bad + " (" + std::to_string(published_) +
                               " events published before it)");
        }
      } else {
        Message m = base();
        m.payload = Bytes(line);
        msgs_.push_back(m);
      }
    }
    return flush(first_line);
  }

  // Parses one --jsonl line into msgs_; an error message when the line is
  // not an event (nothing of it is queued then).
  std::string json_line(std::string_view line) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded()) {
      try {
        const auto again = nlohmann::json::parse(line);  // again, for the parser's reason
        if (!again.is_object()) return "not a JSON object (--jsonl expects one per line)";
      } catch (const nlohmann::json::exception& e) {
        return std::string("not valid JSON (") + e.what() + ")";
      }
      return "not valid JSON";
    }
    if (!j.is_object()) return "not a JSON object (--jsonl expects one per line)";
    Message m = base();
    auto str = [&](const char* k, std::string_view* out) -> bool {
      auto it = j.find(k);
      if (it == j.end() || it->is_null()) return true;
      if (!it->is_string()) return false;
      arena_.push_back(it->get<std::string>());
      *out = arena_.back();
      return true;
    };
    if (!(str("key", &m.key) && str("type", &m.type) && str("source", &m.source) &&
          str("correlation_id", &m.correlation_id) && str("causation_id", &m.causation_id) &&
          str("content_type", &m.content_type)))
      return "key, type, source, correlation_id, causation_id and content_type must be strings";
    const auto d = j.find("data");
    const bool has_data = d != j.end() && !d->is_null();
    std::string_view data;
    if (auto it = j.find("data_base64"); it != j.end() && !it->is_null()) {
      if (has_data) return "give data or data_base64, not both";
      if (!it->is_string()) return "data_base64 must be a string";
      bool b64 = true;
      arena_.push_back(decode_base64(it->get<std::string>(), &b64));
      if (!b64) return "data_base64 is not base64";
      data = arena_.back();
    } else if (has_data) {
      // A string is the payload itself; any other value is published as
      // its JSON text.
      arena_.push_back(d->is_string() ? d->get<std::string>() : d->dump());
      data = arena_.back();
    }
    m.payload = Bytes(data);
    if (auto it = j.find("partition"); it != j.end() && !it->is_null()) {
      if (!it->is_number_integer() || it->get<std::int64_t>() < 0 || it->get<std::int64_t>() > INT32_MAX ||
          (it->is_number_unsigned() && it->get<std::uint64_t>() > static_cast<std::uint64_t>(INT32_MAX)))
        return "partition must be a whole number from 0 (leave it out to partition by key), not " + it->dump();
      m.partition = static_cast<std::int32_t>(it->get<std::int64_t>());
    }
    if (auto it = j.find("headers"); it != j.end() && !it->is_null()) {
      if (!it->is_object()) return "headers must be an object of strings";
      if (!it->empty()) {
        // The line's headers, then the --header ones it does not name.
        auto& hs = arena_headers_.emplace_back();
        for (const auto& [k, v] : it->items()) {
          if (!v.is_string()) return "header '" + k + "' must be a string, not " + v.dump();
          arena_.push_back(k);
          const std::string_view name = arena_.back();
          arena_.push_back(v.get<std::string>());
          hs.push_back({name, arena_.back()});
        }
        for (const Header& h : headers_)
          if (!it->contains(std::string(h.name))) hs.push_back(h);
        m.headers = hs;
      }
    }
    msgs_.push_back(m);
    return {};
  }

  // Publishes msgs_ in batches, waiting under backpressure.
  int flush(std::uint64_t first_line) {
    std::size_t done = 0;
    while (done < msgs_.size()) {
      const std::size_t n = std::min(a_.batch, msgs_.size() - done);
      auto r = p_.publish_batch(std::span<const Message>(msgs_.data() + done, n));
      if (r) {
        done += r->published;
        published_ += r->published;
        if (r->error && !(r->error->code == Errc::kBackPressured && a_.deadline_ns == 0))
          return fail_with(*r->error, first_line + done);
      } else if (r.error().code == Errc::kBackPressured && a_.deadline_ns == 0) {
        // keep waiting: never drop a line
      } else if (r.error().code == Errc::kBackPressured || r.error().code == Errc::kClosed) {
        return fail_with(r.error(), first_line + done);
      } else {
        // Bad input somewhere in the batch (nothing of it was published):
        // publish one by one to name the line.
        for (std::size_t i = done; i < done + n; ++i) {
          auto one = p_.publish(msgs_[i]);
          if (!one) return fail_with(one.error(), line_of(first_line, i));
          ++published_;
        }
        done += n;
      }
      progress();
    }
    return 0;
  }

  // With --jsonl blank lines are skipped, so a message index is a line
  // number only approximately; plain input maps exactly.
  std::uint64_t line_of(std::uint64_t first_line, std::size_t index) const { return first_line + index; }

  int fail_with(const Error& e, std::uint64_t line) {
    std::string where = line != 0 ? "line " + std::to_string(line) + ": " : "";
    std::string msg = where + e.detail + " (" + std::to_string(published_) + " events published before it)";
    // (A back-pressure error already says which deadline and where to look.)
    if (e.code == Errc::kTooLarge) msg += "; create the topic with a larger --max-event";
    return runtime_error(Error{e.code, msg});
  }

  void progress() {
    if (!ctx_.tty) return;
    const std::uint64_t t = now_ns();
    if (t < next_progress_) return;
    next_progress_ = t + 500'000'000ull;
    std::fprintf(stderr, "\r\033[K  %llu events published", static_cast<unsigned long long>(published_));
  }

  const Context& ctx_;
  const PublishArgs& a_;
  Producer& p_;
  std::deque<std::pair<std::string, std::string>> header_store_;
  std::vector<Header> headers_;
  std::vector<Message> msgs_;
  std::deque<std::string> arena_;                  // --jsonl strings of the current chunk
  std::deque<std::vector<Header>> arena_headers_;  // --jsonl headers of the current chunk
  std::uint64_t published_ = 0;
  std::uint64_t line_no_ = 0;
  std::uint64_t next_progress_ = 0;
};

int publish(const Context& ctx, const PublishArgs& a) {
  if (a.data && a.jsonl) usage_error("--jsonl reads stdin; give either DATA or --jsonl");
  std::vector<std::string_view> names;
  for (const std::string& h : a.headers) {
    const auto eq = h.find('=');
    if (eq == std::string::npos || eq == 0) usage_error("--header '" + h + "' is not NAME=VALUE");
    const std::string_view name = std::string_view(h).substr(0, eq);
    if (std::find(names.begin(), names.end(), name) != names.end())
      usage_error("--header '" + std::string(name) + "' is given twice");
    names.push_back(name);
  }
  auto bus = ctx.attach();
  if (!bus) return runtime_error(bus.error());
  ProducerOptions po;
  // Each wait under backpressure: --deadline, else in slices of 1 s, forever.
  po.deadline = std::chrono::nanoseconds(a.deadline_ns != 0 ? a.deadline_ns : 1'000'000'000ull);
  po.source = a.source.empty() ? "herald-cli" : a.source;
  auto p = bus->producer(a.topic, po);
  if (!p) {
    if (p.error().code == Errc::kNotFound)
      return runtime_error(p.error().detail + "; create it with 'herald topic create " + a.topic + "'");
    return runtime_error(p.error(), "publish to '" + a.topic + "'");
  }
  if (a.partition >= 0 && static_cast<std::uint32_t>(a.partition) >= p->partitions())
    usage_error("--partition " + std::to_string(a.partition) + ": topic '" + a.topic + "' has " +
                counted(p->partitions(), "partition"));
  Publisher pub(ctx, a, *p);
  if (a.data) return pub.one(*a.data);
  if (::isatty(STDIN_FILENO) == 1 && ctx.tty)
    std::fprintf(stderr, "reading events from stdin, one per line (Ctrl-D ends)\n");
  return pub.stream();
}

}  // namespace

void add_publish_command(CLI::App& app, Context& ctx) {
  static PublishArgs a;
  auto* cmd = app.add_subcommand("publish", "publish DATA as one event, or one event per stdin line");
  cmd->add_option("TOPIC", a.topic, "topic")->required();
  cmd->add_option("DATA", a.data, "the payload of one event (without it: stdin, one event per line)");
  cmd->add_option("--key", a.key, "partitioning key (same key, same partition, same order)");
  cmd->add_option("--type", a.type, "event type, e.g. OrderPlaced");
  cmd->add_option("--source", a.source, "event source (default: herald-cli)");
  cmd->add_option("--header", a.headers, "a header NAME=VALUE (repeatable)")->allow_extra_args(false);
  cmd->add_option("--correlation-id", a.correlation_id, "correlation id");
  cmd->add_option("--causation-id", a.causation_id, "causation id");
  cmd->add_option("--content-type", a.content_type, "content type, e.g. application/json");
  cmd->add_option("--partition", a.partition, "publish to this partition (default: by key)")->check(CLI::Range(0, 255));
  cmd->add_flag("--jsonl", a.jsonl,
                "stdin lines are JSON objects: key, type, source, headers, correlation_id, causation_id, "
                "content_type, data (UTF-8) or data_base64");
  cmd->add_option("--deadline", a.deadline_ns, "give up when one wait under backpressure lasts longer (default: wait)")
      ->transform(duration_arg());
  cmd->add_option("--batch", a.batch, "events per publish_batch call")->check(CLI::Range(1, 1 << 20))->capture_default_str();
  ctx.on(cmd, [&ctx] { return publish(ctx, a); });
}

}  // namespace herald::tools
