#include "shm/registry.hpp"

#include <sched.h>
#include <unistd.h>

#include <cstring>

#include "shm/clock.hpp"
#include "shm/names.hpp"
#include "shm/topic_map.hpp"

namespace herald::shm {

Result<void> validate_registry_segment(const std::byte* base, std::uint64_t bytes) {
  const RegistryGeometry g;
  if (bytes != g.total_bytes)
    return fail(Errc::kCorrupt, "registry is " + std::to_string(bytes) + " bytes, expected " +
                                    std::to_string(g.total_bytes));
  const auto* h = reinterpret_cast<const RegistryHeaderLayout*>(base);
  if (h->segment.magic != kMagicRegistry) return fail(Errc::kCorrupt, "registry has the wrong magic");
  // A1: pairs with the creator's release store of the version.
  const std::uint32_t v = h->segment.layout_version.load(std::memory_order_acquire);
  if (v == 0) return fail(Errc::kNotReady, "registry is still being created");
  if (v != kLayoutVersion)
    return fail(Errc::kVersionMismatch, "registry has layout version " + std::to_string(v) +
                                            ", this build reads version " + std::to_string(kLayoutVersion));
  if (h->segment.kind != static_cast<std::uint32_t>(SegmentKind::kRegistry) || h->topic_slots != g.topic_slots ||
      h->topics_off != g.topics_off || h->segment.segment_bytes != bytes)
    return fail(Errc::kCorrupt, "registry header disagrees with its geometry");
  return {};
}

Result<Registry> Registry::open(const std::string& bus) { return open_mapped(bus, Access::kReadWrite); }

Result<Registry> Registry::open_read_only(const std::string& bus) { return open_mapped(bus, Access::kReadOnly); }

Result<Registry> Registry::open_mapped(const std::string& bus, Access access) {
  if (auto r = validate_bus_name(bus); !r) return fail(std::move(r).error());
  Registry reg;
  reg.bus_ = bus;
  // A registry being created by another process is kNotReady for a moment:
  // retry briefly rather than fail.
  for (int attempt = 0;; ++attempt) {
    auto seg = Segment::open(registry_segment_name(bus), access);
    if (!seg) {
      if (seg.error().code == Errc::kNotFound)
        return fail(Errc::kNotFound, "bus '" + bus + "' does not exist (no /dev/shm/" + registry_segment_name(bus) + ")");
      return fail(std::move(seg).error());
    }
    auto ok = validate_registry_segment(seg->data(), seg->size());
    if (ok) {
      reg.seg_ = std::move(seg).value();
      reg.seg_.release_handle();  // mapped: the fd is not needed
      reg.read_only_ = access == Access::kReadOnly;
      return reg;
    }
    if (ok.error().code != Errc::kNotReady || attempt > 2000)
      return fail(std::move(ok).error().with_context("bus '" + bus + "'"));
    sched_yield();
  }
}

Result<Registry> Registry::open_or_create(const std::string& bus, unsigned mode) {
  if (auto r = validate_bus_name(bus); !r) return fail(std::move(r).error());
  const RegistryGeometry g;
  auto seg = Segment::create(registry_segment_name(bus), g.total_bytes, SegmentPerms{mode, -1});
  if (!seg) {
    if (seg.error().code == Errc::kAlreadyExists) return open(bus);
    return fail(std::move(seg).error().with_context("create bus '" + bus + "'"));
  }
  auto* h = reinterpret_cast<RegistryHeaderLayout*>(seg->data());
  h->segment.magic = kMagicRegistry;
  h->segment.kind = static_cast<std::uint32_t>(SegmentKind::kRegistry);
  h->segment.segment_bytes = g.total_bytes;
  h->segment.incarnation = random_u64();
  h->segment.created_ns = realtime_ns();
  h->segment.creator_pid = static_cast<std::uint32_t>(::getpid());
  h->topic_slots = g.topic_slots;
  h->topics_off = g.topics_off;
  h->next_incarnation.store(1, std::memory_order_relaxed);
  // R0: the version last.
  h->segment.layout_version.store(kLayoutVersion, std::memory_order_release);
  Registry reg;
  reg.bus_ = bus;
  reg.seg_ = std::move(seg).value();
  reg.seg_.release_handle();
  return reg;
}

Result<void> Registry::remove(const std::string& bus) { return Segment::remove(registry_segment_name(bus)); }

std::uint64_t Registry::topics_epoch() const noexcept {
  return header()->topics_epoch.load(std::memory_order_acquire);
}

std::optional<TopicRecord> Registry::read_entry(std::uint32_t i) const {
  const TopicEntryLayout* e = entry(i);
  // A writer holds seq odd for microseconds; one killed mid-write leaves it
  // odd until the next write of the slot. Give up after 100 ms: the entry
  // is unreadable (not found) rather than every reader hanging.
  std::uint64_t give_up = 0;
  for (std::uint32_t attempt = 0;; ++attempt) {
    // Seqlock read: seq (acquire), fields (relaxed atomics), acquire fence,
    // seq again. Pairs with the writer's odd store, fields, release store.
    const std::uint32_t s1 = e->seq.load(std::memory_order_acquire);
    if (s1 & 1) {
      if (attempt == 64) give_up = monotonic_ns() + 100'000'000ull;
      if (attempt > 64 && (attempt & 63) == 0 && monotonic_ns() > give_up) return std::nullopt;
      sched_yield();
      continue;
    }
    if (e->state.load(std::memory_order_relaxed) != kTopicActive) return std::nullopt;
    TopicRecord r;
    r.slot = i;
    std::uint32_t len = e->name_len.load(std::memory_order_relaxed);
    char name[kTopicNameCapacity];
    for (std::uint32_t w = 0; w < kTopicNameCapacity / 8; ++w) {
      const std::uint64_t word = e->name_words[w].load(std::memory_order_relaxed);
      std::memcpy(name + w * 8, &word, 8);
    }
    r.incarnation = e->incarnation.load(std::memory_order_relaxed);
    r.params.partitions = e->partitions.load(std::memory_order_relaxed);
    r.params.ring_bytes = e->ring_bytes.load(std::memory_order_relaxed);
    r.params.max_event = e->max_event.load(std::memory_order_relaxed);
    r.params.flags = e->flags.load(std::memory_order_relaxed);
    r.mode = e->mode.load(std::memory_order_relaxed);
    const std::uint32_t gid = e->gid.load(std::memory_order_relaxed);
    r.gid = gid == ~0u ? -1 : static_cast<std::int64_t>(gid);
    r.default_policy = static_cast<GroupPolicy>(e->default_policy.load(std::memory_order_relaxed));
    r.created_ns = e->created_ns.load(std::memory_order_relaxed);
    r.lagout_grace_ms = e->lagout_grace_ms.load(std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_acquire);
    if (e->seq.load(std::memory_order_relaxed) != s1) continue;
    if (len > kTopicNameCapacity) return std::nullopt;  // garbage: not a usable entry
    r.name.assign(name, len);
    return r;
  }
}

std::optional<TopicRecord> Registry::find(std::string_view topic) const {
  for (std::uint32_t i = 0; i < kTopicSlots; ++i) {
    const TopicEntryLayout* e = entry(i);
    if (e->state.load(std::memory_order_relaxed) != kTopicActive) continue;
    if (e->name_len.load(std::memory_order_relaxed) != topic.size()) continue;
    auto r = read_entry(i);
    if (r && r->name == topic) return r;
  }
  return std::nullopt;
}

std::vector<TopicRecord> Registry::list() const {
  std::vector<TopicRecord> out;
  for (std::uint32_t i = 0; i < kTopicSlots; ++i) {
    if (entry(i)->state.load(std::memory_order_relaxed) != kTopicActive) continue;
    if (auto r = read_entry(i)) out.push_back(std::move(*r));
  }
  return out;
}

namespace {
void write_begin(TopicEntryLayout* e) {
  // Odd while written. A slot left odd by a writer that died mid-write
  // stays odd (+2), so readers never take the rewrite for a stable entry.
  const std::uint32_t s = e->seq.load(std::memory_order_relaxed);
  e->seq.store(s + ((s & 1) != 0 ? 2 : 1), std::memory_order_relaxed);  // odd
  // Release fence: the odd seq is visible before any field store below.
  std::atomic_thread_fence(std::memory_order_release);
}
void write_end(TopicEntryLayout* e) {
  // Release: the fields are visible before the even seq.
  e->seq.store(e->seq.load(std::memory_order_relaxed) + 1, std::memory_order_release);
}
}  // namespace

Result<TopicRecord> Registry::insert(TopicRecord rec) {
  if (read_only_)
    return fail(Errc::kPermissionDenied, "the registry of bus '" + bus_ +
                                             "' is its owner's: only the owner or root may create topics on it");
  if (find(rec.name)) return fail(Errc::kAlreadyExists, "topic '" + rec.name + "' already exists");
  if (rec.name.size() > kTopicNameCapacity) return fail(Errc::kInvalidArgument, "topic name too long");
  for (std::uint32_t i = 0; i < kTopicSlots; ++i) {
    TopicEntryLayout* e = entry(i);
    if (e->state.load(std::memory_order_relaxed) != kTopicFree) continue;
    rec.slot = i;
    rec.incarnation = header()->next_incarnation.fetch_add(1, std::memory_order_relaxed) ^
                      (header()->segment.incarnation << 20);  // unique per bus life, and across re-created buses
    if (rec.incarnation == 0) rec.incarnation = 1;
    rec.created_ns = realtime_ns();
    write_begin(e);
    e->name_len.store(static_cast<std::uint32_t>(rec.name.size()), std::memory_order_relaxed);
    char name[kTopicNameCapacity] = {};
    std::memcpy(name, rec.name.data(), rec.name.size());
    for (std::uint32_t w = 0; w < kTopicNameCapacity / 8; ++w) {
      std::uint64_t word = 0;
      std::memcpy(&word, name + w * 8, 8);
      e->name_words[w].store(word, std::memory_order_relaxed);
    }
    e->incarnation.store(rec.incarnation, std::memory_order_relaxed);
    e->partitions.store(rec.params.partitions, std::memory_order_relaxed);
    e->ring_bytes.store(rec.params.ring_bytes, std::memory_order_relaxed);
    e->max_event.store(rec.params.max_event, std::memory_order_relaxed);
    e->flags.store(rec.params.flags, std::memory_order_relaxed);
    e->mode.store(rec.mode, std::memory_order_relaxed);
    e->gid.store(rec.gid < 0 ? ~0u : static_cast<std::uint32_t>(rec.gid), std::memory_order_relaxed);
    e->default_policy.store(static_cast<std::uint32_t>(rec.default_policy), std::memory_order_relaxed);
    e->created_ns.store(rec.created_ns, std::memory_order_relaxed);
    e->lagout_grace_ms.store(rec.lagout_grace_ms, std::memory_order_relaxed);
    e->state.store(kTopicActive, std::memory_order_relaxed);
    write_end(e);
    header()->topics_epoch.fetch_add(1, std::memory_order_release);
    return rec;
  }
  return fail(Errc::kLimit, "bus '" + bus_ + "' already has " + std::to_string(kTopicSlots) + " topics");
}

Result<void> Registry::erase(std::string_view topic, std::uint64_t incarnation) {
  if (read_only_)
    return fail(Errc::kPermissionDenied, "the registry of bus '" + bus_ +
                                             "' is its owner's: only the owner or root may delete topics from it");
  auto r = find(topic);
  if (!r || r->incarnation != incarnation)
    return fail(Errc::kNotFound, "topic '" + std::string(topic) + "' does not exist");
  TopicEntryLayout* e = entry(r->slot);
  write_begin(e);
  e->state.store(kTopicFree, std::memory_order_relaxed);
  write_end(e);
  header()->topics_epoch.fetch_add(1, std::memory_order_release);
  return {};
}

}  // namespace herald::shm
