// Effectively-once consumption: remember the ids of recent events per
// partition and handle each id once. The window only needs the events a
// group can see again: those at or after its committed cursor (a member that
// dies redelivers from there), so a bounded window per partition suffices.
//
//   herald::IdempotentConsumer seen;
//   consumer.poll([&](const herald::EventView& e) {
//     if (!seen.first_time(e)) return;     // a redelivery: its effect is done
//     apply(e);
//   });
//
// In memory, the window covers redeliveries within this process (retries,
// rebalances back to it). For exactly-once across crashes, store the event
// id WITH its effect in the sink (one transaction) and, after a restart or
// when a partition is assigned, rebuild the window from the sink with
// remember(). See docs/DELIVERY.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <unordered_set>

#include "herald/event.hpp"

namespace herald {

class IdempotentConsumer {
 public:
  // `window` ids are kept per partition (the oldest are forgotten first).
  explicit IdempotentConsumer(std::size_t window = 1 << 16) : window_(window == 0 ? 1 : window) {}

  // True the first time an id is seen on its partition (it is remembered);
  // false for a redelivery.
  bool first_time(const EventView& e) { return first_time(e.partition(), e.id()); }
  bool first_time(std::uint32_t partition, const EventId& id) {
    Window& w = parts_[partition];
    if (!w.ids.insert(id).second) return false;
    w.order.push_back(id);
    if (w.order.size() > window_) {
      w.ids.erase(w.order.front());
      w.order.pop_front();
    }
    return true;
  }
  // Rebuilding from a sink that stores ids with effects.
  void remember(std::uint32_t partition, const EventId& id) { (void)first_time(partition, id); }
  // A partition revoked for good (its window would be stale when it returns).
  void forget(std::uint32_t partition) { parts_.erase(partition); }
  [[nodiscard]] std::size_t size(std::uint32_t partition) const {
    auto it = parts_.find(partition);
    return it == parts_.end() ? 0 : it->second.order.size();
  }

 private:
  struct IdHash {
    std::size_t operator()(const EventId& id) const noexcept {
      return static_cast<std::size_t>(id.hi * 0x9E3779B97F4A7C15ull ^ id.lo);
    }
  };
  struct Window {
    std::unordered_set<EventId, IdHash> ids;
    std::deque<EventId> order;
  };
  std::size_t window_;
  std::map<std::uint32_t, Window> parts_;
};

}  // namespace herald
