// heraldd's administrative requests in process: group reset (refused while
// members live, a plan without execute) and delete, permission checks from
// the peer's credentials, stalled-claim reports, and malformed requests —
// each answered with an error while the daemon carries on.
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "herald/herald.hpp"
#include "runtime/src/groups.hpp"
#include "tests/daemon/daemon_fixture.hpp"

namespace herald::test {
namespace {

class DaemonAdminTest : public DaemonFixture {
 protected:
  // A daemonless producer of this process (no daemon socket answers).
  Producer producer(const std::string& topic) {
    auto bus = Bus::attach(guard_.bus());
    EXPECT_TRUE(bus) << bus.error().message();
    bus_ = std::make_unique<Bus>(std::move(bus).value());
    auto p = bus_->producer(topic, {.deadline = std::chrono::nanoseconds(0)});
    EXPECT_TRUE(p) << p.error().message();
    return std::move(p).value();
  }
  std::unique_ptr<Bus> bus_;
};

TEST_F(DaemonAdminTest, ResetIsRefusedWhileMembersLiveAndOtherwisePlansUnlessExecuted) {
  auto m = create_topic("t", 2);
  Producer prod = producer("t");
  std::vector<std::uint64_t> positions;
  const std::string body(200, 'e');  // 256-byte records: position + 64 is inside one
  for (int i = 0; i < 10; ++i) positions.push_back(prod.publish({.payload = body, .partition = 0})->position);
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(prod.publish({.payload = body, .partition = 1}));
  const std::uint32_t ra = reader(*m);
  const std::uint64_t a = join(1, "t", "g", ra);
  const std::uint64_t c0 = cursor(*m, 0), c1 = cursor(*m, 1);
  EXPECT_EQ(shm::cursor_pos(c0), 0u);

  nlohmann::json r = call(2, {{"op", "reset_group"}, {"topic", "t"}, {"group", "g"}, {"to", "latest"}, {"execute", true}});
  EXPECT_FALSE(r.value("ok", true)) << r.dump();
  EXPECT_EQ(r.value("code", ""), "busy");
  EXPECT_NE(r.value("error", "").find("live members"), std::string::npos) << r.dump();
  EXPECT_EQ(cursor(*m, 0), c0);

  // Without execute: the plan, and nothing changes.
  r = ok(2, {{"op", "reset_group"}, {"topic", "t"}, {"group", "g"}, {"to", "latest"}});
  EXPECT_FALSE(r.value("executed", true));
  ASSERT_TRUE(r["plan"].is_array());
  ASSERT_EQ(r["plan"].size(), 2u);
  for (std::uint32_t p = 0; p < 2; ++p) {
    EXPECT_EQ(r["plan"][p]["partition"], p);
    EXPECT_EQ(r["plan"][p]["from"], 0u);
    EXPECT_EQ(r["plan"][p]["to"], shm::load_tail(m->partition(p)));
  }
  EXPECT_EQ(cursor(*m, 0), c0);
  EXPECT_EQ(cursor(*m, 1), c1);

  r = call(2, {{"op", "delete_group"}, {"topic", "t"}, {"group", "g"}});
  EXPECT_EQ(r.value("code", ""), "busy") << r.dump();

  ok(1, {{"op", "leave"}, {"member_id", a}});
  // No members: executed, with a new generation (anyone still holding the
  // old cursor is fenced).
  r = ok(2, {{"op", "reset_group"}, {"topic", "t"}, {"group", "g"}, {"to", "latest"}, {"execute", true}});
  EXPECT_TRUE(r.value("executed", false));
  for (std::uint32_t p = 0; p < 2; ++p) {
    EXPECT_EQ(shm::cursor_pos(cursor(*m, p)), shm::load_tail(m->partition(p)));
    EXPECT_EQ(gen(*m, p), shm::cursor_gen(p == 0 ? c0 : c1) + 1);
  }
  // Back to a position on one partition: the gate goes down by the
  // Disruptor rule (a floor at tail).
  r = ok(2, {{"op", "reset_group"}, {"topic", "t"}, {"group", "g"}, {"to", "position"}, {"value", positions[3]},
             {"partition", 0}, {"execute", true}});
  EXPECT_EQ(shm::cursor_pos(cursor(*m, 0)), positions[3]);
  EXPECT_EQ(m->group_partition(group_slot_, 0)->gate_floor.load(), shm::load_tail(m->partition(0)));
  EXPECT_EQ(shm::cursor_pos(cursor(*m, 1)), shm::load_tail(m->partition(1))) << "only partition 0 was reset";
  // A position that is not an event boundary is refused with the reason.
  r = call(2, {{"op", "reset_group"}, {"topic", "t"}, {"group", "g"}, {"to", "position"}, {"value", positions[3] + 64},
               {"execute", true}});
  EXPECT_EQ(r.value("code", ""), "invalid-argument") << r.dump();
}

// A reset that cannot be done on every partition it names changes none.
TEST_F(DaemonAdminTest, ResetThatFailsOnOnePartitionChangesNoPartition) {
  auto m = create_topic("t", 2);
  Producer prod = producer("t");
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(prod.publish({.payload = "e", .partition = 0}));  // 64-byte records
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(prod.publish({.payload = std::string(200, 'e'), .partition = 1}));  // 256
  const std::uint32_t ra = reader(*m);
  const std::uint64_t a = join(1, "t", "g", ra, {{"start", "latest"}});
  ok(1, {{"op", "leave"}, {"member_id", a}});
  const std::uint64_t c0 = cursor(*m, 0), c1 = cursor(*m, 1);
  const std::uint64_t floor0 = m->group_partition(group_slot_, 0)->gate_floor.load();
  // 64 is an event boundary on partition 0 but inside a record on partition 1.
  nlohmann::json r = call(2, {{"op", "reset_group"}, {"topic", "t"}, {"group", "g"}, {"to", "position"}, {"value", 64},
                              {"execute", true}});
  EXPECT_EQ(r.value("code", ""), "invalid-argument") << r.dump();
  EXPECT_EQ(cursor(*m, 0), c0) << "partition 0 was reset although the request failed";
  EXPECT_EQ(cursor(*m, 1), c1);
  EXPECT_EQ(m->group_partition(group_slot_, 0)->gate_floor.load(), floor0);
}

TEST_F(DaemonAdminTest, DeleteGroupIsRefusedWithMembersUnlessForced) {
  auto m = create_topic("t", 2);
  const std::uint32_t ra = reader(*m);
  const std::uint64_t a = join(1, "t", "g", ra);
  const std::uint32_t slot = group_slot_;
  const auto gens_before = gens(*m);
  nlohmann::json r = call(2, {{"op", "delete_group"}, {"topic", "t"}, {"group", "g"}});
  EXPECT_EQ(r.value("code", ""), "busy") << r.dump();
  ok(2, {{"op", "delete_group"}, {"topic", "t"}, {"group", "g"}, {"force", true}});
  EXPECT_FALSE(detail::find_group(*m, "g"));
  EXPECT_EQ(member(a), nullptr);
  EXPECT_EQ(m->group(slot)->flags.load() & shm::kGroupGating, 0u);
  for (std::uint32_t p = 0; p < 2; ++p) EXPECT_GT(shm::cursor_gen(m->group_partition(slot, p)->cursor.load()), gens_before[p]);
  r = call(2, {{"op", "delete_group"}, {"topic", "t"}, {"group", "g"}});
  EXPECT_EQ(r.value("code", ""), "not-found") << r.dump();
  // The name can be used again.
  const std::uint32_t rb = reader(*m);
  join(3, "t", "g", rb);
  EXPECT_EQ(assigned(*m, rb), all_partitions(2));
}

TEST_F(DaemonAdminTest, ClientsWhoseCredentialsDoNotAllowTheTopicAreRefused) {
  create_topic("t", 2);  // mode 0600, made by this (root) process
  daemon::Peer stranger{::getpid(), 4321, 4321, shm::self_start_time()};
  const std::uint32_t r = reader(*map_);
  for (const nlohmann::json& req :
       {nlohmann::json{{"op", "join"}, {"topic", "t"}, {"group", "g"}, {"reader", r}},
        nlohmann::json{{"op", "delete_topic"}, {"name", "t"}, {"force", true}},
        nlohmann::json{{"op", "delete_group"}, {"topic", "t"}, {"group", "g"}},
        nlohmann::json{{"op", "reset_group"}, {"topic", "t"}, {"group", "g"}, {"to", "latest"}},
        nlohmann::json{{"op", "destroy"}}}) {
    nlohmann::json resp = call(1, req, stranger);
    EXPECT_EQ(resp.value("code", ""), "permission-denied") << req.dump() << " -> " << resp.dump();
  }
  EXPECT_FALSE(d_->stop_requested());
  EXPECT_TRUE(attach_topic(guard_.bus(), "t") != nullptr);
}

TEST_F(DaemonAdminTest, LiveProducerHoldingAClaimPastTheReportTimeIsReportedNotAborted) {
  auto m = create_topic("t", 2);
  Producer prod = producer("t");
  auto claim = prod.claim(16, {.partition = 1});
  ASSERT_TRUE(claim) << claim.error().message();
  step(100 * kMs);  // the daemon sees the claim
  step(600 * kMs);
  EXPECT_EQ(m->partition(1).part->stalled_pid.load(), 0u) << "held 0.6 s: not reported yet";
  step(600 * kMs);
  const shm::PartitionLayout* part = m->partition(1).part;
  EXPECT_EQ(part->stalled_pid.load(), static_cast<std::uint64_t>(::getpid()));
  EXPECT_EQ(part->stalled_claims.load(), 1u);
  step(3000 * kMs);
  EXPECT_EQ(part->stalled_claims.load(), 1u) << "reported once";
  EXPECT_EQ(part->aborted_records.load(), 0u) << "never aborted while its owner lives";
  EXPECT_EQ(part->repaired_claims.load(), 0u);
  std::memcpy(claim->payload().data(), "0123456789abcdef", 16);
  auto pub = claim->commit();
  ASSERT_TRUE(pub) << pub.error().message();
  EXPECT_EQ(part->stalled_position.load(), pub->position);
  step(100 * kMs);
  EXPECT_EQ(part->stalled_pid.load(), 0u) << "cleared once the claim is done";
  // The held event is intact.
  auto reader_c = bus_->consumer("t", {.start = Offset::earliest(), .partitions = {1}});
  ASSERT_TRUE(reader_c);
  auto e = reader_c->next(std::chrono::milliseconds(100));
  ASSERT_TRUE(e) << e.error().message();
  EXPECT_EQ(e->payload_text(), "0123456789abcdef");
}

TEST_F(DaemonAdminTest, MalformedRequestsGetErrorsAndTheDaemonCarriesOn) {
  auto m = create_topic("t", 2);
  const std::uint32_t ra = reader(*m);
  const std::uint64_t a = join(1, "t", "g", ra);
  const auto gens_before = gens(*m);
  const std::uint64_t r = ra;
  const std::vector<nlohmann::json> bad = {
      nlohmann::json::object(),
      {{"op", 5}},
      {{"op", nullptr}},
      {{"op", "frobnicate"}},
      {{"op", std::string(100, 'j')}},
      {{"op", "join"}},
      {{"op", "join"}, {"topic", "t"}},
      {{"op", "join"}, {"topic", "t"}, {"group", "g"}},
      {{"op", "join"}, {"topic", "t"}, {"group", "g"}, {"reader", "zero"}},
      {{"op", "join"}, {"topic", "t"}, {"group", "g"}, {"reader", -1}},
      {{"op", "join"}, {"topic", "t"}, {"group", "g"}, {"reader", 1.5}},
      {{"op", "join"}, {"topic", "t"}, {"group", "g"}, {"reader", 999999}},
      {{"op", "join"}, {"topic", "nope"}, {"group", "g"}, {"reader", r}},
      {{"op", "join"}, {"topic", 7}, {"group", "g"}, {"reader", r}},
      {{"op", "join"}, {"topic", "t"}, {"group", "../x"}, {"reader", r}},
      {{"op", "join"}, {"topic", "t"}, {"group", ""}, {"reader", r}},
      {{"op", "join"}, {"topic", "t"}, {"group", std::string(300, 'g')}, {"reader", r}},
      {{"op", "join"}, {"topic", "t"}, {"group", "g2"}, {"reader", r}, {"start", "sideways"}},
      {{"op", "join"}, {"topic", "t"}, {"group", "g2"}, {"reader", r}, {"start", "position"}, {"start_value", 13}},
      {{"op", "join"}, {"topic", "t"}, {"group", "g2"}, {"reader", r}, {"policy", "maybe"}},
      {{"op", "join"}, {"topic", "t"}, {"group", "g"}, {"reader", r}, {"policy", "lossy"}},
      {{"op", "join"}, {"topic", "t"}, {"group", "g"}, {"reader", r}, {"assignor", "round-robin"}},
      {{"op", "rejoin"}},
      {{"op", "rejoin"}, {"topic", "t"}, {"reader", "x"}},
      {{"op", "leave"}},
      {{"op", "leave"}, {"member_id", "a"}},
      {{"op", "leave"}, {"member_id", 424242}},
      {{"op", "ack"}},
      {{"op", "ack"}, {"member_id", 424242}, {"partitions", {0}}},
      {{"op", "ack"}, {"member_id", a}, {"partitions", "all"}},
      {{"op", "ack"}, {"member_id", a}},
      {{"op", "create_topic"}},
      {{"op", "create_topic"}, {"name", 7}},
      {{"op", "create_topic"}, {"name", "x"}, {"partitions", 0}},
      {{"op", "create_topic"}, {"name", "x"}, {"partitions", 100000}},
      {{"op", "create_topic"}, {"name", "x"}, {"ring_bytes", 1000}},
      {{"op", "create_topic"}, {"name", "x"}, {"ring_bytes", 65536}, {"max_event", 1 << 20}},
      {{"op", "create_topic"}, {"name", "x"}, {"policy", 3}},
      {{"op", "create_topic"}, {"name", "x"}, {"policy", "sometimes"}},
      {{"op", "create_topic"}, {"name", "t"}, {"ring_bytes", 65536}, {"max_event", 4096}},
      {{"op", "create_topic"}, {"name", "a.dlq.b"}, {"ring_bytes", 65536}, {"max_event", 4096}},
      {{"op", "create_topic"}, {"name", ".hidden"}, {"ring_bytes", 65536}, {"max_event", 4096}},
      {{"op", "create_topic"}, {"name", "x"}, {"ring_bytes", 65536}, {"max_event", 4096}, {"unix_group", "no-such-group-xyz"}},
      {{"op", "delete_topic"}},
      {{"op", "delete_topic"}, {"name", "nope"}},
      {{"op", "delete_topic"}, {"name", "t"}},  // in use (a member's reader slot): refused without force
      {{"op", "delete_group"}, {"topic", "t"}},
      {{"op", "delete_group"}, {"topic", "t"}, {"group", "nope"}},
      {{"op", "reset_group"}, {"topic", "t"}, {"group", "g"}},
      {{"op", "reset_group"}, {"topic", "t"}, {"group", "g"}, {"to", "yesterday"}},
      {{"op", "reset_group"}, {"topic", "t"}, {"group", "g"}, {"to", "earliest"}, {"partition", 99}},
      {{"op", "reset_group"}, {"topic", "t"}, {"group", "g"}, {"to", 1}},
      {{"op", "producer"}},
      {{"op", "producer"}, {"topic", "nope"}},
  };
  for (const nlohmann::json& req : bad) {
    nlohmann::json resp = call(1, req);
    EXPECT_EQ(resp.value("ok", true), false) << req.dump() << " -> " << resp.dump();
    EXPECT_TRUE(resp.contains("code") && resp["code"].is_string()) << resp.dump();
    EXPECT_TRUE(resp.contains("error") && resp["error"].is_string() && !resp["error"].get<std::string>().empty())
        << resp.dump();
    EXPECT_EQ(resp.value("v", 0), 1) << resp.dump();
    EXPECT_EQ(resp.value("id", std::uint64_t{0}), req.value("id", next_id_)) << resp.dump();
  }
  // Not even an object (the server never passes one, but handle() copes).
  for (const nlohmann::json& req : {nlohmann::json::array({1, 2}), nlohmann::json("join"), nlohmann::json(nullptr)}) {
    nlohmann::json resp = d_->handle(1, self(), req);
    EXPECT_FALSE(resp.value("ok", true)) << resp.dump();
  }
  // The daemon carries on, its state untouched.
  EXPECT_FALSE(d_->stop_requested());
  ok(1, {{"op", "ping"}});
  step(100 * kMs);
  EXPECT_EQ(assigned(*m, ra), all_partitions(2));
  EXPECT_EQ(gens(*m), gens_before);
  ASSERT_EQ(d_->members().size(), 1u);
  const std::uint32_t rb = reader(*m);
  join(2, "t", "g", rb);
  EXPECT_EQ(assigned(*m, ra).size(), 1u);
  ok(1, {{"op", "create_topic"}, {"name", "x"}, {"ring_bytes", 65536}, {"max_event", 4096}});
}

}  // namespace
}  // namespace herald::test
