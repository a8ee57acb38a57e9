// Consumer: group members and group-less readers. poll() reads each owned
// partition from its read position: zero-copy where a gate protects the
// bytes (a gating group, at or past its floor), otherwise by copy and
// validate (lossy groups, demoted lag-out groups, history below a floor,
// group-less readers). No allocation, lock or system call on the hot path
// (a futex wait only when parked, a wake only when a producer is parked).
#include "herald/consumer.hpp"

#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <new>
#include <memory>
#include <optional>
#include <thread>
#include <utility>
#include <exception>
#include <vector>

#include "herald/bus.hpp"
#include "runtime/src/bus_impl.hpp"
#include "runtime/src/control.hpp"
#include "runtime/src/dlq.hpp"
#include "runtime/src/groups.hpp"
#include "shm/clock.hpp"
#include "shm/crash_point.hpp"
#include "shm/futex.hpp"
#include "shm/names.hpp"
#include "shm/ring_log.hpp"
#include "shm/slots.hpp"

namespace herald {

namespace {
shm::WaitPolicy wait_policy(Wait w) {
  shm::WaitPolicy p;
  p.mode = w == Wait::kBusySpin ? shm::WaitMode::kBusySpin
           : w == Wait::kSpinYield ? shm::WaitMode::kSpinYield
                                   : shm::WaitMode::kPark;
  return p;
}
constexpr std::uint64_t kRejoinEveryNs = 100'000'000;  // an idle daemonless member retries ownership this often
constexpr std::size_t kBurstEvents = 16;               // a drain this large makes the next empty poll settle first

// How many pause instructions last `ns`. A pause costs from a few ns to
// ~45 ns depending on the CPU (23 ns on the EPYC of bench/RESULTS.md), so
// it is timed once per process (2000 of them, ~50 us here). Preempted
// while timing, it overestimates: the settle is then shorter, never longer.
std::uint32_t pauses_for(std::chrono::nanoseconds ns) {
  static const double per_pause = [] {
    const std::uint64_t t0 = shm::monotonic_ns();
    for (int i = 0; i < 2000; ++i) shm::cpu_relax();
    return std::max(1.0, static_cast<double>(shm::monotonic_ns() - t0) / 2000.0);
  }();
  return static_cast<std::uint32_t>(std::min(1e7, static_cast<double>(ns.count()) / per_pause));
}
}  // namespace

struct Consumer::Impl {
  std::shared_ptr<Bus::Impl> bus;
  std::shared_ptr<const shm::TopicMap> topic;
  std::string group_name;
  std::uint32_t reader = 0;
  int group = -1;  // group slot; -1 for a group-less reader
  shm::GroupPolicy policy = shm::GroupPolicy::kLossy;
  ConsumerOptions opts;
  shm::WaitPolicy wait;

  struct Part {
    bool assigned = false;
    std::uint64_t read = 0;     // next position to read
    std::uint64_t handled = 0;  // just past the last event handled (what a commit stores)
    std::uint64_t cursor = 0;   // the cursor word as we last saw or wrote it
    std::uint64_t floor = 0;    // below it the bytes are not gated: read lossy
    std::uint64_t failed_pos = UINT64_MAX;  // the event whose handler last failed
    std::uint32_t deliveries = 0;           // deliveries of failed_pos so far
    std::uint64_t retry_at = 0;             // CLOCK_MONOTONIC: not before this (backoff)
    std::string reason;                     // of the last failure of failed_pos
    std::uint64_t first_failure_ns = 0, last_failure_ns = 0;
    bool recover = false;                   // takeover recovery still to do (group members)
    // on_overrun = kError: the read position whose gap is counted, and how
    // far (the gap grows while the reader waits there for a seek).
    std::uint64_t overrun_counted_at = UINT64_MAX;
    std::uint64_t overrun_counted_to = 0;
  };
  std::vector<Part> parts;
  std::vector<std::uint32_t> assigned;
  std::vector<const shm::PartitionView*> wait_views;  // scratch for parking, sized at assignment
  std::vector<std::uint64_t> wait_pos;
  std::size_t rr = 0;
  // Lossy copies land here: max_event bytes, allocated on the first lossy
  // read (a zero-copy member may never need it), uninitialised (no page is
  // touched before a copy needs it). Each consumer used to zero-fill one at
  // creation: 64 MiB of resident memory per consumer of a topic with 64 MiB
  // events, and a bad_alloc out of the API under a memory limit (found by
  // an exploratory pass).
  std::unique_ptr<std::byte[]> buf;
  // The copy buffer, or nullptr when it cannot be allocated.
  std::byte* copy_buf() noexcept {
    if (!buf) buf.reset(new (std::nothrow) std::byte[topic->geometry().params.max_event]);
    return buf.get();
  }
  Error no_copy_buf(std::uint32_t p) const {
    return Error{Errc::kIo, "cannot allocate " + std::to_string(topic->geometry().params.max_event) +
                                " bytes (the topic's max_event) to copy events of partition " + std::to_string(p) +
                                " of topic '" + topic->topic() + "' for a lossy read"};
  }
  std::string failure_reason;  // a failing handler's reason, until drain_partition moves it to its Part
  ConsumerStats stats;
  std::uint64_t last_rejoin_ns = 0;
  bool closed_seen = false;
  // Closure news for zero-copy reads (peek_gated does not look at tail):
  // close() sets the closed bit in every partition's tail, then bumps every
  // reader's wake word. The word is read-mostly (producers bump it only to
  // wake a parked reader), so checking it on an empty read costs no line a
  // producer writes. `closing`: the closed bit was seen once; from then on
  // every empty read checks tail (closure is terminal). Safety net for a
  // closer that died between the closed bit and the wake-ups: every
  // kEmptyReadsPerCloseCheck empty reads the log header's close_started
  // word (stored before the first closed bit, on a line no producer
  // writes) is checked, and tail only once that is set; tail is also
  // checked after each park (whose has_news() reads tail anyway). Not tail
  // itself every 1024 reads: the read took the producers' tail line from
  // them, and the next claim's store had to take it back before the
  // record's stores could drain. With events 10 µs or more apart (a few
  // checks per gap) that was one more cross-core transfer before almost
  // every event: vCPUs far apart, a 64 B event paced at 10k/s, p50 717 ->
  // 391 ns (herald_protocol_pingpong --rate; bench/RESULTS.md, "tenth
  // session").
  static constexpr std::uint32_t kEmptyReadsPerCloseCheck = 1024;
  // A gated read prefetches the lines of a record up to this size as soon
  // as it sees it committed (drain_partition).
  static constexpr std::uint32_t kPrefetchRecordBytes = 256;
  // A poll waiting for events, from its kIdleLooksBeforePrefetch-th empty
  // look on, asks for the line after the header of each record it waits
  // for together with the header (drain_partition, `awaiting`).
  static constexpr std::uint32_t kIdleLooksBeforePrefetch = 8;
  const std::atomic<std::uint32_t>* wake_word = nullptr;  // resolved at the first empty read
  std::uint32_t wake_seen = 0;
  std::uint32_t empty_reads = 0;
  bool closing = false;

  // True when an empty zero-copy read must also check tail for closure.
  bool closure_news() noexcept {
    if (wake_word == nullptr) {
      // First empty read: sample the word, then check tail (a close() in
      // between is seen by one of the two).
      wake_word = &topic->wake(reader)->seq;
      wake_seen = wake_word->load(std::memory_order_acquire);
      return true;
    }
    if (closing) return true;
    if (++empty_reads >= kEmptyReadsPerCloseCheck) {
      empty_reads = 0;
      if (topic->close_started()) return true;
    }
    // Acquire: pairs with close()'s seq_cst fetch_add on the wake word,
    // which follows its fetch_or of the closed bit on every tail: a reader
    // that sees the new value then sees the closed bit.
    const std::uint32_t s = wake_word->load(std::memory_order_acquire);
    if (s == wake_seen) return false;
    wake_seen = s;
    return true;
  }
  // Daemon mode: heraldd assigns partitions through this reader's slot.
  bool daemon_mode = false;
  std::uint64_t member_id = 0;
  std::uint64_t assign_epoch_seen = 0;
  std::uint64_t daemon_epoch_seen = 0;
  std::vector<std::uint32_t> changed;  // scratch for rebalance callbacks
  std::vector<std::uint32_t> lost;
  // Dead letters: the source topic's registry record and, once needed, a
  // producer on `<topic>.dlq.<group>` and a read-only map of it.
  shm::TopicRecord source;
  std::optional<Producer> dlq;
  std::shared_ptr<const shm::TopicMap> dlq_map;
  // commit_async(): the next poll commits. Atomic: the one call a second
  // thread may make while the owner polls (relaxed: a request, nothing is
  // published through it).
  std::atomic<bool> commit_requested{false};
  std::uint64_t group_created_ns = 0;  // of the group joined (group_gone())
  std::size_t last_drain = 0;      // events of the last drain that found any (burst_settle)
  std::size_t finished_dead = 0;   // events the current poll moved to the DLQ: they count against its max
  std::size_t failed_done = 0;     // at-most-once events of the current poll whose handler failed (not retried)
  // kReaderInPoll is set (this poll waited). Cleared before a handler runs:
  // heraldd takes a member whose flag is set for idle, so a handler that
  // hangs on an event that arrived while we waited was never found stuck.
  bool reader_flagged = false;
  bool group_dead = false;  // group_deleted_error() was reported: see there
  // Inside poll_impl (its handlers included): a nested poll, next or seek
  // from the handler refuses.
  bool in_poll = false;
  // next() in kAfterHandle: the caller handles the event AFTER next()
  // returns, so it is not handled when the handler (a copy) returns. The
  // poll leaves it in flight (its in-handler mark stays, as for a handler
  // still running) and notes it here; the caller's next call (next, poll,
  // commit, seek) or a normal destruction settles it as handled, and the
  // poll's commit then covers it. A process that dies with it pulled gets
  // it delivered again, counted as a delivery: at-least-once, as poll().
  // (Committing it when next() returned lost it; found by an exploratory
  // pass.)
  bool pulling = false;
  struct Pulled {
    std::uint32_t p = 0;
    std::uint64_t end = 0;  // the event's next_position()
  };
  std::optional<Pulled> pulled;
  // The thread inside poll(), commit() or seek() now (empty: none). A
  // Consumer is used by one thread at a time; a commit from a second thread
  // racing a poll's cursor CAS was taken for a fence and the partition
  // dropped (found by an exploratory pass), and a check of a flag alone
  // still let a poll start between the check and the commit (found by an
  // adversarial pass). So each call takes the token by CAS for its
  // duration, and a call from another thread while it is held is refused;
  // the holder's own nested calls (commit from a handler) go on. One CAS
  // per call, not per event.
  std::atomic<std::thread::id> user{};
  struct Use {
    std::atomic<std::thread::id>* token = nullptr;  // null: nested, nothing to give back
    Use() = default;
    explicit Use(std::atomic<std::thread::id>* t) : token(t) {}
    Use(Use&& o) noexcept : token(std::exchange(o.token, nullptr)) {}
    Use& operator=(Use&&) = delete;
    ~Use() {
      // Release: what this call did to the Impl happens before the next
      // user's acquire CAS.
      if (token != nullptr) token->store(std::thread::id{}, std::memory_order_release);
    }
  };
  [[nodiscard]] Result<Use> use(const char* what) {
    const std::thread::id me = std::this_thread::get_id();
    std::thread::id held{};
    // Acquire: pairs with the release in ~Use of the previous user.
    if (user.compare_exchange_strong(held, me, std::memory_order_acquire, std::memory_order_relaxed)) [[likely]]
      return Use(&user);
    if (held == me) return Use();
    return fail(Errc::kInvalidArgument, std::string(what) +
                                            " called while another thread is in this Consumer's poll(), commit() or "
                                            "seek(); a Consumer is used by one thread at a time (make one per "
                                            "thread)");
  }
  // The process that made the consumer. A child forked with the handle
  // alive destroys its copy without leaving the group or releasing the
  // reader slot and partitions, which are still the parent's (found by an
  // exploratory pass: the child's exit handed the parent's partitions to
  // another member while the parent read them).
  const pid_t owner_pid = ::getpid();

  ~Impl();

  void bump_progress() noexcept {
    // Relaxed: a liveness hint for heraldd (stuck detection); one writer.
    shm::ReaderLayout* me = topic->reader(reader);
    me->poll_count.store(me->poll_count.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }

  void report_lost() {
    if (lost.empty()) return;
    if (opts.on_lost) opts.on_lost(lost);
    lost.clear();
  }

  void check_assignment();
  void apply_assignment(std::uint64_t epoch);
  void rejoin();

  shm::GroupPartitionLayout* gp(std::uint32_t p) const {
    return topic->group_partition(static_cast<std::uint32_t>(group), p);
  }

  void set_assignment(const std::vector<std::uint32_t>& ps) {
    for (std::uint32_t p : ps) {
      Part& pt = parts[p];
      if (pt.assigned) continue;
      pt.assigned = true;
      topic->prefault(p);
      if (group >= 0) {
        pt.cursor = gp(p)->cursor.load(std::memory_order_acquire);
        pt.read = pt.handled = shm::cursor_pos(pt.cursor);
        pt.floor = gp(p)->gate_floor.load(std::memory_order_acquire);
        pt.failed_pos = UINT64_MAX;
        pt.recover = true;  // look at what the previous owner left (in-flight slot, DLQ move)
      }
    }
    assigned.clear();
    for (std::uint32_t p = 0; p < parts.size(); ++p)
      if (parts[p].assigned) assigned.push_back(p);
    wait_views.resize(assigned.size());
    wait_pos.resize(assigned.size());
  }

  // Daemonless: an idle member (or one missing partitions) retries taking
  // partitions whose owner died.
  // What a waiting poll does after each wake (and a spinning one every 32
  // empty looks): take in heraldd's assignment changes, free partitions
  // (daemonless), and learn whether the group was deleted.
  Result<void> refresh_membership() {
    check_assignment();
    maybe_rejoin();
    if (group_gone()) [[unlikely]] return fail(group_deleted_error());
    return {};
  }

  void maybe_rejoin() {
    if (group < 0 || daemon_mode || assigned.size() == parts.size() || group_dead) return;
    const std::uint64_t now = shm::monotonic_ns();
    if (now - last_rejoin_ns < kRejoinEveryNs) return;
    last_rejoin_ns = now;
    // The slot may hold another group by now (ours deleted, one made in
    // its place): taking its free partitions would make us its member.
    if (group_gone()) return;
    take_partitions(detail::take_free_partitions(*topic, static_cast<std::uint32_t>(group), reader));
  }

  // Daemonless: partitions this member just took (at creation, or a dead
  // owner's): assigned, and on_assigned told, as heraldd's assignments are.
  void take_partitions(const std::vector<std::uint32_t>& ps) {
    std::vector<std::uint32_t> fresh;
    for (std::uint32_t p : ps)
      if (!parts[p].assigned) fresh.push_back(p);
    if (fresh.empty()) return;
    set_assignment(fresh);
    if (opts.on_assigned) opts.on_assigned(fresh);
  }

  bool lossy(const Part& pt) const {
    if (group < 0 || policy == shm::GroupPolicy::kLossy) return true;
    return lossy_member(pt, topic->group(static_cast<std::uint32_t>(group)));
  }
  // lossy() for a member of a group that can gate, its GroupLayout resolved.
  static bool lossy_member(const Part& pt, const shm::GroupLayout* g) {
    // A demoted lag-out group no longer gates: read by copy. Relaxed: heraldd
    // demotes a group only while it has no live member, and promotes it
    // (gating again from the tail on) before a joining member gets
    // partitions; a stale value seen here can only be "not gating", which
    // reads by copy, the safe side.
    if ((g->flags.load(std::memory_order_relaxed) & shm::kGroupGating) == 0) return true;
    return pt.read < pt.floor;
  }

  // Whether the group this member joined was deleted (its slot freed, or
  // reused by a group made since: created_ns tells them apart). The
  // generation bump of a delete fences every commit, which a member takes
  // for a rebalance; this tells it there is nothing left to join.
  [[nodiscard]] bool group_gone() const noexcept {
    if (group < 0) return false;
    const shm::GroupLayout* g = topic->group(static_cast<std::uint32_t>(group));
    // Acquire: pairs with the release store of the state in create_group /
    // delete_group; created_ns is written before it.
    return g->state.load(std::memory_order_acquire) != shm::kGroupActive ||
           g->created_ns.load(std::memory_order_relaxed) != group_created_ns;
  }
  // The error for a member whose group is gone; from then on it is dead
  // for good: nothing assigned, and every call that needs the group fails
  // (a group made again under the name, maybe in the same slot, is not
  // ours: taking its partitions or committing into it would make us a
  // member nobody joined).
  Error group_deleted_error() {
    if (!group_dead) {
      group_dead = true;
      for (std::uint32_t p : assigned) parts[p].assigned = false;
      assigned.clear();
      wait_views.clear();
      wait_pos.clear();
    }
    return Error{Errc::kNotFound, "group '" + group_name + "' of topic '" + topic->topic() +
                                      "' was deleted while this member was attached; make a new consumer to "
                                      "join it again"};
  }

  Error fenced_error(std::uint32_t p, std::uint64_t seen) {
    if (group_gone()) return group_deleted_error();
    return Error{Errc::kFenced, "partition " + std::to_string(p) + " of group '" + group_name + "' on topic '" +
                                    topic->topic() + "' was reassigned (generation " +
                                    std::to_string(shm::cursor_gen(parts[p].cursor)) + " -> " +
                                    std::to_string(shm::cursor_gen(seen)) + "); this member no longer owns it"};
  }

  void drop(std::uint32_t p) {
    parts[p].assigned = false;
    std::erase(assigned, p);
    wait_views.resize(assigned.size());
    wait_pos.resize(assigned.size());
  }

  // Moves the group's cursor on p forward to pos (CAS from what we last
  // saw); false, changing nothing, when the CAS fails (a generation bump:
  // this member is fenced). No Result on this path: it runs once per poll.
  bool try_commit(std::uint32_t p, std::uint64_t pos) noexcept {
    Part& pt = parts[p];
    if (shm::cursor_pos(pt.cursor) == pos) return true;
    std::uint64_t expect = pt.cursor;
    const std::uint64_t desired = shm::pack_cursor(shm::cursor_gen(expect), pos);
    // R4: release (seq_cst) publishes that everything below pos was read;
    // pairs with A4 in compute_gate. seq_cst also orders it before the load
    // of producer_waiters in wake_producers (no lost producer wake-up).
    if (!gp(p)->cursor.compare_exchange_strong(expect, desired, std::memory_order_seq_cst)) return false;
    HERALD_CRASH_POINT("consume.after_commit");
    pt.cursor = desired;
    if (pt.floor != 0 && pos >= pt.floor) {
      shm::clear_floor(*topic, static_cast<std::uint32_t>(group), p);
      pt.floor = 0;
    }
    shm::wake_producers(topic->partition(p));
    return true;
  }

  // After a failed try_commit: p was reassigned. Drops it; the kFenced error.
  Error fence(std::uint32_t p) {
    Error e = fenced_error(p, gp(p)->cursor.load(std::memory_order_acquire));
    drop(p);
    return e;
  }

  // Ends a drain of p that fence() found fenced (p is dropped): p goes to
  // on_lost and the `n` events this drain handled count; a deleted group
  // (an error other than kFenced) fails the poll.
  Result<std::size_t> lose(Error e, std::uint32_t p, std::size_t n) {
    if (e.code != Errc::kFenced) return fail(std::move(e));
    lost.push_back(p);
    report_lost();
    return n;
  }

  // A call outside poll (commit(p, pos), seek) that found p fenced: p was
  // dropped; it goes to on_lost as well, as in a poll.
  Result<void> lost_in_call(Result<void> r, std::uint32_t p) {
    if (!r && r.error().code == Errc::kFenced) {
      lost.push_back(p);
      report_lost();
    }
    return r;
  }

  // A handler that returned after its member was fenced: heraldd took p
  // away because the member stayed outside poll() longer than
  // max_poll_interval, and from then on nothing gated the bytes under the
  // handler's zero-copy view. If a producer's claim reached the event's
  // position plus the ring, they were written over while the handler could
  // read them (found by an exploratory pass). The accessors stay inside the
  // record (event.hpp), but what the handler read may be another event's
  // bytes: the poll fails, loudly, after on_lost. Asked only once fenced,
  // so the hot path pays nothing; tail only grows, so a write during the
  // handler is never missed (one just after it is reported too).
  [[nodiscard]] bool overwritten_under(std::uint32_t p, std::uint64_t pos) const noexcept {
    const shm::PartitionView& v = topic->partition(p);
    return shm::load_tail(v) > pos + v.ring_bytes;
  }
  // fenced: heraldd took p away (or the group was deleted); else the group
  // stopped gating under the handler (demoted), and p stays this member's.
  Result<std::size_t> lose_overwritten(std::uint32_t p, std::uint64_t pos, bool fenced) {
    const std::string where = "topic '" + topic->topic() + "' partition " + std::to_string(p) + ": ";
    const std::string what = "the event's bytes were written over while the handler could still read them: what it "
                             "read may be another event's";
    if (!fenced && !group_gone() && still_owner(p))
      return fail(Errc::kOverrun, where + "group '" + group_name + "' stopped holding producers back while its "
                                  "handler had the event at position " + std::to_string(pos) + " (a lag-out group "
                                  "left without a live member: heraldd removed this one, which had been outside "
                                  "poll() too long), and " + what);
    if (group_gone()) {
      // Deleted under the handler: the member is told as for any deleted
      // group (no on_lost), and why its event is suspect.
      (void)group_deleted_error();
      return fail(Errc::kOverrun, where + "group '" + group_name + "' was deleted while its handler had the event at "
                                  "position " + std::to_string(pos) + ", and " + what);
    }
    if (parts[p].assigned) drop(p);  // heraldd took it (a new owner, or none yet)
    lost.push_back(p);
    report_lost();
    return fail(Errc::kOverrun,
                where + "this member stayed outside poll() longer than max_poll_interval (" +
                    std::to_string(opts.max_poll_interval.count()) + " ms) while its handler had the event at position " +
                    std::to_string(pos) + ", so heraldd took the partition away, and " + what +
                    ". A handler that can run that long should copy the event first (EventView::to_event()), or "
                    "raise max_poll_interval");
  }

  // Whether p's cursor still carries this member's generation. A member
  // fenced meanwhile (a rebalance, or its group deleted, perhaps made again
  // in the same slot, whose generations go on from the old group's) must
  // not store into the slot's plain words, the in-flight word and the DLQ
  // note: their next owner trusts them, and a zombie's "handled up to
  // here" made a new group skip an event nobody had read (found by an
  // exploratory pass). The cursor CAS checks this by itself; these stores
  // check first. A fence landing between the check and the store is left:
  // a window of a few instructions, where the old check was a whole handler.
  // Acquire: pairs with heraldd's seq_cst generation bump (and a deleting
  // client's), so what was published before the bump, the new owner's
  // lease among it (take_lease), is visible to the loads after this one.
  [[nodiscard]] bool still_owner(std::uint32_t p) const noexcept {
    return shm::cursor_gen(gp(p)->cursor.load(std::memory_order_acquire)) == shm::cursor_gen(parts[p].cursor);
  }

  // Sets this member's at-most-once lease, unless it was fenced: the word is
  // then the new owner's, whose lease a plain store would replace (and our
  // release below then clear). A CAS from what is there, after checking the
  // generation: a new owner stores its lease only after the bump, so a
  // lease of its that our acquire load sees comes with a bump still_owner
  // sees; one stored after our load fails the CAS, and the retry sees it.
  bool take_lease(std::uint32_t p, shm::GroupPartitionLayout* g, std::uint64_t mine) noexcept {
    std::uint64_t cur = g->lease.load(std::memory_order_acquire);
    for (;;) {
      if (!still_owner(p)) return false;
      if (g->lease.compare_exchange_weak(cur, mine, std::memory_order_release, std::memory_order_acquire)) return true;
    }
  }

  // Clears this member's at-most-once lease, and only its own: once fenced,
  // the lease word is the new owner's, and a plain store of "no lease"
  // wiped the lease that gated the event its handler was reading, so a
  // producer overwrote it mid-handler (found by an adversarial pass). A
  // CAS from our own value leaves another owner's lease alone. Release:
  // the handler's reads of the record happen before a producer may take
  // its bytes.
  // False: the word was no longer ours.
  static bool release_lease(shm::GroupPartitionLayout* g, std::uint64_t mine) noexcept {
    std::uint64_t expect = mine;
    return g->lease.compare_exchange_strong(expect, shm::kNoLease, std::memory_order_release,
                                            std::memory_order_relaxed);
  }

  // As try_commit; a fenced commit drops p and fails with kFenced.
  Result<void> commit_to(std::uint32_t p, std::uint64_t pos) {
    if (try_commit(p, pos)) return {};
    return fail(fence(p));
  }

  // Commits every owned partition. With `lose_fenced`, a partition whose
  // commit is fenced (heraldd gave it to another member) is reported to
  // on_lost and dropped instead of failing the call.
  Result<void> commit_all(bool lose_fenced) {
    if (commit_owned()) [[likely]] return {};
    return commit_fenced(lose_fenced);
  }
  // commit_all's usual case, a bool and inline: every poll ends with it,
  // just before its caller may reply. True when every owned partition
  // committed (or there is no group); false at the first fenced one, which
  // commit_fenced then deals with.
  bool commit_owned() noexcept {
    if (group < 0) return true;
    for (const std::uint32_t p : assigned)
      if (!try_commit(p, parts[p].handled)) [[unlikely]]
        return false;
    return true;
  }
  // commit_all after commit_owned failed: commits what still can be (a
  // partition committed already returns at once) and deals with the fenced.
  // Without lose_fenced, the first fence is also the call's error; either
  // way every fenced partition goes to on_lost (a commit() that found the
  // fence first left the application's per-partition state standing: found
  // by an exploratory pass), and the others are still committed.
  [[gnu::noinline]] Result<void> commit_fenced(bool lose_fenced) {
    std::optional<Error> first;
    for (std::size_t i = 0; i < assigned.size();) {
      const std::uint32_t p = assigned[i];
      if (try_commit(p, parts[p].handled)) {
        ++i;
        continue;
      }
      Error e = fence(p);  // drops p: assigned[i] is the next partition now
      if (e.code != Errc::kFenced) {
        report_lost();
        return fail(std::move(e));
      }
      lost.push_back(p);
      if (!lose_fenced && !first) first = std::move(e);
    }
    report_lost();
    if (first) return fail(std::move(*first));
    return {};
  }

  // A lossy read found its position overwritten: count the gap (exact in
  // bytes) and resynchronise forward per on_overrun.
  Result<void> overrun(std::uint32_t p) {
    Part& pt = parts[p];
    const shm::PartitionView& v = topic->partition(p);
    std::uint64_t to = shm::beginning(v);
    // A gating member reading history below its floor (a new group that
    // started at "earliest", a reset back): what is at or past the floor is
    // gated, never overwritten, while beginning() is only what no claim can
    // be overwriting now (tail - ring + max_event) and may lie past the
    // floor by up to max_event. Resuming there would skip events published
    // after the group gated them. The floor is a claim boundary (a tail).
    // Relaxed, as in lossy_member: a stale "not gating" only keeps the
    // conservative beginning(); heraldd demotes only while no member lives.
    if (group >= 0 && policy != shm::GroupPolicy::kLossy && pt.floor > pt.read && to > pt.floor &&
        (topic->group(static_cast<std::uint32_t>(group))->flags.load(std::memory_order_relaxed) & shm::kGroupGating) != 0)
      to = pt.floor;
    if (opts.on_overrun == OffsetReset::kLatest) to = shm::load_tail(v);
    const bool stop = opts.on_overrun == OffsetReset::kError;
    // kError counts only what is certainly gone, the bytes below tail -
    // ring (a byte count, not a record boundary): the caller may then seek
    // to any retained event, and every one lies at or above it. Counting up
    // to beginning() (a max_event margin above), or to the first boundary
    // the index finds (up to a page above), counted bytes a seek then
    // delivered (found by two adversarial passes).
    if (stop) to = std::min(to, overwritten_to(p));
    if (to <= pt.read) return {};  // raced with a reader-visible commit: just retry
    // on_overrun = kError: the reader stays where it is and the caller
    // seeks; the bytes gone are counted now in this consumer's stats and
    // on_gap, and in the group's shared figures when the seek moves past
    // them (the cursor stays, and a member taking over would count them
    // again).
    auto overrun_error = [&] {
      return fail(Errc::kOverrun, (group >= 0 ? "group '" + group_name + "'" : std::string("a group-less reader")) +
                                      " lost events on partition " + std::to_string(p) +
                                      " of topic '" + topic->topic() + "': position " + std::to_string(pt.read) +
                                      " was overwritten, with " + std::to_string(to - pt.read) +
                                      " bytes after it so far (on_overrun=error; seek to continue)");
    };
    if (stop && pt.overrun_counted_at == pt.read) {
      // Still waiting for a seek: what was overwritten since is lost too,
      // and counted as more of the same gap.
      if (to > pt.overrun_counted_to) {
        count_gap(p, pt.overrun_counted_to, to, /*new_gap=*/false, /*shared=*/false);
        pt.overrun_counted_to = to;
      }
      return overrun_error();
    }
    count_gap(p, pt.read, to, /*new_gap=*/true, /*shared=*/!stop);
    if (stop) {
      pt.overrun_counted_at = pt.read;
      pt.overrun_counted_to = to;
      return overrun_error();
    }
    pt.read = pt.handled = to;
    return {};
  }

  // Counts [from, to) as lost (exact in bytes) in this consumer's stats and
  // on_gap, and with `shared` in the group's figures; `new_gap` for a new
  // overrun rather than more of one counted already.
  void count_gap(std::uint32_t p, std::uint64_t from, std::uint64_t to, bool new_gap, bool shared) {
    stats.gap_bytes += to - from;
    stats.gaps += new_gap ? 1 : 0;
    if (shared) count_shared_gap(p, to - from, new_gap);
    if (opts.on_gap) opts.on_gap(GapReport{p, from, to, to - from});
  }
  void count_shared_gap(std::uint32_t p, std::uint64_t bytes, bool new_gap) {
    if (group < 0) return;
    shm::GroupPartitionLayout* g = gp(p);
    // Relaxed: statistics, written only by the partition's owner.
    g->gap_bytes.store(g->gap_bytes.load(std::memory_order_relaxed) + bytes, std::memory_order_relaxed);
    if (new_gap) g->gap_events.store(g->gap_events.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }

  // tail - ring: every byte below it is overwritten (or being overwritten),
  // every retained event lies at or above it.
  [[nodiscard]] std::uint64_t overwritten_to(std::uint32_t p) const noexcept {
    const shm::PartitionView& v = topic->partition(p);
    const std::uint64_t t = shm::load_tail(v);
    return t > v.ring_bytes ? t - v.ring_bytes : 0;
  }

  // A seek away from a position whose overrun (on_overrun = kError) was
  // counted: what has been overwritten since the last failed poll is lost
  // as well, up to where the seek goes; and the group's shared figures
  // take the whole gap now, as the cursor moves past it.
  void settle_counted_overrun(std::uint32_t p, std::uint64_t target) {
    Part& pt = parts[p];
    if (pt.overrun_counted_at != pt.read) return;
    // Everything the seek skips up to the oldest retained event is the
    // overrun's (a seek to earliest skips beginning()'s margin too); what
    // it skips past that is its own choice, not a gap. The counted part
    // ends at or below any position a seek may take, so none is counted
    // twice.
    const std::uint64_t lost_to = std::min(target, shm::beginning(topic->partition(p)));
    if (lost_to > pt.overrun_counted_to) {
      count_gap(p, pt.overrun_counted_to, lost_to, /*new_gap=*/false, /*shared=*/false);
      pt.overrun_counted_to = lost_to;
    }
    count_shared_gap(p, pt.overrun_counted_to - pt.overrun_counted_at, /*new_gap=*/true);
    pt.overrun_counted_at = UINT64_MAX;
  }

  // The caller came back after next() (see `pulled`): its event is handled.
  // If the partition was taken away meanwhile (fenced: the new owner
  // delivers the event again), it is dropped and reported to on_lost, and
  // the fence is returned: a commit() must not say "ok" for it (its commit
  // of nothing new needed no CAS, so it did not see the fence; found by an
  // adversarial pass). A deleted group is the caller's own checks' to tell.
  std::optional<Error> settle_pulled() {
    if (!pulled) return std::nullopt;
    const Pulled e = *pulled;
    pulled.reset();
    Part& pt = parts[e.p];
    if (!pt.assigned || pt.read < e.end || pt.handled >= e.end) return std::nullopt;
    if (tracks_deliveries()) {
      if (group_gone()) return std::nullopt;
      if (!still_owner(e.p)) {
        Error err = fence(e.p);  // drops it
        if (err.code == Errc::kFenced) {
          lost.push_back(e.p);
          report_lost();
        }
        return err;
      }
      // Relaxed, as in drain_partition: read by whoever owns the partition
      // after our death only.
      gp(e.p)->inflight.store(shm::pack_inflight(e.end, 0, false, marks()), std::memory_order_relaxed);
    }
    pt.handled = e.end;
    return std::nullopt;
  }
  // next()'s poll failed after taking its event: not returned, so not the
  // caller's to handle. It stays in flight (delivered again), and the
  // partition reads it again; no later call settles it.
  void unpull() noexcept {
    if (!pulled) return;
    const Pulled e = *pulled;
    pulled.reset();
    Part& pt = parts[e.p];
    if (pt.assigned && pt.read == e.end) pt.read = pt.handled;
  }

  [[nodiscard]] bool tracks_deliveries() const noexcept {
    return group >= 0 && opts.commit_mode != CommitMode::kBeforeHandle;
  }
  [[nodiscard]] bool marks() const noexcept { return opts.commit_mode == CommitMode::kAfterHandle; }
  std::uint64_t backoff_ns(std::uint32_t delivery) const noexcept {
    double d = static_cast<double>(opts.retry.initial.count()) * 1e6;
    for (std::uint32_t i = 1; i < delivery && d < 1e15; ++i) d *= opts.retry.multiplier;
    return static_cast<std::uint64_t>(std::min(d, static_cast<double>(opts.retry.max.count()) * 1e6));
  }
  Result<bool> recover(std::uint32_t p);
  Result<bool> dead_letter(std::uint32_t p, const EventView& e, std::uint32_t deliveries, const std::string& reason);
  Result<const shm::TopicMap*> dlq_view();

  // Runs the handler; an exception it throws is a failure. True for
  // success; on failure `reason` (empty before the call) holds a non-empty
  // reason. Inlined into drain_partition: out of line, its call, frame and
  // register saves were 18 of a consumed 64 B event's ~185 instructions
  // (one thread: 9.8 -> 8.7 ns an event; bench/RESULTS.md, "fourteenth
  // session"). The try costs nothing until something throws.
  [[gnu::always_inline]] static bool invoke(HandlerRef handler, const EventView& view, std::string& reason);
  // `awaiting`: the poll has waited kIdleLooksBeforePrefetch empty looks.
  Result<std::size_t> drain(HandlerRef handler, std::size_t budget, bool awaiting);
  Result<std::size_t> drain_partition(std::uint32_t p, HandlerRef handler,
                                      std::size_t budget, bool awaiting);
};

Consumer::Impl::~Impl() {
  if (!topic || ::getpid() != owner_pid) return;
  // The event next() returned last was handled if the caller let the
  // consumer go normally; not while an exception unwinds (its handling may
  // be what threw): then it is delivered again.
  if (pulled && std::uncaught_exceptions() == 0 && group >= 0 && !group_dead && !group_gone() &&
      still_owner(pulled->p)) {
    try {  // (nothing throws once still_owner held, but a destructor must not)
      (void)settle_pulled();
      (void)commit_all(/*lose_fenced=*/true);
    } catch (...) {
    }
  }
  if (group >= 0 && daemon_mode) {
    if (member_id != 0) (void)bus->call_daemon({{"op", "leave"}, {"member_id", member_id}});
  } else if (group >= 0 && !group_dead && !group_gone()) {
    // (A deleted group's slot may hold a new group: not ours to touch.)
    for (std::uint32_t p : assigned) detail::release_partition(*topic, static_cast<std::uint32_t>(group), p, reader);
    topic->group(static_cast<std::uint32_t>(group))->members.fetch_sub(1, std::memory_order_relaxed);
  }
  shm::release_reader_slot(*topic, reader);
}

void Consumer::Impl::check_assignment() {
  if (!daemon_mode || group < 0) return;
  // A: pairs with the release bump of assign_epoch in heraldd's mirror():
  // the bitmap and the cursor generations it wrote before are visible.
  const std::uint64_t e = topic->reader(reader)->assign_epoch.load(std::memory_order_acquire);
  if (e != assign_epoch_seen) apply_assignment(e);
  if (bus->registry_daemon_epoch() != daemon_epoch_seen) rejoin();
}

void Consumer::Impl::apply_assignment(std::uint64_t epoch) {
  // heraldd bumps the epoch once per change it mirrors. If we skipped some,
  // a partition may have been assigned to us and revoked again in between:
  // we never held it, but heraldd waits for our acknowledgement before it
  // moves it (for up to max_poll_interval). So after a skip, every partition
  // we do not own is acknowledged; heraldd ignores those not being revoked
  // from us.
  const bool skipped = epoch != assign_epoch_seen + 1;
  assign_epoch_seen = epoch;
  const shm::ReaderLayout* me = topic->reader(reader);
  std::uint64_t words[shm::kAssignWords];
  for (std::uint32_t w = 0; w < shm::kAssignWords; ++w) words[w] = me->assigned[w].load(std::memory_order_relaxed);
  auto owned = [&](std::uint32_t p) { return (words[p / 64] >> (p % 64) & 1) != 0; };
  // Revoked: commit what was handled, let go, tell the daemon.
  changed.clear();
  for (std::uint32_t p = 0; p < parts.size(); ++p) {
    if (!parts[p].assigned || owned(p)) continue;
    // Taken away by force (heraldd bumped the generation: we were stuck,
    // or stopped): lost, even with nothing left to commit, whose commit
    // would need no CAS and so would not see the fence.
    if (!still_owner(p)) {
      drop(p);
      lost.push_back(p);
      continue;
    }
    if (opts.commit_mode != CommitMode::kManual) {
      if (auto r = commit_to(p, parts[p].handled); !r) {
        if (r.error().code == Errc::kFenced) lost.push_back(p);
        continue;  // commit_to dropped it
      }
    }
    drop(p);
    changed.push_back(p);
  }
  if (!changed.empty() || skipped) {
    if (!changed.empty() && opts.on_revoked) opts.on_revoked(changed);
    nlohmann::json ps = nlohmann::json::array();
    for (std::uint32_t p = 0; p < parts.size(); ++p)
      if (!parts[p].assigned && !owned(p)) ps.push_back(p);  // what we just dropped, and the rest we lack
    // Best effort: a daemon that does not hear it forces the move at the
    // member's deadline; nothing is lost either way (the commit is done).
    if (!ps.empty()) (void)bus->call_daemon({{"op", "ack"}, {"member_id", member_id}, {"partitions", ps}});
  }
  report_lost();
  // Assigned: start at the committed cursor (of the new generation).
  changed.clear();
  for (std::uint32_t p = 0; p < parts.size(); ++p)
    if (owned(p) && !parts[p].assigned) changed.push_back(p);
  if (!changed.empty()) {
    set_assignment(changed);
    if (opts.on_assigned) opts.on_assigned(changed);
  }
}

void Consumer::Impl::rejoin() {
  // A restarted daemon knows groups by name: rejoining a group deleted
  // under us would make us a member of the one made since in its place.
  if (group_dead || group_gone()) return;
  const std::uint64_t now = shm::monotonic_ns();
  if (now - last_rejoin_ns < kRejoinEveryNs) return;
  last_rejoin_ns = now;
  auto r = bus->call_daemon({{"op", "rejoin"},
                             {"topic", topic->topic()},
                             {"group", group_name},
                             {"reader", reader},
                             {"assignor", opts.assignor == Assignor::kRange ? "range" : "sticky"},
                             {"max_poll_interval_ms", static_cast<std::uint64_t>(opts.max_poll_interval.count())}});
  if (!r) return;  // the daemon is still down: keep consuming what we own, try again later
  member_id = control::get_u64_or(*r, "member_id", member_id);
  daemon_epoch_seen = control::get_u64_or(*r, "epoch", bus->registry_daemon_epoch());
}

Result<const shm::TopicMap*> Consumer::Impl::dlq_view() {
  if (!dlq_map) {
    auto m = bus->map_topic(shm::dlq_topic_name(topic->topic(), group_name), shm::Access::kReadOnly,
                            shm::Access::kReadOnly);
    if (!m) return fail(std::move(m).error());
    dlq_map = std::move(m).value();
  }
  return dlq_map.get();
}

// What the previous owner of p left: a DLQ move to finish or forget, and an
// in-flight slot naming the first event it had not handled and how often
// that event was delivered. Returns false while it must wait (a dead mover's
// DLQ claim not yet repaired).
Result<bool> Consumer::Impl::recover(std::uint32_t p) {
  Part& pt = parts[p];
  shm::GroupPartitionLayout* g = gp(p);
  const shm::PartitionView& v = topic->partition(p);
  // Daemonless, nobody else repairs what a dead member left in the DLQ
  // (heraldd would): a claim it won but had not noted yet, or a dead letter
  // it committed without clearing its claim slot. Left alone, the first
  // holds the DLQ's readers (dead_letters, redrive) at a record that is
  // never committed, and either holds the DLQ's watermark down for good. So
  // the new owner reclaims the DLQ's dead producers before it looks at the
  // note (a claim aborted here is redone below, like one heraldd aborted).
  if (!daemon_mode && group >= 0) {
    if (auto dm = dlq_view()) {
      if (auto w = bus->map_topic((*dm)->topic(), shm::Access::kReadWrite, shm::Access::kReadOnly))
        shm::reclaim_dead_producers(**w);
    }
  }
  const std::uint64_t pending = g->dlq_pending.load(std::memory_order_acquire);
  if (shm::dlq_pending_set(pending)) {
    const std::uint64_t x = shm::dlq_pending_pos(pending);
    const std::uint64_t src = shm::inflight_pos(g->inflight.load(std::memory_order_acquire));
    auto dm = dlq_view();
    if (dm) {
      const shm::PartitionView& dv = (*dm)->partition(0);
      if (!shm::is_committed(dv, x) && shm::load_tail(dv) > x) {
        // Claimed but neither committed nor aborted yet: heraldd repairs it
        // (daemonless: the reclaim at the top of the next recover() call).
        // Wait.
        return false;
      }
      std::vector<std::byte> rec(dv.max_event);
      std::uint32_t n = 0;
      bool moved = false;
      if (shm::read_copy(dv, x, rec.data(), &n) == shm::Status::kOk &&
          (reinterpret_cast<const shm::RecordHeader*>(rec.data())->flags & shm::kRecordAborted) == 0) {
        const auto d = detail::parse_dead_letter(EventView::over(rec.data(), {}, 0, x, 1), x);
        moved = d && d->partition == p && d->position == src && d->group == group_name;
      }
      if (moved) {
        // The dead letter is in the DLQ: finish the move past its source.
        std::uint32_t sn = 0;
        std::byte* const b = copy_buf();
        const std::uint64_t next = b != nullptr && shm::read_copy(v, src, b, &sn) == shm::Status::kOk
                                       ? src + sn
                                       : shm::boundary_at_or_after(v, src + 64);
        // Relaxed, as every in-flight store: read by the next owner after
        // our death only.
        g->inflight.store(shm::pack_inflight(next, 0, false, true), std::memory_order_relaxed);
        if (next > pt.read) pt.read = pt.handled = next;
      }
    }
    g->dlq_pending.store(0, std::memory_order_release);
  }
  const std::uint64_t w = g->inflight.load(std::memory_order_acquire);
  if (w != shm::kNoInflight) {
    const std::uint64_t at = shm::inflight_pos(w);
    if (at >= pt.read && shm::check_position(v, at) == shm::Status::kOk) {
      // The previous owner handled everything before `at` (it commits after
      // handling): resume there instead of redelivering its batch.
      if (shm::inflight_marks(w) && marks()) pt.read = pt.handled = at;
      // The deliveries the event at `at` has had, kept until the reader
      // gets there. Without marks (manual commits) the reader resumes at
      // the committed cursor, before `at`: an event that crashed every
      // owner would otherwise start at delivery 1 each time, and never
      // reach max_deliveries and the DLQ.
      const std::uint32_t d = shm::inflight_deliveries(w);
      if (d > 0) {
        pt.failed_pos = at;
        pt.deliveries = d;
        pt.reason = shm::inflight_in_handler(w) ? "consumer crashed"
                                                : "handler failed (the previous owner's reason was not kept)";
        pt.first_failure_ns = pt.last_failure_ns = shm::realtime_ns();
      }
    }
  }
  pt.recover = false;
  return true;
}

// Moves the event at e.position() to the group's DLQ, exactly once even if
// we die at any step: claim in the DLQ, note the claim in dlq_pending, write
// and commit the dead letter, step past the source event, clear the note.
// Returns false when the DLQ is full (the partition stalls until redrive or
// purge frees it).
Result<bool> Consumer::Impl::dead_letter(std::uint32_t p, const EventView& e, std::uint32_t deliveries,
                                         const std::string& reason) {
  shm::GroupPartitionLayout* g = gp(p);
  // A topic deleted (and perhaps made again) while this member drained what
  // it had retained: its DLQ went with it, and one found by name now is the
  // new topic's, where an old event does not belong.
  if (shm::is_closed(topic->partition(p)))
    return fail(Errc::kClosed, "topic '" + topic->topic() + "' was deleted: the event at position " +
                                   std::to_string(e.position()) + " of partition " + std::to_string(p) +
                                   " cannot be dead-lettered (its dead-letter topic went with it)");
  if (!still_owner(p)) return fail(fence(p));  // kFenced, or kNotFound for a deleted group
  auto open_dlq = [&](const std::string& context) -> Result<void> {
    ProducerOptions po;
    po.deadline = std::chrono::nanoseconds(0);  // a full DLQ stalls this partition; it does not block poll()
    auto made = detail::ProducerFactory::make(bus, shm::dlq_topic_name(topic->topic(), group_name), po,
                                              shm::kRecordDeadLetter);
    if (!made) return fail(std::move(made).error().with_context(context));
    dlq.emplace(std::move(made).value());
    return {};
  };
  if (!dlq)
    if (auto r = open_dlq("dead-letter topic of group '" + group_name + "'"); !r) return fail(std::move(r).error());
  Part& pt = parts[p];
  detail::DeadLetterMessage msg;
  detail::build_dead_letter(e, source, group_name, reason, deliveries,
                            pt.first_failure_ns ? pt.first_failure_ns : shm::realtime_ns(),
                            pt.last_failure_ns ? pt.last_failure_ns : shm::realtime_ns(), &msg);
  auto c = dlq->claim(e.payload().size(), msg.message);
  if (!c && c.error().code == Errc::kClosed) {
    // The DLQ topic this producer writes was deleted (and perhaps made
    // again by a join): open it anew, once. Kept, the producer failed every
    // later poll with "attach a new producer" (found by an adversarial pass).
    dlq.reset();
    if (auto r = open_dlq("dead-letter topic of group '" + group_name +
                          "' (deleted; a new member of the group makes it again)");
        !r)
      return fail(std::move(r).error());
    c = dlq->claim(e.payload().size(), msg.message);
  }
  if (!c) {
    if (c.error().code != Errc::kBackPressured) return fail(std::move(c).error());
    // Relaxed: a status flag for stat, doctor and metrics; nothing is
    // ordered by it.
    g->dlq_stalled.store(1, std::memory_order_relaxed);
    return false;
  }
  // Release: pairs with the acquire in recover(). A successor that sees the
  // note also sees our DLQ claim slot naming x (written before the claim's
  // CAS), so it waits for that claim to be repaired rather than taking an
  // unwritten record for "not moved".
  if (!still_owner(p)) {
    c->abort();
    return fail(fence(p));
  }
  g->dlq_pending.store(shm::pack_dlq_pending(c->position()), std::memory_order_release);
  HERALD_CRASH_POINT("dlq.pending");
  if (!e.payload().empty()) std::memcpy(c->payload().data(), e.payload().data(), e.payload().size());
  if (auto r = c->commit(); !r) return fail(std::move(r).error());
  HERALD_CRASH_POINT("dlq.committed");
  const std::uint64_t next = e.next_position();
  // Fenced since the note: the dead letter is written (its successor finds
  // the note and the record, and does not move the event twice).
  if (!still_owner(p)) return fail(fence(p));
  // Relaxed, as every in-flight store: read by the next owner after our
  // death only; the cursor CAS below orders it for a live successor.
  g->inflight.store(shm::pack_inflight(next, 0, false, marks()), std::memory_order_relaxed);
  pt.read = pt.handled = next;
  // Past a dead letter the cursor moves in every commit mode: it must not
  // be handled again by the next owner.
  if (auto r = commit_to(p, next); !r) return fail(std::move(r).error());
  HERALD_CRASH_POINT("dlq.advanced");
  // Release: a successor that sees the note cleared sees the cursor past the
  // source event (committed just above), so it does not move it again.
  g->dlq_pending.store(0, std::memory_order_release);
  // Relaxed: a status flag and a statistic (only this member writes them).
  g->dlq_stalled.store(0, std::memory_order_relaxed);
  g->dead_letters.store(g->dead_letters.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  stats.dead_lettered += 1;
  pt.failed_pos = UINT64_MAX;
  pt.first_failure_ns = pt.last_failure_ns = 0;
  return true;
}

inline bool Consumer::Impl::invoke(HandlerRef handler, const EventView& view, std::string& reason) {
  try {
    if (handler(view, reason)) return true;
    // An empty reason would read as "consumer crashed" in the dead letter
    // (what a delivery that never returned leaves): say what happened.
    if (reason.empty()) reason = "handler failed without a reason";
  } catch (const std::exception& ex) {
    reason = std::string("handler threw: ") + ex.what();
  } catch (...) {
    reason = "handler threw a non-standard exception";
  }
  return false;
}

Result<std::size_t> Consumer::Impl::drain_partition(std::uint32_t p,
                                                    HandlerRef handler,
                                                    std::size_t budget, bool awaiting) {
  Part& pt = parts[p];
  const shm::PartitionView& v = topic->partition(p);
  if (pt.recover) {
    auto r = recover(p);
    if (!r) return fail(std::move(r).error());
    if (!*r) return std::size_t{0};
  }
  const bool tracked = tracks_deliveries();
  const bool amo = group >= 0 && opts.commit_mode == CommitMode::kBeforeHandle;
  // Loop invariants, resolved once per call rather than per event (the
  // TopicMap accessors are calls into the mapping code).
  const bool always_lossy = group < 0 || policy == shm::GroupPolicy::kLossy;
  const shm::GroupLayout* const grp = group >= 0 ? topic->group(static_cast<std::uint32_t>(group)) : nullptr;
  shm::GroupPartitionLayout* const gpl = group >= 0 ? gp(p) : nullptr;
  shm::ReaderLayout* const me = topic->reader(reader);
  const bool mark = marks();
  const std::string_view topic_name = topic->topic();
  // Tracked members check their generation before each plain store into
  // the group slot; the check after one handler also serves the store
  // before the next, a few instructions later, so that one is skipped.
  bool owner_checked = false;
  std::size_t n = 0;
  while (n < budget) {
    const std::byte* rec = nullptr;
    bool gated = false;  // rec is the ring's bytes (zero-copy), not copy_buf()
    if (always_lossy || lossy_member(pt, grp)) {
      std::uint32_t size = 0;
      std::byte* const b = copy_buf();
      if (b == nullptr) [[unlikely]]
        return fail(no_copy_buf(p));
      const shm::Status st = shm::read_copy(v, pt.read, b, &size);
      if (st == shm::Status::kOverrun) {
        if (auto r = overrun(p); !r) return fail(std::move(r).error());
        continue;
      }
      if (st == shm::Status::kClosed) closed_seen = true;
      if (st == shm::Status::kCorrupt)
        return fail(Errc::kCorrupt, "partition " + std::to_string(p) + " of topic '" + topic->topic() +
                                        "' holds a corrupt record header at position " + std::to_string(pt.read));
      if (st != shm::Status::kOk) break;
      rec = b;
    } else {
      const shm::RecordHeader* h = nullptr;
      // A waiting poll asks for the record's second line with its header,
      // not after it: a 64 B event (a 128 B record) is two lines, and the
      // second, fetched only once the header said committed, was a second
      // cross-core transfer in series. A prefetch: no fault, no ordering
      // (the record is read only after its commit word, as ever). vCPUs far
      // apart, herald-bench's 64 B ping-pong: p50 441-451 -> 341-347 ns, the
      // ring's 331-377 (bench/RESULTS.md, "seventh session"). Only while
      // the poll waits (`awaiting`, from its kIdleLooksBeforePrefetch-th
      // empty look): a reader keeping up with a stream finds nothing for a
      // look or two while the next record is written, and a line taken
      // from the producer mid-write has to go back to it (throughput rows
      // unchanged with 3 or 8 looks; 8 is the safer of the two).
      if (awaiting) __builtin_prefetch(reinterpret_cast<const std::byte*>(v.header_at(pt.read)) + shm::kCacheLine, 0, 3);
      shm::Status st = shm::peek_gated(v, pt.read, &h);
      if (st == shm::Status::kEmpty && closure_news()) {
        if (shm::is_closed(v)) closing = true;
        st = shm::read_gated(v, pt.read, &h);
      }
      if (st == shm::Status::kClosed) closed_seen = true;
      if (st == shm::Status::kCorrupt)
        return fail(Errc::kCorrupt, "partition " + std::to_string(p) + " of topic '" + topic->topic() +
                                        "' holds a corrupt record header at position " + std::to_string(pt.read));
      if (st != shm::Status::kOk) break;
      rec = reinterpret_cast<const std::byte*>(h);
      gated = true;
      // The record's other lines, now: the handler reads them only after
      // the bookkeeping below, and until their loads complete the commit's
      // locked CAS (a full barrier) holds back everything after it, the
      // caller's reply included. Small records only (the request/reply
      // case); a larger one is streamed by the hardware prefetcher as the
      // handler reads it. Close vCPUs, a 64 B hop: 100 -> 90 ns in
      // herald_protocol_pingpong (bench/RESULTS.md, "fifth session").
      const std::uint32_t lines_end = std::min<std::uint32_t>(h->size, kPrefetchRecordBytes);
      for (std::uint32_t off = shm::kCacheLine; off < lines_end; off += shm::kCacheLine)
        __builtin_prefetch(rec + off, 0, 3);
    }
    const auto* h = reinterpret_cast<const shm::RecordHeader*>(rec);
    const std::uint64_t pos = pt.read;
    const std::uint32_t size = h->size;
    if ((h->flags & shm::kRecordAborted) != 0) {
      stats.aborted_skipped += 1;
      pt.read = pt.handled = pos + size;
      continue;
    }
    const bool retrying = pt.failed_pos == pos;
    const std::uint32_t prior = retrying ? pt.deliveries : 0;
    const EventView view = EventView::over(rec, topic_name, p, pos, prior + 1, size);
    if ((h->flags & shm::kRecordRedriven) != 0 && group >= 0 &&
        view.header(detail::kHdrRedriveGroup).value_or(group_name) != group_name) {
      // Redriven for another group: not ours to handle again.
      stats.skipped_redrives += 1;
      pt.read = pt.handled = pos + size;
      continue;
    }
    if (tracked && opts.max_deliveries > 0 && prior >= opts.max_deliveries) {
      // Delivered max_deliveries times already (crashes inside the handler
      // included): dead-letter it without calling the handler again.
      auto moved = dead_letter(p, view, prior, pt.reason.empty() ? "consumer crashed" : pt.reason);
      // Fenced (dead_letter dropped p): lost to the new owner, which takes
      // the dead letter on from where this member left it.
      if (!moved) return lose(std::move(moved).error(), p, n);
      if (!*moved) break;  // the DLQ is full: this partition waits
      // A dead-lettered event is finished too: it takes one of the poll's
      // `max` (n < budget still held before this one).
      ++finished_dead;
      --budget;
      continue;
    }
    if (retrying && pt.retry_at != 0 && shm::monotonic_ns() < pt.retry_at) break;  // backing off
    // At-most-once: the lease (same generation as the cursor) keeps the
    // bytes gated while the handler runs; set before the cursor CAS.
    const std::uint64_t my_lease = amo ? shm::pack_cursor(shm::cursor_gen(pt.cursor), pos) : 0;
    if (amo) {
      // Fenced (heraldd gave p to another member, or the group is gone): p
      // is lost, not a failed poll; this poll's handled events still count.
      if (!take_lease(p, gpl, my_lease)) [[unlikely]] return lose(fence(p), p, n);
      pt.handled = pos + size;
      if (!try_commit(p, pt.handled)) [[unlikely]] {
        release_lease(gpl, my_lease);
        return lose(fence(p), p, n);
      }
    }
    if (tracked) {
      // A member that lost the partition (heraldd bumped the generation
      // while we were busy, e.g. stuck in a long handler) stops here: the
      // in-flight slot and the events are the new owner's now.
      if (!owner_checked && !still_owner(p)) [[unlikely]] return lose(fence(p), p, n);
      owner_checked = false;
      // Relaxed: read by whoever owns the partition after our death only.
      gpl->inflight.store(shm::pack_inflight(pos, prior + 1, true, mark), std::memory_order_relaxed);
    }
    if (reader_flagged) [[unlikely]] {
      // Relaxed, as the store that set it: heraldd samples the flag beside
      // poll_count (also relaxed) and orders nothing else by it.
      me->flags.store(0, std::memory_order_relaxed);
      reader_flagged = false;
    }
    HERALD_CRASH_POINT("consume.before_handler");
    // failure_reason is written on failure only, and emptied again below
    // once taken, so a success costs no string work.
    const bool ok = invoke(handler, view, failure_reason);
    HERALD_CRASH_POINT("consume.after_handler");
    // Was the view's gate lifted while the handler ran? A lease no longer
    // ours was cleared by heraldd, which takes a stuck member's partition
    // (revoke) or gives it to another (assign); a group that stopped gating
    // was demoted (lag-out, left without a live member: heraldd removed
    // this one). Either way the bytes may have been written over: see
    // overwritten_under(). A copy (not `gated`) has no such risk. The flags
    // load is of the line lossy_member read for this event.
    const bool lease_lost = amo && !release_lease(gpl, my_lease);
    if (gated && (lease_lost || (grp->flags.load(std::memory_order_relaxed) & shm::kGroupGating) == 0)) [[unlikely]] {
      if (overwritten_under(p, pos)) return lose_overwritten(p, pos, /*fenced=*/lease_lost);
    }
    // bump_progress(), on the reader resolved above.
    me->poll_count.store(me->poll_count.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    if (ok || amo) {
      if (!ok) {
        stats.failures += 1;  // at-most-once: not retried
        ++failed_done;        // done with, but not handled successfully: not in stats.events
        failure_reason.clear();
      }
      // Done with a failed event once past it; one further on (a count
      // recover() kept for an event ahead) waits for the reader.
      if (pos >= pt.failed_pos) pt.failed_pos = UINT64_MAX;
      ++n;
      if (pulling) [[unlikely]] {
        // next(): handled once the caller comes back (settle_pulled()); in
        // flight until then, its in-handler mark still set.
        pt.read = pos + size;
        pulled = Pulled{p, pos + size};
        continue;
      }
      pt.read = pt.handled = pos + size;
      if (tracked) {
        if (!still_owner(p)) [[unlikely]] {
          if (gated && overwritten_under(p, pos)) return lose_overwritten(p, pos, /*fenced=*/true);
          // Fenced while the handler ran: the partition is the new owner's.
          // Within the same group, "handled up to here" still saves it a
          // duplicate of this event, and a late one costs at most a
          // duplicate (the new owner resumes at or after its cursor);
          // in another group made in the slot, it would skip an event.
          if (!group_gone())
            gpl->inflight.store(shm::pack_inflight(pos + size, 0, false, mark), std::memory_order_relaxed);
          return lose(fence(p), p, n);
        }
        gpl->inflight.store(shm::pack_inflight(pos + size, 0, false, mark), std::memory_order_relaxed);
        owner_checked = true;
      }
      continue;
    }
    // At-least-once: the event stays (order kept); it is delivered again
    // after the backoff, or dead-lettered once it reached max_deliveries.
    stats.failures += 1;
    const std::uint64_t now_rt = shm::realtime_ns();
    pt.failed_pos = pos;
    pt.deliveries = std::min(prior + 1, shm::kMaxDeliveriesCounted);
    pt.reason.swap(failure_reason);
    failure_reason.clear();
    if (pt.first_failure_ns == 0 || !retrying) pt.first_failure_ns = now_rt;
    pt.last_failure_ns = now_rt;
    if (tracked) {
      if (!still_owner(p)) [[unlikely]] {
        if (gated && overwritten_under(p, pos)) return lose_overwritten(p, pos, /*fenced=*/true);
        return lose(fence(p), p, n);
      }
      gpl->inflight.store(shm::pack_inflight(pos, pt.deliveries, false, mark), std::memory_order_relaxed);
    }
    if (tracked && opts.max_deliveries > 0 && pt.deliveries >= opts.max_deliveries) continue;  // dead-lettered next
    pt.retry_at = shm::monotonic_ns() + backoff_ns(pt.deliveries);
    break;
  }
  return n;
}

Result<std::size_t> Consumer::Impl::drain(HandlerRef handler, std::size_t budget,
                                          bool awaiting) {
  std::size_t n = 0;
  const std::size_t count = assigned.size();
  // Round-robin start, without a division per poll (a 64-bit div is tens
  // of cycles, a visible share of a one-event poll): rr stays below the
  // size it was last compared with, and idx wraps by subtraction.
  if (rr >= count) rr = 0;
  std::size_t idx = rr;
  for (std::size_t k = 0; k < count && n < budget && !assigned.empty(); ++k) {
    if (idx >= assigned.size()) idx = 0;  // drain_partition may drop a partition (fenced)
    const std::uint32_t p = assigned[idx++];
    const std::size_t dead_before = finished_dead;
    auto r = drain_partition(p, handler, budget - n, awaiting);
    if (!r) return r;
    n += *r;
    budget -= finished_dead - dead_before;  // drain_partition kept *r + its dead <= budget - n
  }
  ++rr;
  return n;
}

Consumer::Consumer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Consumer::Consumer(Consumer&&) noexcept = default;
Consumer& Consumer::operator=(Consumer&&) noexcept = default;
Consumer::~Consumer() = default;

Result<std::size_t> Consumer::poll_impl(HandlerRef handler, std::size_t max,
                                        std::chrono::nanoseconds timeout, bool pull,
                                        std::size_t* dead_lettered) {
  if (impl_ == nullptr) [[unlikely]] return fail(detail::moved_from("Consumer"));
  Impl& I = *impl_;
  // From inside a handler, a nested poll would deliver the event being
  // handled again (and the ones after it, then again to the outer poll).
  auto in_use = I.use("poll() or next()");
  if (!in_use) [[unlikely]]
    return fail(std::move(in_use).error());
  if (I.in_poll) [[unlikely]]
    return fail(Errc::kInvalidArgument,
                "poll() or next() called from inside this consumer's handler; return from the handler first");
  I.in_poll = true;
  struct LeavePoll {
    bool& in;
    bool& pulling;
    ~LeavePoll() { in = pulling = false; }
  } leave_poll{I.in_poll, I.pulling};
  (void)I.settle_pulled();  // the caller is back: the event next() returned is handled (or lost: on_lost)
  // Set only here, once this thread holds the consumer: a second thread's
  // refused next() used to clear it under the first one's poll, whose event
  // then went the usual way and was committed before next() returned
  // (found by an adversarial pass). In every tracked mode: in kManual too,
  // a process that dies holding the event counts a delivery, so a poison
  // event pulled with next() still reaches the DLQ.
  I.pulling = pull && I.tracks_deliveries();
  shm::ReaderLayout* me = I.topic->reader(I.reader);
  // Liveness for heraldd: poll_count moves on every poll, every handled
  // event and every timed wake; kReaderInPoll is set only while waiting
  // here. A member is stuck when neither happens for max_poll_interval
  // (a handler running too long counts as outside poll()). last_poll_ns is
  // for people (since_last_poll_ns in stats): the coarse clock, a tick
  // behind at most, costs ~3 ns where the precise one costs ~21 ns. It is
  // stored on entry, after each park, and on exit when the poll waited.
  me->last_poll_ns.store(shm::coarse_monotonic_ns(), std::memory_order_relaxed);
  I.bump_progress();
  I.check_assignment();
  I.maybe_rejoin();
  // A member left with nothing to read asks whether its group still exists
  // (a busy one learns it from its first fenced commit or read, or while
  // it waits); one that learnt it stays told.
  if (I.group_dead || (I.assigned.empty() && I.group_gone())) [[unlikely]] return fail(I.group_deleted_error());
  if (I.commit_requested.load(std::memory_order_relaxed)) {
    I.commit_requested.store(false, std::memory_order_relaxed);
    if (auto c = I.commit_all(/*lose_fenced=*/I.daemon_mode); !c) return fail(std::move(c).error());
  }

  std::size_t n = 0;
  Result<std::size_t> outcome = std::size_t{0};
  // Set when a drain first comes back empty: a poll that finds events at
  // once (the busy case) never reads the precise clock.
  std::uint64_t deadline = 0;
  std::uint32_t empty_drains = 0;
  shm::Backoff backoff(I.wait);
  I.finished_dead = 0;
  I.failed_done = 0;
  for (;;) {
    auto r = I.drain(handler, max - n - I.finished_dead, empty_drains >= Impl::kIdleLooksBeforePrefetch);
    if (!r) {
      outcome = std::move(r);
      break;
    }
    n += *r;
    if (n > 0) I.last_drain = n;
    // Events moved to the DLQ are progress too: a poll that only
    // dead-lettered returns rather than waiting out its timeout.
    if (n > 0 || I.finished_dead > 0 || timeout.count() <= 0 || n + I.finished_dead >= max) break;
    if (I.closed_seen) break;
    if (I.last_drain >= kBurstEvents && I.opts.burst_settle.count() > 0) {
      // The first empty look after a burst (see ConsumerOptions::burst_settle).
      // Never longer than the poll's own timeout.
      I.last_drain = 0;
      const std::uint32_t pauses = pauses_for(std::min<std::chrono::nanoseconds>(I.opts.burst_settle, timeout));
      for (std::uint32_t i = 0; i < pauses; ++i) shm::cpu_relax();
      continue;
    }
    // The precise clock costs ~21 ns, more than an empty drain: a spinning
    // poll reads it on every 32nd empty drain only (its deadline is then a
    // microsecond or two late at most), so it notices a new event sooner
    // and, on an SMT sibling of the producer, takes less of the core.
    std::uint64_t now = 0;
    if (empty_drains++ % 32 == 0) {
      now = shm::monotonic_ns();
      if (deadline == 0) deadline = now + static_cast<std::uint64_t>(timeout.count());
      if (now >= deadline) break;
      // What a park's wake-up does, for a poll that spins or yields and
      // never parks (kBusySpin, kSpinYield): a rebalance, a free partition,
      // a deleted group would otherwise wait for the poll to return.
      if (empty_drains > 1) {
        if (auto m = I.refresh_membership(); !m) [[unlikely]] {
          outcome = fail(std::move(m).error());
          break;
        }
      }
    }
    me->flags.store(shm::kReaderInPoll, std::memory_order_relaxed);
    I.reader_flagged = true;
    if (backoff.step()) continue;
    now = shm::monotonic_ns();  // parking: the slice needs the time now
    if (now >= deadline) break;
    // Park on every owned partition at once (one wake word per reader);
    // heraldd also wakes this word when the assignment changes.
    for (std::size_t i = 0; i < I.assigned.size(); ++i) {
      I.wait_views[i] = &I.topic->partition(I.assigned[i]);
      I.wait_pos[i] = I.parts[I.assigned[i]].read;
    }
    const std::uint64_t slice = std::min(deadline - now, I.wait.park_timeout_ns);
    shm::park_reader(*I.topic, I.reader, I.wait_views, I.wait_pos, slice);
    I.closing = I.closing || I.topic->closed();  // see closure_news()
    I.bump_progress();
    me->last_poll_ns.store(shm::coarse_monotonic_ns(), std::memory_order_relaxed);
    if (auto m = I.refresh_membership(); !m) [[unlikely]] {
      outcome = fail(std::move(m).error());
      break;
    }
  }
  me->flags.store(0, std::memory_order_relaxed);
  I.reader_flagged = false;
  if (outcome && I.group >= 0 && I.opts.commit_mode == CommitMode::kAfterHandle && !I.commit_owned()) [[unlikely]] {
    if (auto c = I.commit_fenced(/*lose_fenced=*/I.daemon_mode); !c) outcome = fail(std::move(c).error());
  }
  if (dead_lettered != nullptr) *dead_lettered = I.finished_dead;
  if (!outcome && pull) I.unpull();  // the caller will not get the event: not its to settle
  I.stats.events += n - I.failed_done;
  me->events.store(I.stats.events, std::memory_order_relaxed);
  // A poll that found its events at once keeps the entry's stamp (older
  // by its handlers' time only, and handlers count as outside poll()):
  // the clock is a vDSO call, and here it would be paid on the way back to
  // a caller that may be about to reply.
  if (empty_drains != 0) me->last_poll_ns.store(shm::coarse_monotonic_ns(), std::memory_order_relaxed);
  if (!outcome) return outcome;
  if (n == 0 && I.closed_seen && I.topic->closed())
    return fail(Errc::kClosed, "topic '" + I.topic->topic() + "' was deleted (or re-created); attach a new consumer");
  return n;
}

Result<Event> Consumer::next(std::chrono::nanoseconds timeout) {
  if (impl_ == nullptr) [[unlikely]] return fail(detail::moved_from("Consumer"));
  Event out;
  bool got = false;
  auto take = [&](const EventView& e, std::string&) {
    out = e.to_event();
    got = true;
    return true;
  };
  // A poll that only moved an event to the DLQ returns at once (that is
  // progress to poll()); next() looks again while its time lasts, so a
  // dead letter does not read as "nothing there".
  const std::uint64_t deadline = shm::monotonic_ns() + static_cast<std::uint64_t>(std::max<std::int64_t>(timeout.count(), 0));
  std::size_t dead = 0;
  auto r = poll_impl(take, 1, timeout, /*pull=*/true, &dead);
  while (r && !got && dead > 0) {
    const std::uint64_t now = shm::monotonic_ns();
    dead = 0;
    r = poll_impl(take, 1, std::chrono::nanoseconds(now < deadline ? deadline - now : 0), /*pull=*/true, &dead);
  }
  // A failed poll kept no event pulled (unpull(), inside the poll: this
  // thread may no longer touch the consumer once it returned).
  if (!r) return fail(std::move(r).error());
  if (!got) return fail(Errc::kTimeout, "no event on topic '" + impl_->topic->topic() + "' within the timeout");
  return out;
}

Result<void> Consumer::commit() {
  if (impl_ == nullptr) [[unlikely]] return fail(detail::moved_from("Consumer"));
  if (impl_->group < 0) return fail(Errc::kInvalidArgument, "a group-less reader has no cursor to commit");
  auto in_use = impl_->use("commit()");
  if (!in_use) return fail(std::move(in_use).error());
  // The caller is back: the event next() returned is handled (or was lost).
  std::optional<Error> pulled_lost = impl_->settle_pulled();
  // Nothing pending commits nothing, even into a deleted group: ask.
  if (impl_->group_dead || impl_->group_gone()) return fail(impl_->group_deleted_error());
  if (auto r = impl_->commit_all(/*lose_fenced=*/false); !r) return r;
  if (pulled_lost) return fail(std::move(*pulled_lost));
  return {};
}

void Consumer::commit_async() noexcept {
  if (impl_ != nullptr) impl_->commit_requested.store(true, std::memory_order_relaxed);
}

Result<void> Consumer::commit(std::uint32_t partition, std::uint64_t position) {
  if (impl_ == nullptr) [[unlikely]] return fail(detail::moved_from("Consumer"));
  Impl& I = *impl_;
  if (I.group < 0) return fail(Errc::kInvalidArgument, "a group-less reader has no cursor to commit");
  auto in_use = I.use("commit()");
  if (!in_use) return fail(std::move(in_use).error());
  std::optional<Error> pulled_lost = I.settle_pulled();
  if (pulled_lost && partition < I.parts.size() && !I.parts[partition].assigned) return fail(std::move(*pulled_lost));
  if (I.group_dead || I.group_gone()) return fail(I.group_deleted_error());
  if (partition >= I.parts.size() || !I.parts[partition].assigned)
    return fail(Errc::kInvalidArgument, "partition " + std::to_string(partition) + " is not assigned to this member");
  Impl::Part& pt = I.parts[partition];
  const std::uint64_t committed = shm::cursor_pos(pt.cursor);
  if (position < committed || position > pt.read)
    return fail(Errc::kInvalidArgument, "commit position " + std::to_string(position) + " is outside [" +
                                            std::to_string(committed) + ", " + std::to_string(pt.read) +
                                            "] (committed, read) of partition " + std::to_string(partition) +
                                            "; use seek() to move back");
  if (position != pt.read && shm::check_position(I.topic->partition(partition), position) != shm::Status::kOk)
    return fail(Errc::kInvalidArgument, "position " + std::to_string(position) + " is not an event boundary");
  return I.lost_in_call(I.commit_to(partition, position), partition);
}

Result<void> Consumer::seek(std::uint32_t partition, Offset where) {
  if (impl_ == nullptr) [[unlikely]] return fail(detail::moved_from("Consumer"));
  Impl& I = *impl_;
  // The poll running the handler moves the position past the event when
  // the handler returns, over whatever a seek here set.
  auto in_use = I.use("seek()");
  if (!in_use) return fail(std::move(in_use).error());
  if (I.in_poll)
    return fail(Errc::kInvalidArgument, "seek() called from inside this consumer's handler would be undone when it "
                                        "returns; seek after poll() returns");
  (void)I.settle_pulled();  // a loss is told to on_lost; the seek's own checks follow
  if (partition >= I.parts.size() || !I.parts[partition].assigned)
    return fail(Errc::kInvalidArgument, "partition " + std::to_string(partition) + " is not read by this consumer");
  auto pos = detail::resolve_offset(*I.topic, partition, where);
  if (!pos) return fail(std::move(pos).error());
  I.settle_counted_overrun(partition, *pos);
  Impl::Part& pt = I.parts[partition];
  if (I.group >= 0) {
    const std::uint64_t cur = shm::cursor_pos(pt.cursor);
    const std::uint64_t desired = shm::pack_cursor(shm::cursor_gen(pt.cursor), *pos);
    if (*pos < cur) {
      // Lowering the gate: the Disruptor rule (shm::lower_gate).
      std::uint64_t floor = 0;
      if (!shm::lower_gate(*I.topic, static_cast<std::uint32_t>(I.group), partition, pt.cursor, desired, &floor)) {
        const std::uint64_t seen = I.gp(partition)->cursor.load(std::memory_order_acquire);
        Error e = I.fenced_error(partition, seen);
        I.drop(partition);
        return I.lost_in_call(fail(std::move(e)), partition);
      }
      pt.cursor = desired;
      pt.floor = floor;
    } else {
      pt.read = *pos;  // commit_to checks nothing about read; keep them in step
      if (auto r = I.commit_to(partition, *pos); !r) return I.lost_in_call(std::move(r), partition);
    }
  }
  pt.read = pt.handled = *pos;
  pt.failed_pos = UINT64_MAX;
  // The in-flight word names where a successor resumes ("handled up to
  // here"): left at the old place, a seek back followed by a crash made the
  // next owner skip what the cursor still named (found by an adversarial
  // pass; reset_group clears it the same way). Relaxed, as every in-flight
  // store: read by the next owner after our death only.
  if (I.group >= 0 && I.tracks_deliveries() && I.still_owner(partition))
    I.gp(partition)->inflight.store(shm::pack_inflight(*pos, 0, false, I.marks()), std::memory_order_relaxed);
  return {};
}

Result<void> Consumer::seek(Offset where) {
  if (impl_ == nullptr) [[unlikely]] return fail(detail::moved_from("Consumer"));
  auto in_use = impl_->use("seek()");  // held across the partitions' seeks (theirs nest)
  if (!in_use) return fail(std::move(in_use).error());
  const std::vector<std::uint32_t> ps = impl_->assigned;  // seek(p) refuses inside a handler
  for (std::uint32_t p : ps)
    if (auto r = seek(p, where); !r) return r;
  return {};
}

std::vector<std::uint32_t> Consumer::assignment() const {
  return impl_ != nullptr ? impl_->assigned : std::vector<std::uint32_t>{};
}
std::uint64_t Consumer::position(std::uint32_t partition) const noexcept {
  if (impl_ == nullptr) [[unlikely]] return {};
  return partition < impl_->parts.size() ? impl_->parts[partition].read : 0;
}

Result<std::uint64_t> Consumer::committed(std::uint32_t partition) const {
  if (impl_ == nullptr) [[unlikely]] return fail(detail::moved_from("Consumer"));
  Impl& I = *impl_;
  if (I.group < 0) return fail(Errc::kInvalidArgument, "a group-less reader has no committed cursor");
  if (I.group_dead || I.group_gone()) return fail(I.group_deleted_error());
  if (partition >= I.parts.size())
    return fail(Errc::kInvalidArgument, "partition " + std::to_string(partition) + " does not exist");
  return shm::cursor_pos(I.gp(partition)->cursor.load(std::memory_order_acquire));
}

ConsumerStats Consumer::stats() const noexcept { return impl_ != nullptr ? impl_->stats : ConsumerStats{}; }
const std::string& Consumer::topic() const noexcept {
  return impl_ != nullptr ? impl_->topic->topic() : detail::no_name();
}
const std::string& Consumer::group() const noexcept {
  return impl_ != nullptr ? impl_->group_name : detail::no_name();
}

Result<Consumer> Bus::consumer(std::string_view topic, const ConsumerOptions& options) {
  if (impl_ == nullptr) [[unlikely]] return fail(detail::moved_from("Bus"));
  auto map = impl_->map_topic(topic, shm::Access::kReadOnly, shm::Access::kReadWrite);
  if (!map) return fail(std::move(map).error());
  const shm::TopicMap& m = **map;
  auto impl = std::make_unique<Consumer::Impl>();
  impl->opts = options;
  // A DLQ has no DLQ: a group reading one retries a failing event (with
  // backoff) until its handler takes it, rather than give up on it with
  // nowhere to put it (which failed the poll, for good: the count stays).
  if ((m.geometry().params.flags & shm::kLogDeadLetterTopic) != 0) impl->opts.max_deliveries = 0;
  impl->wait = wait_policy(options.wait);
  impl->parts.assign(m.partitions(), Consumer::Impl::Part{});
  // A position is a byte offset in ONE partition's log: the same number in
  // the others names nothing in particular (an exploratory pass found a
  // group started at partition 0's tail reading from arbitrary events of
  // the others). Only a reader of one partition may start at one.
  if (options.start.kind == Offset::Kind::kPosition) {
    std::size_t reads = m.partitions();
    if (options.group.empty() && !options.partitions.empty()) {
      std::vector<std::uint32_t> ps = options.partitions;
      std::sort(ps.begin(), ps.end());
      reads = static_cast<std::size_t>(std::unique(ps.begin(), ps.end()) - ps.begin());
    }
    if (reads > 1)
      return fail(Errc::kInvalidArgument,
                  "Offset::at(" + std::to_string(options.start.value) + ") is a position in one partition, and this " +
                      (options.group.empty() ? std::string("reader") : "member of group '" + options.group + "'") +
                      " would read " + std::to_string(reads) + " partitions of topic '" + m.topic() +
                      "': start at earliest, latest or at_time, then seek(partition, Offset::at(position))" +
                      (options.group.empty() ? "; or read one partition (ConsumerOptions::partitions)" : ""));
  }

  if (options.group.empty()) {
    auto slot = shm::acquire_reader_slot(m, 0);
    if (!slot) return fail(std::move(slot).error());
    impl->topic = *map;
    impl->reader = *slot;
    std::vector<std::uint32_t> ps = options.partitions;
    if (ps.empty())
      for (std::uint32_t p = 0; p < m.partitions(); ++p) ps.push_back(p);
    for (std::uint32_t p : ps) {
      auto pos = detail::resolve_offset(m, p, options.start);
      if (!pos) return fail(std::move(pos).error());
      impl->parts[p].read = impl->parts[p].handled = *pos;
    }
    impl->set_assignment(ps);
    return Consumer(std::move(impl));
  }

  if (auto r = shm::validate_entity_name(options.group, "group"); !r) return fail(std::move(r).error());
  if (!options.partitions.empty())
    return fail(Errc::kInvalidArgument, "partitions are assigned to group members; `partitions` is for group-less readers");
  if (options.max_poll_interval.count() <= 0) return fail(Errc::kInvalidArgument, "max_poll_interval must be positive");
  if (options.policy != Policy::kDefault && !detail::concrete_policy(options.policy))
    return fail(Errc::kInvalidArgument, "policy " + std::to_string(static_cast<int>(options.policy)) + " is not a Policy");
  // A NaN multiplier wedged a failing event (its retry time became NaN);
  // a negative wait, or one too long for the nanosecond clock, skipped the
  // backoff. The longest wait, kMaxRetryWait, is still days.
  if (const RetryPolicy& rp = options.retry; rp.initial.count() < 0 || rp.max.count() < 0 || rp.max < rp.initial ||
                                               !std::isfinite(rp.multiplier) || rp.multiplier < 1.0 ||
                                               rp.max > kMaxRetryWait)
    return fail(Errc::kInvalidArgument, "retry: initial and max must be 0 .. " + std::to_string(kMaxRetryWait.count()) +
                                            " ms with initial <= max, and multiplier a finite number >= 1");
  // The group slot counts deliveries in 10 bits; past that an event would
  // be retried forever instead of dead-lettered.
  if (options.max_deliveries > shm::kMaxDeliveriesCounted)
    return fail(Errc::kInvalidArgument, "max_deliveries " + std::to_string(options.max_deliveries) + " is over the limit, " +
                                            std::to_string(shm::kMaxDeliveriesCounted) + " (0: retry forever)");
  auto rec = impl_->find_topic(topic);
  if (!rec) return fail(std::move(rec).error());
  impl->source = *rec;
  impl->bus = impl_;
  if (impl_->daemon_mode) {
    auto slot = shm::acquire_reader_slot(m, 0);
    if (!slot) return fail(std::move(slot).error());
    impl->topic = *map;  // from here the Impl destructor releases the slot
    impl->reader = *slot;
    impl->bus = impl_;
    const char* start = options.start.kind == Offset::Kind::kEarliest   ? "earliest"
                        : options.start.kind == Offset::Kind::kLatest   ? "latest"
                        : options.start.kind == Offset::Kind::kPosition ? "position"
                                                                        : "time";
    const char* policy = options.policy == Policy::kLossless ? "lossless"
                         : options.policy == Policy::kLossy  ? "lossy"
                         : options.policy == Policy::kLagOut ? "lag-out"
                                                             : "default";
    auto r = impl_->call_daemon({{"op", "join"},
                                 {"topic", std::string(topic)},
                                 {"group", options.group},
                                 {"reader", *slot},
                                 {"policy", policy},
                                 {"start", start},
                                 {"start_value", options.start.value},
                                 {"assignor", options.assignor == Assignor::kRange ? "range" : "sticky"},
                                 {"max_poll_interval_ms", static_cast<std::uint64_t>(options.max_poll_interval.count())}});
    if (!r) return fail(std::move(r).error());
    impl->daemon_mode = true;
    impl->member_id = control::get_u64_or(*r, "member_id", 0);
    impl->daemon_epoch_seen = control::get_u64_or(*r, "epoch", impl_->registry_daemon_epoch());
    impl->group = static_cast<int>(control::get_u64_or(*r, "group_slot", 0));
    impl->group_name = options.group;
    if (auto g = detail::find_group(m, options.group)) {
      impl->policy = g->policy;
      impl->group_created_ns = g->created_ns;
    }
    impl->check_assignment();
    return Consumer(std::move(impl));
  }
  auto g = detail::find_group(m, options.group);
  if (!g || detail::dlq_missing(impl_->registry, *rec, options.group)) {
    auto lock = impl_->admin_lock();
    if (!lock) return fail(std::move(lock).error());
    detail::NewGroup ng;
    ng.name = options.group;
    ng.policy = detail::to_shm(options.policy, rec->default_policy);
    ng.lagout_grace_ms = rec->lagout_grace_ms;
    auto joined = detail::ensure_group_locked(impl_->registry, impl_->name, m, *rec, ng, options.start);
    if (!joined) return fail(std::move(joined).error());
    g = std::move(joined).value();
  }
  if (options.policy != Policy::kDefault && detail::to_shm(options.policy, g->policy) != g->policy)
    return fail(Errc::kInvalidArgument, "group '" + g->name + "' exists with policy " + detail::policy_name(g->policy) +
                                            ", not " + detail::policy_name(detail::to_shm(options.policy, g->policy)));
  auto slot = shm::acquire_reader_slot(m, g->slot + 1);
  if (!slot) return fail(std::move(slot).error());
  impl->topic = *map;
  impl->reader = *slot;
  impl->group = static_cast<int>(g->slot);
  impl->group_name = g->name;
  impl->policy = g->policy;
  impl->group_created_ns = g->created_ns;
  m.group(g->slot)->members.fetch_add(1, std::memory_order_relaxed);
  impl->last_rejoin_ns = shm::monotonic_ns();
  impl->take_partitions(detail::take_free_partitions(m, g->slot, *slot));
  return Consumer(std::move(impl));
}

}  // namespace herald
