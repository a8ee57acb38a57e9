// Peer: a pipe(2) per route, made by the Host before the fork so the
// children inherit both ends. A message is a 4-byte length prefix and the
// message bytes, written with one writev(2); the reader reads the pipe in
// large chunks and cuts frames out of its buffer. Writes of at most PIPE_BUF
// bytes are atomic, so several writers (mpsc) never interleave as long as
// 4 + size <= PIPE_BUF. Both ends are O_NONBLOCK; the block mode waits in
// poll(2). The pipe's capacity is raised to ring_bytes with F_SETPIPE_SZ
// (capped at /proc/sys/fs/pipe-max-size when that is refused).
#pragma once

#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>

#include "bench/harness/transport.hpp"

namespace herald::bench {

struct PipeTransport {
  static constexpr std::string_view kName = "pipe";
  static constexpr std::size_t kPrefix = 4;  // u32 length, host order
  static constexpr int kBlockedSendMs = 10'000;

  static std::string describe(const RowSpec&) {
    return "a 4-byte length prefix + the message in one writev(2) into a pipe(2) (F_SETPIPE_SZ = ring_bytes "
           "where allowed); the reader reads large chunks and cuts the frames";
  }

  static std::string skip_reason(const RowSpec& spec) {
    if (spec.scenario == Scenario::kFanout) return "a pipe delivers each byte to one reader; no broadcast";
    if (spec.scenario == Scenario::kMpsc && kPrefix + spec.size > PIPE_BUF)
      return "mpsc needs atomic writes: 4 + size = " + std::to_string(kPrefix + spec.size) +
             " > PIPE_BUF = " + std::to_string(PIPE_BUF);
    if (spec.size > UINT32_MAX) return "size does not fit the 4-byte length prefix";
    return "";
  }

  struct Host {
    int fds[2][2] = {{-1, -1}, {-1, -1}};  // [route][0 = read end, 1 = write end]
    int pipe_bytes = 0;                    // the capacity actually set

    explicit Host(const RowSpec& spec) {
      try {
        for (auto& route : fds) {
          if (pipe2(route, O_NONBLOCK | O_CLOEXEC) != 0)
            throw BenchError(std::string("pipe: pipe2: ") + std::strerror(errno));
          pipe_bytes = raise_capacity(route[1], spec.ring_bytes);
        }
      } catch (...) {
        close_all();
        throw;
      }
    }
    ~Host() { close_all(); }
    Host(const Host&) = delete;
    Host& operator=(const Host&) = delete;

   private:
    void close_all() noexcept {
      for (auto& route : fds)
        for (int& fd : route)
          if (fd >= 0) {
            ::close(fd);
            fd = -1;
          }
    }

    static int raise_capacity(int fd, std::size_t want) {
      const int target = static_cast<int>(std::min<std::size_t>(want, std::size_t{1} << 30));
      int got = fcntl(fd, F_SETPIPE_SZ, target);
      if (got < 0 && errno == EPERM) {
        int max = 0;
        std::ifstream("/proc/sys/fs/pipe-max-size") >> max;
        if (max > 0) got = fcntl(fd, F_SETPIPE_SZ, std::min(target, max));
      }
      if (got < 0) got = fcntl(fd, F_GETPIPE_SZ);
      if (got < 0) throw BenchError(std::string("pipe: F_GETPIPE_SZ: ") + std::strerror(errno));
      return got;
    }
  };

  class Sender {
   public:
    Sender(Host& host, const RowSpec& spec, Endpoint ep)
        : fd_(host.fds[ep.route][1]), block_(spec.wait == WaitMode::kBlock) {}

    bool try_send(const std::byte* p, std::size_t n) {
      auto len = static_cast<std::uint32_t>(n);
      iovec iov[2] = {{&len, kPrefix}, {const_cast<std::byte*>(p), n}};
      const std::size_t total = kPrefix + n;
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kBlockedSendMs);
      for (;;) {
        const ssize_t w = ::writev(fd_, iov, 2);
        if (w >= 0) {
          if (static_cast<std::size_t>(w) < total) finish(iov, static_cast<std::size_t>(w), deadline);
          return true;
        }
        if (errno == EINTR) continue;
        if (errno != EAGAIN) throw BenchError(std::string("pipe: writev: ") + std::strerror(errno));
        if (!block_) return false;
        wait_writable(deadline);
      }
    }
    void flush() {}

   private:
    // A frame larger than PIPE_BUF may be written in parts (single writer
    // only, see skip_reason): the rest goes out before anything else.
    void finish(iovec* iov, std::size_t done, std::chrono::steady_clock::time_point deadline) {
      for (;;) {
        for (int i = 0; i < 2; ++i) {
          const std::size_t k = std::min(done, iov[i].iov_len);
          iov[i].iov_base = static_cast<char*>(iov[i].iov_base) + k;
          iov[i].iov_len -= k;
          done -= k;
        }
        if (iov[0].iov_len + iov[1].iov_len == 0) return;
        const ssize_t w = ::writev(fd_, iov, 2);
        if (w >= 0) {
          done = static_cast<std::size_t>(w);
          continue;
        }
        done = 0;
        if (errno == EINTR) continue;
        if (errno != EAGAIN) throw BenchError(std::string("pipe: writev: ") + std::strerror(errno));
        wait_writable(deadline);
      }
    }

    void wait_writable(std::chrono::steady_clock::time_point deadline) const {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0)
        throw BenchError("pipe: writer blocked " + std::to_string(kBlockedSendMs) + " ms (reader gone?)");
      pollfd pfd{fd_, POLLOUT, 0};
      ::poll(&pfd, 1, static_cast<int>(left.count()));
    }

    int fd_;
    bool block_;
  };

  class Receiver {
   public:
    Receiver(Host& host, const RowSpec& spec, Endpoint ep)
        : fd_(host.fds[ep.route][0]),
          wait_(spec.wait),
          max_len_(spec.size),
          cap_(std::max<std::size_t>(std::size_t{256} << 10, 2 * (kPrefix + spec.size))),
          buf_(std::make_unique<std::byte[]>(cap_)) {}

    template <class F>
    std::size_t poll(F&& f, std::size_t max, std::chrono::milliseconds timeout) {
      std::size_t n = cut(f, max);
      if (n > 0) return n;
      if (fill()) return cut(f, max);
      if (wait_ == WaitMode::kBlock) {
        pollfd pfd{fd_, POLLIN, 0};
        if (::poll(&pfd, 1, static_cast<int>(timeout.count())) > 0 && fill()) return cut(f, max);
      }
      return 0;
    }

   private:
    template <class F>
    std::size_t cut(F& f, std::size_t max) {
      std::size_t n = 0;
      while (n < max && end_ - begin_ >= kPrefix) {
        std::uint32_t len;
        std::memcpy(&len, buf_.get() + begin_, kPrefix);
        if (len > max_len_)
          throw BenchError("pipe: frame length " + std::to_string(len) + " > size " + std::to_string(max_len_) +
                           " (stream corrupt)");
        if (end_ - begin_ < kPrefix + len) break;
        f(static_cast<const std::byte*>(buf_.get() + begin_ + kPrefix), static_cast<std::size_t>(len));
        begin_ += kPrefix + len;
        ++n;
      }
      return n;
    }

    // One read into the free tail of the buffer (after moving the partial
    // frame to the front); true when bytes arrived.
    bool fill() {
      if (begin_ > 0) {
        std::memmove(buf_.get(), buf_.get() + begin_, end_ - begin_);
        end_ -= begin_;
        begin_ = 0;
      }
      for (;;) {
        const ssize_t r = ::read(fd_, buf_.get() + end_, cap_ - end_);
        if (r > 0) {
          end_ += static_cast<std::size_t>(r);
          return true;
        }
        if (r == 0) return false;  // every writer closed
        if (errno == EINTR) continue;
        if (errno == EAGAIN) return false;
        throw BenchError(std::string("pipe: read: ") + std::strerror(errno));
      }
    }

    int fd_;
    WaitMode wait_;
    std::size_t max_len_;
    std::size_t cap_;
    std::unique_ptr<std::byte[]> buf_;
    std::size_t begin_ = 0;
    std::size_t end_ = 0;
  };
};

}  // namespace herald::bench
