// One event through herald's log protocol alone, without the runtime: the
// protocol stack of herald_protocol_pingpong and herald_hot_path_workload
// --mode=protocol. What Producer::publish does to the log for a payload-only
// event: the event time read before the claim (as publish reads it), a
// claim of the padded record on the writer's partition, the header as
// publish writes it (the id here is the time and the position), the
// payload, commit_record and finish. No id generator, counters, checks or
// Result: publish minus this is what the runtime adds.
#pragma once

#include <cstdint>
#include <cstring>

#include "shm/clock.hpp"
#include "shm/ring_log.hpp"
#include "shm/topic_map.hpp"

namespace herald::bench {

// Publishes on partition p of w's topic; false, with nothing claimed, when
// the claim is refused (back-pressured or closed): the caller retries or
// gives up. Inline, so that a caller's constant partition and payload length
// fold into the code (forced: g++ kept it out of line, 2 ns an event).
[[gnu::always_inline]] inline bool protocol_send(shm::RingLogWriter& w, std::uint32_t p, shm::EventClock& clock,
                                                 const std::byte* payload, std::uint32_t payload_len) noexcept {
  const shm::PartitionView& v = w.topic()->partition(p);
  const std::uint64_t size = shm::claim_bytes(shm::record_size(0, 0, payload_len));
  const std::uint64_t t = clock.now();
  std::uint64_t pos = 0;
  if (w.try_claim(p, size, &pos) != shm::Status::kOk) return false;
  std::byte* rec = v.bytes_at(pos);
  auto* h = reinterpret_cast<shm::RecordHeader*>(rec);
  h->size = static_cast<std::uint32_t>(size);
  h->payload_len = payload_len;
  h->time_ns = t;
  h->id_hi = t;
  h->id_lo = pos;
  h->flags = 0;
  h->key_len = 0;
  h->meta_len = 0;
  h->producer_slot = 0;
  std::memcpy(rec + shm::kRecordHeaderBytes, payload, payload_len);
  w.commit_record(p, pos, static_cast<std::uint32_t>(size));
  w.finish(p);
  return true;
}

}  // namespace herald::bench
