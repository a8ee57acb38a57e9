#include "shm/repair.hpp"

#include <algorithm>
#include <vector>

#include "shm/crash_point.hpp"
#include "shm/ring_log.hpp"

namespace herald::shm {

std::uint64_t first_uncommitted(const PartitionView& v, std::uint64_t from, std::uint64_t end) noexcept {
  std::uint64_t x = from;
  while (x < end && is_committed(v, x)) {
    const std::uint64_t size = v.header_at(x)->size;
    if (!record_size_ok(size, v.max_event) || x + size > end) break;
    // What is left after this record must be nothing or something
    // write_aborted can cover (at least a header): only a corrupt size
    // leaves 16 or 32 bytes of a claim. Then this record is aborted too.
    if (const std::uint64_t rest = end - (x + size); rest != 0 && aborted_piece(rest, v.max_event) == 0) break;
    x += size;
  }
  return x;
}

namespace {

// Positions tail has held are the only record boundaries. e is provably one
// if tail is at it, a claim slot names it (a producer loaded it from tail),
// or a record committed for e starts there.
bool provably_boundary(const PartitionView& v, std::uint64_t e, std::uint64_t tail) noexcept {
  if (e == tail) return true;
  for (std::uint32_t i = 0; i < v.producer_slots; ++i) {
    const std::uint64_t w = v.claims[i].word.load(std::memory_order_acquire);
    const std::uint64_t st = w & kClaimStateMask;
    if ((st == kClaimCandidate || st == kClaimWon) && (w & ~(kClaimAlign - 1)) == e) return true;
  }
  return is_committed(v, e);
}

bool valid_size(const PartitionView& v, std::uint64_t size) noexcept {
  return size >= kClaimAlign && size % kClaimAlign == 0 && size <= v.ring_bytes / 2;
}

}  // namespace

RepairReport repair_claim_slot(const TopicMap& topic, std::uint32_t p, std::uint32_t slot,
                               std::uint64_t dead_slots) noexcept {
  const PartitionView& v = topic.partition(p);
  ClaimSlotLayout& s = v.claims[slot];
  RepairReport rep;
  const std::uint64_t w = s.word.load(std::memory_order_acquire);
  const std::uint64_t state = w & kClaimStateMask;
  const std::uint64_t p0 = w & ~(kClaimAlign - 1);
  const std::uint64_t size = s.size.load(std::memory_order_relaxed);
  rep.position = p0;
  rep.size = size;

  auto clear = [&]() {
    // Release: pairs with A3 in compute_gate (the range is no longer held).
    s.word.store(kClaimEmpty, std::memory_order_release);
    wake_everyone(topic, v);
    rep.outcome = RepairOutcome::kCleared;
    return rep;
  };
  auto abort_from = [&](std::uint64_t from) {
    const std::uint64_t end = p0 + size;
    const std::uint64_t x = first_uncommitted(v, from, end);
    rep.aborted_from = x;
    // A batch range longer than max_event becomes several aborted records,
    // the one at x first. The crash point between the first and the rest is
    // where a re-run must not mistake the first word for someone else's win
    // (see the kClaimWon store in the candidate path below).
    const std::uint64_t first_end = x + aborted_piece(end - x, v.max_event);
    rep.aborted_records = write_aborted(v, x, first_end);
    if (first_end < end) {
      HERALD_CRASH_POINT("repair.first_aborted");
      rep.aborted_records += write_aborted(v, first_end, end);
    }
    s.committed_to.store(end, std::memory_order_relaxed);
    v.part->aborted_records.fetch_add(rep.aborted_records, std::memory_order_relaxed);
    v.part->repaired_claims.fetch_add(1, std::memory_order_relaxed);
    HERALD_CRASH_POINT("repair.before_clear");  // the repairer killed with the range aborted, the slot not cleared
    s.word.store(kClaimEmpty, std::memory_order_release);
    wake_everyone(topic, v);
    rep.outcome = RepairOutcome::kAborted;
    return rep;
  };

  if (state == kClaimEmpty) return rep;
  if (state != kClaimCandidate && state != kClaimWon) return clear();  // garbage state
  if (!valid_size(v, size)) return clear();  // a slot we cannot trust names no range we could abort safely

  if (state == kClaimWon) {
    // A won range ends at or below the tail (its CAS moved tail to p0 +
    // size, and tail only grows) and is never lapped (W covers it). A slot
    // that says otherwise is garbage: aborting "its" range would store
    // commit words for positions the tail has not reached (a later claim
    // there would look committed before its producer wrote it), or loop
    // over a range that wraps 2^64.
    const std::uint64_t t = load_tail(v);
    if (p0 + size < p0 || p0 + size > t || t - p0 > v.ring_bytes) return clear();
    // It won the CAS: abort from its first uncommitted record. The walk
    // starts at p0, not at committed_to: committed_to is read from shared
    // memory and is only a hint. A value ahead of the commit words would skip
    // an uncommitted record (readers wait at it forever), and one inside a
    // committed record would write an aborted header over its body. Walking
    // from p0 costs one commit-word load per committed record of the batch,
    // and the range is still ours (W covers a won range: nobody lapped it).
    return abort_from(p0);
  }

  // A candidate: it may have lost its CAS, or won and died before marking it.
  std::uint64_t t = load_tail(v);
  if (t == p0) return clear();                 // never claimed: the dead cannot CAS any more
  if (t > p0 + v.ring_bytes || t < p0) return clear();  // lapped (it lost), or a stale value from nowhere
  std::vector<std::uint32_t> dead_same;
  for (std::uint32_t o = 0; o < v.producer_slots; ++o) {
    if (o == slot) continue;
    const std::uint64_t wo = v.claims[o].word.load(std::memory_order_acquire);
    const std::uint64_t so = wo & kClaimStateMask;
    if ((so != kClaimCandidate && so != kClaimWon) || (wo & ~(kClaimAlign - 1)) != p0) continue;
    if (so == kClaimWon) return clear();  // someone else won p0
    if ((dead_slots >> o & 1) == 0) {
      rep.outcome = RepairOutcome::kWait;  // a live producer is racing for p0: let it finish
      return rep;
    }
    dead_same.push_back(o);
  }
  if (is_committed(v, p0)) return clear();  // someone else won p0 and committed it
  t = load_tail(v);
  if (t > p0 + v.ring_bytes) return clear();  // lapped meanwhile: it lost
  if (!dead_same.empty()) {
    // Several dead candidates (threads of one killed process) name p0 and
    // one of them won it. The winner's end is the first boundary after p0
    // (tail went from p0 straight to it); an end inside the winner's range
    // is never a boundary. So the winner is the candidate with the smallest
    // provable-boundary end. (DESIGN.md says "the one whose end is a
    // boundary"; a loser's end can be a later boundary too, hence smallest.)
    std::uint64_t winner_end = UINT64_MAX;
    auto consider = [&](std::uint64_t sz) {
      if (valid_size(v, sz) && p0 + sz < winner_end && provably_boundary(v, p0 + sz, t)) winner_end = p0 + sz;
    };
    consider(size);
    for (std::uint32_t o : dead_same) consider(v.claims[o].size.load(std::memory_order_relaxed));
    if (winner_end == UINT64_MAX) {
      rep.outcome = RepairOutcome::kWait;
      return rep;
    }
    if (p0 + size != winner_end) return clear();
  }
  // It won p0. Mark the slot won before writing anything: write_aborted
  // stores the word at p0 first, and a repairer killed after that word but
  // before the last one would leave a candidate slot whose p0 looks
  // "committed by someone else" to its successor, which would clear it and
  // leave the rest of the range without words (readers wait there forever,
  // the partition wedges one lap later). A won slot is re-run by walking the
  // words from p0 instead. Release: a successor that acquires the won word
  // sees the size it was paired with. SPIN found this (docs/models/README.md
  // section 4, `PROMOTE`).
  s.word.store(p0 | kClaimWon, std::memory_order_release);
  HERALD_CRASH_POINT("repair.promoted");
  return abort_from(p0);
}

}  // namespace herald::shm
