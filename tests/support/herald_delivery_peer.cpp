// herald_delivery_peer: the child process of the delivery crash tests
// (tests/crash/delivery_*). Started with posix_spawn and stopped by pid; with
// HERALD_CRASH_AT=<point>[:<n>] in its environment it raise(SIGKILL)s at the
// n-th hit of a named crash point (shm/crash_point.hpp). Every line it
// records is ONE write(2) to a file opened O_APPEND, so what it wrote
// survives any kill; a SIGKILL in the middle of that write can leave a torn
// line, which the next child marks and every reader skips
// (tests/support/record_lines.hpp).
//
//   herald_delivery_peer consume --bus=B --topic=T --group=G --record=FILE [--tag=S]
//       [--poison=PREFIX --on-poison=abort|nack|none] [--max-deliveries=N] [--retry-ms=MS]
//       [--idempotent=1 --skips=FILE] [--batch=M] [--publish=N --partitions=P --poison-at=K]
//       [--commit=manual] [--max-poll-ms=MS]
//     A lossless group member (at-least-once) polling until SIGTERM. Each
//     event it handles appends "<tag> <call> <partition> <position>
//     <payload-id> <delivery> <event-id>\n" to the record file (call: 1 for
//     this process's first handler call, 2 for the next, ...; the payload id
//     is the payload up to ';'). An event whose payload starts with PREFIX
//     abort()s the process (no core) or fails with nack("poison refused").
//     --idempotent: the record file is the sink and stores each event id
//     WITH its effect (the line); at start the helper's window is rebuilt
//     from it (IdempotentConsumer::remember), and a redelivered id appends
//     "<tag> <call> <partition> <position> <payload-id> <delivery>\n" to the
//     skips file instead of taking effect again.
//     --commit=manual: CommitMode::kManual, with commit() after each poll
//     that handled something.
//     --publish=N: first publishes N events itself (event i to partition
//     i % P, payload "E<i>;", or "<PREFIX><i>;" for i == K), one publish()
//     each, so a crash point in the producer path is hit once per event
//     before the consumer's own dead-letter publish hits it.
//   herald_delivery_peer produce --bus=B --topic=T --producer-id=ID --count=N
//       [--progress=FILE] [--learned=FILE] [--from-last=1] [--pause-at=S]
//     An idempotent producer publishing sequences 1..N (payload "S<seq>;",
//     partition seq % partitions). It first appends "learned <last_sequence()>\n"
//     to the learned file; it publishes from 1 (a restart relies on the
//     producer to skip what was committed), or from last+1 with --from-last.
//     After each publish returns it stores the sequence confirmed as a u64 at
//     offset 0 of the progress file. At the end: "done published=<p>
//     duplicates=<d>\n" to the learned file. --pause-at=S: once sequence S
//     is published (and its progress stored), waits for a signal — the test
//     kills it there with SIGKILL, between two publishes.
//   herald_delivery_peer transform --bus=B --topic=IN --out=OUT --group=G [--stage=S] [--skips=FILE]
//     Consume-transform-produce until SIGTERM: each input event of partition
//     p is published to OUT's partition p by an idempotent producer with
//     producer_id = hash(stage, IN, p) and sequence = input position + 1,
//     payload and key copied, causation_id = the input's event id. A
//     redelivered input's publish is a duplicate (not published again); each
//     appends "<partition> <position>\n" to the skips file.
//
// Exit codes: 0 done (SIGTERM), 2 usage, 4 an API error.
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "herald/herald.hpp"
#include "tests/support/peer_main.hpp"
#include "tests/support/record_lines.hpp"

namespace {

using herald::test::peer::arg;
using herald::test::peer::arg_i;
using herald::test::peer::die;
using herald::test::peer::g_stop;

// An append-only file written one line per write(2). Opening it ends a
// line a killed predecessor tore (record_lines.hpp), so that line stays one
// skipped line and does not run into this process's first.
struct Appender {
  int fd = -1;
  void open(const std::string& path) {
    if (path.empty()) return;
    fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) die(4, "open " + path + ": " + std::strerror(errno));
    const off_t size = ::lseek(fd, 0, SEEK_END);
    if (size < 0) die(4, "lseek " + path + ": " + std::strerror(errno));
    char last = '\n';
    if (size > 0 && ::pread(fd, &last, 1, size - 1) != 1) die(4, "read " + path + ": " + std::strerror(errno));
    if (last != '\n') line(std::string(herald::test::kTornMark) + "\n");
  }
  void line(const std::string& s) const {
    if (fd < 0) return;
    if (::write(fd, s.data(), s.size()) != static_cast<ssize_t>(s.size())) die(4, "write failed");
  }
};

herald::Bus attach() {
  auto bus = herald::Bus::attach(arg("bus"));
  if (!bus) die(4, "attach: " + bus.error().message());
  return std::move(bus).value();
}

std::string payload_id(const herald::EventView& e) {
  const std::string_view pl = e.payload_text();
  return std::string(pl.substr(0, pl.find(';')));
}

// --publish: N events, one publish() each, before consuming.
void publish_inputs(herald::Bus& bus, const std::string& topic, const std::string& poison) {
  const long long n = arg_i("publish", 0);
  if (n <= 0) return;
  const long long parts = arg_i("partitions", 1);
  const long long poison_at = arg_i("poison-at", -1);
  auto prod = bus.producer(topic);
  if (!prod) die(4, "producer: " + prod.error().message());
  for (long long i = 0; i < n; ++i) {
    const std::string body = (i == poison_at ? poison : std::string("E")) + std::to_string(i) + ";";
    auto r = prod->publish({.type = i == poison_at ? "Poison" : "Plain", .payload = body,
                            .partition = static_cast<std::int32_t>(i % parts)});
    if (!r) die(4, "publish: " + r.error().message());
  }
}

// The sink's ids, per partition (the idempotent helper's window rebuilt).
// A torn line is an effect that did not complete: its id is not remembered,
// so the event takes effect when it is delivered again.
void rebuild(const std::string& path, herald::IdempotentConsumer* seen) {
  std::ifstream in(path, std::ios::binary);
  const std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  std::size_t n = 0;
  herald::test::for_each_complete_line(text, [&](std::string_view line) {
    std::istringstream ls{std::string(line)};
    std::string tag, pid, id;
    std::uint32_t partition = 0;
    std::uint64_t call = 0, position = 0, delivery = 0;
    if (!(ls >> tag >> call >> partition >> position >> pid >> delivery >> id))
      die(4, "bad line in sink: " + std::string(line));
    auto eid = herald::EventId::parse(id);
    if (!eid) die(4, "bad id in sink: " + std::string(line));
    seen->remember(partition, *eid);
    ++n;
  });
  std::fprintf(stderr, "herald_delivery_peer[%d]: rebuilt %zu ids from the sink\n", ::getpid(), n);
}

int consume() {
  const std::string topic = arg("topic");
  const std::string poison = arg("poison", "poison");
  const std::string on_poison = arg("on-poison", "none");
  const std::string tag = arg("tag", "c");
  const bool idempotent = arg_i("idempotent", 0) != 0;
  Appender record, skips;
  record.open(arg("record"));
  skips.open(arg("skips"));
  herald::IdempotentConsumer seen;
  if (idempotent) rebuild(arg("record"), &seen);
  herald::Bus bus = attach();
  publish_inputs(bus, topic, poison);
  herald::ConsumerOptions o;
  o.group = arg("group", "g");
  o.policy = herald::Policy::kLossless;
  o.max_deliveries = static_cast<std::uint32_t>(arg_i("max-deliveries", 5));
  const auto retry = std::chrono::milliseconds(arg_i("retry-ms", 0));
  o.retry = {retry, 2.0, retry * 16};
  if (const long long mp = arg_i("max-poll-ms", 0); mp > 0) o.max_poll_interval = std::chrono::milliseconds(mp);
  const bool manual = arg("commit", "after-handle") == "manual";
  if (manual) o.commit_mode = herald::CommitMode::kManual;
  auto consumer = bus.consumer(topic, o);
  if (!consumer) die(4, "consumer: " + consumer.error().message());
  const auto batch = static_cast<std::size_t>(arg_i("batch", 64));
  std::uint64_t calls = 0;
  while (!g_stop.load()) {
    auto n = consumer->poll(
        [&](const herald::EventView& e) -> herald::HandlerResult {
          const std::string id = payload_id(e);
          const std::string where = tag + " " + std::to_string(++calls) + " " + std::to_string(e.partition()) + " " +
                                    std::to_string(e.position()) + " " + id + " " + std::to_string(e.delivery());
          if (id.rfind(poison, 0) == 0) {
            if (on_poison == "abort") {
              const rlimit none{0, 0};
              ::setrlimit(RLIMIT_CORE, &none);  // no core file per restart
              std::abort();
            }
            if (on_poison == "nack") return herald::nack("poison refused");
          }
          if (idempotent && !seen.first_time(e)) {
            skips.line(where + "\n");  // a redelivery: its effect is in the sink already
            return {};
          }
          // The effect and the id in one write: one "transaction" of the sink.
          record.line(where + " " + e.id().to_string() + "\n");
          return {};
        },
        batch, std::chrono::milliseconds(100));
    if (!n) die(4, "poll: " + n.error().message());
    if (manual && *n > 0) {
      if (auto c = consumer->commit(); !c) die(4, "commit: " + c.error().message());
    }
  }
  return 0;
}

int produce() {
  const auto id = static_cast<std::uint64_t>(arg_i("producer-id", 1));
  const auto count = static_cast<std::uint64_t>(arg_i("count", 100));
  int progress = -1;
  if (const std::string p = arg("progress"); !p.empty()) {
    progress = ::open(p.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (progress < 0) die(4, "open " + p + ": " + std::strerror(errno));
  }
  Appender learned;
  learned.open(arg("learned"));
  herald::Bus bus = attach();
  auto prod = bus.producer(arg("topic"), {.deadline = std::chrono::seconds(5), .producer_id = id});
  if (!prod) die(4, "producer: " + prod.error().message());
  const std::uint64_t last = prod->last_sequence();
  learned.line("learned " + std::to_string(last) + "\n");
  const std::uint32_t parts = prod->partitions();
  std::uint64_t published = 0, duplicates = 0;
  for (std::uint64_t seq = arg_i("from-last", 0) != 0 ? last + 1 : 1; seq <= count && !g_stop.load(); ++seq) {
    const std::string body = "S" + std::to_string(seq) + ";";
    auto r = prod->publish({.payload = body, .partition = static_cast<std::int32_t>(seq % parts), .sequence = seq});
    if (!r) die(4, "publish " + std::to_string(seq) + ": " + r.error().message());
    (r->duplicate ? duplicates : published) += 1;
    if (progress >= 0 && ::pwrite(progress, &seq, sizeof seq, 0) != sizeof seq) die(4, "progress write failed");
    if (static_cast<long long>(seq) == arg_i("pause-at", -1))
      while (!g_stop.load()) ::pause();  // until the test's SIGKILL (or SIGTERM)
  }
  learned.line("done published=" + std::to_string(published) + " duplicates=" + std::to_string(duplicates) + "\n");
  return 0;
}

// FNV-1a over the stage, the input topic and the partition: the producer id
// of one (stage, input partition). Never 0 (0 means "not idempotent").
std::uint64_t stage_producer_id(const std::string& stage, const std::string& topic, std::uint32_t p) {
  std::uint64_t h = 1469598103934665603ull;
  auto mix = [&](std::string_view s) {
    for (char c : s) {
      h ^= static_cast<unsigned char>(c);
      h *= 1099511628211ull;
    }
    h ^= 0xff;
    h *= 1099511628211ull;
  };
  mix(stage);
  mix(topic);
  mix(std::to_string(p));
  return h == 0 ? 1 : h;
}

int transform() {
  const std::string in = arg("topic"), out = arg("out"), stage = arg("stage", "xform");
  Appender skips;
  skips.open(arg("skips"));
  herald::Bus bus = attach();
  herald::ConsumerOptions o;
  o.group = arg("group", "xform");
  o.policy = herald::Policy::kLossless;
  o.max_deliveries = 0;  // an output that cannot be published yet is retried, never dead-lettered
  o.retry = {std::chrono::milliseconds(1), 2.0, std::chrono::milliseconds(50)};
  auto consumer = bus.consumer(in, o);
  if (!consumer) die(4, "consumer: " + consumer.error().message());
  std::map<std::uint32_t, herald::Producer> producers;  // made on first use: each learns its last sequence then
  while (!g_stop.load()) {
    auto n = consumer->poll(
        [&](const herald::EventView& e) -> herald::HandlerResult {
          auto it = producers.find(e.partition());
          if (it == producers.end()) {
            auto p = bus.producer(out, {.deadline = std::chrono::milliseconds(200),
                                        .producer_id = stage_producer_id(stage, in, e.partition())});
            if (!p) die(4, "producer: " + p.error().message());
            it = producers.emplace(e.partition(), std::move(p).value()).first;
          }
          const std::string cause = e.id().to_string();
          auto r = it->second.publish({.key = e.key(), .type = e.type(), .payload = herald::Bytes(e.payload()),
                                       .causation_id = cause, .partition = static_cast<std::int32_t>(e.partition()),
                                       .sequence = e.position() + 1});
          if (!r) {
            if (r.error().code == herald::Errc::kBackPressured) return herald::nack("output back-pressured");
            die(4, "publish: " + r.error().message());
          }
          if (r->duplicate) skips.line(std::to_string(e.partition()) + " " + std::to_string(e.position()) + "\n");
          return {};
        },
        64, std::chrono::milliseconds(100));
    if (!n) die(4, "poll: " + n.error().message());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return herald::test::peer::run(argc, argv, "herald_delivery_peer",
                                 {{"consume", consume}, {"produce", produce}, {"transform", transform}});
}
