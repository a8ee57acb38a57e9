// herald_test_peer: the other process of the multi-process tests, started
// with posix_spawn by tests/mp/*. It inherits HERALD_NO_AUTOSTART and
// HERALD_RUN_DIR from the test, and prints ONE machine-readable summary line
// on stdout ("key=value ..."); diagnostics go to stderr.
//
//   --scenario=produce --bus=B --topic=T --producer=ID --events=N --keys=K --seed=S [--batch=1]
//       Publishes N keyed events. Event i of producer p goes to key
//       pick_key(S, p, i, K) ("entity-<k>"); its payload carries (p, k, the
//       per-key sequence) and a checksum (tests/support/payload.hpp).
//       Summary: scenario=produce producer=ID published=N backpressured=B waits=W result=ok|error
//       (backpressured: publishes that hit their deadline and were retried; waits: claims that waited)
//   --scenario=consume --bus=B --topic=T --group=G --producers=P --events=N --keys=K --seed=S
//                      [--timeout-ms=MS]
//       Joins group G and reads until it has every event the P producers
//       publish (recomputed from the seed), then polls once more for extras.
//       Checks per (producer, key): sequences 0, 1, 2, ... exactly once, in
//       order; the partition is Kafka's for the key; every checksum.
//       Summary: scenario=consume group=G events=E expected=X duplicates=D out_of_order=O
//                missing=M bad_checksum=C wrong_partition=W extras=Y result=ok|timeout|error
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "herald/herald.hpp"
#include "runtime/src/partitioner.hpp"
#include "tests/support/payload.hpp"

namespace {

using herald::test::mix64;

std::uint32_t pick_key(std::uint64_t seed, std::uint32_t producer, std::uint64_t i, std::uint32_t keys) {
  return static_cast<std::uint32_t>(mix64(seed ^ (std::uint64_t{producer} << 40) ^ i) % keys);
}

std::string key_name(std::uint32_t k) { return "entity-" + std::to_string(k); }

struct Args {
  std::map<std::string, std::string> kv;
  std::string get(const std::string& k, const std::string& fallback = "") const {
    auto it = kv.find(k);
    return it == kv.end() ? fallback : it->second;
  }
  std::uint64_t num(const std::string& k, std::uint64_t fallback = 0) const {
    auto it = kv.find(k);
    return it == kv.end() ? fallback : std::strtoull(it->second.c_str(), nullptr, 0);
  }
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string_view s(argv[i]);
    if (s.substr(0, 2) != "--") continue;
    s.remove_prefix(2);
    const auto eq = s.find('=');
    if (eq == std::string_view::npos) {
      a.kv[std::string(s)] = "1";
    } else {
      a.kv[std::string(s.substr(0, eq))] = std::string(s.substr(eq + 1));
    }
  }
  return a;
}

int fail(const std::string& scenario, const std::string& why) {
  std::fprintf(stderr, "herald_test_peer (%s): %s\n", scenario.c_str(), why.c_str());
  std::printf("scenario=%s result=error\n", scenario.c_str());
  return 1;
}

int produce(const Args& a) {
  const std::uint32_t id = static_cast<std::uint32_t>(a.num("producer"));
  const std::uint64_t n = a.num("events");
  const std::uint32_t keys = static_cast<std::uint32_t>(a.num("keys", 16));
  const std::uint64_t seed = a.num("seed");
  const bool batch = a.num("batch") != 0;
  auto bus = herald::Bus::attach(a.get("bus"));
  if (!bus) return fail("produce", bus.error().message());
  auto producer = bus->producer(a.get("topic"), {.deadline = std::chrono::milliseconds(200)});
  if (!producer) return fail("produce", producer.error().message());

  herald::test::SplitMix rng(seed ^ 0xabcdefull ^ id);
  std::vector<std::uint64_t> next_seq(keys, 0);
  std::vector<std::string> key_names, payloads;
  for (std::uint32_t k = 0; k < keys; ++k) key_names.push_back(key_name(k));
  std::vector<herald::Message> msgs;
  std::uint64_t published = 0, backpressured = 0;
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(a.num("timeout-ms", 120'000) / 1000);
  while (published < n) {
    const std::uint64_t count = batch ? std::min<std::uint64_t>(rng.in(1, 32), n - published) : 1;
    payloads.clear();
    msgs.clear();
    std::vector<std::uint32_t> ks;
    for (std::uint64_t j = 0; j < count; ++j) {
      const std::uint32_t k = pick_key(seed, id, published + j, keys);
      ks.push_back(k);
      payloads.push_back(herald::test::make_payload(rng.in(herald::test::kStampBytes, 300), {id, k, next_seq[k]++}));
    }
    for (std::uint64_t j = 0; j < count; ++j) msgs.push_back({.key = key_names[ks[j]], .payload = payloads[j]});
    std::uint64_t done = 0;
    while (done < count) {
      if (std::chrono::steady_clock::now() > give_up)
        return fail("produce", "gave up after " + std::to_string(published + done) + " of " + std::to_string(n) +
                                   " events (back-pressured " + std::to_string(backpressured) + " times)");
      herald::Errc code{};
      std::string why;
      if (batch) {
        auto r = producer->publish_batch(std::span<const herald::Message>(msgs).subspan(done));
        if (r) {
          done += r->published;
          if (!r->error) continue;
          code = r->error->code;
          why = r->error->message();
        } else {
          code = r.error().code;
          why = r.error().message();
        }
      } else {
        auto r = producer->publish(msgs[done]);
        if (r) {
          ++done;
          continue;
        }
        code = r.error().code;
        why = r.error().message();
      }
      if (code != herald::Errc::kBackPressured) return fail("produce", why);
      ++backpressured;  // a consumer group is behind: retry the rest, in order
    }
    published += count;
  }
  std::printf("scenario=produce producer=%u published=%llu backpressured=%llu waits=%llu result=ok\n", id,
              static_cast<unsigned long long>(published), static_cast<unsigned long long>(backpressured),
              static_cast<unsigned long long>(producer->stats().backpressure_waits));
  return 0;
}

int consume(const Args& a) {
  const std::string group = a.get("group");
  const std::uint32_t producers = static_cast<std::uint32_t>(a.num("producers", 2));
  const std::uint64_t n = a.num("events");
  const std::uint32_t keys = static_cast<std::uint32_t>(a.num("keys", 16));
  const std::uint64_t seed = a.num("seed");
  // What the producers publish, recomputed from the seed: per (producer, key), how many.
  std::vector<std::vector<std::uint64_t>> expected(producers, std::vector<std::uint64_t>(keys, 0));
  for (std::uint32_t p = 0; p < producers; ++p)
    for (std::uint64_t i = 0; i < n; ++i) ++expected[p][pick_key(seed, p, i, keys)];
  const std::uint64_t total = n * producers;

  auto bus = herald::Bus::attach(a.get("bus"));
  if (!bus) return fail("consume", bus.error().message());
  auto info = bus->describe_topic(a.get("topic"));
  if (!info) return fail("consume", info.error().message());
  const std::uint32_t partitions = info->partitions;
  auto consumer = bus->consumer(a.get("topic"), {.group = group, .wait = herald::Wait::kPark});
  if (!consumer) return fail("consume", consumer.error().message());

  std::vector<std::vector<std::uint64_t>> next(producers, std::vector<std::uint64_t>(keys, 0));
  std::uint64_t events = 0, duplicates = 0, out_of_order = 0, bad = 0, wrong_partition = 0, extras = 0;
  std::string first_problem;
  auto note = [&](const std::string& what) {
    if (first_problem.empty()) first_problem = what;
  };
  auto handle = [&](const herald::EventView& e) {
    auto s = herald::test::check_payload(e.payload());
    if (!s || s->producer >= producers || s->key >= keys || e.key() != key_name(s->key)) {
      ++bad;
      note("bad payload at partition " + std::to_string(e.partition()) + " position " + std::to_string(e.position()));
      return;
    }
    if (e.partition() != herald::detail::partition_for_key(e.key(), partitions)) {
      ++wrong_partition;
      note("key " + std::string(e.key()) + " on partition " + std::to_string(e.partition()));
    }
    std::uint64_t& want = next[s->producer][s->key];
    if (s->seq == want) {
      ++want;
    } else if (s->seq < want) {
      ++duplicates;
      note("producer " + std::to_string(s->producer) + " key " + std::to_string(s->key) + ": seq " +
           std::to_string(s->seq) + " again (next " + std::to_string(want) + ")");
    } else {
      ++out_of_order;
      note("producer " + std::to_string(s->producer) + " key " + std::to_string(s->key) + ": seq " +
           std::to_string(s->seq) + ", expected " + std::to_string(want));
      want = s->seq + 1;
    }
    ++events;
  };
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(a.num("timeout-ms", 120'000));
  const char* result = "ok";
  while (events < total) {
    if (std::chrono::steady_clock::now() > deadline) {
      result = "timeout";
      break;
    }
    auto r = consumer->poll(handle, 512, std::chrono::milliseconds(50));
    if (!r) return fail("consume", r.error().message());
  }
  // Anything beyond the expected total is a duplicate or a stranger.
  if (std::string_view(result) == "ok") {
    const std::uint64_t before = events;
    auto r = consumer->poll(handle, 512, std::chrono::milliseconds(100));
    if (!r) return fail("consume", r.error().message());
    extras = events - before;
  }
  std::uint64_t missing = 0;
  for (std::uint32_t p = 0; p < producers; ++p)
    for (std::uint32_t k = 0; k < keys; ++k)
      if (next[p][k] < expected[p][k]) missing += expected[p][k] - next[p][k];
  if (!first_problem.empty()) std::fprintf(stderr, "herald_test_peer (consume %s): first problem: %s\n",
                                           group.c_str(), first_problem.c_str());
  std::printf(
      "scenario=consume group=%s events=%llu expected=%llu duplicates=%llu out_of_order=%llu missing=%llu "
      "bad_checksum=%llu wrong_partition=%llu extras=%llu result=%s\n",
      group.c_str(), static_cast<unsigned long long>(events), static_cast<unsigned long long>(total),
      static_cast<unsigned long long>(duplicates), static_cast<unsigned long long>(out_of_order),
      static_cast<unsigned long long>(missing), static_cast<unsigned long long>(bad),
      static_cast<unsigned long long>(wrong_partition), static_cast<unsigned long long>(extras), result);
  return std::string_view(result) == "ok" ? 0 : 2;
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  const std::string scenario = a.get("scenario");
  int rc = 0;
  if (scenario == "produce") {
    rc = produce(a);
  } else if (scenario == "consume") {
    rc = consume(a);
  } else {
    rc = fail(scenario.empty() ? "?" : scenario, "unknown --scenario (produce|consume)");
  }
  std::fflush(stdout);
  return rc;
}
