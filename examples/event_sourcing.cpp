// Event sourcing (docs/PATTERNS.md): an account's state is the fold of its
// events, and the log is the source of truth. The balances are rebuilt by
// replaying the log, as of now or as of any past moment; a snapshot (the
// state plus, per partition, the position it covers) lets a restart replay
// only what came after it. Run: ./event_sourcing [bus]
#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <string_view>

#include <herald/herald.hpp>

#include "make_topic.hpp"

namespace {

constexpr std::uint64_t kSecond = 1'000'000'000;
constexpr std::uint64_t kNov1 = 1793491200 * kSecond;  // 2026-11-01T00:00:00Z
constexpr std::uint64_t day(int n) { return kNov1 + static_cast<std::uint64_t>(n - 1) * 86400 * kSecond; }

struct Account {
  long long balance = 0;
  int events = 0;
  friend bool operator==(const Account&, const Account&) = default;
};
using Balances = std::map<std::string, Account, std::less<>>;

// The one place state changes: applying an event to the state.
void apply(Balances& state, const herald::EventView& e) {
  Account& a = state[std::string(e.key())];
  const long long amount = std::stoll(std::string(e.payload_text()));
  if (e.type() == "Deposited") a.balance += amount;
  if (e.type() == "Withdrawn") a.balance -= amount;
  ++a.events;
}

// State as of a moment, with the positions it covers: a snapshot.
struct Snapshot {
  Balances state;
  std::map<std::uint32_t, std::uint64_t> next;  // partition -> the position after its last folded event
  std::uint64_t replayed = 0;                   // events this replay applied
};

// Replays the log from `from` (partitions it does not name: from the
// earliest retained event) until the reader is caught up, applying the events
// whose time is at or before `as_of`. A group-less reader: it commits
// nothing and never holds producers back.
Snapshot replay(herald::Bus& bus, Snapshot from, std::uint64_t as_of = UINT64_MAX) {
  auto reader = bus.consumer("accounts", {.start = herald::Offset::earliest()}).value();
  for (const auto& [partition, position] : from.next) reader.seek(partition, herald::Offset::at(position)).value();
  from.replayed = 0;
  for (;;) {
    const std::size_t n = reader
                              .poll([&](const herald::EventView& e) {
                                if (e.time_ns() > as_of) return;
                                apply(from.state, e);
                                ++from.replayed;
                              },
                                    1024)  // no timeout: what is readable now
                              .value();
    if (n == 0) break;  // caught up
  }
  for (std::uint32_t p : reader.assignment()) from.next[p] = reader.position(p);
  return from;
}

void print(const char* title, const Balances& state) {
  std::printf("%s:", title);
  for (const auto& [account, a] : state) std::printf(" %s=%lld (%d events)", account.c_str(), a.balance, a.events);
  std::printf("\n");
}

void record(herald::Producer& out, std::string_view account, std::string_view type, long long amount,
            std::uint64_t time_ns) {
  const std::string payload = std::to_string(amount);
  // The account is the key: all of an account's events share a partition,
  // so they are replayed in the order they happened.
  out.publish({.key = account, .type = type, .payload = payload, .time_ns = time_ns}).value();
}

}  // namespace

int main(int argc, char** argv) {
  auto bus = herald::Bus::attach(argc > 1 ? argv[1] : "").value();
  if (!make_topic(bus, "accounts", {.partitions = 2, .ring_bytes = 1 << 20})) return 1;
  auto out = bus.producer("accounts").value();

  // Five days of business. The event time is when it happened (here set
  // explicitly; by default the time of publishing).
  record(out, "alice", "Deposited", 100, day(1));
  record(out, "bob", "Deposited", 50, day(1) + 3600 * kSecond);
  record(out, "alice", "Withdrawn", 30, day(2));
  record(out, "carol", "Deposited", 500, day(3));
  record(out, "bob", "Withdrawn", 20, day(4));
  record(out, "alice", "Deposited", 5, day(5));

  const Snapshot now = replay(bus, {});
  print("balances now", now.state);

  // Time travel: the same fold, stopped at the end of day 3.
  print("balances at the end of Nov 3", replay(bus, {}, day(4) - 1).state);

  // The audit trail of one account: its partition, in order.
  std::printf("alice's history:");
  auto reader = bus.consumer("accounts", {}).value();
  while (reader.poll([](const herald::EventView& e) {
    if (e.key() == "alice") std::printf(" %.*s %.*s", static_cast<int>(e.type().size()), e.type().data(),
                                        static_cast<int>(e.payload_text().size()), e.payload_text().data());
  }, 1024).value() > 0) {
  }
  std::printf("\n");

  // Day 6 happens after the snapshot `now` was taken. A restart folds in
  // only the new events, and ends where a full replay ends.
  record(out, "bob", "Deposited", 70, day(6));
  record(out, "carol", "Withdrawn", 125, day(6) + 60 * kSecond);
  const Snapshot resumed = replay(bus, now);
  const Snapshot full = replay(bus, {});
  std::printf("resumed from the snapshot: replayed %llu events instead of %llu\n",
              static_cast<unsigned long long>(resumed.replayed), static_cast<unsigned long long>(full.replayed));
  print("balances after the restart", resumed.state);
  if (resumed.state != full.state) {
    std::fprintf(stderr, "the snapshot and a full replay disagree\n");
    return 1;
  }
  return 0;
}
