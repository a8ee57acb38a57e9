// herald_crash_peer: the child process of the crash and multi-process
// heraldd tests (tests/crash, tests/daemon). Started with posix_spawn; with
// HERALD_CRASH_AT=<point>[:<n>] in its environment it raise(SIGKILL)s at the
// n-th hit of a named crash point (shm/crash_point.hpp).
//
//   herald_crash_peer produce --bus=B --topic=T --tag=V [--mode=single|batch|mt|mt-claim]
//       [--count=N (0: until SIGTERM)] [--threads=K] [--batch=M] [--partition=P (-1: seq % partitions)]
//       [--payload=bytes] [--progress=FILE] [--stall-exit-ms=ms]
//     Publishes events whose payload starts "<tag>:<thread>:<seq>;". After
//     each publish (batch) returns, stores the number of events of thread t
//     confirmed published as a u64 at offset 8*t of the progress file, so the
//     test knows what was certainly committed before the kill. mt-claim:
//     K threads take zero-copy claims, wait at a barrier until all K hold
//     one (several claims in flight), then commit.
//   herald_crash_peer consume --bus=B --topic=T --group=G [--record=FILE] [--max-poll-ms=ms]
//     A group member (lossless) that polls until SIGTERM; each handled
//     event appends "<partition> <position> <tag:thread:seq>\n" to the record
//     file with one write(2) (so it survives a kill).
//   herald_crash_peer hold-claim --bus=B --topic=T --partition=P --ready=FILE
//     Takes a zero-copy claim, writes its position to the ready file, holds it
//     until SIGTERM, then commits it and exits 0.
//
// Exit codes: 0 done, 2 usage, 3 no progress for --stall-exit-ms, 4 an API error.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <barrier>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "herald/herald.hpp"
#include "tests/support/peer_main.hpp"

namespace {

using herald::test::peer::arg;
using herald::test::peer::arg_i;
using herald::test::peer::die;
using herald::test::peer::g_stop;

std::uint64_t now_ms() {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
          .count());
}

herald::Bus attach() {
  auto bus = herald::Bus::attach(arg("bus"));
  if (!bus) die(4, "attach: " + bus.error().message());
  return std::move(bus).value();
}

struct Progress {
  int fd = -1;
  void open(const std::string& path) {
    if (path.empty()) return;
    fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) die(4, "open " + path + ": " + std::strerror(errno));
  }
  void store(std::uint32_t thread, std::uint64_t confirmed) const {
    if (fd < 0) return;
    if (::pwrite(fd, &confirmed, sizeof confirmed, static_cast<off_t>(thread) * 8) != sizeof confirmed)
      die(4, "progress write failed");
  }
};

std::string payload_for(const std::string& tag, std::uint32_t thread, std::uint64_t seq, std::size_t size) {
  std::string p = tag + ":" + std::to_string(thread) + ":" + std::to_string(seq) + ";";
  if (p.size() < size) p.append(size - p.size(), 'x');
  return p;
}

struct ProduceConfig {
  std::string topic, tag, mode;
  std::uint64_t count = 0;  // 0: until SIGTERM
  std::uint32_t threads = 1;
  std::uint32_t batch = 8;
  long long partition = -1;
  std::size_t payload = 64;
  std::uint64_t stall_exit_ms = 30'000;
};

// Publishes events of one thread; retries BackPressured until no progress for stall_exit_ms.
void produce_thread(herald::Bus& bus, const ProduceConfig& c, std::uint32_t t, const Progress& progress,
                    std::barrier<>* claim_barrier) {
  auto prod = bus.producer(c.topic, {.deadline = std::chrono::milliseconds(200)});
  if (!prod) die(4, "producer: " + prod.error().message());
  const std::uint32_t parts = prod->partitions();
  std::uint64_t seq = 0;
  std::uint64_t last_progress = now_ms();
  auto partition_of = [&](std::uint64_t s) {
    if (c.partition >= 0) return static_cast<std::int32_t>(c.partition);
    return static_cast<std::int32_t>((s + t) % parts);
  };
  auto check_stall = [&](const herald::Error& e) {
    if (e.code != herald::Errc::kBackPressured) die(4, "publish: " + e.message());
    if (now_ms() - last_progress > c.stall_exit_ms)
      die(3, "no progress for " + std::to_string(c.stall_exit_ms) + " ms: " + e.message());
  };
  std::vector<std::string> payloads;
  std::vector<herald::Message> msgs;
  while ((c.count == 0 && !g_stop.load()) || (c.count != 0 && seq < c.count)) {
    if (c.mode == "batch") {
      const std::uint64_t n = c.count == 0 ? c.batch : std::min<std::uint64_t>(c.batch, c.count - seq);
      payloads.clear();
      msgs.clear();
      for (std::uint64_t i = 0; i < n; ++i) payloads.push_back(payload_for(c.tag, t, seq + i, c.payload));
      const std::int32_t part = partition_of(seq);  // one partition per batch: one claim
      for (std::uint64_t i = 0; i < n; ++i) msgs.push_back({.payload = payloads[i], .partition = part});
      std::size_t done = 0;
      while (done < n) {
        auto res = prod->publish_batch(std::span<const herald::Message>(msgs).subspan(done));
        if (!res) {
          check_stall(res.error());
          continue;
        }
        done += res->published;
        seq += res->published;
        if (res->published > 0) last_progress = now_ms();
        progress.store(t, seq);
        if (res->error) check_stall(*res->error);
      }
    } else if (c.mode == "mt-claim") {
      const std::string body = payload_for(c.tag, t, seq, c.payload);
      std::optional<herald::Claim> claim;
      while (!claim) {
        auto cl = prod->claim(body.size(), {.partition = partition_of(seq)});
        if (!cl) {
          check_stall(cl.error());
          continue;
        }
        claim.emplace(std::move(cl).value());
      }
      std::memcpy(claim->payload().data(), body.data(), body.size());
      claim_barrier->arrive_and_wait();  // every thread holds a claim now
      auto r = claim->commit();
      if (!r) die(4, "commit: " + r.error().message());
      ++seq;
      last_progress = now_ms();
      progress.store(t, seq);
    } else {
      const std::string body = payload_for(c.tag, t, seq, c.payload);
      auto r = prod->publish({.payload = body, .partition = partition_of(seq)});
      if (!r) {
        check_stall(r.error());
        continue;
      }
      ++seq;
      last_progress = now_ms();
      progress.store(t, seq);
    }
  }
}

int produce() {
  ProduceConfig c;
  c.topic = arg("topic");
  c.tag = arg("tag", "P");
  c.mode = arg("mode", "single");
  c.count = static_cast<std::uint64_t>(arg_i("count", 0));
  c.threads = static_cast<std::uint32_t>(arg_i("threads", c.mode == "mt" || c.mode == "mt-claim" ? 3 : 1));
  c.batch = static_cast<std::uint32_t>(arg_i("batch", 8));
  c.partition = arg_i("partition", -1);
  c.payload = static_cast<std::size_t>(arg_i("payload", 64));
  c.stall_exit_ms = static_cast<std::uint64_t>(arg_i("stall-exit-ms", 30'000));
  if (c.mode == "mt-claim" && c.count == 0) die(2, "mt-claim needs --count (its threads meet at a barrier)");
  Progress progress;
  progress.open(arg("progress"));
  herald::Bus bus = attach();
  if (c.threads <= 1 && c.mode != "mt" && c.mode != "mt-claim") {
    produce_thread(bus, c, 0, progress, nullptr);
    return 0;
  }
  std::barrier<> claim_barrier(static_cast<std::ptrdiff_t>(c.threads));
  std::vector<std::thread> ts;
  for (std::uint32_t t = 0; t < c.threads; ++t)
    ts.emplace_back([&, t] { produce_thread(bus, c, t, progress, &claim_barrier); });
  for (auto& th : ts) th.join();
  return 0;
}

int consume() {
  const std::string record = arg("record");
  int fd = -1;
  if (!record.empty()) {
    fd = ::open(record.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) die(4, "open " + record + ": " + std::strerror(errno));
  }
  herald::Bus bus = attach();
  auto consumer = bus.consumer(
      arg("topic"), {.group = arg("group", "g"),
                     .policy = herald::Policy::kLossless,
                     .max_poll_interval = std::chrono::milliseconds(arg_i("max-poll-ms", 30'000))});
  if (!consumer) die(4, "consumer: " + consumer.error().message());
  while (!g_stop.load()) {
    auto n = consumer->poll(
        [&](const herald::EventView& e) {
          if (fd < 0) return;
          const std::string_view pl = e.payload_text();
          const std::string line = std::to_string(e.partition()) + " " + std::to_string(e.position()) + " " +
                                   std::string(pl.substr(0, pl.find(';'))) + "\n";
          if (::write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) die(4, "record write failed");
        },
        64, std::chrono::milliseconds(200));
    if (!n) die(4, "poll: " + n.error().message());
  }
  return 0;
}

int hold_claim() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigprocmask(SIG_BLOCK, &set, nullptr);
  herald::Bus bus = attach();
  auto prod = bus.producer(arg("topic"));
  if (!prod) die(4, "producer: " + prod.error().message());
  const std::string body = "held:0:0;";
  auto claim = prod->claim(body.size(), {.partition = static_cast<std::int32_t>(arg_i("partition", 0))});
  if (!claim) die(4, "claim: " + claim.error().message());
  std::memcpy(claim->payload().data(), body.data(), body.size());
  // The claimed position: the record starts where the payload's header is.
  {
    const std::string ready = arg("ready");
    const int fd = ::open(ready.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    const std::string line = "claimed\n";
    if (fd < 0 || ::write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) die(4, "ready file");
    ::close(fd);
  }
  int sig = 0;
  sigwait(&set, &sig);
  auto r = claim->commit();
  if (!r) die(4, "commit: " + r.error().message());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return herald::test::peer::run(argc, argv, "herald_crash_peer",
                                 {{"produce", produce}, {"consume", consume}, {"hold-claim", hold_claim}});
}
