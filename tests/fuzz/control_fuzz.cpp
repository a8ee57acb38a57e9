// Fuzz driver for heraldd's control protocol (runtime/src/control.hpp): g++
// has no libFuzzer, so this standalone driver runs a seed corpus plus N
// seeded random inputs, under ASan in CI (label fuzz). Two targets:
//
//   (a) control::FrameReader + control::parse fed random byte streams in
//       random chunks: random and truncated frames, bad lengths, non-JSON,
//       wrong versions, deep nesting, random JSON. Checked: no crash, no
//       exception, a frame body is never empty or over 64 KiB, a reader in
//       error stays in error, well-formed streams come back frame for frame.
//   (b) a live in-process heraldd (Daemon + Server in a thread of this
//       process, real Unix socket): many connections sending the same kind
//       of garbage plus random v1 requests (every op but shutdown/destroy,
//       random fields of random types), some abandoned mid-frame. Checked:
//       the daemon never crashes, every response is a JSON object with "ok",
//       and a well-behaved client is served during and afterwards.
//
//   herald_fuzz_control [--iterations=N] [--server-iterations=N] [--seed=S] [FILE...]
//
// The seed is printed; HERALD_SEED=<seed> (or --seed) replays. FILEs are
// extra raw byte streams for target (a) (e.g. a crash found elsewhere).
// With -DHERALD_LIBFUZZER (clang -fsanitize=fuzzer) target (a) is
// LLVMFuzzerTestOneInput and this file has no main.
//
// The fuzzing runs in a forked child; the parent only waits and then
// removes the bus's shared memory and run directory, so nothing is left
// behind even when the child crashes.
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/src/control.hpp"

#ifndef HERALD_LIBFUZZER
#include "daemon/daemon.hpp"
#include "daemon/server.hpp"
#include "runtime/src/daemon_client.hpp"
#include "runtime/src/run_dir.hpp"
#include "shm/clock.hpp"
#endif

namespace {

using herald::control::FrameReader;
using herald::control::kMaxFrame;

int g_failures = 0;
#define FUZZ_CHECK(cond, ...)                                                   \
  do {                                                                          \
    if (!(cond)) {                                                              \
      ++g_failures;                                                             \
      std::fprintf(stderr, "FUZZ FAILURE %s:%d: %s: ", __FILE__, __LINE__, #cond); \
      std::fprintf(stderr, __VA_ARGS__);                                        \
      std::fprintf(stderr, "\n");                                               \
    }                                                                           \
  } while (0)

std::string le32(std::uint32_t n) {
  std::string s(4, '\0');
  for (int i = 0; i < 4; ++i) s[static_cast<std::size_t>(i)] = static_cast<char>((n >> (8 * i)) & 0xff);
  return s;
}
std::string frame(const std::string& body) { return le32(static_cast<std::uint32_t>(body.size())) + body; }

// ---------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------

class Gen {
 public:
  explicit Gen(std::uint64_t seed) : rng_(seed) {}
  std::uint64_t u(std::uint64_t n) { return n == 0 ? 0 : rng_() % n; }
  bool coin(unsigned one_in = 2) { return u(one_in) == 0; }

  std::string bytes(std::size_t n) {
    std::string s(n, '\0');
    for (char& c : s) c = static_cast<char>(u(256));
    return s;
  }
  std::string text(std::size_t max) {
    static const char kAlpha[] = "abcdefghijklmnopqrstuvwxyz0123456789._-/\\\"{}[]: \x01\xff";
    std::string s(u(max + 1), ' ');
    for (char& c : s) c = kAlpha[u(sizeof kAlpha - 1)];
    return s;
  }

  nlohmann::json value(int depth = 0) {
    switch (u(depth > 3 ? 8 : 10)) {
      case 0: return nullptr;
      case 1: return coin();
      case 2: return static_cast<std::int64_t>(u(10)) - 3;
      case 3: return static_cast<std::uint64_t>(rng_());
      case 4: return static_cast<double>(u(1000)) / 7.0;
      case 5: return text(12);
      case 6: return std::string(u(400), 'n');
      case 7: return std::string(1, static_cast<char>(u(256)));  // maybe invalid UTF-8
      case 8: {
        nlohmann::json a = nlohmann::json::array();
        for (std::uint64_t i = u(4); i > 0; --i) a.push_back(value(depth + 1));
        return a;
      }
      default: {
        nlohmann::json o = nlohmann::json::object();
        for (std::uint64_t i = u(4); i > 0; --i) o[text(6)] = value(depth + 1);
        return o;
      }
    }
  }

  // A version-1 request with a real op (never shutdown/destroy: those stop
  // the daemon by design) and random arguments. Topic creation is kept
  // small: a valid create allocates the rings in /dev/shm.
  nlohmann::json request() {
    static const char* kOps[] = {"hello", "ping", "create_topic", "delete_topic", "join", "rejoin", "leave",
                                 "ack", "producer", "delete_group", "reset_group", "frobnicate", ""};
    static const char* kFields[] = {"topic", "group", "reader", "member_id", "partitions", "policy", "start",
                                    "start_value", "assignor", "max_poll_interval_ms", "to", "value", "partition",
                                    "execute", "force", "lagout_grace_ms", "single_producer", "id", "pid", "client"};
    static const char* kNames[] = {"t", "u", "f1", "", "..", ".dlq.x", "a.dlq.b", "g"};
    nlohmann::json r = nlohmann::json::object();
    r["v"] = 1;
    const std::string op = kOps[u(std::size(kOps))];
    r["op"] = op;
    for (std::uint64_t i = u(6); i > 0; --i) {
      const std::string f = kFields[u(std::size(kFields))];
      if ((f == "topic" || f == "group") && coin()) {
        r[f] = kNames[u(std::size(kNames))];
      } else if (f == "partitions" && op == "create_topic") {
        static const std::int64_t kParts[] = {0, 1, 4, 257, -1};
        r[f] = kParts[u(std::size(kParts))];
      } else {
        r[f] = value();
      }
    }
    if (op == "create_topic") {
      // Bounded: a few names, small rings; or invalid sizes.
      r["name"] = kNames[u(std::size(kNames))];
      static const std::uint64_t kRings[] = {4096, 65536, 1000, 0, 1ull << 40};
      static const std::uint64_t kEvents[] = {128, 1024, 0, 1ull << 20};
      r["ring_bytes"] = kRings[u(std::size(kRings))];
      r["max_event"] = kEvents[u(std::size(kEvents))];
      if (!r.contains("partitions") || !r["partitions"].is_number() || coin()) r["partitions"] = 1 + u(4);
      if (coin(3)) r["unix_group"] = coin() ? "root" : text(8);
    }
    if (op == "delete_topic") r["name"] = kNames[u(std::size(kNames))];
    return r;
  }

  // One frame of some kind (valid or not); `ok` says whether a reader must
  // accept it as a frame.
  std::string any_frame(bool* ok) {
    *ok = true;
    switch (u(12)) {
      case 0: return frame(request().dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
      case 1: return frame(value().dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
      case 2: return frame(bytes(1 + u(200)));
      case 3: return frame("t" + text(100));  // never empty: a 0 length is a bad frame
      case 4: {  // wrong or odd versions
        static const char* kV[] = {R"({"v":2,"op":"ping"})", R"({"v":"1","op":"ping"})", R"({"op":"ping"})",
                                   R"({"v":-1,"op":"ping"})", R"({"v":1.0,"op":"ping"})", R"({"v":1,"v":2})",
                                   R"({"v":18446744073709551615,"op":"ping"})", R"({"v":1,"op":"ping","id":-5})"};
        return frame(kV[u(std::size(kV))]);
      }
      case 5: {  // deep nesting, within the 64 KiB limit
        const bool arrays = coin();
        const std::size_t d = 1 + u(arrays ? 30000 : 10000);
        std::string s;
        for (std::size_t i = 0; i < d; ++i) s += arrays ? "[" : "{\"a\":";
        s += "1";
        for (std::size_t i = 0; i < d; ++i) s += arrays ? "]" : "}";
        return frame(s);
      }
      case 6: {  // a body of exactly the limit
        std::string body = "{\"v\":1,\"op\":\"ping\",\"pad\":\"";
        body += std::string(kMaxFrame - body.size() - 2, 'p');
        body += "\"}";
        return frame(body);
      }
      case 7: {  // bad length: 0 or over the limit
        *ok = false;
        static const std::uint32_t kLens[] = {0, kMaxFrame + 1, 0x7fffffff, 0xffffffff, 1u << 20};
        return le32(kLens[u(std::size(kLens))]) + bytes(u(16));
      }
      case 8: {  // truncated: the length promises more than follows
        *ok = false;
        const std::string body = request().dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
        return le32(static_cast<std::uint32_t>(body.size() + 1 + u(100))) + body;
      }
      case 9: {  // a truncated length prefix
        *ok = false;
        return bytes(1 + u(3));
      }
      default: return frame(R"({"v":1,"id":)" + std::to_string(u(100)) + R"(,"op":"ping"})");
    }
  }

 private:
  std::mt19937_64 rng_;
};

// ---------------------------------------------------------------------------
// (a) FrameReader + parse
// ---------------------------------------------------------------------------

void parse_body(const std::string& body) {
  FUZZ_CHECK(!body.empty() && body.size() <= kMaxFrame, "body of %zu bytes", body.size());
  try {
    auto r = herald::control::parse(body);
    if (r) {
      FUZZ_CHECK(r->is_object(), "parse accepted a non-object");
      FUZZ_CHECK(r->value("v", nlohmann::json()) == 1, "parse accepted version %s", r->value("v", nlohmann::json()).dump().c_str());
      // What the daemon does with a request: look fields up, build a response.
      (void)herald::control::get_string(*r, "op", 64);
      (void)herald::control::get_u64_or(*r, "id", 0);
      (void)herald::control::encode(herald::control::error_response(1, herald::Error{herald::Errc::kProtocol, body}));
    } else {
      FUZZ_CHECK(!r.error().detail.empty(), "an error without detail");
    }
  } catch (const std::exception& e) {
    FUZZ_CHECK(false, "parse threw: %s", e.what());
  }
}

// Feeds a stream in random chunks; returns the bodies read.
std::vector<std::string> read_stream(const std::string& stream, Gen& g) {
  FrameReader fr;
  std::vector<std::string> bodies;
  std::size_t at = 0;
  bool failed = false;
  while (at < stream.size()) {
    const std::size_t n = std::min<std::size_t>(stream.size() - at, 1 + g.u(g.coin() ? 16 : 70000));
    const bool fed = fr.feed(stream.data() + at, n);
    at += n;
    if (failed) FUZZ_CHECK(!fed, "a reader in error accepted more bytes");
    while (auto body = fr.next()) {
      FUZZ_CHECK(!failed, "a reader in error returned a frame");
      parse_body(*body);
      bodies.push_back(std::move(*body));
    }
    if (!fed || !fr.error().empty()) failed = true;
  }
  if (failed) FUZZ_CHECK(!fr.error().empty(), "failed without an error message");
  return bodies;
}

void fuzz_frames(Gen& g, std::uint64_t iterations) {
  for (std::uint64_t i = 0; i < iterations; ++i) {
    std::string stream;
    std::vector<std::string> expect;
    bool all_ok = true;
    for (std::uint64_t k = 1 + g.u(6); k > 0; --k) {
      bool ok = true;
      const std::string f = g.any_frame(&ok);
      if (all_ok && ok) expect.push_back(f.substr(4));
      all_ok = all_ok && ok;
      stream += f;
    }
    const std::vector<std::string> got = read_stream(stream, g);
    if (all_ok) {
      FUZZ_CHECK(got == expect, "iteration %llu: %zu frames back of %zu", static_cast<unsigned long long>(i),
                 got.size(), expect.size());
    } else {
      // Up to the first bad frame, what was sent comes back.
      for (std::size_t k = 0; k < expect.size() && k < got.size(); ++k)
        FUZZ_CHECK(got[k] == expect[k], "iteration %llu: frame %zu differs", static_cast<unsigned long long>(i), k);
    }
  }
}

}  // namespace

#ifdef HERALD_LIBFUZZER
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  Gen g(size);
  read_stream(std::string(reinterpret_cast<const char*>(data), size), g);
  return 0;
}
#else

namespace {

// ---------------------------------------------------------------------------
// (b) a live daemon
// ---------------------------------------------------------------------------

int connect_to(const std::string& sock) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::memcpy(a.sun_path, sock.c_str(), sock.size() + 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Reads what the daemon sent within `ms` (or until it closed); every frame
// must be a JSON object with a boolean "ok".
void drain_responses(int fd, int ms) {
  FrameReader fr;
  char buf[65536];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, ms) <= 0) break;
    const ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n <= 0) break;
    FUZZ_CHECK(fr.feed(buf, static_cast<std::size_t>(n)), "the daemon sent a bad frame: %s", fr.error().c_str());
    while (auto body = fr.next()) {
      auto j = nlohmann::json::parse(*body, nullptr, false);
      FUZZ_CHECK(j.is_object() && j.contains("ok") && j["ok"].is_boolean(), "response %s", body->substr(0, 200).c_str());
    }
    ms = 10;
  }
}

bool well_behaved(const std::string& sock, std::uint64_t n) {
  auto c = herald::detail::DaemonClient::connect(sock);
  if (!c) {
    std::fprintf(stderr, "FUZZ: a well-behaved client cannot connect: %s\n", c.error().message().c_str());
    return false;
  }
  auto ping = (*c)->call({{"op", "ping"}});
  const std::string name = "w" + std::to_string(n);
  auto made = (*c)->call({{"op", "create_topic"}, {"name", name}, {"partitions", 1}, {"ring_bytes", 4096}, {"max_event", 128}});
  auto gone = (*c)->call({{"op", "delete_topic"}, {"name", name}, {"force", true}});
  if (!ping || !made || !gone) {
    std::fprintf(stderr, "FUZZ: a well-behaved client was not served: %s / %s / %s\n",
                 ping ? "ok" : ping.error().message().c_str(), made ? "ok" : made.error().message().c_str(),
                 gone ? "ok" : gone.error().message().c_str());
    return false;
  }
  return true;
}

void fuzz_server(Gen& g, std::uint64_t iterations, const std::string& bus, const std::string& run_dir) {
  herald::daemon::Config cfg;
  cfg.bus = bus;
  cfg.run_dir = run_dir;
  auto d = herald::daemon::Daemon::open(cfg, herald::shm::monotonic_ns, {});
  if (!d) {
    FUZZ_CHECK(false, "Daemon::open: %s", d.error().message().c_str());
    return;
  }
  const std::string sock = herald::detail::socket_path(run_dir, bus);
  herald::daemon::Server server(**d, sock, {});
  if (auto r = server.listen(); !r) {
    FUZZ_CHECK(false, "listen: %s", r.error().message().c_str());
    return;
  }
  const int stop = ::eventfd(0, EFD_CLOEXEC);
  std::atomic<bool> returned{false};
  std::thread t([&] {
    server.run(stop);
    returned.store(true);
  });
  FUZZ_CHECK(well_behaved(sock, 0), "before fuzzing");
  std::vector<int> open;
  for (std::uint64_t i = 0; i < iterations && !returned.load(); ++i) {
    int fd = -1;
    if (!open.empty() && g.coin()) {
      const std::size_t k = g.u(open.size());
      fd = open[k];
      open.erase(open.begin() + static_cast<std::ptrdiff_t>(k));
    } else {
      fd = connect_to(sock);
    }
    FUZZ_CHECK(fd >= 0, "connect failed at iteration %llu", static_cast<unsigned long long>(i));
    if (fd < 0) break;
    std::string stream;
    for (std::uint64_t k = 1 + g.u(4); k > 0; --k) {
      bool ok = true;
      stream += g.coin(3) ? g.any_frame(&ok) : frame(g.request().dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    }
    if (g.coin(4)) stream.resize(g.u(stream.size() + 1));  // abandoned mid-frame
    std::size_t at = 0;
    while (at < stream.size()) {
      const ssize_t n = ::send(fd, stream.data() + at, std::min<std::size_t>(stream.size() - at, 1 + g.u(4096)),
                               MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n <= 0) break;  // closed by the daemon after an error, or full: fine
      at += static_cast<std::size_t>(n);
    }
    const auto what = g.u(4);
    if (what == 0) {
      drain_responses(fd, 50);
      ::close(fd);
    } else if (what == 1 && open.size() < 8) {
      open.push_back(fd);  // left open, maybe written to again later
    } else {
      ::close(fd);  // closed at once, responses unread
    }
    if (i % 100 == 99) FUZZ_CHECK(well_behaved(sock, i), "during fuzzing (iteration %llu)", static_cast<unsigned long long>(i));
  }
  for (int fd : open) ::close(fd);
  FUZZ_CHECK(!returned.load(), "the server stopped during fuzzing");
  FUZZ_CHECK(well_behaved(sock, iterations), "after fuzzing");
  const std::uint64_t one = 1;
  [[maybe_unused]] const ssize_t w = ::write(stop, &one, sizeof one);
  t.join();
  ::close(stop);
}

// ---------------------------------------------------------------------------

void remove_bus(const std::string& bus, const std::string& run_dir) {
  const std::string prefix = "herald." + bus + ".";
  if (DIR* dir = ::opendir("/dev/shm")) {
    while (dirent* e = ::readdir(dir))
      if (std::strncmp(e->d_name, prefix.c_str(), prefix.size()) == 0) ::shm_unlink(("/" + std::string(e->d_name)).c_str());
    ::closedir(dir);
  }
  if (DIR* dir = ::opendir(run_dir.c_str())) {
    while (dirent* e = ::readdir(dir))
      if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) ::unlink((run_dir + "/" + e->d_name).c_str());
    ::closedir(dir);
  }
  ::rmdir(run_dir.c_str());
}

std::string arg(int argc, char** argv, const char* key, const std::string& fallback) {
  const std::string k = std::string("--") + key + "=";
  for (int i = 1; i < argc; ++i)
    if (std::strncmp(argv[i], k.c_str(), k.size()) == 0) return argv[i] + k.size();
  return fallback;
}

}  // namespace

int main(int argc, char** argv) {
  std::uint64_t seed = std::random_device{}();
  seed = seed << 32 | std::random_device{}();
  if (const char* env = std::getenv("HERALD_SEED"); env != nullptr && *env != '\0') seed = std::strtoull(env, nullptr, 0);
  seed = std::strtoull(arg(argc, argv, "seed", std::to_string(seed)).c_str(), nullptr, 0);
  const std::uint64_t iterations = std::strtoull(arg(argc, argv, "iterations", "1000").c_str(), nullptr, 0);
  const std::uint64_t server_iterations = std::strtoull(arg(argc, argv, "server-iterations", "200").c_str(), nullptr, 0);
  std::printf("herald_fuzz_control: seed = %llu (replay with HERALD_SEED=%llu), %llu + %llu iterations\n",
              static_cast<unsigned long long>(seed), static_cast<unsigned long long>(seed),
              static_cast<unsigned long long>(iterations), static_cast<unsigned long long>(server_iterations));
  std::fflush(stdout);

  char tmpl[] = "/tmp/herald-fuzz-XXXXXX";
  const char* dir = ::mkdtemp(tmpl);
  if (dir == nullptr) return std::perror("mkdtemp"), 2;
  const std::string run_dir = dir;
  const std::string bus = "fuzz" + std::to_string(::getpid());
  ::setenv("HERALD_NO_AUTOSTART", "1", 1);
  ::setenv("HERALD_RUN_DIR", run_dir.c_str(), 1);

  // The parent (no threads yet) only cleans up after the child.
  const pid_t child = ::fork();
  if (child < 0) return std::perror("fork"), 2;
  if (child > 0) {
    int st = 0;
    while (::waitpid(child, &st, 0) < 0 && errno == EINTR) {
    }
    remove_bus(bus, run_dir);
    if (WIFEXITED(st)) return WEXITSTATUS(st);
    std::fprintf(stderr, "herald_fuzz_control: the fuzzing process died of signal %d (seed %llu)\n", WTERMSIG(st),
                 static_cast<unsigned long long>(seed));
    return 1;
  }

  Gen g(seed);
  // Seed corpus for (a): hand-made streams, then any files given.
  const std::vector<std::string> corpus = {
      frame(R"({"v":1,"id":1,"op":"hello"})"),
      frame(R"({"v":1,"id":1,"op":"hello"})") + frame(R"({"v":1,"id":2,"op":"ping"})"),
      le32(0),
      le32(kMaxFrame + 1) + "x",
      le32(5) + "hel",
      frame("null"),
      frame("[]"),
      frame("\"v\""),
      frame(R"({"v":1})"),
      frame(R"({"v":1,"op":7})"),
      frame(std::string(1, '\xff')),
      frame(std::string(kMaxFrame, '[')),
      frame(R"({"v":1,"op":"join","topic":"t","group":"g","reader":18446744073709551615})"),
  };
  for (const std::string& s : corpus) read_stream(s, g);
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--", 2) == 0) continue;
    std::ifstream in(argv[i], std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    read_stream(ss.str(), g);
  }
  fuzz_frames(g, iterations);
  fuzz_server(g, server_iterations, bus, run_dir);
  if (g_failures != 0) {
    std::fprintf(stderr, "herald_fuzz_control: %d failures (seed %llu)\n", g_failures, static_cast<unsigned long long>(seed));
    return 1;
  }
  std::printf("herald_fuzz_control: ok\n");
  return 0;
}
#endif
