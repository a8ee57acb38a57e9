// The baseline every herald number is compared with: a minimal hand-written
// single-producer single-consumer byte ring, the practical hardware limit of
// moving variable-size messages through shared memory (rigtorp SPSCQueue.h,
// Disruptor's single-producer sequencer, folly ProducerConsumerQueue.h).
//
// It has exactly what such a ring needs and nothing herald adds: no claim
// table, no commit word per record, no envelope, no gating groups, no crash
// repair, no parking. Header-only and position-independent (no pointers in
// the shared layout), so the multi-process harness (herald-bench, issue 6)
// maps the same layout in two processes.
//
// Layout (written by: P = producer, C = consumer):
//
//   SpscRingLayout                         data (capacity bytes, power of two)
//   +0    tail u64 (P, release)            +-----------------------------------------+
//   +128  head u64 (C, release)            | [len u64][payload][pad to 8] [len]...   |
//   +256  capacity u64 (creator)           +-----------------------------------------+
//
// A record is an 8-byte length and the payload, padded to 8 bytes (a 64 B
// message takes 72 bytes). A record never wraps: when it does not fit before
// the end, the producer writes a skip marker there and starts at offset 0.
// Positions are byte counts that only grow; offset = position & (capacity-1).
//
// Ordering (labels as in shm/ring_log.cpp):
//   R1/A1  tail: the producer's release store publishes every record below
//          it; the consumer's acquire load makes them visible.
//   R2/A2  head: the consumer's release store says every byte below it was
//          read; the producer's acquire load lets it overwrite them.
// Both indices are published in batches: the producer every
// `publish_every` records (and whenever it would otherwise wait, and on
// flush()), the consumer once per poll. Each side caches the other's index
// and reloads it only when the cache says "full" / "empty".
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

namespace herald::bench {

inline constexpr std::size_t kRingCacheLine = 128;  // the adjacent-line prefetcher pairs 64 B lines

struct SpscRingLayout {
  alignas(kRingCacheLine) std::atomic<std::uint64_t> tail;  // P: next position to write (published)
  alignas(kRingCacheLine) std::atomic<std::uint64_t> head;  // C: next position to read (published)
  alignas(kRingCacheLine) std::uint64_t capacity;           // creator: data bytes, a power of two >= 4096
};
static_assert(std::is_standard_layout_v<SpscRingLayout>);
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);  // lock-free => usable across processes
static_assert(offsetof(SpscRingLayout, head) - offsetof(SpscRingLayout, tail) >= kRingCacheLine);
static_assert(offsetof(SpscRingLayout, capacity) - offsetof(SpscRingLayout, head) >= kRingCacheLine);

inline constexpr std::uint64_t kRingRecordHeader = 8;
inline constexpr std::uint64_t kRingSkip = ~std::uint64_t{0};  // length word of the skip marker

// Bytes a record with an n-byte payload takes.
constexpr std::uint64_t ring_record_bytes(std::uint64_t n) noexcept {
  return (kRingRecordHeader + n + 7) & ~std::uint64_t{7};
}

// Initialises a layout in fresh memory (before either side attaches).
inline void ring_init(SpscRingLayout* r, std::uint64_t capacity) noexcept {
  r->tail.store(0, std::memory_order_relaxed);
  r->head.store(0, std::memory_order_relaxed);
  r->capacity = capacity;
}

class SpscRingWriter {
 public:
  SpscRingWriter(SpscRingLayout* r, std::byte* data, std::uint32_t publish_every = 32) noexcept
      : r_(r), data_(data), mask_(r->capacity - 1), cap_(r->capacity), publish_every_(publish_every) {
    tail_ = r->tail.load(std::memory_order_relaxed);  // own index: single writer
    head_cache_ = r->head.load(std::memory_order_acquire);
  }

  // Reserves room for an n-byte payload; nullptr when the ring is full (the
  // records written so far are then published, so the consumer can drain).
  // Fill the returned bytes, then commit(n).
  std::byte* try_claim(std::uint64_t n) noexcept {
    const std::uint64_t need = ring_record_bytes(n);
    const std::uint64_t off = tail_ & mask_;
    const std::uint64_t skip = off + need > cap_ ? cap_ - off : 0;
    if (tail_ + skip + need - head_cache_ > cap_) {
      head_cache_ = r_->head.load(std::memory_order_acquire);  // A2: pairs with R2 in SpscRingReader::poll
      if (tail_ + skip + need - head_cache_ > cap_) {
        publish();
        return nullptr;
      }
    }
    if (skip != 0) {
      std::memcpy(data_ + off, &kRingSkip, sizeof kRingSkip);
      tail_ += skip;
    }
    std::byte* rec = data_ + (tail_ & mask_);
    std::memcpy(rec, &n, sizeof n);
    return rec + kRingRecordHeader;
  }

  void commit(std::uint64_t n) noexcept {
    tail_ += ring_record_bytes(n);
    if (++unpublished_ >= publish_every_) publish();
  }

  bool try_write(const void* payload, std::uint64_t n) noexcept {
    std::byte* p = try_claim(n);
    if (p == nullptr) return false;
    std::memcpy(p, payload, n);
    commit(n);
    return true;
  }

  // Makes every record written so far visible to the consumer.
  void publish() noexcept {
    unpublished_ = 0;
    r_->tail.store(tail_, std::memory_order_release);  // R1: pairs with A1 in SpscRingReader::poll
  }

  std::uint64_t position() const noexcept { return tail_; }

 private:
  SpscRingLayout* r_;
  std::byte* data_;
  std::uint64_t mask_, cap_;
  std::uint32_t publish_every_;
  std::uint32_t unpublished_ = 0;
  std::uint64_t tail_ = 0;
  std::uint64_t head_cache_ = 0;
};

class SpscRingReader {
 public:
  SpscRingReader(SpscRingLayout* r, const std::byte* data) noexcept
      : r_(r), data_(data), mask_(r->capacity - 1), cap_(r->capacity) {
    head_ = r->head.load(std::memory_order_relaxed);  // own index: single reader
    tail_cache_ = head_;
  }

  // Calls f(const std::byte* payload, std::uint64_t len) for up to `max`
  // records, then publishes the new head once. Returns how many.
  template <class F>
  std::size_t poll(F&& f, std::size_t max) noexcept {
    if (head_ == tail_cache_) {
      tail_cache_ = r_->tail.load(std::memory_order_acquire);  // A1: pairs with R1 in SpscRingWriter::publish
      if (head_ == tail_cache_) return 0;
    }
    std::size_t n = 0;
    while (n < max && head_ != tail_cache_) {
      const std::byte* rec = data_ + (head_ & mask_);
      std::uint64_t len = 0;
      std::memcpy(&len, rec, sizeof len);
      if (len == kRingSkip) {
        head_ += cap_ - (head_ & mask_);
        continue;
      }
      f(rec + kRingRecordHeader, len);
      head_ += ring_record_bytes(len);
      ++n;
    }
    r_->head.store(head_, std::memory_order_release);  // R2: pairs with A2 in SpscRingWriter::try_claim
    return n;
  }

  std::uint64_t position() const noexcept { return head_; }

 private:
  SpscRingLayout* r_;
  const std::byte* data_;
  std::uint64_t mask_, cap_;
  std::uint64_t head_ = 0;
  std::uint64_t tail_cache_ = 0;
};

}  // namespace herald::bench
