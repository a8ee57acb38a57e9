// Producers and readers as the daemon watches them: new slot owners get a
// pidfd; a dead producer's claim slots are repaired (shm/repair.cpp, the
// rule checked with SPIN) and the time from noticing the death to the
// partition flowing again is recorded per partition; a live producer holding
// a claim too long is reported, never aborted; dead readers' slots and
// waiter bits are reclaimed.
#include <algorithm>

#include "daemon/daemon.hpp"
#include "daemon/state.hpp"
#include "runtime/src/control.hpp"
#include "runtime/src/groups.hpp"
#include "shm/clock.hpp"
#include "shm/crash_point.hpp"
#include "shm/names.hpp"
#include "shm/repair.hpp"
#include "shm/slots.hpp"

namespace herald::daemon {

bool Daemon::watch(pid_t pid, std::uint64_t start_time) {
  if (pid <= 0) return false;
  if (pids_.watching(pid)) {
    // Owners are (pid, start time). The pid may be watched as another, live
    // process that reused it: then this (pid, start time) is a process that
    // died while nobody watched it (e.g. a producer that died while no
    // daemon ran, whose pid a member restored at start now has). Its slots
    // must be repaired now; no pidfd will ever tell us.
    const std::uint64_t known = pids_.start_time(pid);
    if (start_time != 0 && known != 0 && known != start_time && !shm::process_alive(pid, start_time)) {
      process_exited(pid, start_time);
      return false;
    }
    return true;
  }
  switch (pids_.add(pid, start_time)) {
    case PidWatch::Added::kWatching:
      return true;
    case PidWatch::Added::kPolling:
      log("out of file descriptors: watching pid " + std::to_string(pid) +
          " by polling (raise the daemon's RLIMIT_NOFILE)");
      return true;
    case PidWatch::Added::kGone:
      break;
  }
  process_exited(pid, start_time);  // already gone
  return false;
}

nlohmann::json Daemon::op_producer(const Peer& peer, const nlohmann::json& req) {
  const std::uint64_t id = control::get_u64_or(req, "id", 0);
  auto tname = control::get_string(req, "topic", shm::kMaxDlqTopicName + 1);
  if (!tname) return control::error_response(id, tname.error());
  auto t = topic(*tname);
  if (!t) return control::error_response(id, t.error());
  if (auto ok = may_use(peer, **t, true); !ok) return control::error_response(id, ok.error());
  watch(peer.pid, peer.start_time);
  return control::ok_response(id);
}

void Daemon::process_exited(pid_t pid, std::uint64_t start_time) {
  // Only what belongs to that process: a live process with the same pid and
  // another start time (the pid reused) keeps its members and slots.
  auto same = [&](std::uint64_t st) { return start_time == 0 || st == 0 || st == start_time; };
  std::vector<std::uint64_t> gone;
  for (const auto& [id, m] : members_)
    if (m->pid == pid && same(m->start_time)) gone.push_back(id);
  for (std::uint64_t id : gone) remove_member(id, "process exited");
  for (const auto& d : dead_)
    if (d->pid == pid && d->start_time == start_time) return;  // already queued
  auto d = std::make_unique<Dead>();
  d->pid = pid;
  d->start_time = start_time;
  d->noticed_ns = clock_();
  dead_.push_back(std::move(d));
  repair_dead_producers();
}

void Daemon::repair_dead_producers() {
  for (auto it = dead_.begin(); it != dead_.end();) {
    const Dead& d = **it;
    bool done = true;
    for (auto& [name, t] : topics_) {
      const shm::TopicMap& map = *t->map;
      const std::uint32_t slots = map.geometry().producer_slots;
      // Every slot of the dead process in this topic (the threads of one
      // process die together), taken over by CAS so no one else repairs it.
      std::uint64_t dead_mask = 0;
      std::vector<std::uint32_t> mine;
      for (std::uint32_t s = 0; s < slots; ++s) {
        shm::ProducerSlotLayout* ps = map.producer(s);
        std::uint64_t owner = ps->owner.load(std::memory_order_acquire);
        const bool ours = t->producers[s].owner == shm::kOwnerReclaiming &&
                          t->producers[s].start_time == d.start_time && owner == shm::kOwnerReclaiming;
        if (!ours) {
          if ((owner & 0xffffffffu) != static_cast<std::uint64_t>(d.pid) || owner == shm::kOwnerReclaiming) continue;
          const std::uint64_t st = ps->start_time.load(std::memory_order_relaxed);
          if (st != 0 && d.start_time != 0 && st != d.start_time) continue;  // a newer process with a recycled pid
          if (!ps->owner.compare_exchange_strong(owner, shm::kOwnerReclaiming, std::memory_order_acq_rel)) continue;
          HERALD_CRASH_POINT("repair.slot_taken");  // heraldd killed holding a dead producer's slot
          t->producers[s] = {shm::kOwnerReclaiming, d.start_time};
        }
        dead_mask |= 1ull << s;
        mine.push_back(s);
      }
      for (std::uint32_t s : mine) {
        std::vector<std::uint32_t> touched;
        for (std::uint32_t p = 0; p < map.partitions(); ++p)
          if ((map.partition(p).claims[s].word.load(std::memory_order_acquire) & shm::kClaimStateMask) != 0)
            touched.push_back(p);
        if (!shm::repair_producer_slot(map, s, dead_mask)) {
          done = false;  // a live producer races for the same position: retry on the next pass
          continue;
        }
        t->producers[s] = {};
        const std::uint64_t took = clock_() - d.noticed_ns;
        for (std::uint32_t p : touched) {
          shm::PartitionLayout* part = map.partition(p).part;
          part->last_repair_ns.store(took, std::memory_order_relaxed);
          if (took > part->max_repair_ns.load(std::memory_order_relaxed))
            part->max_repair_ns.store(took, std::memory_order_relaxed);
          log("repaired the claim of dead producer pid " + std::to_string(d.pid) + " on topic '" + name +
              "' partition " + std::to_string(p) + " in " + std::to_string(took / 1000) + " us");
        }
      }
    }
    it = done ? dead_.erase(it) : std::next(it);
  }
}

// A producer slot another repairer took over (kOwnerReclaiming) and never
// released: that repairer died half-way — a previous heraldd killed in the
// middle of a repair, or a client killed while taking over a dead
// producer's slot. Nobody else will ever finish it, and while its claim
// stands it holds the partition's unfinished watermark: one lap later every
// producer is stuck. A live repairer holds the mark only for one
// non-blocking pass, so a slot still taken after stall_report_ns is an
// orphan; the repair is idempotent, so this daemon does it again.
void Daemon::adopt_orphan(TopicState& t, std::uint32_t s, std::uint64_t now) {
  TopicState::SlotOwner& so = t.producers[s];
  if (so.orphan_since_ns == 0) {
    so.orphan_since_ns = now;
    return;
  }
  if (now - so.orphan_since_ns < cfg_.stall_report_ns) return;
  const shm::TopicMap& map = *t.map;
  // The threads of one dead process were taken over together: every
  // orphan of this topic counts as dead when deciding between candidates.
  std::uint64_t dead_mask = 0;
  for (std::uint32_t o = 0; o < map.geometry().producer_slots; ++o)
    if (map.producer(o)->owner.load(std::memory_order_acquire) == shm::kOwnerReclaiming &&
        t.producers[o].owner != shm::kOwnerReclaiming)
      dead_mask |= 1ull << o;
  if (!shm::repair_producer_slot(map, s, dead_mask)) return;  // a live producer races for it: next scan
  so = {};
  log("finished the repair of producer slot " + std::to_string(s) + " of topic '" + t.rec.name +
      "', left half-done by a repairer that died");
}

void Daemon::scan_slots() {
  const std::uint64_t now = clock_();
  for (auto& [name, tp] : topics_) {
    TopicState& t = *tp;
    const shm::TopicMap& map = *t.map;
    const std::uint32_t slots = map.geometry().producer_slots;
    // A claim reported as stalled is over (finished, or its producer gone):
    // withdraw the report, unless a newer one replaced it.
    auto end_stall = [&](std::uint32_t p, std::uint32_t s) {
      TopicState::ClaimSeen& seen = t.claims[std::size_t{p} * slots + s];
      if (seen.reported) {
        std::uint64_t mine = seen.pid;
        map.partition(p).part->stalled_pid.compare_exchange_strong(mine, 0, std::memory_order_relaxed);
      }
      seen = {};
    };
    // Producers: watch new owners; a dead one is repaired right away.
    for (std::uint32_t s = 0; s < slots; ++s) {
      shm::ProducerSlotLayout* ps = map.producer(s);
      const std::uint64_t owner = ps->owner.load(std::memory_order_acquire);
      if (owner == 0 || owner == shm::kOwnerReclaiming) {
        // Released (its producer finished and went away) or being repaired:
        // a stall reported for its claims is over. (Without this, a holder
        // that committed and exited between two scans left its pid in
        // stalled_pid for good.)
        for (std::uint32_t p = 0; p < map.partitions(); ++p) end_stall(p, s);
        if (owner == 0 && t.producers[s].owner != shm::kOwnerReclaiming) t.producers[s] = {};
        if (owner == shm::kOwnerReclaiming && t.producers[s].owner != shm::kOwnerReclaiming) adopt_orphan(t, s, now);
        continue;
      }
      const std::uint64_t start = ps->start_time.load(std::memory_order_relaxed);
      if (t.producers[s].owner != owner || t.producers[s].start_time != start) {
        t.producers[s] = {owner, start};
        watch(static_cast<pid_t>(owner & 0xffffffffu), start);
      }
      // A claim held past stall_report_ns is reported with its pid, never
      // aborted: its owner is alive and may still write it.
      for (std::uint32_t p = 0; p < map.partitions(); ++p) {
        TopicState::ClaimSeen& seen = t.claims[std::size_t{p} * slots + s];
        const std::uint64_t w = map.partition(p).claims[s].word.load(std::memory_order_acquire);
        if ((w & shm::kClaimStateMask) == 0) {
          end_stall(p, s);
          continue;
        }
        if (seen.word != w) {
          end_stall(p, s);  // a new claim: the one we watched (and maybe reported) is done
          seen = {w, now, 0, false};
          continue;
        }
        if (!seen.reported && now - seen.since_ns > cfg_.stall_report_ns) {
          seen.reported = true;
          seen.pid = owner & 0xffffffffu;
          shm::PartitionLayout* part = map.partition(p).part;
          part->stalled_pid.store(owner & 0xffffffffu, std::memory_order_relaxed);
          part->stalled_position.store(w & ~shm::kClaimStateMask, std::memory_order_relaxed);
          part->stalled_claims.fetch_add(1, std::memory_order_relaxed);
          log("producer pid " + std::to_string(owner & 0xffffffffu) + " has held a claim on topic '" + name +
              "' partition " + std::to_string(p) + " at position " + std::to_string(w & ~shm::kClaimStateMask) +
              " for over " + std::to_string(cfg_.stall_report_ns / 1'000'000) +
              " ms (reported, not aborted: its owner lives)");
        }
      }
    }
    // Readers: a dead reader's slot and waiter bits are reclaimed; a
    // daemonless member's partitions are freed for the group.
    const std::uint32_t readers = map.state_geometry().reader_slots;
    for (std::uint32_t r = 0; r < readers; ++r) {
      shm::ReaderLayout* rd = map.reader(r);
      std::uint64_t owner = rd->owner.load(std::memory_order_acquire);
      if (owner == 0 || owner == shm::kOwnerReclaiming) continue;
      const auto pid = static_cast<pid_t>(owner & 0xffffffffu);
      if (shm::process_alive(pid, rd->start_time.load(std::memory_order_relaxed))) continue;
      bool member = false;
      for (const auto& [id, m] : members_)
        if (m->topic == name && m->reader == r) member = true;
      if (member) continue;  // remove_member reclaims it
      const std::uint32_t g = rd->group.load(std::memory_order_relaxed);
      if (!rd->owner.compare_exchange_strong(owner, shm::kOwnerReclaiming, std::memory_order_acq_rel)) continue;
      if (g != 0 && g - 1 < map.state_geometry().group_slots) {
        for (std::uint32_t p = 0; p < map.partitions(); ++p) {
          std::uint32_t mine = r + 1;
          if (map.group_partition(g - 1, p)->owner_reader.compare_exchange_strong(mine, 0)) {
            auto gs = groups_.find({name, g - 1});
            if (gs != groups_.end()) gs->second->dirty = true;
          }
        }
      }
      shm::reclaim_reader_slot(map, r);
    }
    // Groups created by daemonless clients since we started.
    restore_groups(t);
  }
}

}  // namespace herald::daemon
