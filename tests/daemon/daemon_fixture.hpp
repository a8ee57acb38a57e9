// An in-process heraldd (herald::daemon::Daemon) driven by the test thread:
// requests go through handle() with fake connection ids and a Peer that is
// this process, time is a clock the test steps, and do_work() runs when the
// test says so. Nothing sleeps.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "daemon/daemon.hpp"
#include "shm/clock.hpp"
#include "shm/ring_log.hpp"
#include "shm/slots.hpp"
#include "shm/topic_map.hpp"
#include "tests/support/daemon_harness.hpp"
#include "tests/support/test_env.hpp"

namespace herald::test {

inline constexpr std::uint64_t kMs = 1'000'000;

class DaemonFixture : public ::testing::Test {
 protected:
  void SetUp() override { open_daemon(); }

  void TearDown() override {
    if (HasFailure()) {
      std::string all;
      for (const std::string& l : log_) all += "  " + l + "\n";
      std::fprintf(stderr, "[herald] daemon log:\n%s", all.c_str());
      if (map_) std::fprintf(stderr, "[herald] state:\n%s%s", describe_partitions(*map_).c_str(),
                             describe_groups(*map_).c_str());
    }
    d_.reset();
  }

  daemon::Config config() const {
    daemon::Config c;
    c.bus = guard_.bus();
    c.run_dir = guard_.run_dir();
    return c;
  }

  void open_daemon() { open_daemon(config()); }
  void open_daemon(const daemon::Config& c) {
    auto d = daemon::Daemon::open(
        c, [this] { return now_; }, [this](const std::string& line) { log_.push_back(line); });
    ASSERT_TRUE(d) << d.error().message();
    d_ = std::move(d).value();
  }

  // This process, as SO_PEERCRED and /proc would describe it.
  static daemon::Peer self() {
    return daemon::Peer{::getpid(), ::getuid(), ::getgid(), shm::self_start_time()};
  }

  nlohmann::json call(daemon::ConnId conn, nlohmann::json req, const daemon::Peer& peer = self()) {
    if (req.is_object()) {
      req["v"] = 1;
      if (!req.contains("id")) req["id"] = ++next_id_;
    }
    // Through text, as the server hands requests over: a number literal here
    // is a signed integer, but parsed from the wire it is unsigned.
    return d_->handle(conn, peer, nlohmann::json::parse(req.dump()));
  }
  // A request that must succeed; the response (printed if it did not).
  nlohmann::json ok(daemon::ConnId conn, const nlohmann::json& req) {
    nlohmann::json r = call(conn, req);
    EXPECT_TRUE(r.value("ok", false)) << "request " << req.dump() << " -> " << r.dump();
    return r;
  }

  // A topic, made through the daemon; returns its segments mapped RW.
  std::shared_ptr<shm::TopicMap> create_topic(const std::string& name, std::uint32_t partitions = 4,
                                             nlohmann::json extra = nlohmann::json::object()) {
    nlohmann::json req = {{"op", "create_topic"}, {"name", name}, {"partitions", partitions},
                          {"ring_bytes", 65536},  {"max_event", 4096}};
    for (auto it = extra.begin(); it != extra.end(); ++it) req[it.key()] = it.value();
    ok(99, req);
    map_ = attach_topic(guard_.bus(), name);
    EXPECT_NE(map_, nullptr);
    return map_;
  }

  // A reader slot of this process, as the runtime takes one before joining.
  std::uint32_t reader(const shm::TopicMap& m) {
    auto r = shm::acquire_reader_slot(m, 0);
    EXPECT_TRUE(r) << r.error().message();
    return r ? *r : 0;
  }

  std::uint64_t join(daemon::ConnId conn, const std::string& topic, const std::string& group, std::uint32_t r,
                     nlohmann::json extra = nlohmann::json::object()) {
    nlohmann::json req = {{"op", "join"}, {"topic", topic}, {"group", group}, {"reader", r}};
    for (auto it = extra.begin(); it != extra.end(); ++it) req[it.key()] = it.value();
    nlohmann::json resp = ok(conn, req);
    group_slot_ = resp.value("group_slot", 0u);
    return resp.value("member_id", std::uint64_t{0});
  }

  void ack(daemon::ConnId conn, std::uint64_t member, const std::vector<std::uint32_t>& parts) {
    ok(conn, {{"op", "ack"}, {"member_id", member}, {"partitions", parts}});
  }

  // Advances the injected clock and lets the daemon act.
  void step(std::uint64_t ns) {
    now_ += ns;
    d_->do_work();
  }

  // The member's side of liveness: what poll() does to its reader slot.
  static void polled(const shm::TopicMap& m, std::uint32_t r) {
    m.reader(r)->poll_count.fetch_add(1, std::memory_order_relaxed);
  }
  static void parked(const shm::TopicMap& m, std::uint32_t r, bool in_poll) {
    m.reader(r)->flags.store(in_poll ? shm::kReaderInPoll : 0u, std::memory_order_relaxed);
  }

  // The partitions mirrored into reader slot r (what the member acts on).
  static std::vector<std::uint32_t> assigned(const shm::TopicMap& m, std::uint32_t r) {
    std::vector<std::uint32_t> out;
    for (std::uint32_t p = 0; p < m.partitions(); ++p)
      if ((m.reader(r)->assigned[p / 64].load() >> (p % 64) & 1) != 0) out.push_back(p);
    return out;
  }
  static std::uint64_t assign_epoch(const shm::TopicMap& m, std::uint32_t r) {
    return m.reader(r)->assign_epoch.load();
  }
  std::uint64_t cursor(const shm::TopicMap& m, std::uint32_t p) const {
    return m.group_partition(group_slot_, p)->cursor.load();
  }
  std::uint32_t gen(const shm::TopicMap& m, std::uint32_t p) const { return shm::cursor_gen(cursor(m, p)); }
  std::vector<std::uint32_t> gens(const shm::TopicMap& m) const {
    std::vector<std::uint32_t> g;
    for (std::uint32_t p = 0; p < m.partitions(); ++p) g.push_back(gen(m, p));
    return g;
  }
  std::uint32_t owner_reader(const shm::TopicMap& m, std::uint32_t p) const {
    return m.group_partition(group_slot_, p)->owner_reader.load();
  }

  // The partitions the daemon counts as the member's (revocations included).
  std::vector<std::uint32_t> owned_sorted(std::uint64_t member) const { return d_->owned_by(member); }

  const daemon::Daemon::MemberInfo* member(std::uint64_t id) {
    members_ = d_->members();
    for (const auto& mi : members_)
      if (mi.id == id) return &mi;
    return nullptr;
  }

  BusGuard guard_;
  std::uint64_t now_ = 1'000'000'000'000ull;
  std::unique_ptr<daemon::Daemon> d_;
  std::vector<std::string> log_;
  std::shared_ptr<shm::TopicMap> map_;
  std::uint32_t group_slot_ = 0;
  std::uint64_t next_id_ = 0;
  std::vector<daemon::Daemon::MemberInfo> members_;
};

inline std::vector<std::uint32_t> all_partitions(std::uint32_t n) {
  std::vector<std::uint32_t> v;
  for (std::uint32_t p = 0; p < n; ++p) v.push_back(p);
  return v;
}

inline std::vector<std::uint32_t> minus(const std::vector<std::uint32_t>& a, const std::vector<std::uint32_t>& b) {
  std::vector<std::uint32_t> out;
  for (std::uint32_t x : a)
    if (std::find(b.begin(), b.end(), x) == b.end()) out.push_back(x);
  return out;
}

}  // namespace herald::test
