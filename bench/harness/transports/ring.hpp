// The baseline: bench/baseline_spsc_ring.hpp in a shared-memory segment,
// one ring per route. The segment is created by the Host (shm_open, mapped,
// then unlinked at once: the children inherit the mapping by fork, so no
// /dev/shm name outlives even a killed run). Single producer, single
// consumer by design: mpsc and fanout are skipped. It has no waiting of its
// own: an empty poll returns 0 and the harness spins or yields.
//
// Each side populates its own page tables for the segment when it is built
// (shm::populate_pages, before the child says it is ready), as herald's
// producers and consumers do when they attach: fork() does not copy a
// shared mapping's page-table entries, so without it both children faulted
// once per 4 KiB page of their first lap, sometimes on the same page at
// once (bench/RESULTS.md, "sixth session").
#pragma once

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>

#include "bench/baseline_spsc_ring.hpp"
#include "bench/harness/transport.hpp"
#include "shm/mapping.hpp"

namespace herald::bench {

struct RingTransport {
  static constexpr std::string_view kName = "ring";
  static constexpr std::size_t kHeaderBytes = 4096;  // SpscRingLayout, then the data at a page boundary
  static std::string describe(const RowSpec& spec);
  static std::string skip_reason(const RowSpec& spec);

  struct Host {
    explicit Host(const RowSpec& spec);
    ~Host();
    Host(const Host&) = delete;
    Host& operator=(const Host&) = delete;
    std::byte* base[2] = {nullptr, nullptr};
    std::size_t bytes = 0;
  };

  // A route's ring, its page tables populated in this process.
  static SpscRingLayout* attach(Host& host, int route) noexcept {
    shm::populate_pages(host.base[route], host.bytes);
    return reinterpret_cast<SpscRingLayout*>(host.base[route]);
  }

  class Sender {
   public:
    Sender(Host& host, const RowSpec&, Endpoint ep)
        : w_(attach(host, ep.route), host.base[ep.route] + kHeaderBytes) {}
    bool try_send(const std::byte* p, std::size_t n) noexcept { return w_.try_write(p, n); }
    void flush() noexcept { w_.publish(); }

   private:
    SpscRingWriter w_;
  };

  class Receiver {
   public:
    Receiver(Host& host, const RowSpec&, Endpoint ep)
        : r_(attach(host, ep.route), host.base[ep.route] + kHeaderBytes) {}
    template <class F>
    std::size_t poll(F&& f, std::size_t max, std::chrono::milliseconds) noexcept {
      return r_.poll([&f](const std::byte* p, std::uint64_t n) { f(p, static_cast<std::size_t>(n)); }, max);
    }

   private:
    SpscRingReader r_;
  };
};

}  // namespace herald::bench
