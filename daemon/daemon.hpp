// heraldd as a library: the supervisor of one bus. It owns the control
// plane (topics, groups, membership, assignments, repairs) and is never on
// the data path. Everything durable lives in the segments, so a restarted
// daemon rebuilds itself from them.
//
// Threading: a Daemon is driven by ONE thread (the supervisor loop in
// server.cpp, or a test): handle() for each request, do_work() whenever
// watch_fd() is readable or next_deadline() passes. Time comes from the
// injected clock, so tests step it instead of sleeping.
#pragma once

#include <sys/types.h>

#include <bitset>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "daemon/pid_watch.hpp"
#include "herald/result.hpp"
#include "runtime/src/run_dir.hpp"
#include "shm/log_layout.hpp"
#include "shm/registry.hpp"
#include "shm/topic_map.hpp"

namespace herald::daemon {

using Clock = std::function<std::uint64_t()>;  // monotonic nanoseconds
using Logger = std::function<void(const std::string&)>;

struct Config {
  std::string bus;
  std::string run_dir;
  std::uint64_t rejoin_grace_ns = 10'000'000'000ull;    // keep assignments this long after a restart
  std::uint64_t scan_interval_ns = 50'000'000ull;       // producer/reader slot scan period
  std::uint64_t stall_report_ns = 1'000'000'000ull;     // a claim held longer is reported (never aborted)
  std::uint64_t default_max_poll_interval_ns = 30'000'000'000ull;
  bool take_lock = true;  // tests that embed a daemon without a lock file may turn this off
};

// Who is on the other end of a connection (SO_PEERCRED), checked by the server.
struct Peer {
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;
  std::uint64_t start_time = 0;
};

using ConnId = std::uint64_t;

enum class Assignor : std::uint8_t { kSticky, kRange };

class Daemon {
 public:
  // Takes the bus's daemon lock (unless cfg.take_lock is false), opens or
  // creates the registry, publishes its pid and a new epoch, and rebuilds
  // topics, groups and assignments from the segments.
  static Result<std::unique_ptr<Daemon>> open(Config cfg, Clock clock, Logger log);
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // One request from a connection; returns the response body.
  nlohmann::json handle(ConnId conn, const Peer& peer, const nlohmann::json& request);
  // The connection closed: everything registered through it is gone.
  void disconnected(ConnId conn);
  // Liveness, stuck members, revocation deadlines, lag-out, producer repair.
  void do_work();

  // Readable when a watched process exits (an epoll fd over pidfds).
  [[nodiscard]] int watch_fd() const noexcept { return pids_.fd(); }
  // When do_work() next has something to do (clock ns).
  [[nodiscard]] std::uint64_t next_deadline() const noexcept;
  // A client asked the daemon to stop ("shutdown" or "destroy").
  [[nodiscard]] bool stop_requested() const noexcept { return stop_; }
  [[nodiscard]] bool destroy_requested() const noexcept { return destroy_; }
  [[nodiscard]] std::uint64_t epoch() const noexcept { return epoch_; }

  // ---- introspection (tests, stat) ----
  struct MemberInfo {
    std::uint64_t id = 0;
    pid_t pid = 0;
    std::string topic, group;
    std::uint32_t reader = 0;
    std::vector<std::uint32_t> owned;
    bool stuck = false;
    bool restored = false;
  };
  [[nodiscard]] std::vector<MemberInfo> members() const;
  [[nodiscard]] std::vector<std::uint32_t> owned_by(std::uint64_t member) const;
  [[nodiscard]] bool group_gating(const std::string& topic, const std::string& group) const;

  // Removes every segment and file of the bus (after "destroy").
  void destroy_bus();

 private:
  Daemon(Config cfg, Clock clock, Logger log);

  struct TopicState;
  struct Member;
  struct GroupState;
  struct Dead;

  Result<void> start();
  void log(const std::string& line) const;

  // topics.cpp
  Result<TopicState*> topic(const std::string& name);
  void refresh_topics();
  nlohmann::json op_create_topic(const Peer& peer, const nlohmann::json& req);
  nlohmann::json op_delete_topic(const Peer& peer, const nlohmann::json& req);
  nlohmann::json op_delete_group(const Peer& peer, const nlohmann::json& req);
  nlohmann::json op_reset_group(const Peer& peer, const nlohmann::json& req);
  Result<void> may_use(const Peer& peer, const TopicState& t, bool write) const;
  void forget_topic(const std::string& name);

  // membership.cpp
  nlohmann::json op_join(ConnId conn, const Peer& peer, const nlohmann::json& req);
  nlohmann::json op_rejoin(ConnId conn, const Peer& peer, const nlohmann::json& req);
  nlohmann::json op_leave(ConnId conn, const nlohmann::json& req);
  nlohmann::json op_ack(ConnId conn, const nlohmann::json& req);
  GroupState& group_state(TopicState& t, std::uint32_t slot, const std::string& name, int policy);
  void remove_member(std::uint64_t id, const char* why);
  void rebalance(GroupState& g);
  void assign(GroupState& g, std::uint32_t p, Member& m);
  void revoke(GroupState& g, std::uint32_t p, bool forced);
  void mirror(Member& m);
  void check_members();
  void check_lagout();
  void promote(GroupState& g);
  void restore_groups(TopicState& t);
  std::vector<std::uint64_t> target(const GroupState& g, const std::vector<std::uint64_t>& eligible) const;

  // producers.cpp
  nlohmann::json op_producer(const Peer& peer, const nlohmann::json& req);
  void scan_slots();
  void process_exited(pid_t pid, std::uint64_t start_time);
  void repair_dead_producers();
  void adopt_orphan(TopicState& t, std::uint32_t slot, std::uint64_t now);
  // Watches a client process for exit; false (after process_exited) if it
  // is gone already. Call it BEFORE creating state that names the process.
  bool watch(pid_t pid, std::uint64_t start_time);

  Config cfg_;
  Clock clock_;
  Logger logger_;
  std::optional<detail::FileLock> lock_;
  shm::Registry reg_;
  std::uint64_t epoch_ = 0;
  std::uint64_t started_ns_ = 0;
  std::uint64_t next_scan_ns_ = 0;
  std::uint64_t next_member_id_ = 1;
  bool stop_ = false;
  bool destroy_ = false;
  PidWatch pids_;
  std::map<std::string, std::unique_ptr<TopicState>> topics_;
  std::map<std::uint64_t, std::unique_ptr<Member>> members_;
  std::map<std::pair<std::string, std::uint32_t>, std::unique_ptr<GroupState>> groups_;  // (topic, group slot)
  std::vector<std::unique_ptr<Dead>> dead_;  // producers whose repair must be retried
};

}  // namespace herald::daemon
