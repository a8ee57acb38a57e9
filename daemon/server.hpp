// heraldd's socket server: an I/O thread (epoll over the listening Unix
// socket and the connections) hands parsed requests to the supervisor loop
// through moodycamel ConcurrentQueues (an eventfd each way for wake-ups);
// the supervisor loop drives the Daemon: handle() per request, do_work()
// when a watched process exits or a deadline passes.
#pragma once

#include <atomic>
#include <string>
#include <thread>

#include "daemon/daemon.hpp"

namespace herald::daemon {

class Server {
 public:
  Server(Daemon& d, std::string socket_path, Logger log);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds the socket (replacing a stale one: we hold the daemon lock).
  Result<void> listen();
  // Serves until stop_fd is readable (a signalfd) or a client asks the
  // daemon to stop. Returns after every queued response was written.
  void run(int stop_fd);

  struct Impl;

 private:
  Impl* impl_;
};

}  // namespace herald::daemon
