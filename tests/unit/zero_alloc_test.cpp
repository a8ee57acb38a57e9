// The hot paths allocate nothing (STYLE.md 6): publish, publish_batch and
// claim/commit, and poll by a lossless group member (zero-copy) and by a
// group-less reader (copy into the preallocated buffer), 10k events each,
// under a counting global operator new. This executable replaces the global
// allocator, so it is its own test binary. Setup (attach, producer,
// consumer, first-use growth) happens before counting starts.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "herald/herald.hpp"
#include "tests/support/bus_fixture.hpp"
#include "tests/support/test_env.hpp"

namespace {
std::atomic<bool> g_counting{false};
std::atomic<std::uint64_t> g_allocations{0};

void* counted_alloc(std::size_t n, std::size_t align) {
  if (g_counting.load(std::memory_order_relaxed)) g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (n == 0) n = 1;
  void* p = nullptr;
  if (align <= alignof(std::max_align_t)) {
    p = std::malloc(n);
  } else if (::posix_memalign(&p, align, n) != 0) {
    p = nullptr;
  }
  return p;
}

// Out of line, so the optimiser does not pair an inlined operator new's
// malloc with this free and warn (-Wmismatched-new-delete).
[[gnu::noinline]] void counted_free(void* p) noexcept { std::free(p); }
}  // namespace

// The replaceable global allocation functions (all of them, so nothing
// slips past the count).
void* operator new(std::size_t n) {
  if (void* p = counted_alloc(n, 0)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) {
  if (void* p = counted_alloc(n, 0)) return p;
  throw std::bad_alloc();
}
void* operator new(std::size_t n, const std::nothrow_t&) noexcept { return counted_alloc(n, 0); }
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept { return counted_alloc(n, 0); }
void* operator new(std::size_t n, std::align_val_t a) {
  if (void* p = counted_alloc(n, static_cast<std::size_t>(a))) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n, std::align_val_t a) {
  if (void* p = counted_alloc(n, static_cast<std::size_t>(a))) return p;
  throw std::bad_alloc();
}
void* operator new(std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return counted_alloc(n, static_cast<std::size_t>(a));
}
void* operator new[](std::size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return counted_alloc(n, static_cast<std::size_t>(a));
}
void operator delete(void* p) noexcept { counted_free(p); }
void operator delete[](void* p) noexcept { counted_free(p); }
void operator delete(void* p, std::size_t) noexcept { counted_free(p); }
void operator delete[](void* p, std::size_t) noexcept { counted_free(p); }
void operator delete(void* p, std::align_val_t) noexcept { counted_free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { counted_free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { counted_free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { counted_free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { counted_free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { counted_free(p); }

namespace herald {
namespace {

// Counts allocations made while it is alive (on any thread; the test is
// single-threaded).
class AllocationCounter {
 public:
  AllocationCounter() {
    g_allocations.store(0);
    g_counting.store(true);
  }
  ~AllocationCounter() { g_counting.store(false); }
  std::uint64_t count() const { return g_allocations.load(); }
};

constexpr int kEvents = 10'000;
constexpr int kChunk = 100;  // events published (and then polled) per round

class ZeroAllocTest : public test::BusFixture<> {
 protected:
  void SetUp() override {
    BusFixture::SetUp();
    if (HasFatalFailure()) return;
    ASSERT_TRUE(bus_->create_topic("hot", {.partitions = 2, .ring_bytes = 1 << 17, .max_event = 4096,
                                           .default_policy = Policy::kLossless}));
    // The allocator replacement is live: check the counter sees allocations.
    {
      AllocationCounter probe;
      auto v = std::make_unique<std::vector<int>>(100);
      ASSERT_GT(probe.count(), 0u) << "the counting operator new is not in use";
    }
  }
};

TEST_F(ZeroAllocTest, PublishAndPollAllocateNothing) {
  auto producer = bus_->producer("hot", {.deadline = std::chrono::nanoseconds(0)}).value();
  auto member = bus_->consumer("hot", {.group = "audit"}).value();  // lossless, zero-copy, owns both partitions
  auto reader = bus_->consumer("hot").value();                       // group-less: copies
  ASSERT_EQ(member.assignment().size(), 2u);

  const std::string payload(100, 'p');
  const Header headers[] = {{"tenant", "acme"}};
  std::vector<Message> batch(kChunk, Message{.key = "customer-7", .type = "T", .payload = payload, .headers = headers});
  std::uint64_t handled = 0, bytes_seen = 0;
  auto handler = [&](const EventView& e) {
    ++handled;
    bytes_seen += e.payload().size() + e.type().size() + e.key().size();
  };

  // Warm-up outside the count: one of everything (the batch scratch grows once).
  ASSERT_TRUE(producer.publish({.payload = payload}));
  ASSERT_TRUE(producer.publish_batch(batch));
  {
    auto c = producer.claim(payload.size()).value();
    std::memcpy(c.payload().data(), payload.data(), payload.size());
    ASSERT_TRUE(c.commit());
  }
  while (member.poll(handler, 256).value() > 0) {
  }
  while (reader.poll(handler, 256).value() > 0) {
  }

  std::uint64_t published = 0, polled_member = 0, polled_reader = 0, failures = 0;
  std::uint64_t allocations = 0;
  {
    AllocationCounter counter;
    for (int round = 0; round < kEvents / kChunk; ++round) {
      // publish: one at a time, keyed and keyless.
      for (int i = 0; i < kChunk; ++i) {
        auto r = producer.publish({.key = i % 2 ? "customer-7" : "", .type = "T", .payload = payload,
                                   .headers = headers});
        failures += !r;
        published += r.has_value();
      }
      // publish_batch.
      auto b = producer.publish_batch(batch);
      failures += !b || b->published != batch.size();
      published += b ? b->published : 0;
      // claim / commit.
      for (int i = 0; i < kChunk; ++i) {
        auto c = producer.claim(payload.size(), {.type = "Z"});
        if (!c) {
          ++failures;
          continue;
        }
        std::memcpy(c->payload().data(), payload.data(), payload.size());
        failures += !c->commit();
        ++published;
      }
      // poll: the member (zero-copy, commits after each batch) and the reader.
      for (;;) {
        auto n = member.poll(handler, 256);
        if (!n) {
          ++failures;
          break;
        }
        if (*n == 0) break;
        polled_member += *n;
      }
      for (;;) {
        auto n = reader.poll(handler, 256);
        if (!n) {
          ++failures;
          break;
        }
        if (*n == 0) break;
        polled_reader += *n;
      }
    }
    allocations = counter.count();
  }
  EXPECT_EQ(failures, 0u);
  EXPECT_EQ(published, 3u * kEvents);
  EXPECT_EQ(polled_member, 3u * kEvents);
  EXPECT_EQ(polled_reader, 3u * kEvents) << "the reader keeps up: nothing is overwritten under it";
  EXPECT_EQ(allocations, 0u) << "allocations on the hot path over " << published << " publishes and "
                             << polled_member + polled_reader << " polls";
  EXPECT_GT(bytes_seen, 0u);
}

}  // namespace
}  // namespace herald
