// Peer: a Unix domain socket, SOCK_SEQPACKET (message boundaries kept, no
// framing needed). The Host binds and listens on one socket per route in the
// row's workdir before the fork, so a Sender's connect() never races the
// Receiver; the Receiver accepts lazily inside poll() (one connection, or
// one per producer for mpsc) so no construction order of the two sides of a
// ping-pong can deadlock. Spin/yield use MSG_DONTWAIT; block waits in
// poll(2) (receive) or a send bounded by SO_SNDTIMEO. The Receiver drains
// up to 64 messages per recvmmsg(2).
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "bench/harness/transport.hpp"

namespace herald::bench {

struct UdsTransport {
  static constexpr std::string_view kName = "uds";
  static constexpr int kBlockedSendMs = 10'000;

  static std::string describe(const RowSpec&) {
    return "one send(2) per message on a connected AF_UNIX SOCK_SEQPACKET socket (SO_SNDBUF = ring_bytes where "
           "allowed); the receiver drains up to 64 per recvmmsg(2)";
  }

  static std::string skip_reason(const RowSpec& spec) {
    if (spec.scenario == Scenario::kFanout) return "a stream socket delivers each message to one peer; no broadcast";
    if (socket_path(spec, 1).size() >= sizeof(sockaddr_un::sun_path))
      return "socket path longer than sun_path: " + socket_path(spec, 1);
    return "";
  }

  static std::string socket_path(const RowSpec& spec, int route) {
    return spec.workdir + "/" + spec.unique + "-uds" + std::to_string(route) + ".sock";
  }

  static sockaddr_un address(const std::string& path) {
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    if (path.size() >= sizeof a.sun_path) throw BenchError("uds: socket path too long: " + path);
    std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
    return a;
  }

  // Send buffer ~ ring_bytes: SO_SNDBUFFORCE when privileged, else SO_SNDBUF
  // (capped by net.core.wmem_max). The send buffer is what bounds the
  // messages in flight on a connected AF_UNIX datagram-style socket.
  static void size_buffer(int fd, std::size_t bytes) {
    const int v = static_cast<int>(std::min<std::size_t>(bytes, std::size_t{1} << 30));
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &v, sizeof v) != 0)
      setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof v);
  }

  struct Host {
    int listen_fd[2] = {-1, -1};
    std::string path[2];
    pid_t owner = getpid();

    explicit Host(const RowSpec& spec) {
      try {
        for (int r = 0; r < 2; ++r) {
          path[r] = socket_path(spec, r);
          const sockaddr_un a = address(path[r]);
          listen_fd[r] = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
          if (listen_fd[r] < 0) throw BenchError(std::string("uds: socket: ") + std::strerror(errno));
          ::unlink(path[r].c_str());
          if (::bind(listen_fd[r], reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0)
            throw BenchError("uds: bind " + path[r] + ": " + std::strerror(errno));
          if (::listen(listen_fd[r], 64) != 0)
            throw BenchError("uds: listen " + path[r] + ": " + std::strerror(errno));
        }
      } catch (...) {
        cleanup();
        throw;
      }
    }
    ~Host() { cleanup(); }
    Host(const Host&) = delete;
    Host& operator=(const Host&) = delete;

   private:
    void cleanup() noexcept {
      for (int r = 0; r < 2; ++r) {
        if (listen_fd[r] >= 0) ::close(listen_fd[r]);
        listen_fd[r] = -1;
        if (!path[r].empty() && getpid() == owner) ::unlink(path[r].c_str());
      }
    }
  };

  class Sender {
   public:
    Sender(Host& host, const RowSpec& spec, Endpoint ep) : block_(spec.wait == WaitMode::kBlock) {
      fd_ = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
      if (fd_ < 0) throw BenchError(std::string("uds: socket: ") + std::strerror(errno));
      size_buffer(fd_, spec.ring_bytes);
      const timeval tv{kBlockedSendMs / 1000, 0};
      setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
      const sockaddr_un a = address(host.path[ep.route]);
      int rc;
      do rc = ::connect(fd_, reinterpret_cast<const sockaddr*>(&a), sizeof a);
      while (rc != 0 && errno == EINTR);
      if (rc != 0) {
        const int e = errno;
        ::close(fd_);
        throw BenchError("uds: connect " + host.path[ep.route] + ": " + std::strerror(e));
      }
    }
    ~Sender() { ::close(fd_); }
    Sender(const Sender&) = delete;
    Sender& operator=(const Sender&) = delete;

    bool try_send(const std::byte* p, std::size_t n) {
      const int flags = MSG_NOSIGNAL | (block_ ? 0 : MSG_DONTWAIT);
      for (;;) {
        const ssize_t w = ::send(fd_, p, n, flags);
        if (w >= 0) return true;  // SEQPACKET: all or nothing
        if (errno == EINTR) continue;
        if (errno == EAGAIN) {
          if (!block_) return false;
          throw BenchError("uds: send blocked " + std::to_string(kBlockedSendMs) + " ms (receiver gone?)");
        }
        throw BenchError(std::string("uds: send: ") + std::strerror(errno));
      }
    }
    void flush() {}

   private:
    int fd_ = -1;
    bool block_;
  };

  class Receiver {
   public:
    static constexpr std::size_t kBatch = 64;

    Receiver(Host& host, const RowSpec& spec, Endpoint ep)
        : listen_fd_(host.listen_fd[ep.route]),
          expected_(spec.scenario == Scenario::kMpsc && ep.route == 0 ? spec.producers : 1),
          wait_(spec.wait),
          slot_(spec.size + 1),  // one spare byte: a longer message shows as MSG_TRUNC
          batch_(std::clamp<std::size_t>((std::size_t{256} << 10) / slot_, 1, kBatch)),
          buf_(std::make_unique<std::byte[]>(slot_ * batch_)) {
      for (std::size_t i = 0; i < batch_; ++i) {
        iov_[i] = {buf_.get() + i * slot_, slot_};
        msgs_[i] = {};
        msgs_[i].msg_hdr.msg_iov = &iov_[i];
        msgs_[i].msg_hdr.msg_iovlen = 1;
      }
      conns_.reserve(static_cast<std::size_t>(expected_));
      pfds_.reserve(static_cast<std::size_t>(expected_) + 1);
    }
    ~Receiver() {
      for (int fd : conns_)
        if (fd >= 0) ::close(fd);
    }
    Receiver(const Receiver&) = delete;
    Receiver& operator=(const Receiver&) = delete;

    template <class F>
    std::size_t poll(F&& f, std::size_t max, std::chrono::milliseconds timeout) {
      if (accepted_ < expected_) accept_pending();
      std::size_t n = drain(f, max);
      if (n > 0 || wait_ != WaitMode::kBlock) return n;
      pfds_.clear();
      if (accepted_ < expected_) pfds_.push_back({listen_fd_, POLLIN, 0});
      for (int fd : conns_)
        if (fd >= 0) pfds_.push_back({fd, POLLIN, 0});
      if (::poll(pfds_.data(), pfds_.size(), static_cast<int>(timeout.count())) <= 0) return 0;
      if (accepted_ < expected_) accept_pending();
      return drain(f, max);
    }

   private:
    void accept_pending() {
      while (accepted_ < expected_) {
        const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (fd < 0) {
          if (errno == EINTR) continue;
          if (errno == EAGAIN) return;
          throw BenchError(std::string("uds: accept: ") + std::strerror(errno));
        }
        conns_.push_back(fd);
        ++accepted_;
      }
    }

    // Round-robin over the connections, one recvmmsg each per pass.
    template <class F>
    std::size_t drain(F& f, std::size_t max) {
      std::size_t n = 0;
      const std::size_t k = conns_.size();
      for (std::size_t i = 0; i < k && n < max; ++i) {
        std::size_t& at = next_;
        at = (at + 1) % k;
        const int fd = conns_[at];
        if (fd < 0) continue;
        const unsigned want = static_cast<unsigned>(std::min(batch_, max - n));
        const int got = ::recvmmsg(fd, msgs_, want, MSG_DONTWAIT, nullptr);
        if (got < 0) {
          if (errno == EAGAIN || errno == EINTR) continue;
          throw BenchError(std::string("uds: recvmmsg: ") + std::strerror(errno));
        }
        for (int m = 0; m < got; ++m) {
          const mmsghdr& h = msgs_[m];
          if (h.msg_len == 0) {  // end of file: the sender closed
            ::close(fd);
            conns_[at] = -1;
            break;
          }
          if ((h.msg_hdr.msg_flags & MSG_TRUNC) != 0 || h.msg_len >= slot_)
            throw BenchError("uds: message longer than size " + std::to_string(slot_ - 1));
          f(static_cast<const std::byte*>(iov_[m].iov_base), static_cast<std::size_t>(h.msg_len));
          ++n;
        }
      }
      return n;
    }

    int listen_fd_;
    int expected_;
    int accepted_ = 0;
    WaitMode wait_;
    std::size_t slot_;
    std::size_t batch_;
    std::unique_ptr<std::byte[]> buf_;
    iovec iov_[kBatch];
    mmsghdr msgs_[kBatch];
    std::vector<int> conns_;
    std::vector<pollfd> pfds_;
    std::size_t next_ = 0;
  };
};

}  // namespace herald::bench
