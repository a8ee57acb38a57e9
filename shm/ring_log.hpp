// The partition log protocol: claim, commit, gated and lossy reads, gates,
// and parking on both sides. See docs/ARCHITECTURE.md "The partition log"
// and ring_log.cpp for the argument behind every memory order.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <span>
#include <vector>

#include "shm/crash_point.hpp"
#include "shm/record_layout.hpp"
#include "shm/state_layout.hpp"
#include "shm/topic_map.hpp"

namespace herald::shm {

// Hot-path status, split by what the caller should do (no strings here).
enum class Status : std::uint8_t {
  kOk,
  kEmpty,          // retry: nothing committed at the position yet
  kBackPressured,  // retry: a gate (or an unfinished record a lap behind) holds the claim
  kOverrun,        // lossy read: the record was overwritten; resynchronise
  kTimeout,        // a bounded wait ran out
  kClosed,         // stop: the topic was deleted
  kTooLarge,       // stop: the record is larger than max_event (or a batch larger than the ring allows)
  kCorrupt,        // stop: a record header failed validation
  kInvalid,        // stop: a position that is not a committed boundary in the window
  kExhausted,      // stop: the claim would end past kMaxCursorPosition (2^56 bytes)
};

enum class WaitMode : std::uint8_t { kBusySpin, kSpinYield, kPark };

// How a blocked call waits: spin `spins` times, then sched_yield `yields`
// times (kSpinYield, kPark), then park on a futex for at most
// `park_timeout_ns` at a time (kPark) until the deadline.
struct WaitPolicy {
  WaitMode mode = WaitMode::kPark;
  std::uint32_t spins = 256;
  std::uint32_t yields = 64;
  std::uint64_t park_timeout_ns = 50'000'000;  // safety net: wake-ups cannot be lost, but waits stay bounded
};

// One step of a spin -> yield -> park escalation.
class Backoff {
 public:
  explicit Backoff(const WaitPolicy& p) : policy_(p) {}
  // Spins or yields once; returns false when the caller should park now.
  bool step() noexcept;
  void reset() noexcept { n_ = 0; }

 private:
  const WaitPolicy& policy_;
  std::uint32_t n_ = 0;
};

// ---------------------------------------------------------------------------
// Producer side. One RingLogWriter per producer slot (one thread at a time).
// ---------------------------------------------------------------------------
class RingLogWriter {
 public:
  // `slot` is this producer's slot index (ProducerSlotLayout, claim slots).
  // `fast_wake`: this process registered for membarrier GLOBAL_EXPEDITED, so
  // a publish may skip the seq_cst fence before checking for parked readers,
  // and a claim on a single-producer topic may move tail with a plain store.
  RingLogWriter(const TopicMap* topic, std::uint32_t slot, bool fast_wake);

  // Claims `bytes` (a multiple of kClaimAlign = 64, at most ring/2) on partition p without
  // blocking. kBackPressured when a gate or an unfinished record one lap
  // behind holds it; the slot is then left empty (nothing claimed, no hole).
  // Inline (below), like commit_record and finish: they are the publish hot
  // path; only the gate refresh and the wake-up of parked readers are calls.
  // Forced inline: g++ otherwise keeps it out of line in Producer::publish
  // (a call, ten register saves and restores per event).
  [[gnu::always_inline]] Status try_claim(std::uint32_t p, std::uint64_t bytes, std::uint64_t* pos) noexcept {
    return try_claim_noting<false>(p, bytes, pos, 0);
  }
  // try_claim that also notes when the claim was taken (note_claim_time),
  // while the slot is at hand: a separate call resolves the slot again
  // after the claim's atomic stores, which g++ treats as clobbering every
  // field it came through.
  [[gnu::always_inline]] Status try_claim(std::uint32_t p, std::uint64_t bytes, std::uint64_t* pos,
                                          std::uint64_t realtime_ns) noexcept {
    return try_claim_noting<true>(p, bytes, pos, realtime_ns);
  }
  // As try_claim, waiting per `wait` until deadline_ns (CLOCK_MONOTONIC;
  // UINT64_MAX waits forever).
  Status claim(std::uint32_t p, std::uint64_t bytes, std::uint64_t deadline_ns, const WaitPolicy& wait,
               std::uint64_t* pos) noexcept;

  // Makes the record at `pos` (inside the current claim, header and body
  // written) visible: boundary index, then the commit word with release.
  [[gnu::always_inline]] void commit_record(std::uint32_t p, std::uint64_t pos, std::uint32_t size) noexcept {
    commit_record(topic_->partition(p), pos, size);
  }
  // As above, on p's view (topic()->partition(p)) the caller resolved.
  [[gnu::always_inline]] void commit_record(const PartitionView& v, std::uint64_t pos, std::uint32_t size) noexcept;
  // commit_record in two parts, for the records of one claim committed in a
  // row: commit_word for each (v resolved once by the caller), then
  // committed_through once with the end of the last. The slot's
  // committed_to only has to trail the commit words (repair walks the words
  // from the claim's start), so one store per run serves.
  [[gnu::always_inline]] static void commit_word(const PartitionView& v, std::uint64_t pos,
                                                 std::uint32_t size) noexcept;
  [[gnu::always_inline]] void committed_through(std::uint32_t p, std::uint64_t end) noexcept;
  // Notes in the claim slot when the current claim was taken (the event
  // clock's reading, which the producer takes at every claim anyway; a
  // caller's own event time says nothing of it), so `herald stat` can tell
  // how long a claim has been held.
  void note_claim_time(std::uint32_t p, std::uint64_t realtime_ns) noexcept {
    // Relaxed: a statistic, read by stat and doctor only.
    topic_->partition(p).claims[slot_].won_ns.store(realtime_ns, std::memory_order_relaxed);
  }
  // Ends the claim: clears the slot and wakes parked readers.
  [[gnu::always_inline]] void finish(std::uint32_t p) noexcept;
  // finish(p) for a caller that holds p's view and knows its claim
  // [claimed, + claimed_bytes) (the single-record publish): the claim is not
  // read back from the slot.
  [[gnu::always_inline]] void finish(const PartitionView& v, std::uint32_t p, std::uint64_t claimed,
                                     std::uint64_t claimed_bytes) noexcept;
  // Turns [from, end of claim) into aborted records, then finishes.
  void abort_rest(std::uint32_t p, std::uint64_t from) noexcept;

  // The lowest position any gate or unfinished claim holds (for tests/stats).
  std::uint64_t compute_gate(std::uint32_t p) noexcept;

  std::uint32_t slot() const noexcept { return slot_; }
  const TopicMap* topic() const noexcept { return topic_; }

 private:
  template <bool kNoteTime>
  [[gnu::always_inline]] Status try_claim_noting(std::uint32_t p, std::uint64_t bytes, std::uint64_t* pos,
                                                 std::uint64_t realtime_ns) noexcept;
  // try_claim's slow path: recomputes and caches the gate of p. kOk when a
  // claim of `bytes` at t fits under it, kBackPressured when it does not
  // yet, kExhausted when it would end past kMaxCursorPosition, the largest
  // position a group cursor holds (a cursor past it would wrap to a
  // position far behind, and the group would wedge or skip the log). The
  // cached gate is capped so that the fast path's test sends every claim
  // near the limit here: the limit costs the hot path nothing.
  [[gnu::cold, gnu::noinline]] Status refresh_gate(std::uint32_t p, std::uint64_t t, std::uint64_t bytes) noexcept;
  // Asks for the lines this producer is likely to write after the claim
  // [t, t + bytes) that finish() ends:
  // [t + kPrefetchAhead + bytes, + bytes), at most kPrefetchMax of them, and
  // only lines below the cached gate (free space no gating group still
  // reads: never a line a consumer is about to read). A 16 MiB ring does
  // not fit in L2, so every line a producer writes is a miss, usually on a
  // line the consumer's core read a lap ago; without this, the store buffer
  // overlaps only a few of those misses. With it, two processes at 64 B:
  // 10.8M -> 15.2M events/s single publish, 8.5M -> 17.8M publish_batch
  // (herald-bench, slow placement; bench/RESULTS.md). Only a hint: no
  // effect on what is written. But issued before a record's stores (at the
  // claim) it held back that record's commit word: with the vCPUs close and
  // events 10 us apart, the log protocol alone took 281-296 ns one way
  // against 133-144 without it, the baseline ring 126-138 (bench/RESULTS.md,
  // "eleventh session"). So finish() issues it, after the commit; streaming,
  // the lines are 4 KiB ahead either way.
  [[gnu::always_inline]] void prefetch_ahead(const PartitionView& v, std::uint64_t t, std::uint64_t bytes,
                                             std::uint64_t gate) const noexcept {
    const std::uint64_t from = t + kPrefetchAhead + bytes;
    const std::uint64_t to = from + std::min(bytes, kPrefetchMax);
    if (to > gate + v.ring_bytes) return;
    // PREFETCHW (exclusive ownership: the write that follows needs no
    // second round trip) for a claim of one small record, a plain prefetch
    // for batches: measured, PREFETCHW on a whole batch's lines was slower
    // (the other core's copies are invalidated long before they must be).
    // Two loops rather than a test per line: g++ does not unswitch it.
#if defined(__x86_64__)
    if (prefetchw_ && bytes <= 1024) {
      for (std::uint64_t a = from & ~(kCacheLine - 1); a < to; a += kCacheLine)
        asm volatile("prefetchw %0" : : "m"(*v.bytes_at(a)));
      return;
    }
#endif
    for (std::uint64_t a = from & ~(kCacheLine - 1); a < to; a += kCacheLine) __builtin_prefetch(v.bytes_at(a), 1, 3);
  }
  static constexpr std::uint64_t kPrefetchAhead = 4096;
  static constexpr std::uint64_t kPrefetchMax = 16384;

  // finish's slow path: wakes the readers whose bits are set in w.
  [[gnu::cold, gnu::noinline]] void wake_parked(std::uint64_t w) noexcept;

  const TopicMap* topic_;
  std::uint32_t slot_;
  bool fast_wake_;
  // Claims move tail with a plain store: a single-producer topic (attach
  // refuses a second producer) and fast_wake_ (the closer's membarrier
  // reaches this process). Otherwise a CAS. See try_claim, C1.
  bool plain_claims_;
  bool prefetchw_;  // the CPU has PREFETCHW (CPUID 0x80000001 ECX bit 8)
  std::vector<std::uint64_t> cached_gate_;  // per partition; only ever a safe lower bound
};

// ---------------------------------------------------------------------------
// The producer's hot path, inline. Labels as in ring_log.cpp: R1/A1 commit
// word, R2/A2 tail, R3/A3 claim slot, F1/F2 park/wake, C1 plain-store
// claims against topic delete.
// ---------------------------------------------------------------------------

template <bool kNoteTime>
inline Status RingLogWriter::try_claim_noting(std::uint32_t p, std::uint64_t bytes, std::uint64_t* pos,
                                              std::uint64_t realtime_ns) noexcept {
  const PartitionView& v = topic_->partition(p);
  // Locals: the atomic stores below would otherwise make g++ reload every
  // field of the view (and of this writer) after each of them.
  const std::uint64_t ring_bytes = v.ring_bytes;
  std::atomic<std::uint64_t>& tail = v.part->tail;
  if (bytes == 0 || bytes % kClaimAlign != 0 || bytes > ring_bytes / 2) return Status::kTooLarge;
  ClaimSlotLayout& s = v.claims[slot_];
  std::uint64_t& cached_gate = cached_gate_[p];
  // Relaxed: ordered before the CAS by its release (R2), and only heraldd
  // reads it, after this process is dead. Stored only when it changes: a
  // producer publishing events of one size claims the same bytes every
  // time, and at tens of millions of claims a second every store counts
  // (the store buffer drains about one store a cycle; bench/RESULTS.md,
  // "sixth session"). Only this producer writes its slot while it lives, so
  // the load sees its own last store (or what a repair left, if the slot
  // was reused): skipping an equal store leaves the same bytes.
  if (s.size.load(std::memory_order_relaxed) != bytes) s.size.store(bytes, std::memory_order_relaxed);
  for (;;) {
    // Relaxed: the CAS below validates the value; gate computation reloads
    // tail with the ordering it needs.
    std::uint64_t t = tail.load(std::memory_order_relaxed);
    if ((t & kTailClosedBit) != 0) {
      s.word.store(kClaimEmpty, std::memory_order_release);
      return Status::kClosed;
    }
    // The slot names the candidate BEFORE the CAS: if this CAS wins, every
    // producer that sees the new tail also sees this slot (W covers the
    // range), and a crash right after the CAS leaves a slot that names it.
    // committed_to is a hint (see commit_record); when this producer's last
    // claim ended at t, it already says t (skipped as size above).
    if (s.committed_to.load(std::memory_order_relaxed) != t) s.committed_to.store(t, std::memory_order_relaxed);
    // Release: size (stored above) is in place before the word names a
    // candidate, even if we die right after this store (heraldd's repair
    // reads both). A plain mov on x86.
    s.word.store(t | kClaimCandidate, std::memory_order_release);
    HERALD_CRASH_POINT("claim.candidate");
    if (t + bytes > cached_gate + ring_bytes) [[unlikely]] {
      if (const Status g = refresh_gate(p, t, bytes); g != Status::kOk) {
        // Nothing claimed; clear the candidate so it does not hold W down
        // for the others while we wait.
        s.word.store(kClaimEmpty, std::memory_order_release);
        return g;
      }
    }
    if (plain_claims_) {
      // Single-producer topic: nobody else moves tail, but topic delete
      // sets the closed bit with a fetch_or, which a plain store of t +
      // bytes would erase if the fetch_or came after our load of t (every
      // later claim and read would never learn the topic is closed). C1:
      // re-load tail after naming t in the slot, and store only if it is
      // still t. The closer (TopicMap::close) sets the bit, then runs
      // membarrier GLOBAL_EXPEDITED (this process registered for it:
      // plain_claims_ needs fast_wake_), then waits while our slot names a
      // candidate: either our slot store was visible before that barrier
      // (it waits for us and sets the bit again if we erased it) or this
      // re-load runs after it and sees the bit. Only a compiler barrier
      // between the slot store and the re-load: the membarrier is the
      // StoreLoad fence, paid by the closer. docs/models/close-exclusive.pml
      // checks this with the store buffer modelled.
      std::atomic_signal_fence(std::memory_order_seq_cst);
      if (const std::uint64_t raw = tail.load(std::memory_order_relaxed); raw != t) [[unlikely]] {
        // close() is the only other writer of tail here; anything else
        // (a second producer despite attach) goes round again.
        if ((raw & kTailClosedBit) != 0) {
          s.word.store(kClaimEmpty, std::memory_order_release);
          return Status::kClosed;
        }
        continue;
      }
      // R2: release orders our slot store before the new tail.
      tail.store(t + bytes, std::memory_order_release);
    } else if (!tail.compare_exchange_weak(t, t + bytes, std::memory_order_acq_rel, std::memory_order_relaxed))
        [[unlikely]] {
      // R2 as above. Lost the race (or the topic closed): rewrite the slot
      // for the new tail.
      continue;
    }
    HERALD_CRASH_POINT("claim.won_unmarked");
    // Release (a plain mov on x86, as relaxed would be): the slot already
    // names t (candidate, released before the tail moved), so W holds at t
    // either way; compute_gate treats candidate and won alike, and repair
    // treats a candidate that won as one that did (see repair.cpp). The
    // release is for TopicMap::close on single-producer topics: once it
    // sees the slot leave candidate, its re-load of tail sees our store.
    s.word.store(t | kClaimWon, std::memory_order_release);
    // Relaxed: a statistic, as in note_claim_time.
    if constexpr (kNoteTime) s.won_ns.store(realtime_ns, std::memory_order_relaxed);
    HERALD_CRASH_POINT("claim.won");
    // The bytes we write next must not become visible before the new tail:
    // lossy readers validate a copy by re-reading tail after it. Free on x86
    // (the locked CAS already is a full barrier); a dmb on ARM.
    std::atomic_thread_fence(std::memory_order_release);
    *pos = t;
    return Status::kOk;
  }
}

// Boundary index: each 4 KiB page start b inside [pos, pos + size) records
// the first record start at or after b: pos itself when b == pos, else the
// end of this record (the next record starts there).
inline void index_record(const PartitionView& v, std::uint64_t pos, std::uint64_t size) noexcept {
  for (std::uint64_t b = align_up(pos, kIndexPageBytes); b < pos + size; b += kIndexPageBytes) {
    // Relaxed: ordered before the commit word's release (R1); readers
    // validate an entry against the commit word it points at.
    v.boundary_for(b).store(b == pos ? pos : pos + size, std::memory_order_relaxed);
  }
}

inline void RingLogWriter::commit_record(const PartitionView& v, std::uint64_t pos, std::uint32_t size) noexcept {
  // Resolved before the stores below, which would make g++ reload it.
  std::atomic<std::uint64_t>& committed_to = v.claims[slot_].committed_to;
  commit_word(v, pos, size);
  // Relaxed: a hint, read after our death only (stall reports); repair
  // walks the commit words from the claim's start, not from here
  // (ARCHITECTURE.md, departure 5), so it only has to trail the words, and
  // a word is always stored before this advances.
  committed_to.store(pos + size, std::memory_order_relaxed);
  HERALD_CRASH_POINT("commit.committed_to");
}

inline void RingLogWriter::commit_word(const PartitionView& v, std::uint64_t pos, std::uint32_t size) noexcept {
  // Resolved before the stores below, which would make g++ reload them.
  RecordHeader* const h = v.header_at(pos);
  const std::uint64_t word = pos ^ v.salt;
  HERALD_CRASH_POINT("commit.before_word");
  // Only when the record reaches a 4 KiB page start (one record in 32 at
  // 128 bytes): the loop's set-up is not paid per record.
  if (align_up(pos, kIndexPageBytes) < pos + size) [[unlikely]] index_record(v, pos, size);
  // R1: publishes the record; pairs with A1 in read_gated / read_copy /
  // is_committed. Everything written to the record before is visible to a
  // reader that sees this word.
  h->word.store(word, std::memory_order_release);
  HERALD_CRASH_POINT("commit.word");
}

inline void RingLogWriter::committed_through(std::uint32_t p, std::uint64_t end) noexcept {
  // Relaxed, as in commit_record: a hint that trails the commit words.
  topic_->partition(p).claims[slot_].committed_to.store(end, std::memory_order_relaxed);
}

inline void RingLogWriter::finish(std::uint32_t p) noexcept {
  const PartitionView& v = topic_->partition(p);
  // The claim, read back from this producer's own slot before it is
  // cleared, for prefetch_ahead. Relaxed: only this thread writes the slot
  // while the producer lives (as in abort_rest).
  const ClaimSlotLayout& s = v.claims[slot_];
  finish(v, p, s.word.load(std::memory_order_relaxed) & ~kClaimStateMask, s.size.load(std::memory_order_relaxed));
}

inline void RingLogWriter::finish(const PartitionView& v, std::uint32_t p, std::uint64_t claimed,
                                  std::uint64_t claimed_bytes) noexcept {
  // Resolved before the store, as in commit_record.
  const std::atomic<std::uint64_t>& waiters = v.state->waiters;
  const std::uint64_t gate = cached_gate_[p];
  HERALD_CRASH_POINT("finish.before_clear");
  // R3: pairs with A3 in compute_gate: a producer that sees this slot empty
  // may lap our records, and our writes to them happen before its writes.
  v.claims[slot_].word.store(kClaimEmpty, std::memory_order_release);
  // F1: the StoreLoad barrier between our commit-word store and the load of
  // `waiters`; pairs with F2 in park_reader (bit set, then re-check the
  // word). Without it, we could miss the bit while the reader misses the
  // word: a lost wake-up.
  //
  // With fast_wake_ this process registered for membarrier
  // GLOBAL_EXPEDITED and the barrier is paid by the reader instead: before
  // re-checking it calls membarrier, which makes every thread of every
  // registered process execute a full barrier. Either our load of `waiters`
  // comes after that barrier (and sees the bit) or our word store came
  // before it (and the reader sees the word). Only a compiler barrier here.
  if (fast_wake_) {
    std::atomic_signal_fence(std::memory_order_seq_cst);
  } else {
    std::atomic_thread_fence(std::memory_order_seq_cst);
  }
  const std::uint64_t w = waiters.load(std::memory_order_relaxed);
  if (w != 0) [[unlikely]] wake_parked(w);
  // After the commit, not at the claim: see prefetch_ahead.
  prefetch_ahead(v, claimed, claimed_bytes, gate);
}

// The first aborted record of a range of `rest` bytes (16-byte aligned):
// at most max_event bytes, and never leaving less than a header's worth
// (16 or 32 bytes) behind, since every piece must hold its own header. A
// max_event piece that would is one claim alignment shorter (max_event is a
// multiple of 64 and >= 128, so the piece still holds a header and the
// rest is 80 or 96 bytes). 0 when not even one header fits.
constexpr std::uint64_t aborted_piece(std::uint64_t rest, std::uint64_t max_event) noexcept {
  if (rest < kRecordHeaderBytes) return 0;
  std::uint64_t e = rest < max_event ? rest : max_event;
  if (rest - e != 0 && rest - e < kRecordHeaderBytes) e -= kClaimAlign;
  return e;
}

// Writes [from, to) as aborted records of at most max_event bytes each:
// header first, then the commit word (release). Idempotent. Used by a
// producer dropping a claim and by heraldd repairing a dead one. Returns the
// number of aborted records written.
std::uint64_t write_aborted(const PartitionView& v, std::uint64_t from, std::uint64_t to) noexcept;

// Wakes every reader parked on partition v and every producer parked on its
// backpressure (after a repair). Needs the log read-write (and the state
// read-write for the producers' word).
void wake_everyone(const TopicMap& topic, const PartitionView& v) noexcept;

// ---------------------------------------------------------------------------
// Reader side: stateless operations on a partition.
// ---------------------------------------------------------------------------

// A size a record may have: room for its header, at most max_event, 16-byte
// aligned. Every reader and repair checks a size read from the log with it
// before stepping over the record.
inline bool record_size_ok(std::uint64_t size, std::uint64_t max_event) noexcept {
  return size >= kRecordHeaderBytes && size <= max_event && size % kRecordAlign == 0;
}

// A header that says less than it holds, or more than a record may be.
inline bool header_sane(const RecordHeader& h, std::uint64_t max_event) noexcept {
  const std::uint64_t size = h.size;
  if (!record_size_ok(size, max_event)) return false;
  const std::uint64_t need = std::uint64_t{kRecordHeaderBytes} + h.key_len + h.meta_len + h.payload_len;
  return need <= size;
}

// Gated read without the closed check: kEmpty when nothing is committed at
// q, closed topic or not. It touches the record only, never `tail`: a
// consumer polling an empty partition in a loop would otherwise pull the
// producers' CAS line into its cache on every poll, and each producer's
// next CAS would wait for the line to come back. Callers learn of closure
// another way (Consumer: its reader wake word, which close() bumps after
// setting the closed bit) and then call read_gated. Inline: it is the
// zero-copy consumer's per-event step.
inline Status peek_gated(const PartitionView& v, std::uint64_t q, const RecordHeader** out) noexcept {
  const RecordHeader* h = v.header_at(q);
  // A1: pairs with R1 in commit_record / write_aborted.
  if (h->word.load(std::memory_order_acquire) != (q ^ v.salt)) return Status::kEmpty;
  if (!header_sane(*h, v.max_event)) return Status::kCorrupt;
  *out = h;
  return Status::kOk;
}

// Gated read: only for positions a gate protects (a lossless member at or
// past its group's floor). On kOk *out points at the record in the ring;
// kClosed when the topic was closed and nothing is left at q.
inline Status read_gated(const PartitionView& v, std::uint64_t q, const RecordHeader** out) noexcept {
  const Status st = peek_gated(v, q, out);
  if (st != Status::kEmpty) return st;
  // A2: pairs with the closer's fetch_or on tail (TopicMap::close).
  const std::uint64_t raw = v.part->tail.load(std::memory_order_acquire);
  if ((raw & kTailClosedBit) != 0 && q >= (raw & ~kTailClosedBit)) return Status::kClosed;
  return Status::kEmpty;
}

// Lossy read: copies the record at q into buf (capacity >= max_event) and
// validates the copy against tail afterwards. Never a torn record: kOverrun
// when it was (or is being) overwritten.
Status read_copy(const PartitionView& v, std::uint64_t q, std::byte* buf, std::uint32_t* size) noexcept;

// The first committed boundary at or after x (via the boundary index),
// falling back to tail. Used to resynchronise and to find "beginning".
std::uint64_t boundary_at_or_after(const PartitionView& v, std::uint64_t x) noexcept;
// The oldest retained position: first committed boundary at or after
// tail - ring + max_event (or 0 before the first wrap).
std::uint64_t beginning(const PartitionView& v) noexcept;
// The end of the won claim some claim slot names over position q (a claim
// not yet committed, live or left by a dead producer), or 0 if none does.
// For scans that must look past an open claim (an idempotent producer's
// restart); readers stop there.
std::uint64_t open_claim_end(const PartitionView& v, std::uint64_t q) noexcept;
// kOk if pos is a committed boundary inside the window (or tail itself),
// kInvalid otherwise.
Status check_position(const PartitionView& v, std::uint64_t pos) noexcept;

inline std::uint64_t load_tail(const PartitionView& v) noexcept {
  // A2: pairs with the producers' CAS (release) on tail.
  return v.part->tail.load(std::memory_order_acquire) & ~kTailClosedBit;
}
inline bool is_closed(const PartitionView& v) noexcept {
  return (v.part->tail.load(std::memory_order_acquire) & kTailClosedBit) != 0;
}
inline bool is_committed(const PartitionView& v, std::uint64_t q) noexcept {
  // A1: pairs with R1 (commit word, release) in RingLogWriter::commit_record.
  return v.header_at(q)->word.load(std::memory_order_acquire) == (q ^ v.salt);
}

// Parks reader slot `reader` until one of the partitions has a record
// committed at its position (or is closed), the wake word changes, or
// timeout_ns passes. `positions[i]` is the position awaited in `parts[i]`.
// Returns kOk when something is ready, kTimeout otherwise.
Status park_reader(const TopicMap& topic, std::uint32_t reader, std::span<const PartitionView* const> parts,
                   std::span<const std::uint64_t> positions, std::uint64_t timeout_ns) noexcept;

// wake_producers' slow path: bumps gate_seq and FUTEX_WAKEs it.
[[gnu::cold]] void wake_parked_producers(const PartitionView& v) noexcept;
// After a cursor moved (or a gate was removed): wakes producers parked on
// backpressure in partition v, if any. Needs the state segment read-write.
// Inline: a consumer calls it after every commit, and almost always nobody
// is parked.
inline void wake_producers(const PartitionView& v) noexcept {
  // Follows a cursor CAS (seq_cst RMW), which pairs with the producer's
  // fetch_add on producer_waiters in RingLogWriter::claim. A plain mov on x86.
  if (v.part->producer_waiters.load(std::memory_order_seq_cst) == 0) [[likely]] return;
  wake_parked_producers(v);
}

// The Disruptor rule for lowering a gate of group g on partition p (a seek
// back, a reset): put the floor at tail, CAS the cursor from `expected` to
// `desired`, re-read tail, raise the floor to it. History below the floor
// must then be read as lossy until the reader reaches it (clear_floor).
// Returns false (changing nothing but a harmless floor) if the cursor was no
// longer `expected` (a generation bump: the caller is fenced). *floor gets
// the floor.
bool lower_gate(const TopicMap& topic, std::uint32_t g, std::uint32_t p, std::uint64_t expected,
                std::uint64_t desired, std::uint64_t* floor) noexcept;
// Called by the reader once its cursor is at or past the floor.
void clear_floor(const TopicMap& topic, std::uint32_t g, std::uint32_t p) noexcept;

}  // namespace herald::shm
