// Peer: iceoryx 2.0.3 (Debian's libiceoryx-posh-dev), untyped
// publish/subscribe. The Host starts its own RouDi (iox-roudi, the built-in
// mempool config, process monitoring off because the harness reaps the
// children itself) and stops it in its destructor; RouDi is one per host
// (/tmp/iox-unique-roudi.lock), so a RouDi the Host did not start makes the
// row skip.
//
// Sender: loan a chunk of `n` bytes, copy the message in, publish (delivery
// is zero-copy: subscribers read the chunk in place). Publishers use
// ConsumerTooSlowPolicy::WAIT_FOR_CONSUMER and subscribers
// QueueFullPolicy::BLOCK_PRODUCER with the largest queue (256), so a full
// subscriber queue makes publish() wait inside iceoryx instead of dropping;
// a loan that finds the mempool empty makes try_send false. n:m is
// supported: mpsc is several publishers on one service, fanout several
// subscribers.
//
// Start-up: a message published before a subscriber is connected would go
// nowhere (history is capped at 16), so a Sender holds back (try_send is
// false) until its publisher has subscribers and every expected Receiver of
// its route has seen its own subscription acknowledged. Receivers announce
// that in a shared page the Host maps before the fork.
#pragma once

#include <fcntl.h>
#include <pwd.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <unistd.h>

#include <iceoryx_hoofs/log/logmanager.hpp>
#include <iceoryx_posh/internal/runtime/posh_runtime_impl.hpp>
#include <iceoryx_posh/mepoo/chunk_header.hpp>
#include <iceoryx_posh/popo/untyped_publisher.hpp>
#include <iceoryx_posh/popo/untyped_subscriber.hpp>
#include <iceoryx_posh/popo/wait_set.hpp>
#include <iceoryx_posh/runtime/posh_runtime.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>

#include "bench/harness/transport.hpp"
#include "bench/harness/transports/child_process.hpp"

namespace herald::bench {

struct IceoryxTransport {
  static constexpr std::string_view kName = "iceoryx";
  static constexpr const char* kRoudiLock = "/tmp/iox-unique-roudi.lock";
  // RouDi's built-in config: the largest mempool has 4 MiB chunks (10 of
  // them), chunk header included.
  static constexpr std::size_t kMaxPayload = (std::size_t{4} << 20) - 1024;

  static std::string describe(const RowSpec&) {
    return "iceoryx 2.0.3 untyped pub/sub: loan a chunk, copy the message in, publish; subscribers take the "
           "chunk in place (queue 256, WAIT_FOR_CONSUMER / BLOCK_PRODUCER); RouDi started by the row";
  }

  static std::string skip_reason(const RowSpec& spec) {
    if (!in_path("iox-roudi")) return "iox-roudi not found in PATH (Debian package iceoryx)";
    if (spec.size > kMaxPayload)
      return "size " + std::to_string(spec.size) + " > " + std::to_string(kMaxPayload) +
             " (largest chunk of RouDi's built-in mempool config)";
    if (spec.unique.size() > 90) return "RowSpec::unique longer than an iceoryx service id (100 chars)";
    return foreign_roudi();
  }

  // "" unless a RouDi this process did not start holds RouDi's lock.
  static std::string foreign_roudi() {
    if (own_roudi() > 0) return "";
    const int fd = ::open(kRoudiLock, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return "";  // no lock file: no RouDi
    const bool held = ::flock(fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK;
    ::close(fd);  // releases the lock if we took it
    return held ? std::string("a RouDi not started by herald-bench is running (") + kRoudiLock +
                      " is locked); RouDi is one per host, stop it to run the iceoryx rows"
                : "";
  }

  static pid_t& own_roudi() {
    static pid_t pid = -1;
    return pid;
  }

  // The page the Receivers announce their subscriptions in.
  struct Shared {
    std::atomic<std::uint32_t> subscribed[2];
  };
  static_assert(std::atomic<std::uint32_t>::is_always_lock_free);  // lock-free => usable across processes

  struct Host {
    Shared* shared = nullptr;
    std::string log;
    ChildProcess roudi;

    explicit Host(const RowSpec& spec) : log(spec.workdir + "/" + spec.unique + "-roudi.log") {
      if (const std::string why = foreign_roudi(); !why.empty()) throw BenchError("iceoryx: " + why);
      void* p = ::mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
      if (p == MAP_FAILED) throw BenchError(std::string("iceoryx: mmap: ") + std::strerror(errno));
      shared = new (p) Shared{};
      try {
        roudi.start({"iox-roudi", "--monitoring-mode", "off", "--log-level", "warning"}, log);
        own_roudi() = roudi.pid();
        wait_until_ready(roudi, "iox-roudi (pid " + std::to_string(roudi.pid()) + ")",
                         std::chrono::milliseconds(10'000), [&] { return log_says_ready(); });
      } catch (...) {
        cleanup();
        throw;
      }
    }
    ~Host() { cleanup(); }
    Host(const Host&) = delete;
    Host& operator=(const Host&) = delete;

   private:
    bool log_says_ready() const {
      std::ifstream in(log);
      std::stringstream ss;
      ss << in.rdbuf();
      return ss.str().find("RouDi is ready for clients") != std::string::npos;
    }

    void cleanup() noexcept {
      if (!roudi.owned()) return;  // a forked copy of the Host
      if (!roudi.stop()) remove_roudi_leftovers();  // killed: it could not clean up
      own_roudi() = -1;
      ::unlink(log.c_str());
      if (shared != nullptr) ::munmap(shared, sizeof(Shared));
      shared = nullptr;
    }

    // What a SIGKILLed RouDi leaves: its two shm segments, its socket and locks.
    static void remove_roudi_leftovers() noexcept {
      const passwd* pw = ::getpwuid(::getuid());
      ::shm_unlink("/iceoryx_mgmt");
      if (pw != nullptr) ::shm_unlink((std::string("/") + pw->pw_name).c_str());
      ::unlink("/tmp/roudi");
      ::unlink("/tmp/roudi.lock");
      ::unlink(kRoudiLock);
    }
  };

  // The process's runtime (one per process; a ping-pong side's Sender and
  // Receiver share it), named after the pid. Owned rather than the library's
  // static singleton so it deregisters from RouDi when the process's last
  // Sender / Receiver is destroyed even if the child then leaves with
  // _exit(): RouDi 2.0.3 asserts on shutdown when a registered process is
  // already gone (monitoring is off), which would leave its shm behind.
  // Uses the protected runtime factory hook iceoryx's own test environment
  // uses (PoshRuntime::setRuntimeFactory).
  class Runtime final : public iox::runtime::PoshRuntimeImpl {
   public:
    static std::shared_ptr<Runtime> acquire() {
      static std::weak_ptr<Runtime> current;
      static iox::RuntimeName_t name;
      if (auto rt = current.lock()) return rt;
      // Warnings and errors only: no per-process registration lines on the
      // harness's stderr.
      iox::log::LogManager::GetLogManager().SetDefaultLogLevel(iox::log::LogLevel::kWarn,
                                                              iox::log::LogLevelOutput::kHideLogLevel);
      const std::string n = "herald-bench-" + std::to_string(getpid());
      name = iox::RuntimeName_t(iox::cxx::TruncateToCapacity, n.c_str());
      std::shared_ptr<Runtime> rt(new Runtime(&name));
      current = rt;
      return rt;
    }
    ~Runtime() noexcept override {
      setRuntimeFactory(&PoshRuntime::defaultRuntimeFactory);
      instance() = nullptr;
    }  // ~PoshRuntimeImpl deregisters from RouDi
    Runtime(const Runtime&) = delete;
    Runtime& operator=(const Runtime&) = delete;

   private:
    explicit Runtime(const iox::RuntimeName_t* name)
        : PoshRuntimeImpl(iox::cxx::optional<const iox::RuntimeName_t*>(name)) {
      instance() = this;
      setRuntimeFactory(&factory);
    }
    static Runtime*& instance() {
      static Runtime* rt = nullptr;
      return rt;
    }
    static iox::runtime::PoshRuntime& factory(iox::cxx::optional<const iox::RuntimeName_t*>) noexcept {
      return *instance();
    }
  };

  static iox::capro::ServiceDescription service(const RowSpec& spec, int route) {
    using Id = iox::capro::IdString_t;
    const std::string event = "route" + std::to_string(route);
    return {Id(iox::cxx::TruncateToCapacity, "herald-bench"), Id(iox::cxx::TruncateToCapacity, spec.unique.c_str()),
            Id(iox::cxx::TruncateToCapacity, event.c_str())};
  }

  static std::uint32_t expected_subscribers(const RowSpec& spec, int route) {
    return spec.scenario == Scenario::kFanout && route == 0 ? static_cast<std::uint32_t>(spec.consumers) : 1;
  }

  class Sender {
   public:
    Sender(Host& host, const RowSpec& spec, Endpoint ep)
        : runtime_(Runtime::acquire()),
          shared_(host.shared),
          route_(ep.route),
          expected_(expected_subscribers(spec, ep.route)) {
      iox::popo::PublisherOptions o;
      o.historyCapacity = 0;
      o.subscriberTooSlowPolicy = iox::popo::ConsumerTooSlowPolicy::WAIT_FOR_CONSUMER;
      pub_ = std::make_unique<iox::popo::UntypedPublisher>(service(spec, ep.route), o);
    }

    bool try_send(const std::byte* p, std::size_t n) {
      if (!connected_) {
        // A1: pairs with R1 in Receiver::poll (the count only gates the start;
        // iceoryx orders the chunks themselves).
        if (!pub_->hasSubscribers() || shared_->subscribed[route_].load(std::memory_order_acquire) < expected_)
          return false;
        connected_ = true;
      }
      auto loan = pub_->loan(static_cast<std::uint32_t>(n), 8);
      if (loan.has_error()) {
        const auto e = loan.get_error();
        if (e == iox::popo::AllocationError::RUNNING_OUT_OF_CHUNKS ||
            e == iox::popo::AllocationError::TOO_MANY_CHUNKS_ALLOCATED_IN_PARALLEL)
          return false;
        throw BenchError("iceoryx: loan of " + std::to_string(n) + " bytes failed (AllocationError " +
                         std::to_string(static_cast<int>(e)) + ")");
      }
      std::memcpy(loan.value(), p, n);
      pub_->publish(loan.value());  // waits while a subscriber queue is full (WAIT_FOR_CONSUMER)
      return true;
    }
    void flush() {}

   private:
    std::shared_ptr<Runtime> runtime_;  // first: outlives the publisher
    Shared* shared_;
    int route_;
    std::uint32_t expected_;
    bool connected_ = false;
    std::unique_ptr<iox::popo::UntypedPublisher> pub_;
  };

  class Receiver {
   public:
    Receiver(Host& host, const RowSpec& spec, Endpoint ep)
        : runtime_(Runtime::acquire()), shared_(host.shared), route_(ep.route) {
      iox::popo::SubscriberOptions o;
      o.queueCapacity = iox::MAX_SUBSCRIBER_QUEUE_CAPACITY;
      o.historyRequest = 0;
      o.queueFullPolicy = iox::popo::QueueFullPolicy::BLOCK_PRODUCER;
      sub_ = std::make_unique<iox::popo::UntypedSubscriber>(service(spec, ep.route), o);
      if (spec.wait == WaitMode::kBlock) {
        ws_ = std::make_unique<iox::popo::WaitSet<>>();
        if (ws_->attachState(*sub_, iox::popo::SubscriberState::HAS_DATA).has_error())
          throw BenchError("iceoryx: cannot attach the subscriber to a WaitSet");
      }
    }
    ~Receiver() {
      if (ws_) ws_->detachState(*sub_, iox::popo::SubscriberState::HAS_DATA);
    }
    Receiver(const Receiver&) = delete;
    Receiver& operator=(const Receiver&) = delete;

    template <class F>
    std::size_t poll(F&& f, std::size_t max, std::chrono::milliseconds timeout) {
      if (!announced_) announce();
      std::size_t n = drain(f, max);
      if (n > 0 || !ws_) return n;
      // Until our subscription is acknowledged nothing can arrive: wait in
      // short steps so the announcement is not late by a whole timeout.
      const auto wait = announced_ ? timeout : std::min(timeout, std::chrono::milliseconds(1));
      ws_->timedWait(iox::units::Duration::fromMilliseconds(static_cast<unsigned long long>(wait.count())));
      return drain(f, max);
    }

   private:
    void announce() {
      if (sub_->getSubscriptionState() != iox::SubscribeState::SUBSCRIBED) return;
      shared_->subscribed[route_].fetch_add(1, std::memory_order_release);  // R1: pairs with A1 in Sender::try_send
      announced_ = true;
    }

    template <class F>
    std::size_t drain(F& f, std::size_t max) {
      std::size_t n = 0;
      while (n < max) {
        auto taken = sub_->take();
        if (taken.has_error()) {
          if (taken.get_error() == iox::popo::ChunkReceiveResult::NO_CHUNK_AVAILABLE) break;
          throw BenchError("iceoryx: take: too many chunks held");
        }
        const void* payload = taken.value();
        const auto size = iox::mepoo::ChunkHeader::fromUserPayload(payload)->userPayloadSize();
        f(static_cast<const std::byte*>(payload), static_cast<std::size_t>(size));
        sub_->release(payload);
        ++n;
      }
      return n;
    }

    std::shared_ptr<Runtime> runtime_;  // first: outlives the subscriber
    Shared* shared_;
    int route_;
    bool announced_ = false;
    std::unique_ptr<iox::popo::UntypedSubscriber> sub_;
    std::unique_ptr<iox::popo::WaitSet<>> ws_;  // block mode only
  };
};

}  // namespace herald::bench
