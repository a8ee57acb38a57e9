// `herald demo`: the whole mission in under a minute, on a bus of its own
// that it destroys at the end (nothing is left in /dev/shm).
//
//   order service ──OrderPlaced (keyed by customer, JSON state, correlation id)──▶ topic "orders" (4 partitions)
//                                                        ├─▶ group "shipping"       (a process)
//                                                        └─▶ group "notifications"  (a process)
//
// Midway the notification service is killed with SIGKILL: orders keep
// flowing and shipping keeps up; it is restarted and catches up from its
// committed cursor. One poison order (no items) cannot be shipped: after
// its retries it lands in shipping's dead-letter topic and is shown with its
// reason. The panel reads the bus's shared memory (herald::read_stats) like
// `herald stat`; latencies come from the events' own times.
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "herald/herald.hpp"
#include "tools/cli.hpp"
#include "tools/common/histogram.hpp"
#include "tools/common/spawn.hpp"
#include "tools/demo.hpp"

namespace herald::tools {

namespace {

constexpr const char* kTopic = "orders";
constexpr const char* kShipping = "shipping";
constexpr const char* kNotify = "notifications";

std::uint64_t mono() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<std::uint64_t>(ts.tv_nsec);
}
std::uint64_t wall() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<std::uint64_t>(ts.tv_nsec);
}
void nap(std::uint64_t ns) {
  timespec ts{static_cast<time_t>(ns / 1'000'000'000ull), static_cast<long>(ns % 1'000'000'000ull)};
  nanosleep(&ts, nullptr);
}

std::atomic<bool> g_term{false};
void on_term(int) { g_term.store(true); }

int child_fail(const std::string& what) {
  std::fprintf(stderr, "herald demo: %s\n", what.c_str());
  return 1;
}

}  // namespace

// ---- the order service ------------------------------------------------------

int mission_orders(const MissionChildOptions& o) {
  auto bus = Bus::attach(o.bus);
  if (!bus) return child_fail(bus.error().message());
  auto p = bus->producer(kTopic, {.deadline = std::chrono::seconds(10), .source = "order-service"});
  if (!p) return child_fail(p.error().message());
  const std::uint64_t total = static_cast<std::uint64_t>(o.rate * o.seconds);
  const std::uint64_t start = mono();
  const Header hs[] = {{"app", "herald-demo"}, {"schema", "OrderPlaced/1"}};
  std::vector<std::string> keys, payloads, corrs;
  std::vector<Message> batch;
  std::uint64_t i = 0;
  static const char* skus[] = {"book", "lamp", "mug", "socks", "kettle", "chair", "pen", "plant"};
  while (i < total) {
    const std::uint64_t due = std::min<std::uint64_t>(
        total, static_cast<std::uint64_t>(static_cast<double>(mono() - start) / 1e9 * o.rate) + 1);
    if (due <= i) {
      nap(200'000);  // paced: the next order is not due yet
      continue;
    }
    const std::uint64_t n = std::min<std::uint64_t>(due - i, 512);
    keys.resize(n);
    payloads.resize(n);
    corrs.resize(n);
    batch.resize(n);
    for (std::uint64_t k = 0; k < n; ++k, ++i) {
      const std::uint64_t order = i + 1;
      const std::uint64_t cust = (order * 2654435761ull) % 250 + 1;
      char key[32], corr[32], buf[512];
      std::snprintf(key, sizeof key, "cust-%04" PRIu64, cust);
      std::snprintf(corr, sizeof corr, "checkout-%08" PRIu64, order);
      if (order == o.poison_at) {
        std::snprintf(buf, sizeof buf,
                      "{\"order_id\":\"ord-%08" PRIu64 "\",\"customer\":\"%s\",\"items\":[],\"total\":0.00}", order, key);
      } else {
        const std::uint64_t qty = order % 3 + 1;
        const char* sku = skus[order % 8];
        const double total_eur = static_cast<double>(qty) * (4.5 + static_cast<double>(order % 40));
        std::snprintf(buf, sizeof buf,
                      "{\"order_id\":\"ord-%08" PRIu64 "\",\"customer\":\"%s\",\"items\":[{\"sku\":\"%s\",\"qty\":%" PRIu64
                      "}],\"total\":%.2f}",
                      order, key, sku, qty, total_eur);
      }
      keys[k] = key;
      corrs[k] = corr;
      payloads[k] = buf;
    }
    for (std::uint64_t k = 0; k < n; ++k)
      batch[k] = Message{.key = keys[k], .type = "OrderPlaced", .payload = payloads[k], .correlation_id = corrs[k],
                         .content_type = "application/json", .headers = hs};
    auto r = p->publish_batch(batch);
    if (!r) return child_fail("publish: " + r.error().message());
    if (r->error) return child_fail("publish: " + r->error->message());
  }
  const double secs = static_cast<double>(mono() - start) / 1e9;
  std::printf("{\"published\":%" PRIu64 ",\"seconds\":%.6f}\n", total, secs);
  return 0;
}

// ---- shipping and notifications ------------------------------------------------

int mission_service(const MissionChildOptions& o) {
  ::signal(SIGTERM, on_term);
  ::signal(SIGINT, on_term);
  auto bus = Bus::attach(o.bus);
  if (!bus) return child_fail(bus.error().message());
  ConsumerOptions co;
  co.group = o.name;
  co.max_deliveries = 3;
  co.retry = RetryPolicy{std::chrono::milliseconds(20), 2.0, std::chrono::milliseconds(200)};
  auto c = bus->consumer(kTopic, co);
  if (!c) return child_fail(c.error().message());
  const bool shipping = o.name == kShipping;
  Histogram lat;
  std::uint64_t handled = 0, bytes = 0;
  while (!g_term.load()) {
    auto n = c->poll(
        [&](const EventView& e) -> HandlerResult {
          const std::string_view d = e.payload_text();
          if (shipping && d.find("\"items\":[]") != std::string_view::npos) {
            const auto at = d.find("ord-");
            return nack("order " + std::string(d.substr(at, 12)) + " has no items: nothing to ship");
          }
          // Shipping books a parcel; notifications sends "we got your order".
          bytes += d.size();
          const std::uint64_t now = wall();
          lat.record(now > e.time_ns() ? now - e.time_ns() : 0);
          ++handled;
          return {};
        },
        1024, std::chrono::milliseconds(100));
    if (!n) return child_fail(o.name + ": " + n.error().message());
  }
  const ConsumerStats st = c->stats();
  std::printf("{\"service\":\"%s\",\"handled\":%" PRIu64 ",\"failures\":%" PRIu64 ",\"dead_lettered\":%" PRIu64
              ",\"p50\":%" PRIu64 ",\"p90\":%" PRIu64 ",\"p99\":%" PRIu64 ",\"max\":%" PRIu64 "}\n",
              o.name.c_str(), handled, st.failures, st.dead_lettered, lat.percentile(50), lat.percentile(90),
              lat.percentile(99), lat.max());
  return 0;
}

// ---- the parent -------------------------------------------------------------------

namespace {

struct Service {
  std::string name;
  Child child;
  nlohmann::json result;  // its summary line
};

Child start_child(const std::string& bus, const std::vector<std::string>& extra) {
  const std::string exe = self_exe();
  std::vector<std::string> args = {exe};
  args.insert(args.end(), extra.begin(), extra.end());
  args.insert(args.end(), {"--bus", bus});
  return spawn(exe, args, true);
}

nlohmann::json stop_child(Child& c, int sig) {
  if (c.pid > 0 && sig != 0) ::kill(c.pid, sig);
  const std::string out = read_all(c, 20'000);
  const int st = wait_child(c, 5'000);
  nlohmann::json j = nlohmann::json::parse(out, nullptr, false);
  if (j.is_discarded() || !j.is_object()) j = nlohmann::json::object();
  j["status"] = st;
  return j;
}

const GroupStats* find_group(const BusStats& s, const char* name) {
  for (const TopicStats& t : s.topics)
    if (t.name == kTopic)
      for (const GroupStats& g : t.groups)
        if (g.name == name) return &g;
  return nullptr;
}
const TopicStats* orders(const BusStats& s) {
  for (const TopicStats& t : s.topics)
    if (t.name == kTopic) return &t;
  return nullptr;
}

struct Panel {
  bool tty = false;
  bool json = false;
  int lines = 0;
  std::uint64_t start = mono();
  std::optional<BusStats> prev;
  std::uint64_t next_plain = 0;
  std::string last_note;

  double rate_of(const BusStats& s, const char* group) const {
    if (!prev || s.mono_ns <= prev->mono_ns) return 0;
    const GroupStats* a = find_group(*prev, group);
    const GroupStats* b = find_group(s, group);
    const TopicStats* t = orders(s);
    if (a == nullptr || b == nullptr || t == nullptr || a->partitions.size() != b->partitions.size()) return 0;
    double ev = 0;
    for (std::size_t p = 0; p < b->partitions.size(); ++p) {
      const PartitionStats& ps = t->partition_stats[p];
      const double avg = ps.events ? static_cast<double>(ps.bytes) / static_cast<double>(ps.events) : 256.0;
      if (b->partitions[p].committed > a->partitions[p].committed)
        ev += static_cast<double>(b->partitions[p].committed - a->partitions[p].committed) / avg;
    }
    return ev / (static_cast<double>(s.mono_ns - prev->mono_ns) / 1e9);
  }

  void draw(const BusStats& s, const std::string& note, bool notify_down) {
    const TopicStats* t = orders(s);
    if (t == nullptr || json) return;
    const double secs = static_cast<double>(mono() - start) / 1e9;
    const double pub_rate = prev && orders(*prev) && s.mono_ns > prev->mono_ns
                                ? static_cast<double>(t->events - orders(*prev)->events) /
                                      (static_cast<double>(s.mono_ns - prev->mono_ns) / 1e9)
                                : 0;
    const Style st{tty};
    auto row = [&](const char* name, bool down) {
      const GroupStats* g = find_group(s, name);
      char buf[256];
      if (g == nullptr) {
        std::snprintf(buf, sizeof buf, "  %-14s (joining)", name);
        return std::string(buf);
      }
      const std::string state = down ? std::string(st.red()) + "DOWN (kill -9)" + st.reset()
                                     : std::string(st.green()) + "up" + st.reset() + " " + format_count(rate_of(s, name)) + "/s";
      std::snprintf(buf, sizeof buf, "  %-14s %-26s lag %7" PRIu64 " events %7s   dead letters %" PRIu64, name,
                    state.c_str(), g->lag_events,
                    g->lag_seconds > 0 ? format_duration_ns(static_cast<std::uint64_t>(g->lag_seconds * 1e9)).c_str() : "0s",
                    g->dlq_depth);
      return std::string(buf);
    };
    if (tty) {
      if (lines > 0) std::printf("\033[%dA", lines);
      std::printf("\033[K  %st=%5.1fs%s  orders published %8" PRIu64 "  (%s/s)\n", st.bold(), secs, st.reset(),
                  t->events, format_count(pub_rate).c_str());
      std::printf("\033[K%s\n\033[K%s\n\033[K  %s%s%s\n", row(kShipping, false).c_str(), row(kNotify, notify_down).c_str(),
                  st.cyan(), note.c_str(), st.reset());
      lines = 4;
    } else if (mono() >= next_plain || note != last_note) {
      next_plain = mono() + 1'000'000'000ull;
      last_note = note;
      const GroupStats* sg = find_group(s, kShipping);
      const GroupStats* ng = find_group(s, kNotify);
      std::printf("  t=%4.1fs  published %" PRIu64 " (%s/s)  shipping lag %" PRIu64 "  notifications %s lag %" PRIu64
                  "  %s\n",
                  secs, t->events, format_count(pub_rate).c_str(), sg ? sg->lag_events : 0,
                  notify_down ? "DOWN" : "up", ng ? ng->lag_events : 0, note.c_str());
    }
    std::fflush(stdout);
  }
};

}  // namespace

// What the demo saw, and the summary it prints.
struct Outcome {
  nlohmann::json produced, shipping, notifications;  // the children's summary lines
  std::uint64_t max_notify_lag = 0;
  std::uint64_t catch_up_ns = 0;
  std::vector<DeadLetter> letters;
};

int report(const MissionOptions& o, const std::string& bus_name, const Outcome& r, const Style& st) {
  const double pub_secs = r.produced.is_object() ? r.produced.value("seconds", 0.0) : 0.0;
  const std::uint64_t published = r.produced.is_object() ? r.produced.value("published", std::uint64_t{0}) : 0;
  const auto u64 = [](const nlohmann::json& j, const char* k) { return j.value(k, std::uint64_t{0}); };
  if (o.json) {
    nlohmann::json dl = nlohmann::json::array();
    for (const DeadLetter& d : r.letters)
      dl.push_back({{"partition", d.partition}, {"position", d.position}, {"reason", d.reason},
                    {"deliveries", d.deliveries}, {"payload", std::string(d.event.payload_text())}});
    print_json_line({{"bus", bus_name}, {"published", published}, {"publish_seconds", pub_secs},
                     {"shipping", r.shipping}, {"notifications", r.notifications},
                     {"notifications_max_lag_events", r.max_notify_lag},
                     {"notifications_catch_up_ns", r.catch_up_ns}, {"dead_letters", std::move(dl)}});
    return r.letters.size() == 1 ? 0 : 1;
  }
  std::printf("\n%sthe poison order%s, in shipping's dead-letter topic (orders.dlq.shipping):\n", st.bold(), st.reset());
  for (const DeadLetter& d : r.letters)
    std::printf("  orders:%u:%" PRIu64 "  %s%s%s after %u deliveries\n    %s\n", d.partition, d.position, st.red(),
                d.reason.c_str(), st.reset(), d.deliveries, std::string(d.event.payload_text()).c_str());
  std::printf("\n%ssummary%s\n", st.bold(), st.reset());
  std::printf("  orders published      %" PRIu64 " in %.2fs (%s/s), correlation ids and JSON state in every event\n",
              published, pub_secs, format_count(pub_secs > 0 ? static_cast<double>(published) / pub_secs : 0).c_str());
  for (const auto& [name, res] : {std::pair<const char*, const nlohmann::json*>{kShipping, &r.shipping},
                                  {kNotify, &r.notifications}})
    std::printf("  %-14s        handled %" PRIu64 ", publish-to-handled latency p50 %s  p90 %s  p99 %s  max %s\n",
                name, u64(*res, "handled"), format_ns(u64(*res, "p50")).c_str(), format_ns(u64(*res, "p90")).c_str(),
                format_ns(u64(*res, "p99")).c_str(), format_ns(u64(*res, "max")).c_str());
  std::printf("  (notifications' latency after its restart includes the time it was down)\n");
  std::printf("  notifications down   lag peaked at %" PRIu64 " events; caught up %s after its restart\n",
              r.max_notify_lag, format_duration_ns(r.catch_up_ns).c_str());
  std::printf("  dead letters         %zu (shipping), with the reason and the original envelope\n", r.letters.size());
  std::printf("\n%sexplore further%s (docs/CLI.md):\n", st.bold(), st.reset());
  std::printf("  herald topic create orders --partitions 4\n");
  std::printf("  herald publish orders --key cust-0042 --type OrderPlaced '{\"order_id\":\"ord-1\",\"items\":[]}'\n");
  std::printf("  herald consume orders --group shipping --exec './ship.sh'     # exit 0 acks; failures retry, then DLQ\n");
  std::printf("  herald groups orders          # committed positions and lag\n");
  std::printf("  herald dlq list orders        # then: herald dlq show / redrive / purge\n");
  std::printf("  herald stat --watch           # live view (works even with heraldd down)\n");
  std::printf("  herald demo --bench           # raw two-process throughput and latency\n");
  if (o.keep)
    std::printf("\nthe bus 'demo' was kept: try 'herald --bus demo stat'; remove it with 'herald --bus demo bus destroy'\n");
  return r.letters.size() == 1 ? 0 : 1;
}

int run_mission(const MissionOptions& o) {
  const std::string bus_name = o.keep ? "demo" : "demo-" + std::to_string(::getpid());
  (void)Bus::destroy(bus_name);
  auto bus = Bus::attach(bus_name);
  if (!bus) return runtime_error(bus.error(), "demo bus");
  struct Cleanup {
    std::string name;
    bool keep;
    std::vector<Child*> children;
    ~Cleanup() {
      for (Child* c : children)
        if (c->pid > 0) wait_child(*c, 0);  // kills what is still running
      if (!keep) (void)Bus::destroy(name);
    }
  } cleanup{bus_name, o.keep, {}};
  const Style st{::isatty(STDOUT_FILENO) == 1};
  const bool tty = st.on && !o.json;
  const std::uint64_t total = static_cast<std::uint64_t>(o.rate * o.seconds);
  const std::uint64_t poison = std::max<std::uint64_t>(1, total / 3 + 7);
  if (!o.json) {
    std::printf("%sherald demo%s: an order service, a shipping service and a notification service, as separate "
                "processes on bus '%s'\n",
                st.bold(), st.reset(), bus_name.c_str());
    std::printf("  topic 'orders': 4 partitions keyed by customer; %" PRIu64 " OrderPlaced events at %s/s over %.0fs\n\n",
                total, format_count(o.rate).c_str(), o.seconds);
  }
  if (auto t = bus->create_topic(kTopic, {.partitions = 4, .ring_bytes = 8ull << 20, .max_event = 64 << 10}); !t)
    return runtime_error(t.error(), "create topic 'orders'");

  Service ship{kShipping, start_child(bus_name, {"__demo-service", "--name", kShipping}), {}};
  Service notify{kNotify, start_child(bus_name, {"__demo-service", "--name", kNotify}), {}};
  cleanup.children = {&ship.child, &notify.child};
  // Both groups exist (and own their partitions) before the first order.
  const std::uint64_t join_deadline = mono() + 15'000'000'000ull;
  for (;;) {
    auto s = read_stats(bus_name, {.dlq_depth = false, .lag_time = false, .topic = kTopic});
    const GroupStats* a = s ? find_group(*s, kShipping) : nullptr;
    const GroupStats* b = s ? find_group(*s, kNotify) : nullptr;
    if (a && b && a->members == 1 && b->members == 1) break;
    if (mono() > join_deadline) return runtime_error("the demo services did not join their groups within 15s");
    nap(20'000'000);
  }
  Child producer = start_child(bus_name, {"__demo-orders", "--rate", std::to_string(o.rate), "--seconds",
                                          std::to_string(o.seconds), "--poison-at", std::to_string(poison)});
  cleanup.children.push_back(&producer);
  Panel panel;
  panel.tty = tty;
  panel.json = o.json;
  const std::uint64_t t0 = mono();
  const auto at = [&](double frac) { return t0 + static_cast<std::uint64_t>(o.seconds * frac * 1e9); };
  const std::uint64_t kill_at = at(0.35), restart_at = at(0.60);
  bool killed = false, restarted = false, producer_done = false;
  std::uint64_t restarted_ns = 0, caught_up_ns = 0, max_notify_lag = 0;
  std::string note = "orders flowing; both services keep up";
  nlohmann::json produced;
  const std::uint64_t hard_deadline = t0 + static_cast<std::uint64_t>((o.seconds + 30) * 1e9);
  for (;;) {
    const std::uint64_t now = mono();
    if (!killed && now >= kill_at) {
      ::kill(notify.child.pid, SIGKILL);
      (void)stop_child(notify.child, 0);
      killed = true;
      note = "killed the notification service (SIGKILL): orders keep flowing, shipping keeps up";
    }
    if (killed && !restarted && now >= restart_at) {
      notify.child = start_child(bus_name, {"__demo-service", "--name", kNotify});
      restarted = true;
      restarted_ns = now;
      note = "restarted the notification service: it resumes at its committed cursor";
    }
    auto s = read_stats(bus_name, {.dlq_depth = true, .lag_time = true, .topic = kTopic});
    if (!s) return runtime_error(s.error(), "read the demo bus");
    const GroupStats* ng = find_group(*s, kNotify);
    const GroupStats* sg = find_group(*s, kShipping);
    if (ng) max_notify_lag = std::max(max_notify_lag, ng->lag_events);
    const std::uint64_t near = std::max<std::uint64_t>(10, static_cast<std::uint64_t>(o.rate / 20));
    if (restarted && caught_up_ns == 0 && ng && ng->members == 1 && ng->lag_events <= near) {
      caught_up_ns = now;
      note = "notifications caught up in " + format_duration_ns(now - restarted_ns) + " (lag back to ~0)";
    }
    if (!producer_done) {
      int status = 0;
      if (::waitpid(producer.pid, &status, WNOHANG) == producer.pid) {
        producer.pid = -1;
        producer_done = true;
        produced = nlohmann::json::parse(read_all(producer, 1'000), nullptr, false);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
          return runtime_error("the order service failed (status " + std::to_string(status) + ")");
      }
    }
    panel.draw(*s, note, killed && !restarted);
    panel.prev = std::move(s).value();
    if (producer_done && restarted && sg && ng && sg->lag_bytes == 0 && ng->lag_bytes == 0 && sg->dlq_depth >= 1) break;
    if (now > hard_deadline) {
      std::printf("\n");
      return runtime_error("the services did not catch up within 30s of the last order (shipping lag " +
                           std::to_string(sg ? sg->lag_events : 0) + ", notifications lag " +
                           std::to_string(ng ? ng->lag_events : 0) + ")");
    }
    nap(100'000'000);
  }
  if (caught_up_ns == 0) caught_up_ns = mono();
  ship.result = stop_child(ship.child, SIGTERM);
  notify.result = stop_child(notify.child, SIGTERM);
  auto letters = bus->dead_letters(kTopic, kShipping);
  if (!letters) return runtime_error(letters.error(), "read shipping's dead letters");
  Outcome out{produced, ship.result, notify.result, max_notify_lag, caught_up_ns - restarted_ns, std::move(letters).value()};
  return report(o, bus_name, out, st);
}

// ---- registration --------------------------------------------------------------------

void add_demo_commands(CLI::App& app, Context& ctx) {
  static MissionOptions mission;
  static DemoOptions bench;
  static bool use_bench = false, quick = false;
  auto* demo = app.add_subcommand("demo", "the whole mission in under a minute: orders, shipping, notifications, "
                                          "a crash, a catch-up and a dead letter (--bench: raw throughput and latency)");
  demo->add_flag("--bench", use_bench, "instead: a producer and a consumer process, events/s and one-way latency");
  demo->add_option("--seconds", mission.seconds, "how long orders are published")->check(CLI::Range(1.0, 600.0))->capture_default_str();
  demo->add_option("--rate", mission.rate, "orders per second")->check(CLI::Range(10.0, 1e6))->capture_default_str();
  demo->add_flag("--quick", quick, "a short run (3 s at 2000 orders/s), for tests");
  demo->add_flag("--keep", mission.keep, "keep the bus 'demo' (and heraldd) afterwards to explore it");
  demo->add_option("--events", bench.events, "--bench: events in the throughput phase")->check(count_arg(1));
  demo->add_option("--size", bench.size, "--bench: payload bytes")->check(CLI::Range(16, 60000));
  demo->add_option("--bench-rate", bench.rate, "--bench: events/s in the latency phase")->check(CLI::Range(1, 10'000'000));
  ctx.on(demo, [&ctx] {
    if (use_bench) {
      bench.json = ctx.json;
      return run_demo_bench(bench);
    }
    if (quick) {
      mission.seconds = 3;
      mission.rate = 2000;
    }
    mission.json = ctx.json;
    return run_mission(mission);
  });

  // Hidden child roles.
  static MissionChildOptions child;
  auto add_mission_child = [&](const char* name) {
    auto* c = app.add_subcommand(name, "");
    c->group("");
    c->add_option("--name", child.name);
    c->add_option("--rate", child.rate);
    c->add_option("--seconds", child.seconds);
    c->add_option("--poison-at", child.poison_at);
    return c;
  };
  auto* orders_cmd = add_mission_child("__demo-orders");
  auto* service_cmd = add_mission_child("__demo-service");
  ctx.on(orders_cmd, [&ctx] {
    child.bus = ctx.bus();
    return mission_orders(child);
  });
  ctx.on(service_cmd, [&ctx] {
    child.bus = ctx.bus();
    return mission_service(child);
  });

  static DemoChildOptions bench_child;
  auto add_bench_child = [&](const char* name) {
    auto* c = app.add_subcommand(name, "");
    c->group("");
    c->add_option("--topic", bench_child.topic)->required();
    c->add_option("--group", bench_child.group);
    c->add_option("--events", bench_child.events)->required();
    c->add_option("--size", bench_child.size);
    c->add_option("--rate", bench_child.rate);
    return c;
  };
  auto* bp = add_bench_child("__demo-producer");
  auto* bc = add_bench_child("__demo-consumer");
  ctx.on(bp, [&ctx] {
    bench_child.bus = ctx.bus();
    return demo_producer(bench_child);
  });
  ctx.on(bc, [&ctx] {
    bench_child.bus = ctx.bus();
    return demo_consumer(bench_child);
  });
}

}  // namespace herald::tools
