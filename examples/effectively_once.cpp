// Effectively-once (docs/PATTERNS.md, docs/DELIVERY.md): at-least-once
// delivery plus idempotence on both sides of a pipeline stage.
// - The stage (consume, transform, produce) publishes through an idempotent
//   producer per input partition, with sequence = input position + 1, so an
//   input delivered again after a crash maps to a sequence already written
//   and its output is not written twice.
// - The sink stores each event's id with its effect (one "transaction"), and
//   after a restart rebuilds its IdempotentConsumer window from what it
//   stored, so a redelivered event has no second effect.
// Both crash once here (they drop their work without committing), and the
// outputs still hold every event once. Run: ./effectively_once [bus]
#include <cstdio>
#include <map>
#include <string>

#include <herald/herald.hpp>

#include "make_topic.hpp"
#include <herald/idempotent.hpp>

namespace {

constexpr std::uint32_t kPartitions = 2;

// One pass of the stage "fx": converts each payment to cents of EUR. It
// commits its input only if `commit` (a crash before the commit otherwise).
std::size_t run_stage(herald::Bus& bus, bool commit, std::size_t* duplicates) {
  auto in = bus.consumer("payments", {.group = "fx", .commit_mode = herald::CommitMode::kManual}).value();
  std::map<std::uint32_t, herald::Producer> out;  // one per input partition
  for (std::uint32_t p = 0; p < kPartitions; ++p)
    out.emplace(p, bus.producer("payments-eur", {.source = "fx", .producer_id = 0xF0000 + p}).value());
  std::size_t handled = 0;
  while (in.poll([&](const herald::EventView& e) {
    const std::string cents = std::to_string(std::stoll(std::string(e.payload_text())) * 92);
    auto r = out.at(e.partition())
                 .publish({.key = e.key(), .type = "PaymentInEur", .payload = cents,
                           .correlation_id = e.correlation_id(), .sequence = e.position() + 1})
                 .value();
    if (r.duplicate) ++*duplicates;  // written before the crash
    ++handled;
  }, 256).value() > 0) {
  }
  if (commit) in.commit().value();
  return handled;
}

// The sink's "database": effects and the ids that made them, written together.
struct Ledger {
  std::map<std::string, long long> balance;
  std::map<std::string, std::uint32_t> applied;  // event id -> partition
};

std::size_t run_sink(herald::Bus& bus, Ledger& db, bool commit, std::size_t* skipped) {
  auto in = bus.consumer("payments-eur", {.group = "ledger", .commit_mode = herald::CommitMode::kManual}).value();
  herald::IdempotentConsumer seen;
  for (const auto& [id, partition] : db.applied) seen.remember(partition, herald::EventId::parse(id).value());
  std::size_t handled = 0;
  while (in.poll([&](const herald::EventView& e) {
    ++handled;
    if (seen.contains(e)) {
      ++*skipped;  // its effect is in the ledger already
      return;
    }
    // The effect and its id, in one transaction of the sink; remembered
    // only once done (a failed effect is retried, not taken for done).
    db.balance[std::string(e.key())] += std::stoll(std::string(e.payload_text()));
    db.applied[e.id().to_string()] = e.partition();
    seen.remember(e);
  }, 256).value() > 0) {
  }
  if (commit) in.commit().value();
  return handled;
}

}  // namespace

int main(int argc, char** argv) {
  auto bus = herald::Bus::attach(argc > 1 ? argv[1] : "").value();
  if (!make_topic(bus, "payments", {.partitions = kPartitions}) || !make_topic(bus, "payments-eur", {.partitions = kPartitions}))
    return 1;
  auto in = bus.producer("payments").value();
  for (const char* account : {"acct-1", "acct-2", "acct-3", "acct-1"})
    in.publish({.key = account, .type = "Payment", .payload = "100"}).value();

  std::size_t duplicates = 0;
  std::size_t first = run_stage(bus, /*commit=*/false, &duplicates);  // crashes before its commit
  std::size_t again = run_stage(bus, /*commit=*/true, &duplicates);   // restarted: the inputs come again
  std::printf("stage: handled %zu, then %zu again after its crash; %zu outputs not written twice\n", first, again,
              duplicates);

  Ledger db;
  std::size_t skipped = 0;
  first = run_sink(bus, db, /*commit=*/false, &skipped);
  again = run_sink(bus, db, /*commit=*/true, &skipped);
  std::printf("sink: handled %zu, then %zu again after its crash; %zu redeliveries had no effect\n", first, again,
              skipped);

  // One output per input, however many runs on this bus.
  std::uint64_t inputs = 0, outputs = 0;
  for (const auto& p : bus.describe_topic("payments").value().partition_info) inputs += p.events;
  for (const auto& p : bus.describe_topic("payments-eur").value().partition_info) outputs += p.events;
  std::printf("payments-eur holds %llu events; ledger:", static_cast<unsigned long long>(outputs));
  for (const auto& [account, cents] : db.balance) std::printf(" %s=%lld", account.c_str(), cents);
  std::printf("\n");
  return outputs == inputs && db.balance["acct-1"] == 18400 ? 0 : 1;
}
