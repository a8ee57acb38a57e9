// The delivery crash tests' world (tests/crash/delivery_*): a bus (with a
// heraldd child, or daemonless), topics, herald_delivery_peer children that
// consume / produce / transform and are killed (crash points, SIGKILL by
// pid) or abort, and readers of what they recorded. Everything is removed
// when the test ends, pass or fail; on failure the shared-memory state of
// the topics and the daemon's log are printed.
#pragma once

#include <gtest/gtest.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "herald/herald.hpp"
#include "runtime/src/groups.hpp"
#include "shm/ring_log.hpp"
#include "shm/slots.hpp"
#include "tests/support/daemon_harness.hpp"
#include "tests/support/record_lines.hpp"
#include "tests/support/test_env.hpp"

namespace herald::test {

inline std::string delivery_peer_path() { return HERALD_TEST_DELIVERY_PEER; }

// One line of a consume child's record (or sink, or skips) file:
// "<tag> <call> <partition> <position> <payload-id> <delivery> [<event-id>]".
struct Handled {
  std::string tag;
  std::uint64_t call = 0;  // the child's n-th handler call
  std::uint32_t partition = 0;
  std::uint64_t position = 0;
  std::string id;
  std::uint32_t delivery = 0;
  std::string event_id;
};

// A torn line (a child killed inside its write) did not happen, as for the
// children themselves (record_lines.hpp).
inline std::vector<Handled> read_handled(const std::string& path) {
  std::vector<Handled> out;
  for_each_complete_line(read_file(path), [&](std::string_view line) {
    std::istringstream ls{std::string(line)};
    Handled h;
    if (ls >> h.tag >> h.call >> h.partition >> h.position >> h.id >> h.delivery) {
      ls >> h.event_id;
      out.push_back(std::move(h));
    } else {
      ADD_FAILURE() << path << ": a line that is neither complete nor marked torn: " << line;
    }
  });
  return out;
}

inline std::string describe_handled(const std::vector<Handled>& hs, std::size_t last = 20) {
  std::string s;
  for (std::size_t i = hs.size() > last ? hs.size() - last : 0; i < hs.size(); ++i)
    s += "  " + hs[i].tag + " #" + std::to_string(hs[i].call) + " p" + std::to_string(hs[i].partition) + " @" + std::to_string(hs[i].position) + " " +
         hs[i].id + " delivery " + std::to_string(hs[i].delivery) + "\n";
  return s;
}

// Counts the lines of a growing file, reading only what was appended since
// the last call (cheap enough to poll in a bounded wait).
class LineCounter {
 public:
  explicit LineCounter(std::string path) : path_(std::move(path)) {}
  std::uint64_t count() {
    const int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return lines_;
    char buf[65536];
    for (;;) {
      const ssize_t r = ::pread(fd, buf, sizeof buf, static_cast<off_t>(offset_));
      if (r <= 0) break;
      lines_ += static_cast<std::uint64_t>(std::count(buf, buf + r, '\n'));
      offset_ += static_cast<std::uint64_t>(r);
    }
    ::close(fd);
    return lines_;
  }

 private:
  std::string path_;
  std::uint64_t offset_ = 0, lines_ = 0;
};

class DeliveryCrashFixture : public ::testing::Test {
 protected:
  // with_daemon: a heraldd child watches the bus; else daemonless
  // (HERALD_NO_AUTOSTART=1 from BusGuard, inherited by the children).
  void start(bool with_daemon) {
    if (with_daemon) {
      daemon_ = Heraldd::start(guard_.bus(), guard_.run_dir());
      ASSERT_TRUE(daemon_->wait_ready(20)) << daemon_->log();
    }
    auto bus = Bus::attach(guard_.bus());
    ASSERT_TRUE(bus) << bus.error().message();
    bus_ = std::make_unique<Bus>(std::move(bus).value());
  }

  void TearDown() override {
    if (HasFailure()) {
      std::fprintf(stderr, "[herald] state:\n%s", state().c_str());
      if (daemon_) std::fprintf(stderr, "[herald] heraldd log (tail):\n%s\n", tail_of(daemon_->log_path(), 60).c_str());
      for (const std::string& n : stderr_files_) {
        const std::string text = read_file(path(n));  // tail_of() wants a non-empty file
        if (!text.empty()) std::fprintf(stderr, "[herald] %s:\n%s\n", n.c_str(), tail_of(path(n), 10).c_str());
      }
    }
    children_.clear();  // killed by pid if still running
    maps_.clear();
    bus_.reset();
    if (daemon_) {
      const auto st = daemon_->stop();
      EXPECT_TRUE(exited_with(st, 0)) << "heraldd: " << (st ? describe_status(*st) : "did not stop");
    }
  }

  void make_topic(const std::string& name, std::uint32_t partitions, std::uint64_t ring = 1 << 20) {
    auto r = bus_->create_topic(name, {.partitions = partitions, .ring_bytes = ring, .max_event = 4096});
    ASSERT_TRUE(r) << r.error().message();
  }

  // The topic's segments (cached; mapped read-write to look, never written).
  shm::TopicMap* map(const std::string& topic) {
    auto it = maps_.find(topic);
    if (it != maps_.end() && it->second) return it->second.get();
    auto m = attach_topic(guard_.bus(), topic);
    if (!m) return nullptr;
    return (maps_[topic] = std::move(m)).get();
  }

  std::string path(const std::string& name) const { return guard_.run_dir() + "/" + name; }

  // A herald_delivery_peer child; crash_at arms it (HERALD_CRASH_AT).
  Child& peer(const std::string& scenario, std::vector<std::string> args, const std::string& crash_at,
              const std::string& name) {
    SpawnOptions o;
    o.argv = {delivery_peer_path(), scenario, "--bus=" + guard_.bus()};
    for (std::string& a : args) o.argv.push_back(std::move(a));
    if (crash_at.empty())
      o.unset_env.push_back("HERALD_CRASH_AT");
    else
      o.set_env.emplace_back("HERALD_CRASH_AT", crash_at);
    o.stderr_path = path(name + ".stderr");
    if (std::find(stderr_files_.begin(), stderr_files_.end(), name + ".stderr") == stderr_files_.end())
      stderr_files_.push_back(name + ".stderr");
    children_.push_back(std::make_unique<Child>(Child::spawn(o)));
    EXPECT_TRUE(children_.back()->valid());
    return *children_.back();
  }

  // The group's slot on a topic, once it exists.
  std::optional<std::uint32_t> group_slot(const std::string& topic, const std::string& group) {
    shm::TopicMap* m = map(topic);
    if (m == nullptr) return std::nullopt;
    auto g = detail::find_group(*m, group);
    if (!g) return std::nullopt;
    return g->slot;
  }

  std::uint64_t committed(const std::string& topic, const std::string& group, std::uint32_t p) {
    const auto g = group_slot(topic, group);
    if (!g) return 0;
    return shm::cursor_pos(map(topic)->group_partition(*g, p)->cursor.load());
  }

  // Every partition of the topic committed up to its tail by the group.
  bool all_committed(const std::string& topic, const std::string& group) {
    shm::TopicMap* m = map(topic);
    if (m == nullptr || !group_slot(topic, group)) return false;
    for (std::uint32_t p = 0; p < m->partitions(); ++p)
      if (committed(topic, group, p) != shm::load_tail(m->partition(p))) return false;
    return true;
  }

  std::string state() {
    std::string s;
    std::vector<std::string> names;
    if (bus_) {
      if (auto ts = bus_->list_topics())
        for (const TopicInfo& t : *ts) names.push_back(t.name);
    }
    for (const std::string& n : names) {
      if (shm::TopicMap* m = map(n)) s += describe_partitions(*m) + describe_groups(*m);
    }
    return s;
  }

  // Waits for a child to end (it crashes, aborts or exits by itself).
  std::optional<int> wait_death(Child& c, double seconds, const std::string& what) {
    auto st = c.wait(seconds);
    if (!st) ADD_FAILURE() << what << ": the child (pid " << c.pid() << ") is still running\n" << state();
    return st;
  }

  // Stops a child that should be idle: SIGTERM, then expects exit 0.
  void stop(Child& c, const std::string& stderr_name) {
    c.signal(SIGTERM);
    const auto st = c.wait(20);
    EXPECT_TRUE(exited_with(st, 0)) << (st ? describe_status(*st) : "did not stop") << "\n"
                                    << read_file(path(stderr_name));
  }

  // Every committed record of a partition, read by copy from `from` to its
  // tail (the range must still be in the ring). Aborted records counted.
  struct Record {
    std::uint64_t position = 0;
    Event event;
  };
  bool read_all(const std::string& topic, std::uint32_t p, std::vector<Record>* out, std::uint64_t* aborted,
                std::string* why) {
    shm::TopicMap* m = map(topic);
    if (m == nullptr) {
      *why = "no topic " + topic;
      return false;
    }
    const shm::PartitionView& v = m->partition(p);
    std::vector<std::byte> buf(v.max_event);
    std::uint64_t q = shm::beginning(v);
    const std::uint64_t tail = shm::load_tail(v);
    while (q < tail) {
      std::uint32_t n = 0;
      const shm::Status st = shm::read_copy(v, q, buf.data(), &n);
      if (st != shm::Status::kOk) {
        *why = topic + " partition " + std::to_string(p) + ": no committed record at " + std::to_string(q) +
               " (tail " + std::to_string(tail) + ")";
        return false;
      }
      const auto* h = reinterpret_cast<const shm::RecordHeader*>(buf.data());
      if ((h->flags & shm::kRecordAborted) != 0) {
        ++*aborted;
      } else {
        out->push_back({q, EventView::over(buf.data(), topic, p, q, 1).to_event()});
      }
      q += n;
    }
    return true;
  }

  BusGuard guard_;
  std::unique_ptr<Heraldd> daemon_;
  std::unique_ptr<Bus> bus_;
  std::map<std::string, std::shared_ptr<shm::TopicMap>> maps_;
  std::vector<std::unique_ptr<Child>> children_;
  std::vector<std::string> stderr_files_;
};

}  // namespace herald::test
