#include "daemon/metrics.hpp"

#include <httplib.h>

#include <cstdio>
#include <functional>
#include <map>
#include <vector>

namespace herald::daemon {

namespace {

std::string escape(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

// Samples grouped by metric family, so each family's HELP/TYPE comes once.
class Exposition {
 public:
  void add(const char* name, const char* type, const char* help, const std::string& labels, double value) {
    Family& f = families_[name];
    if (f.type.empty()) {
      f.type = type;
      f.help = help;
      order_.push_back(name);
    }
    char num[64];
    std::snprintf(num, sizeof num, "%.17g", value);
    f.samples += std::string(name) + (labels.empty() ? "" : "{" + labels + "}") + " " + num + "\n";
  }
  [[nodiscard]] std::string text() const {
    std::string out;
    for (const std::string& n : order_) {
      const Family& f = families_.at(n);
      out += "# HELP " + n + " " + f.help + "\n# TYPE " + n + " " + f.type + "\n" + f.samples;
    }
    return out;
  }

 private:
  struct Family {
    std::string type, help, samples;
  };
  std::map<std::string, Family> families_;
  std::vector<std::string> order_;
};

std::string lbl(std::initializer_list<std::pair<const char*, std::string>> kv) {
  std::string s;
  for (const auto& [k, v] : kv) s += (s.empty() ? "" : ",") + std::string(k) + "=\"" + escape(v) + "\"";
  return s;
}

double d(std::uint64_t v) { return static_cast<double>(v); }

}  // namespace

std::string render_prometheus(const BusStats& s) {
  Exposition e;
  const std::string bus = lbl({{"bus", s.bus}});
  e.add("herald_daemon_up", "gauge", "1 if the bus's heraldd is running", bus, s.daemon.alive ? 1 : 0);
  e.add("herald_daemon_epoch", "gauge", "daemon starts on this bus", bus, d(s.daemon.epoch));
  e.add("herald_topics", "gauge", "topics on the bus (dead-letter topics included)", bus, d(s.topics.size()));
  for (const TopicStats& t : s.topics) {
    const std::string tl = lbl({{"bus", s.bus}, {"topic", t.name}});
    e.add("herald_topic_readable", "gauge", "1 if the topic's segments validated", tl, t.error.empty() ? 1 : 0);
    e.add("herald_topic_partitions", "gauge", "partitions of the topic", tl, t.partitions);
    e.add("herald_topic_ring_bytes", "gauge", "ring size per partition", tl, d(t.ring_bytes));
    std::uint32_t live_producers = 0;
    for (const ProducerSlotStats& p : t.producers) live_producers += p.alive ? 1 : 0;
    e.add("herald_topic_producers", "gauge", "live producer slots attached to the topic", tl, live_producers);
    for (const PartitionStats& p : t.partition_stats) {
      const std::string pl = lbl({{"bus", s.bus}, {"topic", t.name}, {"partition", std::to_string(p.partition)}});
      e.add("herald_partition_tail_bytes", "counter", "position of the next record (bytes ever written)", pl, d(p.tail));
      e.add("herald_partition_retained_bytes", "gauge", "bytes between the oldest retained record and the tail", pl,
            d(p.tail - p.beginning));
      e.add("herald_partition_events_total", "counter", "events published (summed over producer slots)", pl, d(p.events));
      e.add("herald_partition_record_bytes_total", "counter", "record bytes published", pl, d(p.bytes));
      e.add("herald_partition_backpressure_waits_total", "counter", "publishes that had to wait for a gate", pl,
            d(p.backpressure_waits));
      e.add("herald_partition_aborted_records_total", "counter", "aborted records (dropped claims, repairs)", pl,
            d(p.aborted_records));
      e.add("herald_partition_repaired_claims_total", "counter", "claims of dead producers repaired by heraldd", pl,
            d(p.repaired_claims));
      e.add("herald_partition_repair_seconds_max", "gauge", "longest repair (death noticed to range aborted)", pl,
            static_cast<double>(p.max_repair_ns) / 1e9);
      e.add("herald_partition_stalled_claims", "gauge", "claims held past 1s or left by dead producers", pl,
            d(p.stalled.size()));
      e.add("herald_partition_parked_producers", "gauge", "producers waiting under backpressure", pl, p.parked_producers);
    }
    for (const GroupStats& g : t.groups) {
      if (g.internal) continue;
      const std::string gl = lbl({{"bus", s.bus}, {"topic", t.name}, {"group", g.name}});
      e.add("herald_group_members", "gauge", "live members of the group", gl, g.members);
      e.add("herald_group_gating", "gauge", "1 while producers honour the group's gates", gl, g.gating ? 1 : 0);
      e.add("herald_group_dlq_depth", "gauge", "dead letters pending in the group's DLQ", gl, d(g.dlq_depth));
      e.add("herald_group_demotions_total", "counter", "lag-out demotions", gl, d(g.demotions));
      e.add("herald_group_promotions_total", "counter", "lag-out re-promotions", gl, d(g.promotions));
      e.add("herald_group_rebalances_total", "counter", "rebalances", gl, d(g.rebalances));
      for (const GroupPartitionStats& p : g.partitions) {
        const std::string l = lbl({{"bus", s.bus}, {"topic", t.name}, {"group", g.name},
                                   {"partition", std::to_string(p.partition)}});
        e.add("herald_group_committed_position", "gauge", "committed cursor (byte position)", l, d(p.committed));
        e.add("herald_group_lag_bytes", "gauge", "bytes between the committed cursor and the tail", l, d(p.lag_bytes));
        e.add("herald_group_lag_events", "gauge", "estimated events behind (lag bytes / average record size)", l,
              d(p.lag_events));
        e.add("herald_group_lag_seconds", "gauge", "age of the oldest unconsumed event", l, p.lag_seconds);
        e.add("herald_group_gap_bytes_total", "counter", "bytes lost to overruns (lossy reading)", l, d(p.gap_bytes));
        e.add("herald_group_gaps_total", "counter", "overruns", l, d(p.gaps));
        e.add("herald_group_dead_letters_total", "counter", "events moved to the DLQ", l, d(p.dead_letters));
        e.add("herald_group_dlq_stalled", "gauge", "1 while a dead letter waits for room in a full DLQ", l,
              p.dlq_stalled ? 1 : 0);
      }
    }
  }
  return e.text();
}

struct MetricsServer::Impl {
  httplib::Server server;
};

Result<std::unique_ptr<MetricsServer>> MetricsServer::start(const std::string& address, std::string bus, Logger log) {
  const auto colon = address.rfind(':');
  if (colon == std::string::npos)
    return fail(Errc::kInvalidArgument, "--metrics '" + address + "' is not ADDRESS:PORT (e.g. 127.0.0.1:9464, or :0)");
  std::string host = address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (host.empty()) host = "0.0.0.0";
  int port = -1;
  try {
    std::size_t used = 0;
    port = std::stoi(address.substr(colon + 1), &used);
    if (used != address.size() - colon - 1) port = -1;
  } catch (const std::exception&) {
    port = -1;
  }
  if (port < 0 || port > 65535)
    return fail(Errc::kInvalidArgument, "--metrics '" + address + "': the port must be 0..65535 (0 picks one)");
  std::unique_ptr<MetricsServer> m(new MetricsServer());
  m->impl_ = std::make_unique<Impl>();
  httplib::Server& srv = m->impl_->server;
  srv.Get("/metrics", [bus](const httplib::Request&, httplib::Response& res) {
    auto s = read_stats(bus);
    if (!s) {
      res.status = 503;
      res.set_content("# herald: " + s.error().message() + "\n", "text/plain; version=0.0.4");
      return;
    }
    res.set_content(render_prometheus(*s), "text/plain; version=0.0.4");
  });
  srv.Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("herald metrics: see /metrics\n", "text/plain");
  });
  const int bound = port == 0 ? srv.bind_to_any_port(host) : (srv.bind_to_port(host, port) ? port : -1);
  if (bound <= 0) return fail(Errc::kIo, "--metrics: cannot listen on " + address + " (in use, or a bad address?)");
  m->port_ = bound;
  const bool v6 = host.find(':') != std::string::npos;
  m->url_ = "http://" + (v6 ? "[" + host + "]" : host) + ":" + std::to_string(bound) + "/metrics";
  Impl* impl = m->impl_.get();
  m->thread_ = std::thread([impl] { impl->server.listen_after_bind(); });
  if (log) log("metrics on " + m->url_);
  return m;
}

MetricsServer::~MetricsServer() {
  if (impl_) impl_->server.stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace herald::daemon
