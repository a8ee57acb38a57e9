// Producer: envelope encoding and the publish hot path. publish() does no
// allocation, no lock and no system call on success (a futex wake only when
// a reader is parked); errors build their message only on failure.
#include "herald/producer.hpp"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <unistd.h>

#include <bit>
#include <cassert>
#include <cstddef>
#include <cstring>
#include <thread>
#include <vector>

#include "herald/bus.hpp"
#include "runtime/src/bus_impl.hpp"
#include "runtime/src/envelope.hpp"
#include "runtime/src/event_id.hpp"
#include "runtime/src/partitioner.hpp"
#include "shm/clock.hpp"
#include "shm/crash_point.hpp"
#include "shm/futex.hpp"
#include "shm/names.hpp"
#include "shm/ring_log.hpp"
#include "shm/slots.hpp"

namespace herald {

namespace {

// Copies a payload into its record (any length, 0 included). Up to 64
// bytes, two overlapping fixed-size copies the compiler turns into a few
// moves: a call to libc's memcpy (its size dispatch included) costs ~24
// instructions, as much as the rest of a 64 B event's header. Larger
// payloads go to memcpy.
[[gnu::always_inline]] inline void copy_payload(std::byte* dst, const std::byte* src, std::size_t n) noexcept {
  if (n > 64) {
    std::memcpy(dst, src, n);
  } else if (n >= 32) {
    __builtin_memcpy(dst, src, 32);
    __builtin_memcpy(dst + n - 32, src + n - 32, 32);
  } else if (n >= 16) {
    __builtin_memcpy(dst, src, 16);
    __builtin_memcpy(dst + n - 16, src + n - 16, 16);
  } else if (n >= 8) {
    __builtin_memcpy(dst, src, 8);
    __builtin_memcpy(dst + n - 8, src + n - 8, 8);
  } else if (n >= 4) {
    __builtin_memcpy(dst, src, 4);
    __builtin_memcpy(dst + n - 4, src + n - 4, 4);
  } else if (n > 0) {  // 1..3 bytes: first, middle, last cover them all
    dst[0] = src[0];
    dst[n / 2] = src[n / 2];
    dst[n - 1] = src[n - 1];
  }
}

constexpr std::uint32_t kStickyRun = 256;  // keyless events per partition before moving on

shm::WaitPolicy wait_policy(Wait w) {
  shm::WaitPolicy p;
  switch (w) {
    case Wait::kBusySpin: p.mode = shm::WaitMode::kBusySpin; break;
    case Wait::kSpinYield: p.mode = shm::WaitMode::kSpinYield; break;
    case Wait::kPark: p.mode = shm::WaitMode::kPark; break;
  }
  return p;
}
}  // namespace

struct Producer::Impl {
  std::shared_ptr<const shm::TopicMap> topic;
  std::uint32_t slot = 0;
  shm::RingLogWriter writer;
  ProducerOptions opts;
  shm::WaitPolicy wait;
  std::uint32_t partitions = 0;
  std::uint64_t max_event = 0;
  detail::IdGenerator ids;
  shm::EventClock clock;  // event times: the TSC scaled to CLOCK_REALTIME where usable (shm/clock.hpp)
  std::uint32_t sticky = 0;
  std::uint32_t sticky_left = kStickyRun;
  // A slot's counter values, per partition.
  struct Totals {
    std::uint64_t events = 0, bytes = 0, waits = 0, claims = 0;
  };
  // The slot's counter row as its previous owner left it. The row is the
  // topic's running total for this slot (describe_topic sums the rows), so
  // we add to it rather than restart it from zero, which would drop every
  // event the previous owner counted. This producer's own counts are the
  // row minus base (stats()).
  std::vector<Totals> base;
  // Per partition, resolved once: its view and this slot's counter row (the
  // hot path does not go through TopicMap's accessors; counters() is a call
  // into the mapping code per use).
  struct Hot {
    const shm::PartitionView* view = nullptr;
    shm::ProducerCountersLayout* row = nullptr;
  };
  std::vector<Hot> hot;
  // meta_size() of an event that names no optional field (set after
  // construction: it depends on the options and on record_flags' users).
  std::size_t default_meta = 0;
  Claim* pending = nullptr;  // the outstanding zero-copy claim, if any
  std::uint16_t record_flags = 0;  // internal producers: dead letters, redrives
  bool plain_ok = false;           // no source option, no sequences (see plain())
  std::uint64_t last_seq = 0;      // idempotent producers: highest committed sequence
  // publish_batch scratch, grown once and reused.
  std::vector<std::uint32_t> batch_part;
  std::vector<std::uint32_t> batch_size;
  std::vector<std::uint32_t> batch_meta;
  std::vector<std::uint64_t> batch_seq;
#ifndef NDEBUG
  std::thread::id owner;
#endif

  Impl(std::shared_ptr<const shm::TopicMap> t, std::uint32_t s, bool fast_wake, const ProducerOptions& o)
      : topic(std::move(t)),
        slot(s),
        writer(topic.get(), s, fast_wake),
        opts(o),
        wait(wait_policy(o.wait)),
        partitions(topic->partitions()),
        max_event(topic->geometry().params.max_event),
        base(partitions),
        hot(partitions) {
    sticky = static_cast<std::uint32_t>(shm::random_u64() % partitions);
    const char* bad = nullptr;
    default_meta = detail::meta_size(Message{}, opts.source, &bad, idempotent());
    plain_ok = default_meta == 0 && !idempotent();
    for (std::uint32_t p = 0; p < partitions; ++p) {
      // Relaxed: our CAS that took the slot (acq_rel) ordered the previous
      // owner's last stores before these loads.
      const shm::ProducerCountersLayout* c = topic->counters(slot, p);
      base[p] = {c->events.load(std::memory_order_relaxed), c->bytes.load(std::memory_order_relaxed),
                 c->backpressure_waits.load(std::memory_order_relaxed), c->claims.load(std::memory_order_relaxed)};
      hot[p] = {&topic->partition(p), topic->counters(slot, p)};
      // Any partition may receive this producer's events (keys, round-robin).
      topic->prefault(p);
    }
    // For stat: what the slot had counted before us. Relaxed: statistics.
    shm::ProducerSlotLayout* sl = topic->producer(slot);
    std::uint64_t e = 0, b = 0, c = 0, w = 0;
    for (const Totals& k : base) {
      e += k.events;
      b += k.bytes;
      c += k.claims;
      w += k.waits;
    }
    sl->base_events.store(e, std::memory_order_relaxed);
    sl->base_bytes.store(b, std::memory_order_relaxed);
    sl->base_claims.store(c, std::memory_order_relaxed);
    sl->base_waits.store(w, std::memory_order_relaxed);
  }

  // The process that made the producer. A child forked with the handle
  // alive destroys its copy without touching the slot or a pending claim,
  // which are still the parent's (found by an exploratory pass: the child's
  // exit released them under the parent).
  const pid_t owner_pid = ::getpid();

  ~Impl();

  void check_thread() {
#ifndef NDEBUG
    // A Producer belongs to one thread at a time (its claim slot is that
    // thread's). Moving it to another thread between calls is fine.
    if (owner == std::thread::id{}) owner = std::this_thread::get_id();
    assert(owner == std::this_thread::get_id() && "herald::Producer used from two threads");
#endif
  }

  // Per claim: three plain stores into this slot's row. Only this producer
  // writes its row, so each counter is its own load plus a store, never a
  // shared read-modify-write; and no private copy of the row either: three
  // more stores per publish cost more than three loads of a line this
  // producer owns (bench/RESULTS.md, "sixth session").
  void count(std::uint32_t p, std::uint64_t events, std::uint64_t bytes) noexcept {
    count(hot[p].row, events, bytes);
  }
  // The row resolved once: each store below would make g++ load hot[p].row
  // again (atomic stores clobber all memory as far as it knows).
  static void count(shm::ProducerCountersLayout* row, std::uint64_t events, std::uint64_t bytes) noexcept {
    add(row->events, events);
    add(row->bytes, bytes);
    add(row->claims, 1);
  }
  // Relaxed: a statistic; readers (stats(), describe_topic) take any recent value.
  static void add(std::atomic<std::uint64_t>& counter, std::uint64_t n) noexcept {
    counter.store(counter.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }

  // Picks the partition: explicit, by key, or sticky round-robin.
  shm::Status pick(const Message& m, std::uint32_t* p) noexcept {
    if (m.partition < 0 && !m.key.empty()) {
      *p = detail::partition_for_key(m.key, partitions);
      return shm::Status::kOk;
    }
    return pick_keyless(m.partition, p);
  }
  // pick() for an event without a key: `partition`, or sticky round-robin
  // when it is negative.
  shm::Status pick_keyless(std::int32_t partition, std::uint32_t* p) noexcept {
    if (partition >= 0) {
      if (static_cast<std::uint32_t>(partition) >= partitions) return shm::Status::kInvalid;
      *p = static_cast<std::uint32_t>(partition);
    } else {
      if (sticky_left == 0) {
        sticky = sticky + 1 == partitions ? 0 : sticky + 1;
        sticky_left = kStickyRun;
      }
      --sticky_left;
      *p = sticky;
    }
    return shm::Status::kOk;
  }

  // meta_size(m), without walking the fields for the usual event that sets
  // none of them (then only the default source and, for an idempotent
  // producer, the sequence entry take bytes).
  std::size_t meta_of(const Message& m, const char** bad) const noexcept {
    if (m.type.empty() && m.source.empty() && m.content_type.empty() && m.correlation_id.empty() &&
        m.causation_id.empty() && m.headers.empty())
      return default_meta;
    return detail::meta_size(m, opts.source, bad, idempotent(), record_flags != 0);
  }

  // Claims `bytes` on p, waiting up to the deadline under backpressure;
  // *now gets the event clock's time for the claim's events, also noted in
  // the claim slot (won_ns) so `herald stat` can tell how long a claim has
  // been held. Inline: the uncontended claim is the publish hot path; only
  // waiting under backpressure is a call (and `now` stays in a register).
  //
  // The clock is read before the claim, not after it: the TSC read's
  // latency then overlaps the claim's work instead of holding up the header
  // stores that wait for the time (one thread, 64 B payloads: 20.2 -> 18.2
  // ns a publish; bench/RESULTS.md, "twelfth session"). A claim that waited
  // reads it again, so an event's time is never from before a wait.
  [[gnu::always_inline]] shm::Status claim(std::uint32_t p, std::uint64_t bytes, std::uint64_t* pos,
                                           std::uint64_t* now) noexcept {
    *now = clock.now();
    if (shm::Status st = writer.try_claim(p, bytes, pos, *now); st != shm::Status::kOk) [[unlikely]] {
      if (st != shm::Status::kBackPressured || opts.deadline.count() <= 0) return st;
      st = claim_waiting(p, bytes, pos);
      if (st != shm::Status::kOk) return st;
      *now = clock.now();
      writer.note_claim_time(p, *now);
    }
    return shm::Status::kOk;
  }
  [[gnu::noinline, gnu::cold]] shm::Status claim_waiting(std::uint32_t p, std::uint64_t bytes,
                                                         std::uint64_t* pos) noexcept {
    Hot& h = hot[p];
    // Relaxed: a statistic, as in count().
    add(h.row->backpressure_waits, 1);
    const std::uint64_t deadline = shm::monotonic_ns() + static_cast<std::uint64_t>(opts.deadline.count());
    return writer.claim(p, bytes, deadline, wait, pos);
  }

  [[nodiscard]] bool idempotent() const noexcept { return opts.producer_id != 0; }

  // Idempotent producers: the sequence this event gets, or 0 if it is at
  // or below the last one committed (a duplicate: the check is a high-water
  // mark, so a sequence that skipped back is one too).
  std::uint64_t next_sequence(const Message& m) const noexcept {
    if (!idempotent()) return 0;
    const std::uint64_t s = m.sequence != 0 ? m.sequence : last_seq + 1;
    return s <= last_seq ? 0 : s;
  }

  // Scans every partition's retained window for this producer_id's events:
  // a restarted idempotent producer continues after its last committed
  // sequence (events of a claim cut short by a crash were aborted by heraldd
  // and do not count).
  //
  // An open claim (another producer's, live, or dead and not yet repaired
  // because heraldd is down) is not the end: committed records after it
  // may be this id's, and stopping there made a restarted producer publish
  // them all again. The scan steps over the claim its slot names.
  void learn_last_sequence() {
    std::vector<std::byte> buf(max_event);
    for (std::uint32_t p = 0; p < partitions; ++p) {
      const shm::PartitionView& v = topic->partition(p);
      std::uint64_t q = shm::beginning(v);
      std::uint32_t unexplained = 0;  // uncommitted looks at q that no claim slot covered
      for (;;) {
        std::uint32_t n = 0;
        const shm::Status st = shm::read_copy(v, q, buf.data(), &n);
        if (st == shm::Status::kOverrun) {
          q = shm::beginning(v);
          continue;
        }
        if (st == shm::Status::kEmpty && q < shm::load_tail(v)) {
          if (const std::uint64_t end = shm::open_claim_end(v, q); end > q) {
            q = end;
            unexplained = 0;
            continue;
          }
          // Committed or finished in between (look again), or a claim whose
          // slot is not written yet: bounded, then the scan ends there as before.
          if (++unexplained < 100000) {
            if (unexplained % 64 == 0) std::this_thread::yield();
            continue;
          }
        }
        if (st != shm::Status::kOk) break;
        const auto* h = reinterpret_cast<const shm::RecordHeader*>(buf.data());
        if ((h->flags & shm::kRecordAborted) == 0) {
          const auto [id, seq] = EventView::over(buf.data(), {}, p, q, 0).producer_sequence();
          if (id == opts.producer_id && seq > last_seq) last_seq = seq;
        }
        q += n;
      }
    }
  }

  // Writes one record (everything but the commit word) at pos.
  EventId write(std::uint32_t p, std::uint64_t pos, std::uint64_t size, const Message& m, std::size_t meta,
                std::size_t payload_len, std::uint64_t now, std::uint64_t seq = 0) noexcept {
    return write(*hot[p].view, pos, size, m, meta, payload_len, now, seq);
  }
  EventId write(const shm::PartitionView& v, std::uint64_t pos, std::uint64_t size, const Message& m,
                std::size_t meta, std::size_t payload_len, std::uint64_t now, std::uint64_t seq = 0) noexcept {
    shm::RecordHeader* h = v.header_at(pos);
    const std::uint64_t t = m.time_ns != 0 ? m.time_ns : now;
    // The id's millisecond is when it was made (`now`, the event clock), not
    // the caller's event time: ids of one producer keep increasing, and one
    // event timed in 2100 used to pin every later id's millisecond there.
    const EventId id = m.id.empty() ? ids.next(now) : m.id;
    h->size = static_cast<std::uint32_t>(size);
    h->payload_len = static_cast<std::uint32_t>(payload_len);
    h->time_ns = t;
    h->id_hi = id.hi;
    h->id_lo = id.lo;
    h->flags = record_flags;
    h->key_len = static_cast<std::uint16_t>(m.key.size());
    h->meta_len = static_cast<std::uint16_t>(meta);
    h->producer_slot = static_cast<std::uint16_t>(slot);
    HERALD_CRASH_POINT("write.header");
    std::byte* body = v.bytes_at(pos) + shm::kRecordHeaderBytes;
    if (!m.key.empty()) std::memcpy(body, m.key.data(), m.key.size());
    if (meta != 0) detail::encode_meta(body + m.key.size(), m, opts.source, idempotent() ? opts.producer_id : 0, seq);
    return id;
  }

  // A plain message is its payload alone: no key, no envelope field to
  // encode (so no source option and no sequence either: plain_ok), id and
  // time left to the runtime. publish and claim write it through
  // claim_plain, publish_batch through write_plain_run: the same bytes
  // write() and copy_payload would.
  [[nodiscard]] bool plain(const Message& m) const noexcept {
    return plain_ok && (m.key.size() | m.type.size() | m.source.size() | m.content_type.size() |
                        m.correlation_id.size() | m.causation_id.size() | m.headers.size() | m.time_ns | m.id.hi |
                        m.id.lo) == 0;
  }
  // The header's last 8 bytes for a plain record: flags, key_len,
  // meta_len, producer_slot (one store instead of four).
  [[nodiscard]] std::uint64_t header_tail() const noexcept {
    struct Tail {
      std::uint16_t flags, key_len, meta_len, producer_slot;
    };
    static_assert(sizeof(Tail) == 8 && offsetof(shm::RecordHeader, flags) == 40 &&
                  offsetof(shm::RecordHeader, producer_slot) == 46);
    const Tail t{record_flags, 0, 0, static_cast<std::uint16_t>(slot)};
    std::uint64_t w = 0;
    std::memcpy(&w, &t, sizeof w);
    return w;
  }
  // A plain record's header at rec (all of it but the commit word), in
  // three stores where the fields would take six: size and payload_len as
  // one 8-byte word, then {time_ns, id_hi} and {id_lo, flags..slot} as two
  // 16-byte ones. A producer at tens of millions of events a second is
  // bound by its stores, about one a cycle (bench/RESULTS.md, "sixth
  // session"); packing two words into an SSE register costs no store.
  // Nothing reads these bytes before the commit word's release (R1).
  [[gnu::always_inline]] static void write_plain_header(std::byte* rec, std::uint32_t size, std::size_t payload_len,
                                                        std::uint64_t now, EventId id, std::uint64_t tail) noexcept {
    static_assert(offsetof(shm::RecordHeader, size) == 8 && offsetof(shm::RecordHeader, payload_len) == 12 &&
                  offsetof(shm::RecordHeader, time_ns) == 16 && offsetof(shm::RecordHeader, id_hi) == 24 &&
                  offsetof(shm::RecordHeader, id_lo) == 32 && offsetof(shm::RecordHeader, flags) == 40);
#if defined(__SSE2__)
    static_assert(std::endian::native == std::endian::little);
    const std::uint64_t sizes = std::uint64_t{size} | std::uint64_t{static_cast<std::uint32_t>(payload_len)} << 32;
    std::memcpy(rec + 8, &sizes, sizeof sizes);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(rec + 16),
                     _mm_set_epi64x(static_cast<long long>(id.hi), static_cast<long long>(now)));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(rec + 32),
                     _mm_set_epi64x(static_cast<long long>(tail), static_cast<long long>(id.lo)));
#else
    auto* const h = reinterpret_cast<shm::RecordHeader*>(rec);
    h->size = size;
    h->payload_len = static_cast<std::uint32_t>(payload_len);
    h->time_ns = now;
    h->id_hi = id.hi;
    h->id_lo = id.lo;
    std::memcpy(rec + offsetof(shm::RecordHeader, flags), &tail, sizeof tail);
#endif
    HERALD_CRASH_POINT("write.header");
  }
  // A plain record at rec: everything but the commit word.
  [[gnu::always_inline]] static void write_plain(std::byte* rec, std::uint32_t size, Bytes payload,
                                                 std::uint64_t now, EventId id, std::uint64_t tail) noexcept {
    write_plain_header(rec, size, payload.size(), now, id, tail);
    copy_payload(rec + shm::kRecordHeaderBytes, payload.data(), payload.size());
  }
  // Whether a plain message of payload_len bytes fits (what try_size would
  // say of it) on a partition it may name. The payload is checked alone
  // first, as in try_size: record_size() would wrap for one near SIZE_MAX.
  [[nodiscard]] bool plain_fits(std::int32_t partition, std::size_t payload_len) const noexcept {
    return payload_len <= max_event && shm::record_size(0, 0, payload_len) <= max_event && partition >= -1 &&
           partition < static_cast<std::int64_t>(partitions);
  }

  // What publish and claim do first for a plain message that plain_fits:
  // claim its record and write its header (everything but the payload and
  // the commit word). On kOk the result names the record; otherwise p and
  // size are what status_error needs. Returned by value and built from
  // locals: a struct filled through a pointer kept more of the quick path
  // in memory (more stores, which bound a producer at these rates; see
  // write_plain_header).
  struct PlainClaim {
    shm::Status st;
    std::uint32_t p;
    std::uint64_t pos, size;
    EventId id;
    std::byte* rec;
  };
  [[gnu::always_inline]] PlainClaim claim_plain(std::int32_t partition, std::size_t payload_len) noexcept {
    const std::uint64_t size = shm::claim_bytes(shm::record_size(0, 0, payload_len));
    std::uint32_t p = 0;
    pick_keyless(partition, &p);
    std::uint64_t pos = 0, now = 0;
    if (const shm::Status st = claim(p, size, &pos, &now); st != shm::Status::kOk) [[unlikely]]
      return {st, p, 0, size, {}, nullptr};
    const EventId id = ids.next(now);
    std::byte* const rec = hot[p].view->bytes_at(pos);
    write_plain_header(rec, static_cast<std::uint32_t>(size), payload_len, now, id, header_tail());
    return {shm::Status::kOk, p, pos, size, id, rec};
  }

  // publish() of a plain message (the usual event: a payload, its id and
  // time by the runtime) that plain_fits, with no claim pending: what the
  // general path does, without the field-by-field checks and encodings it
  // needs. Its error path is out of line.
  [[gnu::always_inline]] Result<Published> publish_plain(Bytes payload, std::int32_t partition) {
    const PlainClaim c = claim_plain(partition, payload.size());
    if (c.st != shm::Status::kOk) [[unlikely]]
      return publish_failed(c.st, c.p, c.size);
    copy_payload(c.rec + shm::kRecordHeaderBytes, payload.data(), payload.size());
    return commit_one(c.p, c.pos, c.size, c.id);
  }
  [[gnu::noinline, gnu::cold]] Result<Published> publish_failed(shm::Status st, std::uint32_t p, std::uint64_t size) const {
    return fail(status_error(st, p, size));
  }

  // The end of a one-record claim [pos, + size) whose record is written:
  // commit it, end the claim, count it. The view and the counter row are
  // resolved once, into locals: the commit word's store (an atomic, which
  // g++ takes to clobber all memory) would otherwise make every step below
  // chase topic -> partition -> slot again (with the claim noting its time
  // in try_claim: 21 of the ~365 instructions callgrind counted for a 64 B
  // publish(payload); bench/RESULTS.md, "fourteenth session").
  [[gnu::always_inline]] Published commit_one(std::uint32_t p, std::uint64_t pos, std::uint64_t size,
                                              EventId id) noexcept {
    const shm::PartitionView& v = *hot[p].view;
    shm::ProducerCountersLayout* const row = hot[p].row;
    writer.commit_record(v, pos, static_cast<std::uint32_t>(size));
    writer.finish(v, p, pos, size);
    count(row, 1, size);
    return Published{p, pos, id, false};
  }

  // publish_batch's run of `count` plain events (see there) at pos, sizes
  // from batch_size: what write(), copy_payload and commit_record do per
  // event, with the per-event work they would repeat done once per run (the
  // view and its fields, the id's time part, the header's constant tail, the
  // claim slot's committed_to). Same bytes, same order, same crash points.
  void write_plain_run(std::uint32_t p, std::uint64_t pos, const Message* m, const std::uint32_t* sizes,
                       std::size_t count, std::uint64_t now) noexcept {
    const shm::PartitionView& v = *hot[p].view;
    const detail::IdGenerator::Run run = ids.run(now, count);
    const std::uint64_t tail = header_tail();
    std::uint64_t at = pos;
    for (std::size_t k = 0; k < count; ++k) {
      const std::uint32_t size = sizes[k];
      write_plain(v.bytes_at(at), size, m[k].payload, now, run.at(run.first + k), tail);
      shm::RingLogWriter::commit_word(v, at, size);
      HERALD_CRASH_POINT("commit.committed_to");
      HERALD_CRASH_POINT("batch.record_committed");
      at += size;
    }
    writer.committed_through(p, at);
  }

  Error status_error(shm::Status st, std::uint32_t p, std::uint64_t size) const {
    const std::string where = "topic '" + topic->topic() + "' partition " + std::to_string(p);
    switch (st) {
      case shm::Status::kBackPressured:
        return Error{Errc::kBackPressured, where + ": a gating group has not consumed enough to free " +
                                               std::to_string(size) + " bytes within the deadline (" +
                                               std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                                  opts.deadline).count()) +
                                               " ms); see 'herald groups' for the group that gates (lossless, or "
                                               "lag-out with a live member or within its grace after the last "
                                               "one left)"};
      case shm::Status::kClosed:
        return Error{Errc::kClosed, where + " was deleted (or re-created); attach a new producer"};
      case shm::Status::kTooLarge:
        return Error{Errc::kTooLarge, where + ": " + std::to_string(size) + " bytes in one claim exceed ring/2"};
      case shm::Status::kExhausted:
        return Error{Errc::kNoSpace, where + " has used its whole position space (" +
                                         std::to_string(shm::kMaxCursorPosition) +
                                         " bytes written over its life); nothing more can be appended to it: "
                                         "drain it, then delete and re-create the topic"};
      default: return Error{Errc::kIo, where + ": claim failed"};
    }
  }

  // What try_size() found wrong with a message (for kMeta, `bad` names the
  // field); invalid() words it.
  enum class Invalid : std::uint8_t { kKey, kMeta, kNegativePartition, kNoSuchPartition, kTooLarge, kSequence };
  struct Refusal {
    Invalid why{};
    const char* bad = nullptr;
  };

  // The one place the rules of a valid message live, without strings (the
  // hot path): the record size of m with payload_len payload bytes (and its
  // meta size), or 0 with *no saying why when m is invalid; invalid() then
  // says so in words.
  std::uint64_t try_size(const Message& m, std::size_t payload_len, std::size_t* meta, Refusal* no) const noexcept {
    if (m.key.size() > kMaxKeyBytes) {
      no->why = Invalid::kKey;
      return 0;
    }
    *meta = meta_of(m, &no->bad);
    if (*meta == SIZE_MAX) {
      no->why = Invalid::kMeta;
      return 0;
    }
    if (m.partition < -1) {
      no->why = Invalid::kNegativePartition;
      return 0;
    }
    if (m.partition >= static_cast<std::int64_t>(partitions)) {
      no->why = Invalid::kNoSuchPartition;
      return 0;
    }
    // Sequences stop at kMaxSequence: past it "last + 1" would wrap to 0
    // and every later event of this producer id would be a "duplicate".
    if (idempotent() && (m.sequence != 0 ? m.sequence : last_seq + 1) > kMaxSequence) {
      no->why = Invalid::kSequence;
      return 0;
    }
    // A payload over max_event is too large whatever the rest; checked
    // first because record_size() would wrap for one near SIZE_MAX (claim(n)
    // takes any n) and let it through.
    if (payload_len > max_event) {
      no->why = Invalid::kTooLarge;
      return 0;
    }
    const std::uint64_t size = shm::record_size(m.key.size(), *meta, payload_len);
    if (size > max_event) {
      no->why = Invalid::kTooLarge;
      return 0;
    }
    return size;
  }

  // The error for a message try_size() refused (cold: builds strings).
  [[gnu::cold]] Error invalid(const Message& m, std::size_t payload_len, std::size_t meta, const Refusal& no) const {
    switch (no.why) {
      case Invalid::kKey:
        return Error{Errc::kInvalidArgument, "key is " + std::to_string(m.key.size()) + " bytes; the limit is " +
                                                 std::to_string(kMaxKeyBytes)};
      case Invalid::kMeta: return detail::meta_error(m, no.bad);
      case Invalid::kNegativePartition:
        return Error{Errc::kInvalidArgument,
                     "partition " + std::to_string(m.partition) + " is negative (use -1 to pick by key)"};
      case Invalid::kNoSuchPartition:
        return Error{Errc::kInvalidArgument, "partition " + std::to_string(m.partition) + " does not exist (topic '" +
                                                 topic->topic() + "' has " + std::to_string(partitions) + ")"};
      case Invalid::kSequence:
        return Error{Errc::kInvalidArgument,
                     "sequence " + std::to_string(m.sequence != 0 ? m.sequence : last_seq + 1) + " is past the largest, " +
                         std::to_string(kMaxSequence) + " (producer id " + std::to_string(opts.producer_id) + ")"};
      case Invalid::kTooLarge: break;
    }
    const std::string size = payload_len > max_event
                                 ? "more than " + std::to_string(max_event)
                                 : std::to_string(shm::record_size(m.key.size(), meta, payload_len));
    // The parts, then what the log stores: their sum rounded up to 16
    // bytes (a message that added up to one byte over max_event showed a
    // total 15 bytes larger than its parts, unexplained).
    return Error{Errc::kTooLarge, "event of " + size + " bytes (payload " + std::to_string(payload_len) + ", key " +
                                      std::to_string(m.key.size()) + ", envelope " +
                                      std::to_string(shm::kRecordHeaderBytes + meta) +
                                      ", rounded up to 16 bytes) > max_event=" + std::to_string(max_event) +
                                      " of topic '" + topic->topic() + "'; max_payload() says what fits"};
  }
};

Producer::Producer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Producer::Producer(Producer&&) noexcept = default;
Producer& Producer::operator=(Producer&&) noexcept = default;
Producer::~Producer() = default;

Producer::Impl::~Impl() {
  if (::getpid() != owner_pid) return;  // a forked child's copy: see owner_pid
  if (pending != nullptr) pending->abort();
  shm::release_producer_slot(*topic, slot);
}

namespace {

// publish(Bytes) for a producer with a source option or sequences, an event
// too large, a bad partition or a pending claim: the general path does it
// or says what is wrong. Out of line, so the quick path's frame holds no
// Message.
[[gnu::noinline]] Result<Published> publish_message(Producer& producer, Bytes payload, std::int32_t partition) {
  return producer.publish(Message{.payload = payload, .partition = partition});
}

}  // namespace

Result<Published> Producer::publish(Bytes payload, std::int32_t partition) {
  if (impl_ == nullptr) [[unlikely]] return fail(detail::moved_from("Producer"));
  Impl& I = *impl_;
  I.check_thread();
  const std::size_t len = payload.size();
  if (I.plain_ok && I.plain_fits(partition, len) && I.pending == nullptr) [[likely]]
    return I.publish_plain(payload, partition);
  return publish_message(*this, payload, partition);
}

Result<Published> Producer::publish(const Message& m) {
  if (impl_ == nullptr) [[unlikely]] return fail(detail::moved_from("Producer"));
  Impl& I = *impl_;
  I.check_thread();
  const std::size_t len = m.payload.size();
  if (I.plain(m) && I.plain_fits(m.partition, len) && I.pending == nullptr) [[likely]]
    return I.publish_plain(m.payload, m.partition);
  std::size_t meta = 0;
  Impl::Refusal no;
  // Fast validation inline; only a refused message builds strings.
  const std::uint64_t record = I.try_size(m, m.payload.size(), &meta, &no);
  if (record == 0) return fail(I.invalid(m, m.payload.size(), meta, no));
  const std::uint64_t size = shm::claim_bytes(record);
  if (I.pending != nullptr) return fail(Errc::kInvalidArgument, "a zero-copy claim is pending on this producer");
  const std::uint64_t seq = I.next_sequence(m);
  if (I.idempotent() && seq == 0) return Published{0, 0, m.id, true};
  std::uint32_t p = 0;
  I.pick(m, &p);
  std::uint64_t pos = 0, clock_now = 0;
  const shm::Status st = I.claim(p, size, &pos, &clock_now);
  if (st != shm::Status::kOk) return fail(I.status_error(st, p, size));
  const shm::PartitionView& v = *I.hot[p].view;
  const EventId id = I.write(v, pos, size, m, meta, m.payload.size(), clock_now, seq);
  copy_payload(v.bytes_at(pos) + shm::kRecordHeaderBytes + m.key.size() + meta, m.payload.data(), m.payload.size());
  if (seq != 0) I.last_seq = seq;
  return I.commit_one(p, pos, size, id);
}

Result<Producer::BatchResult> Producer::publish_batch(std::span<const Message> batch) {
  if (impl_ == nullptr) [[unlikely]] return fail(detail::moved_from("Producer"));
  Impl& I = *impl_;
  I.check_thread();
  if (I.pending != nullptr) return fail(Errc::kInvalidArgument, "a zero-copy claim is pending on this producer");
  const std::size_t n = batch.size();
  if (I.batch_part.size() < n) {
    I.batch_part.resize(n);
    I.batch_size.resize(n);
    I.batch_meta.resize(n);
  }
  // Validate everything first: bad input publishes nothing. `plain`: every
  // event is a payload alone (no key, no envelope field to encode, id and
  // time left to the runtime) from a producer without sequences, so the
  // runs are written by write_plain_run.
  bool plain = I.plain_ok;
  for (std::size_t i = 0; i < n; ++i) {
    const Message& m = batch[i];
    if (plain && I.plain(m) && I.plain_fits(m.partition, m.payload.size())) [[likely]] {
      // What try_size says of a plain message that fits, without its checks.
      I.batch_size[i] = static_cast<std::uint32_t>(shm::record_size(0, 0, m.payload.size()));
      I.batch_meta[i] = 0;
      I.pick(m, &I.batch_part[i]);
      continue;
    }
    std::size_t meta = 0;
    Impl::Refusal no;
    const std::uint64_t size = I.try_size(m, m.payload.size(), &meta, &no);
    if (size == 0)
      return fail(I.invalid(m, m.payload.size(), meta, no).with_context("batch event " + std::to_string(i)));
    I.batch_size[i] = static_cast<std::uint32_t>(size);
    I.batch_meta[i] = static_cast<std::uint32_t>(meta);
    I.pick(m, &I.batch_part[i]);
    // Accepted, yet not taken above: the event is not plain (for a plain
    // one try_size accepts exactly what plain_fits does), so the runs are
    // written the general way.
    plain = false;
  }
  // Idempotent producers: sequences in batch order; duplicates are left out
  // (partition kSkip) and count as published.
  constexpr std::uint32_t kSkip = UINT32_MAX;
  if (I.batch_seq.size() < n) I.batch_seq.resize(n);
  std::uint64_t next = I.last_seq;
  for (std::size_t i = 0; i < n && I.idempotent(); ++i) {
    const std::uint64_t s = batch[i].sequence != 0 ? batch[i].sequence : next + 1;
    if (s <= next) {
      I.batch_part[i] = kSkip;
      continue;
    }
    I.batch_seq[i] = next = s;
  }
  const std::uint64_t chunk_limit = I.topic->geometry().params.ring_bytes / 4;
  BatchResult result;
  // In batch order, one claim per run of consecutive events bound for the
  // same partition (at most ring/4 bytes). Not partition by partition: when
  // a claim fails part way, what was published must be exactly the first
  // `published` events of the batch, or a caller that retries the rest
  // (batch.subspan(published)) duplicates some events and loses others.
  // An idempotent producer's duplicates (kSkip) count as published, in order.
  for (std::size_t i = 0; i < n;) {
    const std::uint32_t p = I.batch_part[i];
    if (p == kSkip) {
      ++result.published;
      ++result.duplicates;
      ++i;
      continue;
    }
    std::uint64_t total = 0;
    std::size_t end = i;
    // The run's records are packed 16-byte aligned; its claim ends 64-byte
    // aligned, and the last record takes the padding (record_layout.hpp).
    // A record whose padded size would pass max_event (readers refuse such
    // a record as corrupt) ends the run before it; alone in the next run it
    // pads to claim_bytes(size) <= max_event (a multiple of 64).
    while (end < n && I.batch_part[end] == p && (end == i || total + I.batch_size[end] <= chunk_limit)) {
      const std::uint64_t grown = total + I.batch_size[end];
      if (end > i && I.batch_size[end] + (shm::claim_bytes(grown) - grown) > I.max_event) break;
      total = grown;
      ++end;
    }
    const std::size_t last = end - 1;
    const std::uint64_t record_end = total;
    total = shm::claim_bytes(total);
    const std::size_t count = end - i;
    std::uint64_t pos = 0, now = 0;  // one clock read per run, with its claim
    const shm::Status st = I.claim(p, total, &pos, &now);
    if (st != shm::Status::kOk) {
      Error e = I.status_error(st, p, total);
      if (result.published == 0) return fail(std::move(e));
      result.error = std::move(e);
      return result;
    }
    std::uint64_t at = pos;
    I.batch_size[last] += static_cast<std::uint32_t>(total - record_end);  // the run's padding
    if (plain) {
      I.write_plain_run(p, pos, batch.data() + i, I.batch_size.data() + i, count, now);
      at = pos + total;
    }
    for (std::size_t j = plain ? end : i; j < end; ++j) {
      const Message& m = batch[j];
      const std::uint64_t seq = I.idempotent() ? I.batch_seq[j] : 0;
      I.write(p, at, I.batch_size[j], m, I.batch_meta[j], m.payload.size(), now, seq);
      copy_payload(I.hot[p].view->bytes_at(at) + shm::kRecordHeaderBytes + m.key.size() + I.batch_meta[j],
                   m.payload.data(), m.payload.size());
      I.writer.commit_record(p, at, I.batch_size[j]);
      if (seq > I.last_seq) I.last_seq = seq;
      HERALD_CRASH_POINT("batch.record_committed");
      at += I.batch_size[j];
    }
    I.writer.finish(p);  // one fence and one wake-up check for the run
    I.count(p, count, total);
    result.published += count;
    i = end;
  }
  return result;
}

inline Claim::Claim(Key, Producer::Impl* impl, std::span<std::byte> payload, std::uint32_t partition,
                    std::uint64_t position, EventId id, std::uint64_t sequence) noexcept
    : impl_(impl), payload_(payload), partition_(partition), position_(position), id_(id), sequence_(sequence) {
  impl_->pending = this;
}

// Inline into both claims: the Claim is built in the Result they return.
[[gnu::always_inline]] inline Result<Claim> Producer::claim_payload_only(std::int32_t partition,
                                                                         std::size_t payload_bytes) {
  Impl& I = *impl_;
  const Impl::PlainClaim c = I.claim_plain(partition, payload_bytes);
  if (c.st != shm::Status::kOk) [[unlikely]]
    return fail(I.status_error(c.st, c.p, c.size));
  return Result<Claim>(std::in_place, Claim::Key{}, impl_.get(),
                       std::span<std::byte>(c.rec + shm::kRecordHeaderBytes, payload_bytes), c.p, c.pos, c.id, 0);
}

namespace {

// claim(payload_bytes) for a producer with a source option or sequences, an
// event too large or a pending claim: the general path does it or says what
// is wrong. Out of line, so the quick path's frame holds no Message.
[[gnu::noinline]] Result<Claim> claim_message(Producer& producer, std::size_t payload_bytes) {
  return producer.claim(payload_bytes, Message{});
}

}  // namespace

Result<Claim> Producer::claim(std::size_t payload_bytes) {
  if (impl_ == nullptr) [[unlikely]] return fail(detail::moved_from("Producer"));
  Impl& I = *impl_;
  I.check_thread();
  if (I.plain_ok && I.plain_fits(-1, payload_bytes) && I.pending == nullptr) [[likely]]
    return claim_payload_only(-1, payload_bytes);
  return claim_message(*this, payload_bytes);
}

Result<Claim> Producer::claim(std::size_t payload_bytes, const Message& meta_in) {
  if (impl_ == nullptr) [[unlikely]] return fail(detail::moved_from("Producer"));
  Impl& I = *impl_;
  I.check_thread();
  if (I.pending != nullptr) return fail(Errc::kInvalidArgument, "a zero-copy claim is already pending on this producer");
  if (I.plain(meta_in) && I.plain_fits(meta_in.partition, payload_bytes)) [[likely]] {
    // As in publish: a plain event skips the general path's checks and
    // encodings (and, without sequences, the duplicate check).
    return claim_payload_only(meta_in.partition, payload_bytes);
  }
  std::size_t meta = 0;
  Impl::Refusal no;
  const std::uint64_t record = I.try_size(meta_in, payload_bytes, &meta, &no);
  if (record == 0) return fail(I.invalid(meta_in, payload_bytes, meta, no));
  const std::uint64_t size = shm::claim_bytes(record);
  // A duplicate is refused before anything is claimed: claimed and then
  // aborted, it took ring space and showed nowhere (an aborted record the
  // counters did not count; found by a docs pass).
  const std::uint64_t seq = I.next_sequence(meta_in);
  if (I.idempotent() && seq == 0)
    return fail(Errc::kAlreadyExists, "sequence " + std::to_string(meta_in.sequence) + " of producer " +
                                          std::to_string(I.opts.producer_id) + " is at or below its last committed "
                                          "sequence " + std::to_string(I.last_seq) +
                                          ": a duplicate, not published (sequences must increase)");
  std::uint32_t p = 0;
  I.pick(meta_in, &p);
  std::uint64_t pos = 0, clock_now = 0;
  const shm::Status st = I.claim(p, size, &pos, &clock_now);
  if (st != shm::Status::kOk) return fail(I.status_error(st, p, size));
  const EventId id = I.write(p, pos, size, meta_in, meta, payload_bytes, clock_now, seq);
  // In place: no move of the Claim (which would re-point I.pending and
  // reload its fields right after storing them).
  return Result<Claim>(std::in_place, Claim::Key{}, impl_.get(),
                       std::span<std::byte>(I.hot[p].view->bytes_at(pos) + shm::kRecordHeaderBytes +
                                                meta_in.key.size() + meta,
                                            payload_bytes),
                       p, pos, id, seq);
}

Claim::Claim(Claim&& o) noexcept
    : impl_(o.impl_),
      payload_(o.payload_),
      partition_(o.partition_),
      position_(o.position_),
      id_(o.id_),
      sequence_(o.sequence_) {
  o.impl_ = nullptr;
  if (impl_ != nullptr) impl_->pending = this;
}

Claim& Claim::operator=(Claim&& o) noexcept {
  if (this == &o) return *this;
  if (impl_ != nullptr) abort();
  impl_ = o.impl_;
  payload_ = o.payload_;
  partition_ = o.partition_;
  position_ = o.position_;
  id_ = o.id_;
  sequence_ = o.sequence_;
  o.impl_ = nullptr;
  if (impl_ != nullptr) impl_->pending = this;
  return *this;
}

Result<Published> Claim::commit(std::size_t used) {
  if (impl_ == nullptr) return fail(Errc::kInvalidArgument, "commit on an empty claim (already committed or aborted)");
  Producer::Impl& I = *impl_;
  if (used == SIZE_MAX) used = payload_.size();
  if (used > payload_.size())
    return fail(Errc::kInvalidArgument, "commit of " + std::to_string(used) + " bytes > the " +
                                            std::to_string(payload_.size()) + " claimed");
  shm::RecordHeader* h = I.hot[partition_].view->header_at(position_);
  h->payload_len = static_cast<std::uint32_t>(used);
  // The record's size, as write() or claim_plain stored it: a claim holds
  // one record, so it is also the claim's.
  const std::uint32_t size = h->size;
  const Published done = I.commit_one(partition_, position_, size, id_);
  if (sequence_ > I.last_seq) I.last_seq = sequence_;
  I.pending = nullptr;
  impl_ = nullptr;
  return done;
}

void Claim::abort() noexcept {
  if (impl_ == nullptr) return;
  // In a forked child the claim is the parent's to finish.
  if (::getpid() == impl_->owner_pid) impl_->writer.abort_rest(partition_, position_);
  impl_->pending = nullptr;
  impl_ = nullptr;
}

std::uint32_t Producer::partition_for(std::string_view key) const noexcept {
  if (impl_ == nullptr) [[unlikely]] return {};
  return detail::partition_for_key(key, impl_->partitions);
}
std::uint32_t Producer::partitions() const noexcept { return impl_ != nullptr ? impl_->partitions : 0; }
const std::string& Producer::topic() const noexcept {
  return impl_ != nullptr ? impl_->topic->topic() : detail::no_name();
}
std::size_t Producer::max_event() const noexcept { return impl_ != nullptr ? impl_->max_event : 0; }

std::size_t Producer::max_payload(const Message& meta) const noexcept {
  if (impl_ == nullptr) [[unlikely]] return {};
  const char* bad = nullptr;
  const std::size_t m =
      detail::meta_size(meta, impl_->opts.source, &bad, impl_->idempotent(), impl_->record_flags != 0);
  // An envelope that publish would refuse carries nothing (it reported the
  // plain maximum, as if the envelope were empty).
  if (m == SIZE_MAX || meta.key.size() > kMaxKeyBytes) return 0;
  const std::size_t fixed = shm::kRecordHeaderBytes + meta.key.size() + m;
  return impl_->max_event > fixed ? impl_->max_event - fixed : 0;
}

std::uint64_t Producer::last_sequence() const noexcept { return impl_ != nullptr ? impl_->last_seq : 0; }

ProducerStats Producer::stats() const noexcept {
  if (impl_ == nullptr) [[unlikely]] return {};
  ProducerStats s;
  const Impl& I = *impl_;
  for (std::uint32_t p = 0; p < I.partitions; ++p) {
    const shm::ProducerCountersLayout& row = *I.hot[p].row;
    // Relaxed: this producer's own stores (stats() runs on its thread).
    s.events += row.events.load(std::memory_order_relaxed) - I.base[p].events;
    s.bytes += row.bytes.load(std::memory_order_relaxed) - I.base[p].bytes;
    s.backpressure_waits += row.backpressure_waits.load(std::memory_order_relaxed) - I.base[p].waits;
  }
  return s;
}

namespace detail {
Result<Producer> ProducerFactory::make(const std::shared_ptr<Bus::Impl>& bus, std::string_view topic,
                                       const ProducerOptions& options, std::uint16_t record_flags) {
  if (options.source.size() > kMaxShortField)
    return fail(Errc::kInvalidArgument, "source is " + std::to_string(options.source.size()) +
                                            " bytes; the limit is " + std::to_string(kMaxShortField));
  if (options.deadline.count() < 0) return fail(Errc::kInvalidArgument, "deadline is negative");
  auto map = bus->map_topic(topic, shm::Access::kReadWrite, shm::Access::kReadOnly);
  if (!map) return fail(std::move(map).error());
  // Let heraldd watch this process now (it would find the slot on its next
  // scan anyway): a producer that dies gets its claims repaired at once.
  // A daemon that does not answer (stopped) fails a user's producer, as it
  // fails a consumer, rather than hold it 10 s and then say nothing; a DLQ
  // producer made inside a poll goes on without it.
  if (bus->daemon_mode) {
    auto r = bus->call_daemon({{"op", "producer"}, {"topic", std::string(topic)}});
    if (!r && r.error().code == Errc::kTimeout && record_flags == 0) return fail(std::move(r).error());
  }
  auto slot = shm::acquire_producer_slot(**map, options.producer_id);
  if (!slot) return fail(std::move(slot).error());
  // Once per process: with membarrier registered, publishes skip the
  // seq_cst fence before the parked-reader check (ring_log.cpp F1).
  static const bool fast_wake = shm::membarrier_register();
  auto impl = std::make_unique<Producer::Impl>(std::move(map).value(), *slot, fast_wake, options);
  impl->record_flags = record_flags;
  if (options.producer_id != 0) impl->learn_last_sequence();
  return Producer(std::move(impl));
}
}  // namespace detail

Result<Producer> Bus::producer(std::string_view topic, const ProducerOptions& options) {
  if (impl_ == nullptr) [[unlikely]] return fail(detail::moved_from("Bus"));
  // A dead-letter topic is written by its group's consumers only (their
  // records carry the failure's reason and source); an event published
  // there by hand would be no dead letter, and `dlq list` would skip it.
  if (auto rec = impl_->registry.find(topic); rec && (rec->params.flags & shm::kLogDeadLetterTopic) != 0)
    return fail(Errc::kInvalidArgument, "topic '" + rec->name +
                                            "' is a dead-letter topic: herald writes it when a group gives up on "
                                            "an event; publish to the source topic, or redrive");
  return detail::ProducerFactory::make(impl_, topic, options, 0);
}

}  // namespace herald
