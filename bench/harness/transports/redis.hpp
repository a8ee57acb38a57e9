// Peer: Redis Streams through hiredis. The Host starts its own redis-server
// on a Unix socket in the row's workdir (no TCP port, no persistence) and
// waits until it answers PING; one stream per route.
//
// Sender: XADD <stream> * d <message>, pipelined on a non-blocking hiredis
// context: commands are appended to hiredis' output buffer and written in
// batches of 16 (or at once for latency / ping-pong rows), replies are
// collected lazily; at most kWindow commands are unanswered (then try_send
// is false, or waits in block mode). flush() writes everything and reads
// every reply. No MAXLEN: the stream keeps every message until the Host
// stops the server, so nothing is trimmed before a consumer read it.
//
// Receiver: XREAD COUNT n [BLOCK ms] STREAMS <stream> <last id>, from 0-0,
// so every consumer reads the whole stream independently (fanout works and
// a consumer that starts late loses nothing). Spin/yield send XREAD without
// BLOCK (each poll is still a round trip through the server); block mode
// uses BLOCK <timeout>.
#pragma once

#include <hiredis/hiredis.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>

#include "bench/harness/transport.hpp"
#include "bench/harness/transports/child_process.hpp"

namespace herald::bench {

struct RedisTransport {
  static constexpr std::string_view kName = "redis";
  static constexpr std::size_t kWindow = 1024;  // unanswered XADDs per Sender
  static constexpr std::size_t kBatch = 16;     // XADDs per write in throughput rows
  static constexpr int kBlockedSendMs = 10'000;

  static std::string describe(const RowSpec&) {
    return "XADD (pipelined, <= 1024 unanswered) / XREAD COUNT BLOCK on a Redis stream through hiredis, "
           "redis-server on a Unix socket; every message is a stream entry with one field";
  }

  static std::string skip_reason(const RowSpec& spec) {
    if (!in_path("redis-server")) return "redis-server not found in PATH (Debian package redis-server)";
    if (socket_path(spec).size() >= 100) return "socket path too long for sun_path: " + socket_path(spec);
    return "";
  }

  static std::string socket_path(const RowSpec& spec) { return spec.workdir + "/" + spec.unique + "-redis.sock"; }
  static std::string stream_key(const RowSpec& spec, int route) {
    return "herald-bench:" + spec.unique + ":" + std::to_string(route);
  }

  struct RedisDeleter {
    void operator()(redisContext* c) const noexcept { redisFree(c); }
  };
  using Context = std::unique_ptr<redisContext, RedisDeleter>;

  static Context connect(const std::string& path, bool blocking) {
    Context c(blocking ? redisConnectUnixWithTimeout(path.c_str(), timeval{5, 0})
                       : redisConnectUnixNonBlock(path.c_str()));
    if (!c) throw BenchError("redis: cannot allocate a hiredis context");
    if (c->err != 0) throw BenchError("redis: connect " + path + ": " + c->errstr);
    return c;
  }

  struct Host {
    std::string sock;
    std::string log;
    ChildProcess server;

    explicit Host(const RowSpec& spec) : sock(socket_path(spec)), log(spec.workdir + "/" + spec.unique + "-redis.log") {
      try {
        ::unlink(sock.c_str());
        server.start({"redis-server", "--port", "0", "--unixsocket", sock, "--unixsocketperm", "700", "--save", "",
                      "--appendonly", "no", "--dir", spec.workdir, "--daemonize", "no", "--logfile", "",
                      "--databases", "1"},
                     log);
        wait_until_ready(server, "redis-server (pid " + std::to_string(server.pid()) + ")",
                         std::chrono::milliseconds(10'000), [&] { return answers_ping(); });
      } catch (...) {
        cleanup();
        throw;
      }
    }
    ~Host() { cleanup(); }
    Host(const Host&) = delete;
    Host& operator=(const Host&) = delete;

   private:
    bool answers_ping() const {
      struct stat st{};
      if (::stat(sock.c_str(), &st) != 0) return false;
      Context c(redisConnectUnixWithTimeout(sock.c_str(), timeval{0, 200'000}));
      if (!c || c->err != 0) return false;
      auto* r = static_cast<redisReply*>(redisCommand(c.get(), "PING"));
      const bool ok = r != nullptr && r->type == REDIS_REPLY_STATUS && std::string_view(r->str, r->len) == "PONG";
      if (r != nullptr) freeReplyObject(r);
      return ok;
    }

    void cleanup() noexcept {
      if (!server.owned()) return;  // not started, or a forked copy of the Host
      server.stop();
      ::unlink(sock.c_str());
      ::unlink(log.c_str());
    }
  };

  class Sender {
   public:
    Sender(Host& host, const RowSpec& spec, Endpoint ep)
        : c_(connect(host.sock, false)),
          key_(stream_key(spec, ep.route)),
          block_(spec.wait == WaitMode::kBlock),
          immediate_(spec.scenario == Scenario::kLatency || spec.scenario == Scenario::kPingPong) {}

    ~Sender() {
      try {
        flush();
      } catch (const BenchError&) {
        // the row has failed already, or the server is gone; nothing to add
      }
    }
    Sender(const Sender&) = delete;
    Sender& operator=(const Sender&) = delete;

    bool try_send(const std::byte* p, std::size_t n) {
      if (unanswered_ >= kWindow) {
        pump();
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kBlockedSendMs);
        while (unanswered_ >= kWindow) {
          if (!block_) return false;
          wait_io(deadline);
          pump();
        }
      }
      const char* argv[5] = {"XADD", key_.data(), "*", "d", reinterpret_cast<const char*>(p)};
      const std::size_t lens[5] = {4, key_.size(), 1, 1, n};
      if (redisAppendCommandArgv(c_.get(), 5, argv, lens) != REDIS_OK) fail("XADD");
      ++unanswered_;
      if (immediate_ || ++unwritten_ >= kBatch) {
        write_out();
        if (unanswered_ >= kWindow / 2) read_replies();
      }
      return true;
    }

    // Writes every appended XADD and waits (bounded) for all their replies.
    void flush() {
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kBlockedSendMs);
      pump();
      while (unanswered_ > 0 || pending_write_) {
        wait_io(deadline);
        pump();
      }
    }

   private:
    [[noreturn]] void fail(const char* what) const {
      throw BenchError(std::string("redis: ") + what + " on " + key_ + ": " + c_->errstr);
    }

    void write_out() {
      int done = 0;
      if (redisBufferWrite(c_.get(), &done) != REDIS_OK) fail("write");
      pending_write_ = done == 0;
      unwritten_ = 0;
    }

    void read_replies() {
      if (redisBufferRead(c_.get()) != REDIS_OK) fail("read");
      for (;;) {
        void* reply = nullptr;
        if (redisGetReplyFromReader(c_.get(), &reply) != REDIS_OK) fail("reply");
        if (reply == nullptr) return;
        auto* r = static_cast<redisReply*>(reply);
        if (r->type == REDIS_REPLY_ERROR) {
          const std::string msg(r->str, r->len);
          freeReplyObject(r);
          throw BenchError("redis: XADD " + key_ + ": " + msg);
        }
        freeReplyObject(r);
        --unanswered_;
      }
    }

    void pump() {
      write_out();
      read_replies();
    }

    void wait_io(std::chrono::steady_clock::time_point deadline) const {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0)
        throw BenchError("redis: " + std::to_string(unanswered_) + " XADDs unanswered after " +
                         std::to_string(kBlockedSendMs) + " ms on " + key_);
      pollfd pfd{c_->fd, static_cast<short>(POLLIN | (pending_write_ ? POLLOUT : 0)), 0};
      ::poll(&pfd, 1, static_cast<int>(left.count()));
    }

    Context c_;
    std::string key_;
    bool block_;
    bool immediate_;
    bool pending_write_ = false;
    std::size_t unanswered_ = 0;
    std::size_t unwritten_ = 0;
  };

  class Receiver {
   public:
    Receiver(Host& host, const RowSpec& spec, Endpoint ep)
        : c_(connect(host.sock, true)), key_(stream_key(spec, ep.route)), block_(spec.wait == WaitMode::kBlock) {
      redisSetTimeout(c_.get(), timeval{60, 0});
      std::memcpy(last_id_, "0-0", 4);
      last_len_ = 3;
    }

    template <class F>
    std::size_t poll(F&& f, std::size_t max, std::chrono::milliseconds timeout) {
      if (max == 0) return 0;
      char count[24];
      char ms[24];
      const std::size_t count_len = static_cast<std::size_t>(
          std::to_chars(count, count + sizeof count, std::min<std::size_t>(max, 1024)).ptr - count);
      const std::size_t ms_len = static_cast<std::size_t>(
          std::to_chars(ms, ms + sizeof ms, std::max<long long>(timeout.count(), 1)).ptr - ms);
      const char* argv[8] = {"XREAD", "COUNT", count, "BLOCK", ms, "STREAMS", key_.data(), last_id_};
      const std::size_t lens[8] = {5, 5, count_len, 5, ms_len, 7, key_.size(), last_len_};
      redisReply* r = nullptr;
      if (block_) {
        r = static_cast<redisReply*>(redisCommandArgv(c_.get(), 8, argv, lens));
      } else {  // no BLOCK: drop argv[3..4]
        const char* a[6] = {argv[0], argv[1], argv[2], argv[5], argv[6], argv[7]};
        const std::size_t l[6] = {lens[0], lens[1], lens[2], lens[5], lens[6], lens[7]};
        r = static_cast<redisReply*>(redisCommandArgv(c_.get(), 6, a, l));
      }
      if (r == nullptr) throw BenchError("redis: XREAD " + key_ + ": " + c_->errstr);
      std::unique_ptr<redisReply, void (*)(void*)> hold(r, freeReplyObject);
      if (r->type == REDIS_REPLY_NIL) return 0;
      if (r->type == REDIS_REPLY_ERROR) throw BenchError("redis: XREAD " + key_ + ": " + std::string(r->str, r->len));
      // [[key, [[id, [field, value]], ...]]]
      if (r->type != REDIS_REPLY_ARRAY || r->elements != 1 || r->element[0]->elements != 2)
        throw BenchError("redis: XREAD " + key_ + ": unexpected reply shape");
      const redisReply* entries = r->element[0]->element[1];
      std::size_t n = 0;
      for (std::size_t i = 0; i < entries->elements; ++i) {
        const redisReply* e = entries->element[i];
        if (e->elements != 2 || e->element[1]->elements != 2 || e->element[0]->len >= sizeof last_id_)
          throw BenchError("redis: XREAD " + key_ + ": unexpected entry shape");
        const redisReply* value = e->element[1]->element[1];
        f(reinterpret_cast<const std::byte*>(value->str), value->len);
        ++n;
        std::memcpy(last_id_, e->element[0]->str, e->element[0]->len);
        last_len_ = e->element[0]->len;
        last_id_[last_len_] = '\0';
      }
      return n;
    }

   private:
    Context c_;
    std::string key_;
    bool block_;
    char last_id_[48];
    std::size_t last_len_;
  };
};

}  // namespace herald::bench
