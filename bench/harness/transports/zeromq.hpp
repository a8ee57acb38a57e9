// Peer: ZeroMQ (libzmq through cppzmq), PUSH -> PULL over ipc:// in the
// row's workdir, one endpoint per route. The Receiver binds the PULL
// socket; Senders connect PUSH sockets (mpsc: several PUSH into one PULL,
// fair-queued). A PUSH socket never drops: at its high-water mark a send
// returns EAGAIN (spin/yield: try_send is false) or blocks (block mode,
// bounded by ZMQ_SNDTIMEO). A send before the PULL has bound is queued on
// the pending connection (ZMQ_IMMEDIATE=0) and goes out once it connects.
// HWMs are ring_bytes / size messages on both ends.
//
// One zmq context (one I/O thread) per process, shared by the Sender and
// Receiver a ping-pong side builds, made in the child (never across fork).
// Closing a Sender waits (ZMQ_LINGER, bounded) until its queue is written.
#pragma once

#include <unistd.h>

#include <zmq.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "bench/harness/transport.hpp"

namespace herald::bench {

struct ZeromqTransport {
  static constexpr std::string_view kName = "zeromq";
  static constexpr int kBlockedSendMs = 10'000;
  static constexpr int kLingerMs = 10'000;

  static std::string describe(const RowSpec& spec) {
    return "one zmq frame per message, PUSH -> PULL over ipc:// (HWM " + std::to_string(hwm(spec)) +
           " msgs; libzmq copies into its own message and its I/O thread does the socket writes)";
  }

  static std::string skip_reason(const RowSpec& spec) {
    if (spec.scenario == Scenario::kFanout)
      return "PUSH/PULL load-balances (each message to one consumer); PUB/SUB drops at its HWM";
    return "";
  }

  static int hwm(const RowSpec& spec) {
    return static_cast<int>(
        std::clamp<std::size_t>(spec.ring_bytes / std::max<std::size_t>(spec.size, 1), 1000, 1u << 22));
  }

  static std::string endpoint(const RowSpec& spec, int route) {
    return "ipc://" + spec.workdir + "/" + spec.unique + "-zmq" + std::to_string(route);
  }

  // The process's context: made on first use in a child, closed (after
  // every socket's linger) when the last Sender / Receiver lets go of it.
  static std::shared_ptr<zmq::context_t> context() {
    static std::weak_ptr<zmq::context_t> shared;
    if (auto ctx = shared.lock()) return ctx;
    auto ctx = std::make_shared<zmq::context_t>(1);
    shared = ctx;
    return ctx;
  }

  struct Host {
    std::string path[2];
    pid_t owner = getpid();

    explicit Host(const RowSpec& spec) {
      for (int r = 0; r < 2; ++r) path[r] = endpoint(spec, r).substr(6);  // strip "ipc://"
    }
    ~Host() {
      if (getpid() != owner) return;
      for (auto& p : path) ::unlink(p.c_str());  // normally gone already: libzmq unlinks on close
    }
    Host(const Host&) = delete;
    Host& operator=(const Host&) = delete;
  };

  class Sender {
   public:
    Sender(Host&, const RowSpec& spec, Endpoint ep) : block_(spec.wait == WaitMode::kBlock) {
      try {
        ctx_ = context();
        sock_ = std::make_unique<zmq::socket_t>(*ctx_, zmq::socket_type::push);
        sock_->set(zmq::sockopt::sndhwm, hwm(spec));
        sock_->set(zmq::sockopt::linger, kLingerMs);
        sock_->set(zmq::sockopt::reconnect_ivl, 5);
        sock_->set(zmq::sockopt::sndtimeo, kBlockedSendMs);
        sock_->connect(endpoint(spec, ep.route));
      } catch (const zmq::error_t& e) {
        throw BenchError("zeromq: PUSH connect " + endpoint(spec, ep.route) + ": " + e.what());
      }
    }

    bool try_send(const std::byte* p, std::size_t n) {
      try {
        const auto r = sock_->send(zmq::const_buffer(p, n), block_ ? zmq::send_flags::none : zmq::send_flags::dontwait);
        if (r) return true;
      } catch (const zmq::error_t& e) {
        throw BenchError(std::string("zeromq: send: ") + e.what());
      }
      if (!block_) return false;  // at the HWM
      throw BenchError("zeromq: send blocked " + std::to_string(kBlockedSendMs) + " ms (receiver gone?)");
    }
    void flush() {}

   private:
    bool block_;
    std::shared_ptr<zmq::context_t> ctx_;  // declared first: outlives the socket
    std::unique_ptr<zmq::socket_t> sock_;
  };

  class Receiver {
   public:
    Receiver(Host&, const RowSpec& spec, Endpoint ep) : block_(spec.wait == WaitMode::kBlock) {
      try {
        ctx_ = context();
        sock_ = std::make_unique<zmq::socket_t>(*ctx_, zmq::socket_type::pull);
        sock_->set(zmq::sockopt::rcvhwm, hwm(spec));
        sock_->set(zmq::sockopt::linger, 0);
        sock_->bind(endpoint(spec, ep.route));
      } catch (const zmq::error_t& e) {
        throw BenchError("zeromq: PULL bind " + endpoint(spec, ep.route) + ": " + e.what());
      }
    }

    template <class F>
    std::size_t poll(F&& f, std::size_t max, std::chrono::milliseconds timeout) {
      std::size_t n = drain(f, max);
      if (n > 0 || !block_) return n;
      zmq::pollitem_t item{static_cast<void*>(*sock_), 0, ZMQ_POLLIN, 0};
      try {
        if (zmq::poll(&item, 1, timeout) <= 0) return 0;
      } catch (const zmq::error_t& e) {
        throw BenchError(std::string("zeromq: poll: ") + e.what());
      }
      return drain(f, max);
    }

   private:
    template <class F>
    std::size_t drain(F& f, std::size_t max) {
      std::size_t n = 0;
      try {
        while (n < max && sock_->recv(msg_, zmq::recv_flags::dontwait)) {
          f(static_cast<const std::byte*>(msg_.data()), msg_.size());
          ++n;
        }
      } catch (const zmq::error_t& e) {
        throw BenchError(std::string("zeromq: recv: ") + e.what());
      }
      return n;
    }

    bool block_;
    std::shared_ptr<zmq::context_t> ctx_;
    std::unique_ptr<zmq::socket_t> sock_;
    zmq::message_t msg_;  // reused: libzmq rebuilds it on every recv
  };
};

}  // namespace herald::bench
