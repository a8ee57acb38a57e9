// The partition log protocol. Labels: R<n> is a release (or seq_cst) store,
// A<n> the acquire load it pairs with, F<n> a fence; each names its partner.
//
//   R1/A1  commit word: producer publishes a record / reader sees it
//   R2/A2  tail CAS (plain store on single-producer topics): a claim /
//          readers and producers that load tail
//   R3/A3  claim slot cleared after the last commit / a producer computing W
//   R4/A4  group cursor CAS by a consumer / a producer loading the gate
//   F1/F2  park/wake: producer after commit / consumer before parking
//   C1     single-producer claim vs topic delete: the producer re-loads tail
//          after naming it in its slot / TopicMap::close's membarrier
#include "shm/ring_log.hpp"

#if defined(__x86_64__)
#include <cpuid.h>
#endif

#include <sched.h>

#include <algorithm>
#include <climits>
#include <cstring>

#include "shm/clock.hpp"
#include "shm/crash_point.hpp"
#include "shm/futex.hpp"

namespace herald::shm {

namespace {
// CPUID 0x80000001 ECX bit 8, asked once per process (CPUID traps to the
// hypervisor on a VM).
bool has_prefetchw() noexcept {
#if defined(__x86_64__)
  static const bool has = [] {
    unsigned a = 0, b = 0, c = 0, d = 0;
    return __get_cpuid(0x80000001u, &a, &b, &c, &d) != 0 && (c & (1u << 8)) != 0;
  }();
  return has;
#else
  return false;
#endif
}
}  // namespace

bool Backoff::step() noexcept {
  if (policy_.mode == WaitMode::kBusySpin) {
    cpu_relax();
    return true;
  }
  if (n_ < policy_.spins) {
    ++n_;
    cpu_relax();
    return true;
  }
  if (policy_.mode == WaitMode::kSpinYield || n_ < policy_.spins + policy_.yields) {
    if (n_ < UINT32_MAX) ++n_;
    sched_yield();
    return true;
  }
  return false;
}

// ===========================================================================
// Producer side
// ===========================================================================

RingLogWriter::RingLogWriter(const TopicMap* topic, std::uint32_t slot, bool fast_wake)
    : topic_(topic),
      slot_(slot),
      fast_wake_(fast_wake),
      plain_claims_(fast_wake && (topic->log_header()->flags & kLogSingleProducer) != 0),
      prefetchw_(has_prefetchw()),
      cached_gate_(topic->partitions(), 0) {}

std::uint64_t RingLogWriter::compute_gate(std::uint32_t p) noexcept {
  const PartitionView& v = topic_->partition(p);
  // A2/A3: tail first (seq_cst: it also pairs with the Disruptor rule in
  // lower_gate, which publishes a gate and then re-reads tail), then the
  // claim slots. Every claim below this tail wrote its slot before its CAS
  // (release), so a range still being written is named by a slot we see.
  const std::uint64_t t = v.part->tail.load(std::memory_order_seq_cst) & ~kTailClosedBit;
  std::uint64_t gate = t;

  // The unfinished watermark W: the oldest position a claim slot names that
  // is not yet committed. O(slots); only when the cached gate fails.
  const std::uint32_t hw = std::min(topic_->log_header()->producer_slots_hw.load(std::memory_order_acquire),
                                    v.producer_slots);
  for (std::uint32_t i = 0; i < hw; ++i) {
    if (i == slot_) continue;  // our own candidate: the range we are trying to take
    // A3: pairs with R3 in finish(): a slot seen empty means its records'
    // bytes were all written before, so lapping them is safe.
    const std::uint64_t w = v.claims[i].word.load(std::memory_order_acquire);
    const std::uint64_t state = w & kClaimStateMask;
    if (state == kClaimCandidate || state == kClaimWon) gate = std::min(gate, w & ~kClaimStateMask);
  }

  // Gating groups: gate = max(floor, min(cursor, lease of the same generation)).
  StateHeaderLayout* sh = topic_->state_header();
  const std::uint32_t ghw =
      std::min(sh->group_slots_hw.load(std::memory_order_acquire), topic_->state_geometry().group_slots);
  for (std::uint32_t g = 0; g < ghw; ++g) {
    GroupLayout* grp = topic_->group(g);
    // seq_cst: pairs with the activation of a new group (see lower_gate).
    if (grp->state.load(std::memory_order_seq_cst) != kGroupActive) continue;
    if ((grp->flags.load(std::memory_order_seq_cst) & kGroupGating) == 0) continue;
    GroupPartitionLayout* gp = topic_->group_partition(g, p);
    // A4: pairs with R4 (the consumer's cursor CAS, release): the consumer's
    // reads of everything below the cursor happen before we overwrite it.
    // Cursor before lease: a member stores its lease before its cursor CAS.
    const std::uint64_t c = gp->cursor.load(std::memory_order_seq_cst);
    std::uint64_t pos = cursor_pos(c);
    const std::uint64_t l = gp->lease.load(std::memory_order_seq_cst);
    if (l != kNoLease && cursor_gen(l) == cursor_gen(c)) pos = std::min(pos, cursor_pos(l));
    const std::uint64_t f = gp->gate_floor.load(std::memory_order_seq_cst);
    pos = std::max(pos, f);
    if (pos > t) {
      // Cannot lower the gate below t anyway. Count it only if it is above the
      // live tail too: then it is garbage (a corrupt state segment), ignored.
      if (pos > (v.part->tail.load(std::memory_order_acquire) & ~kTailClosedBit))
        v.part->ignored_gates.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    if (pos % kRecordAlign != 0) {
      v.part->ignored_gates.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    gate = std::min(gate, pos);
  }
  return gate;
}

Status RingLogWriter::refresh_gate(std::uint32_t p, std::uint64_t t, std::uint64_t bytes) noexcept {
  const std::uint64_t ring_bytes = topic_->partition(p).ring_bytes;
  if (t + bytes > kMaxCursorPosition) return Status::kExhausted;
  const std::uint64_t g = compute_gate(p);
  // t + bytes <= cached + ring_bytes (the fast path's test) then implies
  // t + bytes <= kMaxCursorPosition.
  cached_gate_[p] = std::min(g, kMaxCursorPosition - ring_bytes);
  return t + bytes <= g + ring_bytes ? Status::kOk : Status::kBackPressured;
}

Status RingLogWriter::claim(std::uint32_t p, std::uint64_t bytes, std::uint64_t deadline_ns, const WaitPolicy& wait,
                            std::uint64_t* pos) noexcept {
  Status st = try_claim(p, bytes, pos);
  if (st != Status::kBackPressured) return st;
  const PartitionView& v = topic_->partition(p);
  Backoff backoff(wait);
  for (;;) {
    const std::uint64_t now = monotonic_ns();
    if (now >= deadline_ns) return Status::kBackPressured;
    if (!backoff.step()) {
      // Park on gate_seq. Announce first, then sample gate_seq, then re-check:
      // a consumer that moves its cursor after our check sees the waiter
      // (its CAS and our fetch_add are both seq_cst RMWs) and bumps gate_seq,
      // so the futex wait returns at once.
      v.part->producer_waiters.fetch_add(1, std::memory_order_seq_cst);
      std::atomic_thread_fence(std::memory_order_seq_cst);
      const std::uint32_t seq = v.state->gate_seq.load(std::memory_order_seq_cst);
      cached_gate_[p] = 0;
      st = try_claim(p, bytes, pos);
      if (st == Status::kBackPressured) {
        // Capped at 10 ms: an unfinished record one lap behind (a slow
        // producer) clears without a wake-up on gate_seq.
        std::uint64_t t = std::min<std::uint64_t>(wait.park_timeout_ns, 10'000'000);
        t = std::min(t, deadline_ns - now);
        futex_wait(&v.state->gate_seq, seq, t);
      }
      v.part->producer_waiters.fetch_sub(1, std::memory_order_relaxed);
      if (st != Status::kBackPressured) return st;
      backoff.reset();
      continue;
    }
    st = try_claim(p, bytes, pos);
    if (st != Status::kBackPressured) return st;
  }
}

void RingLogWriter::abort_rest(std::uint32_t p, std::uint64_t from) noexcept {
  const PartitionView& v = topic_->partition(p);
  ClaimSlotLayout& s = v.claims[slot_];
  // The claim's end, from this producer's own slot (it names the claim
  // until finish: word = start | won, size = its bytes). Relaxed: only this
  // thread writes the slot while the producer lives, so these loads see its
  // own last stores.
  const std::uint64_t end = (s.word.load(std::memory_order_relaxed) & ~kClaimStateMask) +
                            s.size.load(std::memory_order_relaxed);
  if (from < end) {
    // Counted where heraldd counts its repairs: a claim its producer gave
    // up showed in no statistic, though readers skip its records (found by
    // an exploratory pass). Relaxed: a statistic, read by stats alone.
    v.part->aborted_records.fetch_add(write_aborted(v, from, end), std::memory_order_relaxed);
    s.committed_to.store(end, std::memory_order_relaxed);
  }
  finish(p);
}

void RingLogWriter::wake_parked(std::uint64_t w) noexcept {
  while (w != 0) {
    const auto r = static_cast<std::uint32_t>(__builtin_ctzll(w));
    w &= w - 1;
    ReaderWakeLayout* wk = topic_->wake(r);
    wk->seq.fetch_add(1, std::memory_order_release);
    futex_wake(&wk->seq, INT_MAX);
  }
}

std::uint64_t write_aborted(const PartitionView& v, std::uint64_t from, std::uint64_t to) noexcept {
  std::uint64_t x = from;
  std::uint64_t n = 0;
  while (x < to) {
    // Callers never pass a range shorter than a header (first_uncommitted
    // and abort_rest start at a record of the claim); if one did, nothing
    // valid fits, and nothing is written.
    const std::uint64_t e = aborted_piece(to - x, v.max_event);
    if (e == 0) break;
    RecordHeader* h = v.header_at(x);
    h->size = static_cast<std::uint32_t>(e);
    h->payload_len = 0;
    h->time_ns = realtime_ns();
    h->id_hi = 0;
    h->id_lo = 0;
    h->flags = kRecordAborted;
    h->key_len = 0;
    h->meta_len = 0;
    h->producer_slot = kRepairProducerSlot;
    index_record(v, x, e);
    // R1: as in commit_record.
    h->word.store(x ^ v.salt, std::memory_order_release);
    x += e;
    ++n;
  }
  return n;
}

void wake_everyone(const TopicMap& topic, const PartitionView& v) noexcept {
  std::atomic_thread_fence(std::memory_order_seq_cst);  // F1, as in RingLogWriter::finish
  std::uint64_t w = v.state->waiters.load(std::memory_order_relaxed);
  while (w != 0) {
    const auto r = static_cast<std::uint32_t>(__builtin_ctzll(w));
    w &= w - 1;
    topic.wake(r)->seq.fetch_add(1, std::memory_order_release);
    futex_wake(&topic.wake(r)->seq, INT_MAX);
  }
  if (topic.state_access() == Access::kReadWrite) {
    v.state->gate_seq.fetch_add(1, std::memory_order_seq_cst);
    futex_wake(&v.state->gate_seq, INT_MAX);
  }
}

// ===========================================================================
// Reader side
// ===========================================================================

// A deliberate, validated race: the bytes may be overwritten while we copy
// them; the copy is used only if tail shows afterwards that no producer had
// claimed over it. TSan cannot know that, so it is told not to look.
__attribute__((no_sanitize_thread)) Status read_copy(const PartitionView& v, std::uint64_t q, std::byte* buf,
                                                     std::uint32_t* size) noexcept {
  const RecordHeader* h = v.header_at(q);
  // A1: pairs with R1.
  const std::uint64_t w = h->word.load(std::memory_order_acquire);
  if (w != (q ^ v.salt)) {
    // Lapped or not is decided by the tail alone. A newer lap's commit word
    // at q implies it: its producer's claim (tail past q + ring) precedes
    // its word (R1), which our acquire load synchronised with. The word
    // alone proves nothing: before q is written, its bytes are often an
    // older record's payload, and one random word in 64 * ring/64 looks like
    // (q + k * ring) ^ salt; taking that for an overrun would make a lossy
    // reader skip a record nobody overwrote.
    const std::uint64_t raw = v.part->tail.load(std::memory_order_acquire);
    const std::uint64_t t = raw & ~kTailClosedBit;
    if (t > q && t - q > v.ring_bytes) return Status::kOverrun;
    if ((raw & kTailClosedBit) != 0 && q >= t) return Status::kClosed;
    return Status::kEmpty;
  }
  // The length may be torn by an overwrite in progress: validate it, and if
  // it is bad, decide between overrun and corruption by re-reading tail.
  // A torn length never advances the reader.
  const std::uint64_t n = h->size;
  if (!record_size_ok(n, v.max_event)) {
    std::atomic_thread_fence(std::memory_order_acquire);
    const std::uint64_t t = load_tail(v);
    return t - q > v.ring_bytes ? Status::kOverrun : Status::kCorrupt;
  }
  std::memcpy(buf, v.bytes_at(q), n);
  // The copy is good only if no claim reached past q + ring while we copied:
  // a claim [a, b) overwrites [a - ring, b - ring), so it touches our record
  // only once tail > q + ring. Acquire fence, then tail: if a byte we copied
  // came from a write after such a claim, the fence makes that claim's tail
  // visible here (producers fence after their CAS, see try_claim).
  std::atomic_thread_fence(std::memory_order_acquire);
  const std::uint64_t t = v.part->tail.load(std::memory_order_relaxed) & ~kTailClosedBit;
  if (t - q > v.ring_bytes) return Status::kOverrun;
  const auto* copy = reinterpret_cast<const RecordHeader*>(buf);
  if (copy->word.load(std::memory_order_relaxed) != (q ^ v.salt)) return Status::kOverrun;
  if (!header_sane(*copy, v.max_event)) return Status::kCorrupt;
  *size = static_cast<std::uint32_t>(n);
  return Status::kOk;
}

namespace {
// Walks record lengths from `from` (a committed boundary at or before x) to
// the first boundary at or after x; UINT64_MAX when a hop does not validate.
// The headers walked may be overwritten under us (x is near the lapped end
// of the window), so every hop checks its commit word and the length's
// bounds, and the caller checks the result's commit word: a deliberate,
// validated race, as in read_copy.
__attribute__((no_sanitize_thread)) std::uint64_t walk_records(const PartitionView& v, std::uint64_t from,
                                                                std::uint64_t x, std::uint64_t t) noexcept {
  std::uint64_t r = from;
  while (r < x) {
    if (t - r > v.ring_bytes || !is_committed(v, r)) return UINT64_MAX;
    const std::uint64_t n = v.header_at(r)->size;
    if (!record_size_ok(n, v.max_event)) return UINT64_MAX;
    r += n;
  }
  return r;
}

// The first committed record start in (x, min(x + max_event, t)); UINT64_MAX
// if none validates. Its length is read racily, as in walk_records.
__attribute__((no_sanitize_thread)) std::uint64_t scan_records(const PartitionView& v, std::uint64_t x,
                                                                std::uint64_t t) noexcept {
  const std::uint64_t end = t - x > v.max_event ? x + v.max_event : t;  // no overflow: x < t
  for (std::uint64_t c = x + kRecordAlign; c > x && c < end; c += kRecordAlign) {  // c > x: no wrap past 2^64
    if (t - c > v.ring_bytes || !is_committed(v, c)) continue;
    const std::uint64_t n = v.header_at(c)->size;
    if (record_size_ok(n, v.max_event) && n <= t - c) return c;
  }
  return UINT64_MAX;
}
}  // namespace

std::uint64_t boundary_at_or_after(const PartitionView& v, std::uint64_t x) noexcept {
  const std::uint64_t t = load_tail(v);
  // Before align_up, which would wrap a value near 2^64 to 0: when no
  // aligned position is left between x and 2^64 (only a garbage tail gets
  // this high), the tail is the only boundary at or after x. Without that
  // half the scan below started one ring under the tail and could answer a
  // record far before x (fuzz corpus 37).
  if (x >= t || x > UINT64_MAX - (kRecordAlign - 1)) return t;
  x = align_up(x, kRecordAlign);
  if (x >= t) return t;
  // Nothing older than one ring is retained, so start there: the index scan
  // below then visits at most ring/4096 pages however far behind x is (a
  // reader back after a long absence would otherwise walk every page
  // between its old position and the tail: 2^38 of them for a tail of 2^50).
  // (Rounded up: a corrupt, unaligned tail must not make x unaligned.)
  if (t - x > v.ring_bytes) x = align_up(t - v.ring_bytes, kRecordAlign);
  if (is_committed(v, x)) return x;
  // x may fall inside a record. The index names the first record start in
  // x's own page: at or before x, walk record lengths from it; after x, it
  // is the answer. (Scanning only from the next page on would skip up to
  // 4 KiB of retained records: "beginning" must be the first boundary at or
  // after tail - N + max_event, not the first one at a page.) Exact whenever
  // max_event >= the index page; with a smaller max_event the entry of x's
  // page may already belong to the next lap (tail > page + N), and then the
  // scan of the positions after x below finds it.
  const std::uint64_t page = x & ~(kIndexPageBytes - 1);
  // Relaxed: a hint, validated against the commit word.
  const std::uint64_t e0 = v.boundary_for(page).load(std::memory_order_relaxed);
  if (e0 >= page && e0 - page <= v.max_event && e0 < t && e0 % kRecordAlign == 0 && t - e0 <= v.ring_bytes &&
      is_committed(v, e0)) {
    const std::uint64_t r = e0 >= x ? e0 : walk_records(v, e0, x, t);
    if (r != UINT64_MAX && r <= t && (r == t || is_committed(v, r))) return r;
  }
  // With max_event under a page, the next boundary lies within max_event
  // of x (a record is at most max_event long and never padded out to the
  // ring's end), so look at each aligned position up to there: at most
  // max_event / 16 < 256 commit words. Scanning from the next page instead
  // skipped up to a page of retained records, and on a ring of one or two
  // pages the next page is often past the tail: "earliest" was then the
  // tail, with a ring full of retained events never read. A candidate must
  // carry its own salted commit word and a sane length, as check_position
  // asks of any position a reader is given.
  if (v.max_event < kIndexPageBytes) {
    const std::uint64_t r = scan_records(v, x, t);
    if (r != UINT64_MAX) return r;
  }
  // b > x: stop if b wraps past 2^64 (only a garbage tail gets there),
  // which would otherwise restart the scan at 0 and walk 2^52 pages.
  for (std::uint64_t b = align_up(x + 1, kIndexPageBytes); b > x && b < t; b += kIndexPageBytes) {
    // Relaxed: the entry is only a hint, validated against the commit word.
    const std::uint64_t e = v.boundary_for(b).load(std::memory_order_relaxed);
    if (e < b || e - b > v.max_event || e > t || e % kRecordAlign != 0) continue;  // another lap's entry
    if (e == t || is_committed(v, e)) return e;
  }
  return load_tail(v);
}

std::uint64_t open_claim_end(const PartitionView& v, std::uint64_t q) noexcept {
  for (std::uint32_t i = 0; i < v.producer_slots; ++i) {
    const ClaimSlotLayout& slot = v.claims[i];
    // Acquire: pairs with the owner's release store of the word, which
    // follows its store of the size.
    const std::uint64_t w = slot.word.load(std::memory_order_acquire);
    // Won only: a candidate may be a claim that lost its race, at positions
    // other claims now hold (a won one is in its slot a moment after its
    // tail CAS; the caller looks again meanwhile).
    if ((w & kClaimStateMask) != kClaimWon) continue;
    const std::uint64_t at = w & ~kClaimStateMask;
    // Acquire, so the re-load of the word below comes after it: an
    // unchanged word means the size was this claim's, not that of one the
    // owner started after finishing it.
    const std::uint64_t size = slot.size.load(std::memory_order_acquire);
    if (slot.word.load(std::memory_order_relaxed) != w) continue;
    if (at <= q && q - at < size && size <= v.ring_bytes) return at + size;
  }
  return 0;
}

std::uint64_t beginning(const PartitionView& v) noexcept {
  const std::uint64_t t = load_tail(v);
  if (t + v.max_event <= v.ring_bytes) return 0;  // not wrapped yet: the first record is at 0
  return boundary_at_or_after(v, t - v.ring_bytes + v.max_event);
}

Status check_position(const PartitionView& v, std::uint64_t pos) noexcept {
  if (pos % kRecordAlign != 0) return Status::kInvalid;
  const std::uint64_t t = load_tail(v);
  if (pos > t) return Status::kInvalid;
  if (pos == t) return Status::kOk;
  if (t - pos > v.ring_bytes) return Status::kInvalid;
  return is_committed(v, pos) ? Status::kOk : Status::kInvalid;
}

namespace {
// Something for a reader waiting at q: a record committed there, the topic
// closed, or the reader lapped (tail > q + ring; a word that merely looks
// like a newer lap's is old payload, see read_copy).
inline bool has_news(const PartitionView& v, std::uint64_t q) noexcept {
  // A1: pairs with R1.
  const std::uint64_t w = v.header_at(q)->word.load(std::memory_order_acquire);
  if (w == (q ^ v.salt)) return true;
  const std::uint64_t raw = v.part->tail.load(std::memory_order_acquire);
  return (raw & kTailClosedBit) != 0 || (raw & ~kTailClosedBit) - q > v.ring_bytes;
}
}  // namespace

Status park_reader(const TopicMap& topic, std::uint32_t reader, std::span<const PartitionView* const> parts,
                   std::span<const std::uint64_t> positions, std::uint64_t timeout_ns) noexcept {
  const std::uint64_t bit = 1ull << reader;
  for (const PartitionView* v : parts) {
    // F2: seq_cst RMW; pairs with F1 in RingLogWriter::finish (bit first, then the
    // re-check below; the producer: word first, then the bit).
    v->state->waiters.fetch_or(bit, std::memory_order_seq_cst);
  }
  // The re-check below is an acquire load; in the C++ model only a seq_cst
  // fence orders it after the RMWs above (on x86 the locked RMW already
  // does). Once per park, next to a system call: free.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  // Producers on the fast path skip F1; this makes them pass a full barrier
  // now. If the kernel refuses, bound the damage of a missed wake-up.
  if (!membarrier_heavy_fence()) timeout_ns = std::min<std::uint64_t>(timeout_ns, 1'000'000);
  ReaderWakeLayout* wk = topic.wake(reader);
  const std::uint32_t seq = wk->seq.load(std::memory_order_acquire);
  bool ready = false;
  for (std::size_t i = 0; i < parts.size() && !ready; ++i) ready = has_news(*parts[i], positions[i]);
  if (!ready) {
    const FutexWait r = futex_wait(&wk->seq, seq, timeout_ns);
    ready = r != FutexWait::kTimedOut;
  }
  for (const PartitionView* v : parts) v->state->waiters.fetch_and(~bit, std::memory_order_release);
  return ready ? Status::kOk : Status::kTimeout;
}

void wake_parked_producers(const PartitionView& v) noexcept {
  v.state->gate_seq.fetch_add(1, std::memory_order_seq_cst);
  futex_wake(&v.state->gate_seq, INT_MAX);
}

bool lower_gate(const TopicMap& topic, std::uint32_t g, std::uint32_t p, std::uint64_t expected,
                std::uint64_t desired, std::uint64_t* floor) noexcept {
  // The Disruptor rule. Producers may hold cached gates computed before they
  // could see the lower cursor; every such gate is <= the tail they loaded
  // then. CAS the new cursor, re-read tail, put the floor there (all seq_cst,
  // pairing with the seq_cst loads in compute_gate): a producer whose gate
  // did not see the new cursor loaded tail before our re-read, so it can
  // overwrite only positions below t1. Below the floor the group reads lossy
  // (copied and validated) until its reader passes it.
  //
  // Between the CAS and the floor store a producer may see the low cursor
  // without the floor: its gate is then too LOW (it waits), never too high.
  // The floor is not stored before the CAS: if the CAS failed (we were
  // fenced), a floor of ours would raise the new owner's gate over bytes it
  // reads zero-copy.
  const PartitionView& v = topic.partition(p);
  GroupPartitionLayout* gp = topic.group_partition(g, p);
  if (!gp->cursor.compare_exchange_strong(expected, desired, std::memory_order_seq_cst)) return false;
  const std::uint64_t t1 = v.part->tail.load(std::memory_order_seq_cst) & ~kTailClosedBit;
  gp->gate_floor.store(t1, std::memory_order_seq_cst);
  *floor = t1;
  wake_producers(v);
  return true;
}

void clear_floor(const TopicMap& topic, std::uint32_t g, std::uint32_t p) noexcept {
  // The cursor is at or past the floor: max(floor, cursor) == cursor.
  topic.group_partition(g, p)->gate_floor.store(0, std::memory_order_seq_cst);
}

}  // namespace herald::shm
