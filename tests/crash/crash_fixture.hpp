// The crash tests' world: a heraldd process, a topic, a lossless group
// member in this process that reads everything, and herald_crash_peer
// children killed at named crash points (HERALD_CRASH_AT). A Ledger checks
// what the member was delivered against what the children report.
#pragma once

#include <gtest/gtest.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "herald/herald.hpp"
#include "runtime/src/groups.hpp"
#include "shm/ring_log.hpp"
#include "shm/slots.hpp"
#include "tests/support/daemon_harness.hpp"
#include "tests/support/test_env.hpp"

namespace herald::test {

// Every event delivered to the test's member, by the stream that published
// it ("<tag>:<thread>:<seq>;" payloads), plus the aborted bytes the member
// stepped over (gaps between one event's end and the next event's start in
// a partition: a lossless member never loses bytes, so a gap is exactly
// what repairs aborted).
class Ledger {
 public:
  struct Stream {
    std::vector<std::uint8_t> count;               // by seq: deliveries
    std::map<std::uint32_t, std::int64_t> last;    // by partition: last seq seen there
    std::vector<std::pair<std::uint32_t, std::uint64_t>> where;  // by seq: partition, position
    std::uint64_t size = 0;                        // record size of its events
    std::uint64_t duplicates = 0, disorder = 0;
  };

  void add(const EventView& e) {
    const std::string_view pl = e.payload_text();
    const auto c1 = pl.find(':'), c2 = pl.find(':', c1 == std::string_view::npos ? 0 : c1 + 1),
               semi = pl.find(';');
    if (c1 == std::string_view::npos || c2 == std::string_view::npos || semi == std::string_view::npos || semi < c2) {
      ++unparsable_;
      return;
    }
    const std::string tag(pl.substr(0, c1));
    const auto thread = static_cast<std::uint32_t>(std::stoul(std::string(pl.substr(c1 + 1, c2 - c1 - 1))));
    const auto seq = static_cast<std::uint64_t>(std::stoull(std::string(pl.substr(c2 + 1, semi - c2 - 1))));
    Stream& s = streams_[{tag, thread}];
    if (s.count.size() <= seq) {
      s.count.resize(seq + 1, 0);
      s.where.resize(seq + 1, {0, 0});
    }
    if (s.count[seq]++ != 0) ++s.duplicates;
    s.where[seq] = {e.partition(), e.position()};
    s.size = e.next_position() - e.position();
    auto [it, fresh] = s.last.try_emplace(e.partition(), static_cast<std::int64_t>(seq));
    if (!fresh) {
      if (static_cast<std::int64_t>(seq) <= it->second) ++s.disorder;
      it->second = std::max<std::int64_t>(it->second, static_cast<std::int64_t>(seq));
    }
    // Bytes between the previous event's end and this one: aborted records.
    auto& next = next_[e.partition()];
    if (e.position() > next) {
      gaps_.push_back({e.partition(), next, e.position()});
      gap_bytes_ += e.position() - next;
    }
    next = e.next_position();
    ++total_;
  }

  // Distinct events of a stream, and whether they are exactly seqs 0..n-1.
  std::uint64_t distinct(const std::string& tag, std::uint32_t thread = 0) const {
    auto it = streams_.find({tag, thread});
    if (it == streams_.end()) return 0;
    return static_cast<std::uint64_t>(std::count_if(it->second.count.begin(), it->second.count.end(),
                                                    [](std::uint8_t c) { return c != 0; }));
  }
  bool prefix(const std::string& tag, std::uint32_t thread, std::uint64_t n, std::string* why) const {
    auto it = streams_.find({tag, thread});
    const std::vector<std::uint8_t> none;
    const std::vector<std::uint8_t>& c = it == streams_.end() ? none : it->second.count;
    for (std::uint64_t s = 0; s < std::max<std::uint64_t>(n, c.size()); ++s) {
      const bool seen = s < c.size() && c[s] != 0;
      if (seen != (s < n)) {
        *why = tag + ":" + std::to_string(thread) + " seq " + std::to_string(s) + (seen ? " seen" : " missing") +
               " (expected exactly 0.." + std::to_string(n) + ")";
        return false;
      }
    }
    return true;
  }
  const Stream* stream(const std::string& tag, std::uint32_t thread = 0) const {
    auto it = streams_.find({tag, thread});
    return it == streams_.end() ? nullptr : &it->second;
  }
  std::uint64_t duplicates() const {
    std::uint64_t d = 0;
    for (const auto& [k, s] : streams_) d += s.duplicates;
    return d;
  }
  std::uint64_t disorder() const {
    std::uint64_t d = 0;
    for (const auto& [k, s] : streams_) d += s.disorder;
    return d;
  }
  std::uint64_t total() const noexcept { return total_; }
  std::uint64_t unparsable() const noexcept { return unparsable_; }
  std::uint64_t gap_bytes() const noexcept { return gap_bytes_; }
  // The end of the last event seen on p (where the member reads next).
  std::uint64_t next(std::uint32_t p) const {
    auto it = next_.find(p);
    return it == next_.end() ? 0 : it->second;
  }
  struct Gap {
    std::uint32_t partition;
    std::uint64_t from, to;
  };
  const std::vector<Gap>& gaps() const noexcept { return gaps_; }

 private:
  std::map<std::pair<std::string, std::uint32_t>, Stream> streams_;
  std::map<std::uint32_t, std::uint64_t> next_;
  std::vector<Gap> gaps_;
  std::uint64_t total_ = 0, unparsable_ = 0, gap_bytes_ = 0;
};

class CrashFixture : public ::testing::Test {
 protected:
  static constexpr std::uint64_t kRing = 1 << 18;  // 256 KiB per partition

  void SetUp() override {
    daemon_ = Heraldd::start(guard_.bus(), guard_.run_dir());
    ASSERT_TRUE(daemon_->wait_ready(20)) << daemon_->log();
    auto bus = Bus::attach(guard_.bus());
    ASSERT_TRUE(bus) << bus.error().message();
    bus_ = std::make_unique<Bus>(std::move(bus).value());
  }

  void TearDown() override {
    if (HasFailure()) {
      if (map_) std::fprintf(stderr, "[herald] state:\n%s%s", describe_partitions(*map_).c_str(), describe_groups(*map_).c_str());
      std::fprintf(stderr, "[herald] heraldd log (tail):\n%s\n", tail_of(daemon_->log_path(), 60).c_str());
    }
    children_.clear();  // killed by pid if still running
    member_.reset();
    bus_.reset();
    if (daemon_) {
      const auto st = daemon_->stop();
      EXPECT_TRUE(exited_with(st, 0)) << "heraldd: " << (st ? describe_status(*st) : "did not stop");
    }
  }

  // The topic, and this process's lossless member of group `audit` (it
  // reads every event while children publish and die).
  void make_topic(std::uint32_t partitions = 2, bool with_member = true, bool single_producer = false) {
    auto r = bus_->create_topic(
        "t", {.partitions = partitions, .ring_bytes = kRing, .max_event = 4096, .single_producer = single_producer});
    ASSERT_TRUE(r) << r.error().message();
    map_ = attach_topic(guard_.bus(), "t");
    ASSERT_NE(map_, nullptr);
    if (!with_member) return;
    auto c = bus_->consumer("t", {.group = "audit", .policy = Policy::kLossless});
    ASSERT_TRUE(c) << c.error().message();
    member_ = std::make_unique<Consumer>(std::move(c).value());
    ASSERT_TRUE(pump([&] { return member_->assignment().size() == partitions; }, 20, "the member's assignment"));
  }

  std::string path(const std::string& name) const { return guard_.run_dir() + "/" + name; }

  // A herald_crash_peer child; crash_at arms it (HERALD_CRASH_AT).
  Child& peer(std::vector<std::string> args, const std::string& crash_at = "", const std::string& name = "peer") {
    SpawnOptions o;
    o.argv = {crash_peer_path()};
    for (std::string& a : args) o.argv.push_back(std::move(a));
    o.argv.push_back("--bus=" + guard_.bus());
    o.argv.push_back("--topic=t");
    if (crash_at.empty())
      o.unset_env.push_back("HERALD_CRASH_AT");
    else
      o.set_env.emplace_back("HERALD_CRASH_AT", crash_at);
    o.stderr_path = path(name + ".stderr");
    children_.push_back(std::make_unique<Child>(Child::spawn(o)));
    EXPECT_TRUE(children_.back()->valid());
    return *children_.back();
  }

  // What a producer child confirmed: published events per thread.
  std::vector<std::uint64_t> progress(const std::string& name, std::uint32_t threads = 1) const {
    std::vector<std::uint64_t> v(threads, 0);
    const int fd = ::open(path(name).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return v;
    for (std::uint32_t t = 0; t < threads; ++t) {
      std::uint64_t x = 0;
      if (::pread(fd, &x, sizeof x, static_cast<off_t>(t) * 8) == sizeof x) v[t] = x;
    }
    ::close(fd);
    return v;
  }

  // Polls the member (feeding the ledger) until done() or `seconds` pass.
  bool pump(const std::function<bool()>& done, double seconds, const std::string& what) {
    return wait_until(
        [&] {
          if (member_) {
            auto r = member_->poll([&](const EventView& e) { ledger_.add(e); }, 1024, std::chrono::milliseconds(2));
            if (!r) {
              ADD_FAILURE() << "member poll: " << r.error().message();
              return true;
            }
          }
          return done();
        },
        seconds, [&] { return what + "\n" + state(); });
  }

  std::string state() const {
    std::string s;
    if (map_) s += describe_partitions(*map_) + describe_groups(*map_);
    s += "ledger: " + std::to_string(ledger_.total()) + " events, " + std::to_string(ledger_.gap_bytes()) +
         " aborted bytes stepped over\n";
    return s;
  }

  // Waits until the dead producer `pid` was repaired; prints its state if not.
  bool repaired(pid_t pid, double seconds = 20) {
    return wait_until([&] { return producer_repaired(*map_, pid); }, seconds, [&] {
      return "dead producer pid " + std::to_string(pid) + " not repaired\n" + state() + "heraldd log:\n" +
             tail_of(daemon_->log_path(), 20);
    });
  }

  // Every partition's tail is where the member reads next: nothing is
  // left unread and no uncommitted record holds the member back.
  bool drained(std::string* why) const {
    for (std::uint32_t p = 0; p < map_->partitions(); ++p) {
      const std::uint64_t t = shm::load_tail(map_->partition(p));
      if (member_->position(p) != t) {
        *why = "partition " + std::to_string(p) + ": member at " + std::to_string(member_->position(p)) + ", tail " +
               std::to_string(t);
        return false;
      }
    }
    return true;
  }

  void print_repair_latency(const std::string& what) const {
    std::string s;
    for (std::uint32_t p = 0; p < map_->partitions(); ++p) {
      const shm::PartitionLayout* part = map_->partition(p).part;
      s += " p" + std::to_string(p) + " last " + std::to_string(part->last_repair_ns.load() / 1000) + " us max " +
           std::to_string(part->max_repair_ns.load() / 1000) + " us (" + std::to_string(part->repaired_claims.load()) +
           " claims repaired)";
    }
    std::fprintf(stderr, "[herald] repair latency (%s):%s\n", what.c_str(), s.c_str());
  }

  std::uint64_t aborted_records() const {
    std::uint64_t n = 0;
    for (std::uint32_t p = 0; p < map_->partitions(); ++p) n += map_->partition(p).part->aborted_records.load();
    return n;
  }
  std::uint64_t repaired_claims() const {
    std::uint64_t n = 0;
    for (std::uint32_t p = 0; p < map_->partitions(); ++p) n += map_->partition(p).part->repaired_claims.load();
    return n;
  }

  BusGuard guard_;
  std::unique_ptr<Heraldd> daemon_;
  std::unique_ptr<Bus> bus_;
  std::shared_ptr<shm::TopicMap> map_;
  std::unique_ptr<Consumer> member_;
  std::vector<std::unique_ptr<Child>> children_;
  Ledger ledger_;
};

}  // namespace herald::test
