// Effectively-once consumption: remember the ids of recent events per
// partition and handle each id once. The window only needs the events a
// group can see again: those at or after its committed cursor (a member that
// dies redelivers from there), so a bounded window per partition suffices.
//
//   herald::IdempotentConsumer seen;
//   consumer.poll([&](const herald::EventView& e) {
//     return seen.once(e, [&] { return apply(e); });  // apply: void, bool or HandlerResult
//   });
//
// once() remembers the id only after the effect succeeded, so a failed
// event is retried (and dead-lettered in the end) like any other. To keep
// the id elsewhere, ask contains() first and remember() after the effect.
//
// In memory, the window covers redeliveries within this process (retries,
// rebalances back to it). For exactly-once across crashes, store the event
// id WITH its effect in the sink (one transaction) and, after a restart or
// when a partition is assigned, rebuild the window from the sink with
// remember(). See docs/DELIVERY.md and examples/effectively_once.cpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <type_traits>
#include <unordered_set>

#include "herald/consumer.hpp"
#include "herald/event.hpp"

namespace herald {

class IdempotentConsumer {
 public:
  // `window` ids are kept per partition (the oldest are forgotten first).
  explicit IdempotentConsumer(std::size_t window = 1 << 16) : window_(window == 0 ? 1 : window) {}

  // Runs effect() unless the event's effect is done already; remembers the
  // id only when effect() succeeds (returns, or returns true, or a
  // successful HandlerResult). Returns what a poll handler returns, in
  // effect()'s own terms (bool for void and bool, else HandlerResult), so
  // poll turns a failure into a reason as it does for any handler: success
  // for a redelivery, else effect()'s verdict. An exception effect() throws
  // passes through (poll counts it as a failure) and nothing is remembered.
  template <class F>
  auto once(const EventView& e, F&& effect) {
    using R = std::invoke_result_t<F&>;
    if constexpr (std::is_void_v<R> || std::is_same_v<R, bool>) {
      if (contains(e)) return true;  // a redelivery: its effect is done
      if constexpr (std::is_void_v<R>) {
        effect();
      } else if (!effect()) {
        return false;
      }
      remember(e);
      return true;
    } else {
      if (contains(e)) return HandlerResult::success();
      HandlerResult r(effect());
      if (r.ok) remember(e);
      return r;
    }
  }

  // Whether the event's id is remembered on its partition (its effect is done).
  [[nodiscard]] bool contains(const EventView& e) const { return contains(e.partition(), e.id()); }
  [[nodiscard]] bool contains(std::uint32_t partition, const EventId& id) const {
    auto it = parts_.find(partition);
    return it != parts_.end() && it->second.ids.count(id) != 0;
  }

  // Remembers an id: after its effect is done, or when rebuilding the
  // window from a sink that stores ids with effects.
  void remember(const EventView& e) { remember(e.partition(), e.id()); }
  void remember(std::uint32_t partition, const EventId& id) { (void)first_time(partition, id); }

  // True the first time an id is seen on its partition, and remembers it AT
  // ONCE: only for effects that cannot fail. If the effect may fail, use
  // once() (or contains() and remember()): an id remembered before a failed
  // effect makes its retry look like a redelivery, and the event is acked
  // without its effect.
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
