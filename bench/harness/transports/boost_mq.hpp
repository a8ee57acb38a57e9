// Peer: boost::interprocess::message_queue, one queue per route, created by
// the Host (capacity ring_bytes / size messages of `size` bytes, at least
// 16) and opened by name in each child. Spin/yield use try_send /
// try_receive; block uses timed_send / timed_receive (the queue's own
// interprocess mutex + condition variable). Every message goes to exactly
// one receiver, so mpsc works and fanout does not.
#pragma once

#include <unistd.h>

#include <boost/date_time/posix_time/posix_time_types.hpp>
#include <boost/interprocess/exceptions.hpp>
#include <boost/interprocess/ipc/message_queue.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "bench/harness/transport.hpp"

namespace herald::bench {

struct BoostMqTransport {
  static constexpr std::string_view kName = "boost-mq";
  static constexpr long kBlockedSendMs = 10'000;
  using Queue = boost::interprocess::message_queue;

  static std::string describe(const RowSpec& spec) {
    return "boost::interprocess::message_queue of " + std::to_string(capacity(spec)) +
           " x size bytes per route (one copy in, one copy out, a process-shared mutex per operation)";
  }

  static std::string skip_reason(const RowSpec& spec) {
    if (spec.scenario == Scenario::kFanout) return "a message queue delivers each message once; no broadcast";
    return "";
  }

  static std::size_t capacity(const RowSpec& spec) {
    return std::clamp<std::size_t>(spec.ring_bytes / std::max<std::size_t>(spec.size, 1), 16, std::size_t{1} << 20);
  }

  static std::string queue_name(const RowSpec& spec, int route) {
    // Named per run (spec.unique is per row and repetition only): two runs
    // at once removed each other's queues (found by an exploratory pass).
    // spec.run_pid is the coordinator's: every process of the row agrees.
    return "hb" + std::to_string(spec.run_pid) + "-" + spec.unique + "-mq" + std::to_string(route);
  }

  static boost::posix_time::ptime deadline_in(long ms) {
    return boost::posix_time::microsec_clock::universal_time() + boost::posix_time::milliseconds(ms);
  }

  struct Host {
    std::string name[2];
    pid_t owner = getpid();

    explicit Host(const RowSpec& spec) {
      try {
        const int routes = spec.scenario == Scenario::kPingPong ? 2 : 1;  // route 1 is ping-pong's pong
        for (int r = 0; r < routes; ++r) {
          name[r] = queue_name(spec, r);
          Queue::remove(name[r].c_str());
          Queue q(boost::interprocess::create_only, name[r].c_str(), capacity(spec), spec.size);
        }
      } catch (const boost::interprocess::interprocess_exception& e) {
        cleanup();
        throw BenchError("boost-mq: create " + queue_name(spec, 0) + " (" + std::to_string(capacity(spec)) +
                         " x " + std::to_string(spec.size) + " B): " + e.what());
      }
    }
    ~Host() { cleanup(); }
    Host(const Host&) = delete;
    Host& operator=(const Host&) = delete;

   private:
    void cleanup() noexcept {
      if (getpid() != owner) return;
      for (auto& n : name)
        if (!n.empty()) Queue::remove(n.c_str());
    }
  };

  static std::unique_ptr<Queue> open(const Host& host, int route) {
    if (host.name[route].empty()) throw BenchError("boost-mq: no queue for route " + std::to_string(route));
    try {
      return std::make_unique<Queue>(boost::interprocess::open_only, host.name[route].c_str());
    } catch (const boost::interprocess::interprocess_exception& e) {
      throw BenchError("boost-mq: open " + host.name[route] + ": " + e.what());
    }
  }

  class Sender {
   public:
    Sender(Host& host, const RowSpec& spec, Endpoint ep)
        : q_(open(host, ep.route)), block_(spec.wait == WaitMode::kBlock) {}

    bool try_send(const std::byte* p, std::size_t n) {
      if (!block_) return q_->try_send(p, n, 0);
      if (q_->timed_send(p, n, 0, deadline_in(kBlockedSendMs))) return true;
      throw BenchError("boost-mq: send blocked " + std::to_string(kBlockedSendMs) + " ms (receiver gone?)");
    }
    void flush() {}

   private:
    std::unique_ptr<Queue> q_;
    bool block_;
  };

  class Receiver {
   public:
    Receiver(Host& host, const RowSpec& spec, Endpoint ep)
        : q_(open(host, ep.route)),
          block_(spec.wait == WaitMode::kBlock),
          cap_(q_->get_max_msg_size()),
          buf_(std::make_unique<std::byte[]>(cap_)) {}

    template <class F>
    std::size_t poll(F&& f, std::size_t max, std::chrono::milliseconds timeout) {
      std::size_t n = 0;
      Queue::size_type got = 0;
      unsigned prio = 0;
      if (block_ && max > 0) {
        if (!q_->timed_receive(buf_.get(), cap_, got, prio, deadline_in(static_cast<long>(timeout.count()))))
          return 0;
        f(static_cast<const std::byte*>(buf_.get()), static_cast<std::size_t>(got));
        ++n;
      }
      while (n < max && q_->try_receive(buf_.get(), cap_, got, prio)) {
        f(static_cast<const std::byte*>(buf_.get()), static_cast<std::size_t>(got));
        ++n;
      }
      return n;
    }

   private:
    std::unique_ptr<Queue> q_;
    bool block_;
    std::size_t cap_;
    std::unique_ptr<std::byte[]> buf_;
  };
};

}  // namespace herald::bench
