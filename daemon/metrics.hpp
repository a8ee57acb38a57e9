// heraldd --metrics ADDRESS:PORT: the bus's stats (herald::read_stats, read
// from shared memory) in Prometheus text format over HTTP (cpp-httplib), on
// a thread of its own: a scrape never touches the supervisor loop, its
// queues or its locks. PORT 0 picks a free port; the URL is logged.
#pragma once

#include <memory>
#include <string>
#include <thread>

#include "daemon/daemon.hpp"
#include "herald/result.hpp"
#include "herald/stats.hpp"

namespace herald::daemon {

// The Prometheus text exposition of one snapshot.
std::string render_prometheus(const BusStats& s);

class MetricsServer {
 public:
  // Binds `address` ("127.0.0.1:9464", "[::1]:0", ":0" = all interfaces)
  // and serves GET /metrics until destroyed.
  static Result<std::unique_ptr<MetricsServer>> start(const std::string& address, std::string bus, Logger log);
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;
  [[nodiscard]] int port() const noexcept { return port_; }
  [[nodiscard]] const std::string& url() const noexcept { return url_; }

 private:
  MetricsServer() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::thread thread_;
  int port_ = 0;
  std::string url_;
};

}  // namespace herald::daemon
