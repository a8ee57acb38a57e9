#include "shm/topic_map.hpp"

#include <sched.h>
#include <sys/random.h>
#include <unistd.h>

#include <cstring>

#include "shm/clock.hpp"
#include "shm/futex.hpp"
#include "shm/names.hpp"
#include "shm/slots.hpp"

namespace herald::shm {

std::uint64_t random_u64() noexcept {
  std::uint64_t v = 0;
  while (v == 0) {
    if (::getrandom(&v, sizeof v, 0) != static_cast<ssize_t>(sizeof v)) {
      // getrandom cannot fail for 8 bytes once the pool is ready; fall back
      // to a time-and-pid mix rather than give up.
      v = (monotonic_ns() * std::uint64_t{0x9E3779B97F4A7C15u}) ^ static_cast<std::uint64_t>(::getpid());
    }
  }
  return v;
}

Result<void> validate_log_params(const LogParams& p) {
  if (p.partitions == 0 || p.partitions > kMaxPartitions)
    return fail(Errc::kInvalidArgument,
                "partitions=" + std::to_string(p.partitions) + " is outside 1.." + std::to_string(kMaxPartitions));
  if (!is_pow2(p.ring_bytes) || p.ring_bytes < kMinRingBytes || p.ring_bytes > kMaxRingBytes)
    return fail(Errc::kInvalidArgument, "ring_bytes=" + std::to_string(p.ring_bytes) +
                                            " must be a power of two in 4096.." + std::to_string(kMaxRingBytes));
  if (p.max_event < kMinMaxEvent || p.max_event % kClaimAlign != 0)
    return fail(Errc::kInvalidArgument, "max_event=" + std::to_string(p.max_event) +
                                            " must be a multiple of 64 and at least " + std::to_string(kMinMaxEvent));
  if (p.max_event > p.ring_bytes / 4)
    return fail(Errc::kInvalidArgument, "max_event=" + std::to_string(p.max_event) + " > ring_bytes/4=" +
                                            std::to_string(p.ring_bytes / 4));
  if ((p.flags & ~(kLogSingleProducer | kLogDeadLetterTopic)) != 0)
    return fail(Errc::kInvalidArgument, "unknown log flags " + std::to_string(p.flags));
  return {};
}

namespace {

Result<void> check_segment_header(const SegmentHeaderLayout& h, std::uint64_t bytes, std::uint64_t magic,
                                  SegmentKind kind, std::uint64_t incarnation, const char* what) {
  if (h.magic != magic) {
    char buf[160];
    std::snprintf(buf, sizeof buf, "%s segment has magic 0x%016llx, expected 0x%016llx (not a herald %s segment)",
                  what, static_cast<unsigned long long>(h.magic), static_cast<unsigned long long>(magic), what);
    return fail(Errc::kCorrupt, buf);
  }
  // A1: pairs with the creator's release store of layout_version (R0 in
  // init_segment_header): once seen, every header field is visible.
  const std::uint32_t v = h.layout_version.load(std::memory_order_acquire);
  if (v == 0) return fail(Errc::kNotReady, std::string(what) + " segment is still being created (layout version 0)");
  if (v != kLayoutVersion)
    return fail(Errc::kVersionMismatch, std::string(what) + " segment has layout version " + std::to_string(v) +
                                            ", this build reads version " + std::to_string(kLayoutVersion));
  if (h.kind != static_cast<std::uint32_t>(kind))
    return fail(Errc::kCorrupt, std::string(what) + " segment has kind " + std::to_string(h.kind));
  if (h.segment_bytes != bytes)
    return fail(Errc::kCorrupt, std::string(what) + " segment was made with " + std::to_string(h.segment_bytes) +
                                    " bytes but is " + std::to_string(bytes) + " bytes (truncated or resized)");
  if (incarnation != 0 && h.incarnation != incarnation)
    return fail(Errc::kCorrupt, std::string(what) + " segment has incarnation " + std::to_string(h.incarnation) +
                                    ", expected " + std::to_string(incarnation));
  return {};
}

void init_segment_header(SegmentHeaderLayout& h, std::uint64_t magic, SegmentKind kind, std::uint64_t bytes,
                         std::uint64_t incarnation) {
  h.magic = magic;
  h.kind = static_cast<std::uint32_t>(kind);
  h.segment_bytes = bytes;
  h.incarnation = incarnation;
  h.created_ns = realtime_ns();
  h.creator_pid = static_cast<std::uint32_t>(::getpid());
}

void publish_segment_header(SegmentHeaderLayout& h) {
  // R0: stored last; pairs with A1 in check_segment_header. Everything the
  // creator wrote before is visible to whoever sees the version.
  h.layout_version.store(kLayoutVersion, std::memory_order_release);
}

}  // namespace

Result<LogGeometry> validate_log_segment(const std::byte* base, std::uint64_t bytes, std::uint64_t incarnation) {
  if (bytes < kPageBytes) return fail(Errc::kCorrupt, "log segment of " + std::to_string(bytes) + " bytes is truncated");
  const auto* h = reinterpret_cast<const LogHeaderLayout*>(base);
  if (auto r = check_segment_header(h->segment, bytes, kMagicLog, SegmentKind::kLog, incarnation, "log"); !r)
    return fail(std::move(r).error());
  LogParams p{h->partitions, h->ring_bytes, h->max_event, h->flags};
  if (auto r = validate_log_params(p); !r) {
    // Bad parameters read from a segment are a corrupt segment, not the
    // caller's bad argument: keep the message, report kCorrupt.
    Error e = std::move(r).error().with_context("log segment header");
    e.code = Errc::kCorrupt;
    return fail(std::move(e));
  }
  if (h->producer_slots != kProducerSlots || h->reader_slots != kReaderSlots)
    return fail(Errc::kCorrupt, "log segment has " + std::to_string(h->producer_slots) + " producer and " +
                                    std::to_string(h->reader_slots) + " reader slots, expected " +
                                    std::to_string(kProducerSlots) + " and " + std::to_string(kReaderSlots));
  const LogGeometry g = LogGeometry::compute(p);
  if (h->partitions_off != g.partitions_off || h->wake_off != g.wake_off || h->producers_off != g.producers_off ||
      h->claims_off != g.claims_off || h->counters_off != g.counters_off || h->index_off != g.index_off ||
      h->rings_off != g.rings_off)
    return fail(Errc::kCorrupt, "log segment region offsets disagree with its parameters");
  if (g.total_bytes != bytes)
    return fail(Errc::kCorrupt, "log segment is " + std::to_string(bytes) + " bytes, its parameters need " +
                                    std::to_string(g.total_bytes));
  const auto* parts = reinterpret_cast<const PartitionLayout*>(base + g.partitions_off);
  for (std::uint32_t i = 0; i < p.partitions; ++i) {
    if ((parts[i].salt & (kRecordAlign - 1)) == 0)
      return fail(Errc::kCorrupt, "partition " + std::to_string(i) + " has a salt with zero low bits");
    if (parts[i].ring_off != g.ring_off(i) || parts[i].index_off != g.partition_index_off(i) ||
        parts[i].claims_off != g.partition_claims_off(i))
      return fail(Errc::kCorrupt, "partition " + std::to_string(i) + " offsets disagree with the geometry");
  }
  return g;
}

Result<StateGeometry> validate_state_segment(const std::byte* base, std::uint64_t bytes, std::uint64_t incarnation,
                                             std::uint32_t partitions) {
  if (bytes < kPageBytes)
    return fail(Errc::kCorrupt, "state segment of " + std::to_string(bytes) + " bytes is truncated");
  const auto* h = reinterpret_cast<const StateHeaderLayout*>(base);
  if (auto r = check_segment_header(h->segment, bytes, kMagicState, SegmentKind::kState, incarnation, "state"); !r)
    return fail(std::move(r).error());
  if (h->partitions != partitions)
    return fail(Errc::kCorrupt, "state segment has " + std::to_string(h->partitions) + " partitions, the log has " +
                                    std::to_string(partitions));
  const StateGeometry g = StateGeometry::compute(partitions);
  if (h->group_slots != g.group_slots || h->reader_slots != g.reader_slots || h->partitions_off != g.partitions_off ||
      h->groups_off != g.groups_off || h->cursors_off != g.cursors_off || h->readers_off != g.readers_off)
    return fail(Errc::kCorrupt, "state segment region offsets disagree with its parameters");
  if (g.total_bytes != bytes)
    return fail(Errc::kCorrupt, "state segment is " + std::to_string(bytes) + " bytes, its parameters need " +
                                    std::to_string(g.total_bytes));
  return g;
}

TopicMap::TopicMap() = default;
TopicMap::TopicMap(TopicMap&&) noexcept = default;
TopicMap& TopicMap::operator=(TopicMap&&) noexcept = default;
TopicMap::~TopicMap() = default;

Result<TopicMap> TopicMap::create(const std::string& bus, const std::string& topic, std::uint64_t incarnation,
                                  const LogParams& params, const Perms& perms) {
  if (auto r = validate_log_params(params); !r) return fail(std::move(r).error());
  TopicMap t;
  t.bus_ = bus;
  t.topic_ = topic;
  t.incarnation_ = incarnation;
  t.geo_ = LogGeometry::compute(params);
  t.sgeo_ = StateGeometry::compute(params.partitions);
  const std::string log_name = log_segment_name(bus, topic, incarnation);
  const std::string state_name = state_segment_name(bus, topic, incarnation);

  auto state = Segment::create(state_name, t.sgeo_.total_bytes, perms.state);
  if (!state) return fail(std::move(state).error());
  t.state_ = std::move(state).value();
  auto log = Segment::create(log_name, t.geo_.total_bytes, perms.log);
  if (!log) {
    (void)Segment::remove(state_name);
    return fail(std::move(log).error());
  }
  t.log_ = std::move(log).value();

  // The state segment first: by the time the log's version is visible (the
  // last store of all), the state segment is complete too.
  auto* sh = t.state_header();
  init_segment_header(sh->segment, kMagicState, SegmentKind::kState, t.sgeo_.total_bytes, incarnation);
  sh->partitions = params.partitions;
  sh->group_slots = t.sgeo_.group_slots;
  sh->reader_slots = t.sgeo_.reader_slots;
  sh->partitions_off = t.sgeo_.partitions_off;
  sh->groups_off = t.sgeo_.groups_off;
  sh->cursors_off = t.sgeo_.cursors_off;
  sh->readers_off = t.sgeo_.readers_off;
  for (std::uint32_t g = 0; g < t.sgeo_.group_slots; ++g)
    for (std::uint32_t p = 0; p < params.partitions; ++p)
      t.group_partition(g, p)->lease.store(kNoLease, std::memory_order_relaxed);
  publish_segment_header(sh->segment);

  auto* lh = t.log_header();
  init_segment_header(lh->segment, kMagicLog, SegmentKind::kLog, t.geo_.total_bytes, incarnation);
  lh->partitions = params.partitions;
  lh->producer_slots = t.geo_.producer_slots;
  lh->reader_slots = t.geo_.reader_slots;
  lh->flags = params.flags;
  lh->ring_bytes = params.ring_bytes;
  lh->max_event = params.max_event;
  lh->partitions_off = t.geo_.partitions_off;
  lh->wake_off = t.geo_.wake_off;
  lh->producers_off = t.geo_.producers_off;
  lh->claims_off = t.geo_.claims_off;
  lh->counters_off = t.geo_.counters_off;
  lh->index_off = t.geo_.index_off;
  lh->rings_off = t.geo_.rings_off;
  auto* parts = reinterpret_cast<PartitionLayout*>(t.log_.data() + t.geo_.partitions_off);
  for (std::uint32_t i = 0; i < params.partitions; ++i) {
    std::uint64_t salt = random_u64();
    if ((salt & (kRecordAlign - 1)) == 0) salt |= 1;  // committed words must never have zero low bits
    parts[i].salt = salt;
    parts[i].ring_off = t.geo_.ring_off(i);
    parts[i].index_off = t.geo_.partition_index_off(i);
    parts[i].claims_off = t.geo_.partition_claims_off(i);
  }
  publish_segment_header(lh->segment);

  if (auto r = t.map_rings(); !r) {
    remove(bus, topic, incarnation);
    return fail(std::move(r).error());
  }
  t.build_views();
  return t;
}

Result<TopicMap> TopicMap::attach(const std::string& bus, const std::string& topic, std::uint64_t incarnation,
                                  Access log_access, Access state_access) {
  TopicMap t;
  t.bus_ = bus;
  t.topic_ = topic;
  t.incarnation_ = incarnation;
  auto log = Segment::open(log_segment_name(bus, topic, incarnation), log_access);
  if (!log) return fail(std::move(log).error().with_context("topic '" + topic + "'"));
  t.log_ = std::move(log).value();
  auto geo = validate_log_segment(t.log_.data(), t.log_.size(), incarnation);
  if (!geo) return fail(std::move(geo).error().with_context("topic '" + topic + "'"));
  t.geo_ = geo.value();
  auto state = Segment::open(state_segment_name(bus, topic, incarnation), state_access);
  if (!state) return fail(std::move(state).error().with_context("topic '" + topic + "'"));
  t.state_ = std::move(state).value();
  auto sgeo = validate_state_segment(t.state_.data(), t.state_.size(), incarnation, t.geo_.params.partitions);
  if (!sgeo) return fail(std::move(sgeo).error().with_context("topic '" + topic + "'"));
  t.sgeo_ = sgeo.value();
  if (auto r = t.map_rings(); !r) return fail(std::move(r).error().with_context("topic '" + topic + "'"));
  t.build_views();
  return t;
}

void TopicMap::remove(const std::string& bus, const std::string& topic, std::uint64_t incarnation) {
  (void)Segment::remove(log_segment_name(bus, topic, incarnation));
  (void)Segment::remove(state_segment_name(bus, topic, incarnation));
}

Result<void> TopicMap::map_rings() {
  rings_.clear();
  rings_.reserve(geo_.params.partitions);
  for (std::uint32_t i = 0; i < geo_.params.partitions; ++i) {
    auto dm = log_.map_twice(geo_.ring_off(i), geo_.params.ring_bytes);
    if (!dm) return fail(std::move(dm).error().with_context("partition " + std::to_string(i)));
    rings_.push_back(std::move(dm).value());
  }
  // Every mapping of both segments is made: their fds are not needed.
  log_.release_handle();
  state_.release_handle();
  prefaulted_ = std::make_unique<std::atomic<pid_t>[]>(geo_.params.partitions);
  return {};
}

void TopicMap::prefault(std::uint32_t p) const noexcept {
  if (p >= rings_.size()) return;
  const pid_t self = ::getpid();
  if (prefaulted_[p].exchange(self, std::memory_order_relaxed) == self) return;
  rings_[p].populate(geo_.params.max_event);
}

void TopicMap::build_views() {
  views_.assign(geo_.params.partitions, PartitionView{});
  auto* parts = reinterpret_cast<PartitionLayout*>(log_.data() + geo_.partitions_off);
  auto* pstates = reinterpret_cast<PartitionStateLayout*>(state_.data() + sgeo_.partitions_off);
  for (std::uint32_t i = 0; i < geo_.params.partitions; ++i) {
    PartitionView& v = views_[i];
    v.index = i;
    v.part = &parts[i];
    v.ring = rings_[i].data();
    v.boundary = reinterpret_cast<std::atomic<std::uint64_t>*>(log_.data() + geo_.partition_index_off(i));
    v.claims = reinterpret_cast<ClaimSlotLayout*>(log_.data() + geo_.partition_claims_off(i));
    v.state = &pstates[i];
    v.ring_bytes = geo_.params.ring_bytes;
    v.mask = geo_.params.ring_bytes - 1;
    v.max_event = geo_.params.max_event;
    v.salt = parts[i].salt;
    v.index_mask = geo_.index_entries_per_ring() - 1;
    v.producer_slots = geo_.producer_slots;
  }
}

void TopicMap::close() const noexcept {
  if (log_.access() != Access::kReadWrite) return;  // only an administrator (log mapped RW) can close
  // Before the first closed bit: a waiting reader that sees no wake-up
  // (we may die before the wake-ups below) learns of the close from this
  // word, and then reads the tails (Consumer::Impl::closure_news). Program
  // order is all it needs: a closer that died after setting a bit had
  // stored the word, and every store it made stays in shared memory.
  // seq_cst like this function's other accesses (once per delete).
  log_header()->close_started.store(1, std::memory_order_seq_cst);
  for (const PartitionView& v : views_) {
    // The closed bit makes every later CAS on tail fail (producers then see
    // the bit and return kClosed) and every empty read report kClosed.
    v.part->tail.fetch_or(kTailClosedBit, std::memory_order_seq_cst);
  }
  if ((log_header()->flags & kLogSingleProducer) != 0) keep_closed_bit_against_plain_claims();
  // Wake everyone parked so they see it now rather than at their timeout.
  for (std::uint32_t r = 0; r < geo_.reader_slots; ++r) {
    wake(r)->seq.fetch_add(1, std::memory_order_seq_cst);
    futex_wake(&wake(r)->seq, 1 << 30);
  }
  if (state_.access() == Access::kReadWrite) {
    for (const PartitionView& v : views_) {
      v.state->gate_seq.fetch_add(1, std::memory_order_seq_cst);
      futex_wake(&v.state->gate_seq, 1 << 30);
    }
  }
}

// The closer's half of C1 (RingLogWriter::try_claim; the protocol checked
// in docs/models/close-exclusive.pml). A single producer moves tail with a
// plain store after re-loading it; a claim whose re-load came before our
// fetch_or can still erase the bit. membarrier GLOBAL_EXPEDITED makes every
// thread of every registered process execute a full barrier: after it,
// either such a claim's candidate slot is visible here, or its re-load runs
// after our fetch_or and sees the bit. So: wait while the slot names a
// candidate whose owner lives (a few instructions: candidate to won has no
// wait in it), and set the bit again if a claim erased it, until a round
// finds it still set everywhere. A producer that could not register for
// membarrier claims by CAS, which cannot erase the bit.
void TopicMap::keep_closed_bit_against_plain_claims() const noexcept {
  const std::uint64_t give_up = monotonic_ns() + 5'000'000'000ull;  // a stopped producer mid-claim
  // Each round sets the bit again only if a claim that straddled the
  // previous barrier erased it; the claims after that barrier see the bit.
  while (monotonic_ns() < give_up) {
    // Refused by the kernel: then no producer could register either, and
    // all of them claim by CAS.
    if (!membarrier_heavy_fence()) return;
    bool kept = true;
    const ProducerSlotLayout* ps = producer(0);  // single-producer: slot 0 only (acquire_producer_slot)
    for (const PartitionView& v : views_) {
      const ClaimSlotLayout& s = v.claims[0];
      // Acquire: pairs with the producer's release store of `won` or
      // `empty`; its tail store, if any, is then visible to the load below.
      while ((s.word.load(std::memory_order_acquire) & kClaimStateMask) == kClaimCandidate) {
        // No live owner (freed, being reclaimed, or dead): it stores nothing
        // more (a dead process's last stores drained long before its exit).
        if (!owner_live(ps->owner.load(std::memory_order_acquire), ps->start_time.load(std::memory_order_relaxed)))
          break;
        if (monotonic_ns() >= give_up) return;
        sched_yield();
      }
      // seq_cst like close()'s other accesses to tail (once per delete);
      // acquire would do: the slot's acquire above already made the
      // producer's tail store visible, and coherence orders it with our
      // fetch_or.
      if ((v.part->tail.load(std::memory_order_seq_cst) & kTailClosedBit) == 0) {
        v.part->tail.fetch_or(kTailClosedBit, std::memory_order_seq_cst);
        kept = false;
      }
    }
    if (kept) return;
  }
}

bool TopicMap::closed() const noexcept {
  return !views_.empty() && (views_[0].part->tail.load(std::memory_order_acquire) & kTailClosedBit) != 0;
}

}  // namespace herald::shm
