// Helpers for tests that drive the log protocol at the shm level (no
// runtime): a topic on a guarded bus, records with a self-checking body, and
// one-call publishing. Header-only so each test binary links herald::shm
// itself.
//
// Record body written by fill_record():
//   header (48 B) | tag u64 | word[k] = body_word(tag, k) ... | padding
// `tag` is whatever the test wants to recognise (producer << 40 | sequence,
// an iteration number); the words make a torn or stale body detectable from
// the bytes alone (check_record), without any side table.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>

#include "shm/ring_log.hpp"
#include "shm/topic_map.hpp"
#include "tests/support/test_env.hpp"

namespace herald::test {

// splitmix64 finaliser: a cheap, well-mixed function of (tag, k).
constexpr std::uint64_t mix64(std::uint64_t x) noexcept {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}
constexpr std::uint64_t body_word(std::uint64_t tag, std::uint64_t k) noexcept { return mix64(tag * 0x100000001B3ull + k); }

// A topic made at the shm level on a bus of its own. The BusGuard removes
// every /dev/shm object of the bus when the test ends, pass or fail.
struct ShmTopic {
  BusGuard guard;
  shm::TopicMap map;  // the creator's mapping: log and state read-write

  explicit ShmTopic(const shm::LogParams& params, const std::string& topic = "t", std::uint64_t incarnation = 1) {
    auto t = shm::TopicMap::create(guard.bus(), topic, incarnation, params, {});
    if (!t) {
      ADD_FAILURE() << "TopicMap::create: " << t.error().message();
      return;
    }
    map = std::move(t).value();
  }
  bool ok() const { return map.partitions() != 0; }
  const shm::PartitionView& part(std::uint32_t p = 0) const { return map.partition(p); }
};

// Header fields and a self-checking body for a record of `size` bytes at pos.
// The commit word is NOT written.
inline void fill_record(const shm::PartitionView& v, std::uint64_t pos, std::uint32_t size, std::uint64_t tag,
                        std::uint16_t flags = 0) {
  shm::RecordHeader* h = v.header_at(pos);
  h->size = size;
  h->payload_len = size - shm::kRecordHeaderBytes;
  h->time_ns = 0;
  h->id_hi = tag;
  h->id_lo = pos;
  h->flags = flags;
  h->key_len = 0;
  h->meta_len = 0;
  h->producer_slot = 0;
  std::byte* body = v.bytes_at(pos) + shm::kRecordHeaderBytes;
  std::memcpy(body, &tag, 8);
  for (std::uint64_t k = 1; k < (size - shm::kRecordHeaderBytes) / 8; ++k) {
    const std::uint64_t w = body_word(tag, k);
    std::memcpy(body + 8 * k, &w, 8);
  }
}

// True if the record bytes (header + body, as in the ring or a copy) are
// exactly what fill_record wrote for (pos, its tag). Sets *tag if given.
inline bool check_record(const std::byte* rec, std::uint64_t pos, std::uint64_t* tag = nullptr) {
  shm::RecordHeader h;
  std::memcpy(static_cast<void*>(&h), rec, sizeof h);
  if (h.size < shm::kRecordHeaderBytes || h.size % shm::kRecordAlign != 0 || h.id_lo != pos || h.payload_len != h.size - shm::kRecordHeaderBytes)
    return false;
  const std::byte* body = rec + shm::kRecordHeaderBytes;
  std::uint64_t t = 0;
  std::memcpy(&t, body, 8);
  if (t != h.id_hi) return false;
  for (std::uint64_t k = 1; k < (h.size - shm::kRecordHeaderBytes) / 8; ++k) {
    std::uint64_t w = 0;
    std::memcpy(&w, body + 8 * k, 8);
    if (w != body_word(t, k)) return false;
  }
  if (tag != nullptr) *tag = t;
  return true;
}

// try_claim + fill + commit + finish of one record; nullopt (and the status)
// when the claim fails.
inline std::optional<std::uint64_t> publish(shm::RingLogWriter& w, std::uint32_t p, std::uint32_t size,
                                            std::uint64_t tag, shm::Status* status = nullptr) {
  std::uint64_t pos = 0;
  const shm::Status st = w.try_claim(p, size, &pos);
  if (status != nullptr) *status = st;
  if (st != shm::Status::kOk) return std::nullopt;
  fill_record(w.topic()->partition(p), pos, size, tag);
  w.commit_record(p, pos, size);
  w.finish(p);
  return pos;
}

// The commit word a record at pos carries once committed.
inline std::uint64_t commit_word(const shm::PartitionView& v, std::uint64_t pos) { return pos ^ v.salt; }

// Stores the commit word for pos (release), as RingLogWriter::commit_record does.
inline void forge_commit(const shm::PartitionView& v, std::uint64_t pos) {
  v.header_at(pos)->word.store(pos ^ v.salt, std::memory_order_release);
}

// For failure messages: what a partition looks like now.
inline std::string describe_partition(const shm::PartitionView& v) {
  std::string s = "partition " + std::to_string(v.index) + ": tail=" +
                  std::to_string(v.part->tail.load(std::memory_order_acquire)) + " claims:";
  for (std::uint32_t i = 0; i < v.producer_slots; ++i) {
    const std::uint64_t w = v.claims[i].word.load(std::memory_order_acquire);
    if ((w & shm::kClaimStateMask) == shm::kClaimEmpty) continue;
    s += " [slot " + std::to_string(i) + " pos=" + std::to_string(w & ~(shm::kClaimAlign - 1)) +
         " state=" + std::to_string(w & shm::kClaimStateMask) +
         " size=" + std::to_string(v.claims[i].size.load(std::memory_order_relaxed)) +
         " committed_to=" + std::to_string(v.claims[i].committed_to.load(std::memory_order_relaxed)) + "]";
  }
  return s;
}

}  // namespace herald::test
