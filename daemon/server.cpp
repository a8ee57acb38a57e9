#include "daemon/server.hpp"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>

#include <concurrentqueue.h>

#include "daemon/pid_watch.hpp"
#include "runtime/src/control.hpp"
#include "shm/clock.hpp"

namespace herald::daemon {

namespace {

struct Inbound {
  enum class Kind { kRequest, kClosed } kind = Kind::kRequest;
  ConnId conn = 0;
  Peer peer;
  nlohmann::json body;
};

struct Outbound {
  ConnId conn = 0;
  std::string frame;
  bool close_after = false;
};

// Limits against a local user who would starve the daemon (it serves
// every user of the bus from one io thread): connections per uid (root's
// and the daemon's own are not capped), and reply bytes waiting for a
// client that sends requests without reading the answers (clients wait
// for each answer, so a legitimate one never has more than one pending).
inline constexpr std::uint32_t kMaxConnsPerUid = 1024;
inline constexpr std::size_t kMaxPendingBytes = 1 << 20;

struct Conn {
  int fd = -1;
  Peer peer;
  control::FrameReader reader;
  std::string pending;  // bytes not yet written
  bool close_after_write = false;
};

void signal_fd(int fd) {
  const std::uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(fd, &one, sizeof one);
}
void drain_fd(int fd) {
  std::uint64_t v = 0;
  [[maybe_unused]] ssize_t n = ::read(fd, &v, sizeof v);
}

}  // namespace

struct Server::Impl {
  Daemon& daemon;
  std::string path;
  Logger log;
  int listen_fd = -1;
  int io_ep = -1;
  int in_event = -1;   // io thread -> supervisor
  int out_event = -1;  // supervisor -> io thread
  std::atomic<bool> io_stop{false};
  std::atomic<bool> io_flushed{false};
  moodycamel::ConcurrentQueue<Inbound> in;
  moodycamel::ConcurrentQueue<Outbound> out;
  std::map<ConnId, Conn> conns;  // io thread only
  ConnId next_conn = 1;
  // A descriptor held in reserve: when accept fails for want of
  // descriptors (EMFILE), it is closed to accept and drop the waiting
  // connection, else the level-triggered listening socket stays ready and
  // the io thread spins at 100 % CPU without answering anyone.
  int spare_fd = -1;
  // The spare is not safe: the supervisor thread opens fds too (pidfds,
  // /proc), and one may take the spare's number between our close and
  // reopen. Without a spare, the listening socket is taken out of the epoll
  // set for kListenPauseNs instead (at most one failing accept per pause),
  // and the spare is tried again then. (Found by an adversarial pass: with
  // the spare gone, the loop spun at 31,000 accepts a second.)
  static constexpr std::uint64_t kListenPauseNs = 100'000'000;
  std::uint64_t listen_paused_until = 0;  // 0: listening
  void pause_listening();
  void resume_listening_if_due();
  std::map<uid_t, std::uint32_t> conns_of_uid;  // io thread only
  std::uint64_t refused = 0;                    // connections dropped (descriptors, per-user cap)

  Impl(Daemon& d, std::string p, Logger l) : daemon(d), path(std::move(p)), log(std::move(l)) {}

  void io_loop();
  void accept_all();
  void on_readable(ConnId id);
  void flush(ConnId id);
  void close_conn(ConnId id, bool tell);
  void send_now(ConnId id, std::string frame, bool close_after);
};

Server::Server(Daemon& d, std::string socket_path, Logger log) : impl_(new Impl(d, std::move(socket_path), std::move(log))) {}

Server::~Server() {
  for (auto& [id, c] : impl_->conns) ::close(c.fd);
  for (int fd : {impl_->listen_fd, impl_->io_ep, impl_->in_event, impl_->out_event, impl_->spare_fd})
    if (fd >= 0) ::close(fd);
  delete impl_;
}

Result<void> Server::listen() {
  Impl& I = *impl_;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (I.path.size() >= sizeof addr.sun_path)
    return fail(Errc::kInvalidArgument, "socket path " + I.path + " is longer than " +
                                            std::to_string(sizeof addr.sun_path - 1) + " bytes");
  std::memcpy(addr.sun_path, I.path.c_str(), I.path.size() + 1);
  ::unlink(I.path.c_str());  // a stale socket of a dead daemon: we hold the lock now
  I.listen_fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (I.listen_fd < 0) return fail(Errc::kIo, std::string("socket: ") + std::strerror(errno));
  if (::bind(I.listen_fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
    return fail(Errc::kIo, "bind " + I.path + ": " + std::strerror(errno));
  // Anyone may connect; what they may do is decided per request from
  // SO_PEERCRED and the segments' modes.
  ::chmod(I.path.c_str(), 0666);
  if (::listen(I.listen_fd, 128) != 0) return fail(Errc::kIo, "listen " + I.path + ": " + std::strerror(errno));
  I.spare_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  I.io_ep = ::epoll_create1(EPOLL_CLOEXEC);
  I.in_event = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  I.out_event = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (I.io_ep < 0 || I.in_event < 0 || I.out_event < 0)
    return fail(Errc::kIo, std::string("epoll/eventfd setup failed: ") + std::strerror(errno) +
                               (errno == EMFILE || errno == ENFILE ? " (raise RLIMIT_NOFILE)" : ""));
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = 0;  // 0: the listening socket
  ::epoll_ctl(I.io_ep, EPOLL_CTL_ADD, I.listen_fd, &ev);
  ev.data.u64 = UINT64_MAX;  // the outbound queue's eventfd
  ::epoll_ctl(I.io_ep, EPOLL_CTL_ADD, I.out_event, &ev);
  return {};
}

void Server::Impl::close_conn(ConnId id, bool tell) {
  auto it = conns.find(id);
  if (it == conns.end()) return;
  ::epoll_ctl(io_ep, EPOLL_CTL_DEL, it->second.fd, nullptr);
  ::close(it->second.fd);
  if (auto u = conns_of_uid.find(it->second.peer.uid); u != conns_of_uid.end() && --u->second == 0) conns_of_uid.erase(u);
  conns.erase(it);
  if (tell) {
    Inbound m;
    m.kind = Inbound::Kind::kClosed;
    m.conn = id;
    in.enqueue(std::move(m));
    signal_fd(in_event);
  }
}

void Server::Impl::pause_listening() {
  epoll_event ev{};
  ev.events = 0;  // stays registered, reports nothing
  ev.data.u64 = 0;
  ::epoll_ctl(io_ep, EPOLL_CTL_MOD, listen_fd, &ev);
  listen_paused_until = shm::monotonic_ns() + kListenPauseNs;
  if (refused++ % 1000 == 0)
    log("out of file descriptors: not accepting connections for a while (" + std::to_string(conns.size()) +
        " open; raise the daemon's RLIMIT_NOFILE)");
}

void Server::Impl::resume_listening_if_due() {
  if (listen_paused_until == 0 || shm::monotonic_ns() < listen_paused_until) return;
  listen_paused_until = 0;
  if (spare_fd < 0) spare_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = 0;
  ::epoll_ctl(io_ep, EPOLL_CTL_MOD, listen_fd, &ev);
}

void Server::Impl::accept_all() {
  for (;;) {
    int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    const bool out_of_fds = fd < 0 && (errno == EMFILE || errno == ENFILE);
    if (out_of_fds && spare_fd < 0) {
      spare_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
      if (spare_fd < 0) {
        pause_listening();
        return;
      }
    }
    if (out_of_fds) {
      // Out of fds: take the waiting connection with the spare fd and close
      // it (the client sees its connection closed, not a hang). accept
      // fails with EMFILE before it looks at the queue, so an empty queue
      // shows only here, as EAGAIN: then we are done. (Going round again
      // regardless spun at 100 % CPU, starving every open connection;
      // found by an exploratory pass.)
      ::close(spare_fd);
      fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
      const bool took = fd >= 0;
      if (took) ::close(fd);
      spare_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
      if (spare_fd < 0) {
        pause_listening();
        return;
      }
      if (!took) return;
      if (refused++ % 1000 == 0)
        log("out of file descriptors: refusing new connections (" + std::to_string(conns.size()) +
            " open; raise the daemon's RLIMIT_NOFILE)");
      continue;
    }
    if (fd < 0) return;
    ucred cred{};
    socklen_t len = sizeof cred;
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
      ::close(fd);
      continue;
    }
    if (cred.uid != 0 && cred.uid != ::geteuid() && conns_of_uid[cred.uid] >= kMaxConnsPerUid) {
      ::close(fd);
      if (refused++ % 1000 == 0)
        log("uid " + std::to_string(cred.uid) + " has " + std::to_string(kMaxConnsPerUid) +
            " connections open: refusing more");
      continue;
    }
    Peer peer{cred.pid, cred.uid, cred.gid, 0};
    // Pin the peer with a pidfd before reading its start time, then make
    // sure the connection is still there: the pid cannot have been recycled
    // between accept and now without us seeing the connection closed.
    const int pidfd = open_pidfd(cred.pid);
    if (pidfd >= 0) {
      peer.start_time = shm::process_start_time(cred.pid).value_or(0);
      char probe = 0;
      const ssize_t r = ::recv(fd, &probe, 1, MSG_PEEK | MSG_DONTWAIT);
      ::close(pidfd);
      if (r == 0) {
        ::close(fd);
        continue;
      }
    }
    const ConnId id = next_conn++;
    Conn c;
    c.fd = fd;
    c.peer = peer;
    conns.emplace(id, std::move(c));
    ++conns_of_uid[peer.uid];
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = id;
    ::epoll_ctl(io_ep, EPOLL_CTL_ADD, fd, &ev);
  }
}

void Server::Impl::send_now(ConnId id, std::string frame, bool close_after) {
  auto it = conns.find(id);
  if (it == conns.end()) return;
  if (it->second.pending.size() + frame.size() > kMaxPendingBytes) {
    // It sends and does not read: drop it rather than buffer without bound.
    log("closing a connection of pid " + std::to_string(it->second.peer.pid) + " (uid " +
        std::to_string(it->second.peer.uid) + "): " + std::to_string(it->second.pending.size()) +
        " bytes of answers it does not read");
    close_conn(id, true);
    return;
  }
  it->second.pending += frame;
  it->second.close_after_write = it->second.close_after_write || close_after;
  flush(id);
}

void Server::Impl::flush(ConnId id) {
  auto it = conns.find(id);
  if (it == conns.end()) return;
  Conn& c = it->second;
  while (!c.pending.empty()) {
    const ssize_t n = ::send(c.fd, c.pending.data(), c.pending.size(), MSG_NOSIGNAL);
    if (n > 0) {
      c.pending.erase(0, static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      epoll_event ev{};
      ev.events = EPOLLIN | EPOLLOUT;
      ev.data.u64 = id;
      ::epoll_ctl(io_ep, EPOLL_CTL_MOD, c.fd, &ev);
      return;
    }
    close_conn(id, true);  // the peer went away
    return;
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = id;
  ::epoll_ctl(io_ep, EPOLL_CTL_MOD, c.fd, &ev);
  if (c.close_after_write) close_conn(id, true);
}

void Server::Impl::on_readable(ConnId id) {
  auto it = conns.find(id);
  if (it == conns.end()) return;
  char buf[16384];
  for (;;) {
    const ssize_t n = ::recv(it->second.fd, buf, sizeof buf, 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
      close_conn(id, true);
      return;
    }
    if (n < 0) return;
    Conn& c = it->second;
    if (!c.reader.feed(buf, static_cast<std::size_t>(n))) break;
    while (auto body = c.reader.next()) {
      auto parsed = control::parse(*body);
      if (!parsed) {
        // A malformed request: one error response, then the connection
        // closes; the daemon carries on.
        send_now(id, control::encode(control::error_response(0, parsed.error())), true);
        return;
      }
      Inbound m;
      m.conn = id;
      m.peer = c.peer;
      m.body = std::move(parsed).value();
      in.enqueue(std::move(m));
      signal_fd(in_event);
    }
    if (!c.reader.error().empty()) break;
  }
  auto again = conns.find(id);
  if (again != conns.end() && !again->second.reader.error().empty())
    send_now(id, control::encode(control::error_response(0, Error{Errc::kProtocol, again->second.reader.error()})), true);
}

void Server::Impl::io_loop() {
  epoll_event evs[64];
  while (!io_stop.load(std::memory_order_acquire)) {
    const int n = ::epoll_wait(io_ep, evs, 64, listen_paused_until != 0 ? 20 : 200);
    resume_listening_if_due();
    for (int i = 0; i < n; ++i) {
      const std::uint64_t key = evs[i].data.u64;
      if (key == 0) {
        accept_all();
      } else if (key == UINT64_MAX) {
        drain_fd(out_event);
      } else {
        if (evs[i].events & EPOLLOUT) flush(key);
        if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(key);
      }
    }
    Outbound o;
    while (out.try_dequeue(o)) send_now(o.conn, std::move(o.frame), o.close_after);
  }
  // Flush what is queued before stopping (the reply to "shutdown").
  Outbound o;
  while (out.try_dequeue(o)) send_now(o.conn, std::move(o.frame), o.close_after);
  io_flushed.store(true, std::memory_order_release);
}

void Server::run(int stop_fd) {
  Impl& I = *impl_;
  std::thread io([&I] { I.io_loop(); });
  const int ep = ::epoll_create1(EPOLL_CLOEXEC);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = 1;
  ::epoll_ctl(ep, EPOLL_CTL_ADD, I.in_event, &ev);
  ev.data.u64 = 2;
  ::epoll_ctl(ep, EPOLL_CTL_ADD, I.daemon.watch_fd(), &ev);
  if (stop_fd >= 0) {
    ev.data.u64 = 3;
    ::epoll_ctl(ep, EPOLL_CTL_ADD, stop_fd, &ev);
  }
  bool stopping = false;
  while (!stopping) {
    const std::uint64_t now = shm::monotonic_ns();
    const std::uint64_t next = I.daemon.next_deadline();
    int timeout_ms = next <= now ? 0 : static_cast<int>(std::min<std::uint64_t>((next - now) / 1'000'000 + 1, 1000));
    epoll_event evs[8];
    const int n = ::epoll_wait(ep, evs, 8, timeout_ms);
    for (int i = 0; i < n; ++i) {
      if (evs[i].data.u64 == 1) drain_fd(I.in_event);
      if (evs[i].data.u64 == 3) stopping = true;
    }
    Inbound m;
    while (I.in.try_dequeue(m)) {
      if (m.kind == Inbound::Kind::kClosed) {
        I.daemon.disconnected(m.conn);
        continue;
      }
      nlohmann::json resp = I.daemon.handle(m.conn, m.peer, m.body);
      I.out.enqueue(Outbound{m.conn, control::encode(resp), false});
      signal_fd(I.out_event);
    }
    I.daemon.do_work();
    if (I.daemon.stop_requested()) stopping = true;
  }
  ::close(ep);
  I.io_stop.store(true, std::memory_order_release);
  signal_fd(I.out_event);
  io.join();
}

}  // namespace herald::daemon
