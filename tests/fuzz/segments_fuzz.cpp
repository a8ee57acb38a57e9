// herald_fuzz_segments: feeds mutated shared memory to everything that
// reads it, and checks that the answer is an error (or a sane value), never
// a crash, a hang or a read outside the mapping. g++ has no libFuzzer, so
// this is a standalone driver (run by ctest in every build, and in CI's ASan
// build); built with -DHERALD_LIBFUZZER and clang's -fsanitize=fuzzer the
// same target runs under libFuzzer instead.
//
//   herald_fuzz_segments [--seed=N] [--iterations=N] [--verbose] [FILE|DIR ...]
//
// Files (the seed corpus, tests/fuzz/corpus/) run first: `.hex` files are hex
// bytes with `#` comments, anything else raw bytes. Then N inputs, each made
// by mutating a corpus entry or generated from scratch, from the seed
// (printed; HERALD_SEED replays).
//
// Input format. Byte 0 picks the target, byte 1 a template; the rest is ops.
//   targets 0/1/2: a valid log / state / registry segment image, patched by
//     ops, then validate_log_segment / validate_state_segment /
//     validate_registry_segment on a heap copy of exactly the patched size
//     (ASan sees any read past it):
//       op&3 == 0  write:  u16 offset, u8 n (len = n%16+1), len bytes
//       op&3 == 1  value:  u16 offset, u8 i  -> kInteresting[i] as u64
//       op&3 == 2  resize: u8 i              -> one of sizes() below
//       op&3 == 3  flip:   u16 offset, u8 bit
//   target 3: a ring, forged by ops, then every reader function on every
//     64-byte position of the window (and around it), then repair of every
//     forged claim slot, then the readers again. Positions are slots:
//     pos(s) = tail - 2 * ring + 64 * s (tail rounded down to 64). It runs twice: on a real double-mapped
//     ring (TopicMap) and on a heap mirror of it (both copies written), where
//     ASan catches any read outside the 2 x ring bytes.
//       op&7 == 0  tail:   u64 value (op&8: rounded down to 64)
//       op&7 == 1  header: u16 slot, u32 size, u32 payload_len, u16 key_len, u16 meta_len, u16 flags
//       op&7 == 2  word:   u16 slot, u8 kind (0 pos^salt, 1 older lap, 2 newer lap, 3 raw pos, 4 zero, 5 u64 follows)
//       op&7 == 3  index:  u8 page, u16 slot (op&8: u64 raw value follows instead of the slot)
//       op&7 == 4  bytes:  u16 slot, u8 n (len = n%64+1), len bytes
//       op&7 == 5  claim:  u8 slot, u16 pos slot, u8 state, u32 size, u16 committed_to slot
//       op&7 == 6  record: u16 slot, u8 units (a valid, committed record of 64*(units%16+1) bytes)
//       op&7 == 7  close (sets the closed bit in tail)
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "shm/log_layout.hpp"
#include "shm/names.hpp"
#include "shm/registry.hpp"
#include "shm/repair.hpp"
#include "shm/ring_log.hpp"
#include "shm/topic_map.hpp"

namespace herald::fuzz {
namespace {

using namespace herald::shm;
using Bytes = std::vector<std::uint8_t>;

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "herald_fuzz_segments: INVARIANT BROKEN: %s\n", what.c_str());
  std::fflush(stderr);
  std::abort();
}

// Reads the input front to back; past the end every read is 0.
class Reader {
 public:
  Reader(const std::uint8_t* d, std::size_t n) : d_(d), n_(n) {}
  bool done() const { return i_ >= n_; }
  std::uint8_t u8() { return i_ < n_ ? d_[i_++] : 0; }
  std::uint16_t u16() { return static_cast<std::uint16_t>(u8() | u8() << 8); }
  std::uint32_t u32() { return static_cast<std::uint32_t>(u16()) | static_cast<std::uint32_t>(u16()) << 16; }
  std::uint64_t u64() { return static_cast<std::uint64_t>(u32()) | static_cast<std::uint64_t>(u32()) << 32; }

 private:
  const std::uint8_t* d_;
  std::size_t n_;
  std::size_t i_ = 0;
};

constexpr std::uint64_t kInteresting[] = {
    0, 1, 2, 63, 64, 65, 127, 128, 255, 256, 4095, 4096, 4097, 8192, 65536, 0x7fffffff, 0x80000000, 0xffffffff,
    1ull << 32, (1ull << 32) + 64, 1ull << 40, 1ull << 58, 1ull << 62, 1ull << 63, ~0ull, ~0ull - 63, ~0ull - 4095,
    kLayoutVersion, kLayoutVersion + 1, kMagicLog, kMagicState, kMagicRegistry, kProducerSlots, kReaderSlots,
    kMaxPartitions, kMaxPartitions + 1, kMaxRingBytes, kMaxRingBytes * 2,
};
constexpr std::size_t kNumInteresting = sizeof kInteresting / sizeof kInteresting[0];

// ---- valid segment images (templates) -------------------------------------------

struct Templates {
  std::vector<Bytes> log, state, registry;
  std::vector<LogParams> log_params;
};

Bytes copy_of(const void* p, std::uint64_t n) {
  const auto* b = static_cast<const std::uint8_t*>(p);
  return Bytes(b, b + n);
}

// Built once from real segments (created, copied, removed at once).
Templates make_templates(const std::string& bus) {
  Templates t;
  const LogParams params[] = {{1, 4096, 1024, 0}, {3, 16384, 1024, kLogSingleProducer}, {2, 8192, 128, 0}};
  std::uint64_t inc = 1;
  for (const LogParams& p : params) {
    auto topic = TopicMap::create(bus, "tpl", inc, p, {});
    if (!topic) fail("create template: " + topic.error().message());
    t.log.push_back(copy_of(topic->log_header(), topic->geometry().total_bytes));
    t.state.push_back(copy_of(topic->state_header(), topic->state_geometry().total_bytes));
    t.log_params.push_back(p);
    TopicMap::remove(bus, "tpl", inc);
    ++inc;
  }
  auto reg = Registry::open_or_create(bus);
  if (!reg) fail("create registry: " + reg.error().message());
  t.registry.push_back(copy_of(reg->header(), RegistryGeometry{}.total_bytes));
  (void)Registry::remove(bus);
  return t;
}

// ---- targets 0..2: segment headers ---------------------------------------------

std::map<std::string, std::uint64_t> g_outcomes;  // for the summary

void count(const std::string& what) { ++g_outcomes[what]; }

std::uint64_t pick_size(std::uint8_t i, std::uint64_t cur, std::uint64_t orig) {
  const std::uint64_t sizes[] = {0,         1,          63,         4095,        4096,       4097,
                                 cur - 4096, cur - 1,   cur + 1,   cur + 4096,  orig,       orig / 2,
                                 orig - 64, 2 * 4096,   3 * 4096,  orig + 8192};
  const std::uint64_t s = sizes[i % (sizeof sizes / sizeof sizes[0])];
  return s > (4u << 20) ? orig : s;  // never more than 4 MiB
}

void run_header(int target, Reader& in, const Templates& t) {
  const std::uint8_t which = in.u8();
  const std::vector<Bytes>& set = target == 0 ? t.log : target == 1 ? t.state : t.registry;
  const std::size_t ti = which % set.size();
  Bytes img = set[ti];
  const std::uint64_t orig = img.size();
  while (!in.done()) {
    const std::uint8_t op = in.u8();
    switch (op & 3) {
      case 0: {
        const std::uint16_t off = in.u16();
        const std::size_t len = in.u8() % 16 + 1;
        for (std::size_t k = 0; k < len; ++k) {
          const std::uint8_t b = in.u8();
          if (!img.empty()) img[(off + k) % img.size()] = b;
        }
        break;
      }
      case 1: {
        const std::uint16_t off = in.u16();
        const std::uint64_t v = kInteresting[in.u8() % kNumInteresting];
        if (img.size() >= 8) std::memcpy(&img[(off % (img.size() - 7))], &v, 8);
        break;
      }
      case 2:
        img.resize(pick_size(in.u8(), img.size(), orig), 0);
        break;
      default: {
        const std::uint16_t off = in.u16();
        const std::uint8_t bit = in.u8();
        if (!img.empty()) img[off % img.size()] ^= static_cast<std::uint8_t>(1u << (bit % 8));
        break;
      }
    }
  }
  // A heap block of exactly the patched size: ASan reports any read past it.
  // (A zero-byte image still gets a valid pointer.)
  std::unique_ptr<std::byte[]> heap(new std::byte[img.empty() ? 1 : img.size()]);
  std::memcpy(heap.get(), img.data(), img.size());
  const std::byte* base = heap.get();
  const std::uint64_t bytes = img.size();
  std::string verdict;
  if (target == 0) {
    auto r = validate_log_segment(base, bytes, 1 + ti);
    if (r) {
      // Accepted: then the geometry must fit what was mapped.
      const LogGeometry& g = *r;
      if (g.total_bytes != bytes || g.rings_off % kPageBytes != 0 || !validate_log_params(g.params))
        fail("validate_log_segment accepted an inconsistent geometry");
      verdict = "log: accepted";
    } else {
      if (r.error().detail.empty()) fail("an error without a message");
      verdict = "log: " + std::string(to_string(r.error().code));
    }
  } else if (target == 1) {
    const std::uint32_t parts = t.log_params[ti].partitions;
    auto r = validate_state_segment(base, bytes, 1 + ti, parts);
    if (r && r->total_bytes != bytes) fail("validate_state_segment accepted a wrong size");
    if (!r && r.error().detail.empty()) fail("an error without a message");
    verdict = r ? "state: accepted" : "state: " + std::string(to_string(r.error().code));
  } else {
    auto r = validate_registry_segment(base, bytes);
    if (!r && r.error().detail.empty()) fail("an error without a message");
    verdict = r ? "registry: accepted" : "registry: " + std::string(to_string(r.error().code));
  }
  count(verdict);
}

// ---- target 3: a forged ring -----------------------------------------------------

constexpr std::uint64_t kFuzzRing = 4096;
constexpr std::uint64_t kFuzzMax = 1024;

// The same partition twice: the real double-mapped ring of a topic, and a
// heap mirror (both copies of the ring in one heap block of 2 x ring bytes).
struct MirrorPartition {
  std::unique_ptr<std::byte[]> ring{new std::byte[2 * kFuzzRing]};
  std::unique_ptr<PartitionLayout> part{new PartitionLayout{}};
  std::unique_ptr<std::atomic<std::uint64_t>[]> index{new std::atomic<std::uint64_t>[kFuzzRing / kIndexPageBytes]};
  std::unique_ptr<ClaimSlotLayout[]> claims{new ClaimSlotLayout[kProducerSlots]};
  std::unique_ptr<PartitionStateLayout> state{new PartitionStateLayout{}};
  PartitionView view;

  explicit MirrorPartition(const PartitionView& real) {
    view = real;
    view.part = part.get();
    view.ring = ring.get();
    view.boundary = index.get();
    view.claims = claims.get();
    view.state = state.get();
  }
};

class FuzzRing {
 public:
  explicit FuzzRing(const std::string& bus) : bus_(bus) {
    auto t = TopicMap::create(bus, "ring", 1, {1, kFuzzRing, kFuzzMax, 0}, {});
    if (!t) fail("create the fuzz ring: " + t.error().message());
    topic_ = std::move(t).value();
    // Unlinked at once: the mappings stay valid, and nothing is left in
    // /dev/shm even if an input crashes the process.
    TopicMap::remove(bus_, "ring", 1);
    mirror_ = std::make_unique<MirrorPartition>(topic_->partition(0));
  }

  void run(Reader& in) {
    reset();
    (void)in.u8();  // template: one ring geometry for now
    std::vector<std::uint32_t> forged_slots;
    while (!in.done()) apply(in, forged_slots);
    for (const PartitionView* v : {&real(), &mirror()}) sweep(*v, "before repair");
    // A reader about to park re-checks its positions (has_news) first; with
    // a zero timeout it returns at once either way, and clears its bit.
    const PartitionView* parts[] = {&real()};
    const std::uint64_t t = load_tail(real()) & ~std::uint64_t{63};
    for (std::uint64_t q : {t, t - kFuzzRing + 64, t + 64, std::uint64_t{0}, t - 2 * kFuzzRing}) {
      const std::uint64_t at[] = {q};
      (void)park_reader(*topic_, 0, parts, at, 0);
      if (real().state->waiters.load() != 0) fail("park_reader left its waiter bit set");
    }
    // Repair every forged claim slot as heraldd would (all of them dead),
    // on the real topic (repair needs the TopicMap), then read again.
    std::uint64_t dead = 0;
    for (std::uint32_t s : forged_slots) dead |= 1ull << s;
    for (std::uint32_t s : forged_slots) {
      const RepairReport r = repair_claim_slot(*topic_, 0, s, dead);
      count("repair outcome " + std::to_string(static_cast<int>(r.outcome)));
    }
    sweep(real(), "after repair");
  }

 private:
  const PartitionView& real() const { return topic_->partition(0); }
  const PartitionView& mirror() const { return mirror_->view; }
  std::uint64_t tail_raw() const { return real().part->tail.load(); }
  // Slots 0..511 (16 bytes apart: records are 16-byte aligned) cover the
  // ring behind the window and the window itself.
  std::uint64_t pos_of(std::uint16_t slot) const {
    return (tail_raw() & ~std::uint64_t{63}) - 2 * kFuzzRing + kRecordAlign * slot;
  }

  void reset() {
    const PartitionView& v = real();
    std::memset(v.ring, 0, kFuzzRing);
    std::memset(mirror_->ring.get(), 0, 2 * kFuzzRing);
    for (const PartitionView* p : {&v, &mirror()}) {
      p->part->tail.store(0);
      for (std::uint64_t i = 0; i < kFuzzRing / kIndexPageBytes; ++i) p->boundary[i].store(0);
      for (std::uint32_t i = 0; i < kProducerSlots; ++i) {
        p->claims[i].word.store(0);
        p->claims[i].size.store(0);
        p->claims[i].committed_to.store(0);
      }
      p->state->waiters.store(0);
    }
  }

  // Writes the same bytes at pos in both rings (twice in the mirror).
  void put(std::uint64_t pos, const void* src, std::size_t n) {
    const auto* b = static_cast<const std::byte*>(src);
    for (std::size_t k = 0; k < n; ++k) {
      const std::uint64_t i = (pos + k) & (kFuzzRing - 1);
      real().ring[i] = b[k];
      mirror_->ring[i] = b[k];
      mirror_->ring[i + kFuzzRing] = b[k];
    }
  }
  void put_word(std::uint64_t pos, std::uint64_t w) { put(pos, &w, 8); }
  void set_tail(std::uint64_t t) {
    real().part->tail.store(t);
    mirror_->part->tail.store(t);
  }
  void set_index(std::uint64_t page, std::uint64_t value) {
    real().boundary[page].store(value);
    mirror_->view.boundary[page].store(value);
  }

  void apply(Reader& in, std::vector<std::uint32_t>& forged_slots) {
    const std::uint8_t op = in.u8();
    const std::uint64_t salt = real().salt;
    switch (op & 7) {
      case 0: {
        std::uint64_t t = in.u64();
        if ((op & 8) != 0) t &= ~std::uint64_t{63};
        if ((op & 16) != 0) t = kInteresting[t % kNumInteresting];
        set_tail(t);
        break;
      }
      case 1: {
        const std::uint64_t pos = pos_of(in.u16());
        std::uint8_t h[48] = {};
        const std::uint32_t size = in.u32(), payload = in.u32();
        const std::uint16_t key = in.u16(), meta = in.u16(), flags = in.u16();
        std::memcpy(h + 8, &size, 4);
        std::memcpy(h + 12, &payload, 4);
        std::memcpy(h + 40, &flags, 2);
        std::memcpy(h + 42, &key, 2);
        std::memcpy(h + 44, &meta, 2);
        put(pos + 8, h + 8, 40);  // the word is op 2's business
        break;
      }
      case 2: {
        const std::uint64_t pos = pos_of(in.u16());
        switch (in.u8() % 6) {
          case 0: put_word(pos, pos ^ salt); break;
          case 1: put_word(pos, (pos - kFuzzRing) ^ salt); break;
          case 2: put_word(pos, (pos + kFuzzRing) ^ salt); break;
          case 3: put_word(pos, pos); break;
          case 4: put_word(pos, 0); break;
          default: put_word(pos, in.u64()); break;
        }
        break;
      }
      case 3: {
        const std::uint64_t page = in.u8() % (kFuzzRing / kIndexPageBytes);
        set_index(page, (op & 8) != 0 ? in.u64() : pos_of(in.u16()));
        break;
      }
      case 4: {
        const std::uint64_t pos = pos_of(in.u16());
        const std::size_t n = in.u8() % 64 + 1;
        for (std::size_t k = 0; k < n; ++k) {
          const std::uint8_t b = in.u8();
          put(pos + 8 + k, &b, 1);
        }
        break;
      }
      case 5: {
        const std::uint32_t s = in.u8() % 4;
        const std::uint64_t pos = pos_of(in.u16());
        const std::uint64_t state = in.u8() % 4;
        const std::uint64_t size = in.u32();
        const std::uint64_t done = pos_of(in.u16());
        for (const PartitionView* v : {&real(), &mirror()}) {
          v->claims[s].size.store(size);
          v->claims[s].committed_to.store(done);
          v->claims[s].word.store(pos | state);
        }
        forged_slots.push_back(s);
        break;
      }
      case 6: {
        const std::uint64_t pos = pos_of(in.u16());
        // A well-formed record: 48..max_event bytes, 16-byte aligned.
        const auto size = static_cast<std::uint32_t>(kRecordAlign * (in.u8() % (kFuzzMax / kRecordAlign - 2) + 3));
        std::uint8_t h[48] = {};
        const std::uint32_t payload = size - 48;
        std::memcpy(h + 8, &size, 4);
        std::memcpy(h + 12, &payload, 4);
        put(pos + 8, h + 8, 40);
        // Index entries for the pages it crosses, as commit_record writes them.
        for (std::uint64_t b = align_up(pos, kIndexPageBytes); b >= pos && b < pos + size; b += kIndexPageBytes)
          set_index((b / kIndexPageBytes) % (kFuzzRing / kIndexPageBytes), b == pos ? pos : pos + size);
        put_word(pos, pos ^ salt);
        break;
      }
      default:
        set_tail(tail_raw() | kTailClosedBit);
        break;
    }
  }

  // Every reader function at every position of the window and around it.
  void sweep(const PartitionView& v, const char* when) {
    const std::uint64_t t = load_tail(v);
    std::vector<std::byte> buf(kFuzzMax);  // exactly max_event: ASan sees a longer copy
    auto check_one = [&](std::uint64_t q) {
      const RecordHeader* h = nullptr;
      const Status g = read_gated(v, q, &h);
      if (g == Status::kOk) {
        if (h != v.header_at(q)) fail("read_gated returned a header elsewhere");
        if (h->size < kRecordHeaderBytes || h->size > v.max_event || h->size % kRecordAlign != 0)
          fail(std::string("read_gated accepted size ") + std::to_string(h->size) + " " + when);
        if (std::uint64_t{kRecordHeaderBytes} + h->key_len + h->meta_len + h->payload_len > h->size)
          fail("read_gated accepted parts longer than the record");
        // Read the whole record, as a consumer would: inside the mapping.
        volatile std::byte sink{};
        const std::byte* rec = v.bytes_at(q);
        for (std::uint32_t k = 0; k < h->size; k += 64) sink = rec[k];
        (void)sink;
      }
      count(std::string("read_gated ") + std::to_string(static_cast<int>(g)));
      std::uint32_t n = 0;
      const Status c = read_copy(v, q, buf.data(), &n);
      if (c == Status::kOk) {
        if (n < kRecordHeaderBytes || n > v.max_event || n % kRecordAlign != 0)
          fail("read_copy returned size " + std::to_string(n));
        std::uint64_t w = 0;
        std::memcpy(&w, buf.data(), 8);
        if (w != (q ^ v.salt)) fail("read_copy returned a copy without the commit word");
      }
      count(std::string("read_copy ") + std::to_string(static_cast<int>(c)));
      const Status p = check_position(v, q);
      if (p == Status::kOk && q > t) fail("check_position accepted a position beyond the tail");
      if (p == Status::kOk && q != t && !is_committed(v, q)) fail("check_position accepted an uncommitted position");
      if (check_position(v, q + 1) == Status::kOk && q + 1 != t) fail("check_position accepted an unaligned position");
      for (std::uint64_t x : {q, q + 1, q - 1}) {
        const std::uint64_t b = boundary_at_or_after(v, x);
        if (b > t) fail("boundary_at_or_after returned " + std::to_string(b) + " beyond the tail " + std::to_string(t));
        if (b < std::min(x, t)) fail("boundary_at_or_after went backwards from " + std::to_string(x));
        if (b != t && !is_committed(v, b)) fail("boundary_at_or_after returned an uncommitted position");
      }
      if (q + v.ring_bytes / 2 > q) {
        const std::uint64_t u = first_uncommitted(v, q, q + v.ring_bytes / 2);
        if (u < q || u > q + v.ring_bytes / 2) fail("first_uncommitted left its range");
      }
    };
    // Positions are 16-byte aligned by contract (read_gated and read_copy
    // take a reader's cursor); check_position and boundary_at_or_after take
    // anything and get unaligned inputs above.
    const std::uint64_t lo = (t & ~std::uint64_t{63}) - v.ring_bytes - 128;
    for (std::uint64_t q = lo; q != lo + 2 * v.ring_bytes + 320; q += kRecordAlign) check_one(q);
    for (std::uint64_t q : {std::uint64_t{0}, std::uint64_t{64}, ~std::uint64_t{63}, (t / 2) & ~std::uint64_t{63},
                            std::uint64_t{1} << 63})
      check_one(q);
    const std::uint64_t b = beginning(v);
    if (b > t) fail("beginning() beyond the tail");
    if (b != 0 && b != t && !is_committed(v, b)) fail("beginning() is not a committed boundary");
  }

  std::string bus_;
  std::optional<TopicMap> topic_;
  std::unique_ptr<MirrorPartition> mirror_;
};

// ---- one input ---------------------------------------------------------------------

struct Fuzzer {
  Templates templates;
  std::unique_ptr<FuzzRing> ring;

  void run_one(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return;
    Reader in(data + 1, size - 1);
    const int target = data[0] % 4;
    if (target < 3) {
      run_header(target, in, templates);
    } else {
      ring->run(in);
    }
  }
};

std::string fuzz_bus() { return "fuzz" + std::to_string(::getpid()); }

// ---- the standalone driver ----------------------------------------------------------

#ifndef HERALD_LIBFUZZER

Bytes parse_hex(const std::string& text) {
  Bytes out;
  std::istringstream lines(text);
  std::string line;
  int nibble = -1;
  while (std::getline(lines, line)) {
    for (char c : line.substr(0, line.find('#'))) {
      int v = -1;
      if (c >= '0' && c <= '9') v = c - '0';
      if (c >= 'a' && c <= 'f') v = c - 'a' + 10;
      if (c >= 'A' && c <= 'F') v = c - 'A' + 10;
      if (v < 0) continue;
      if (nibble < 0) {
        nibble = v;
      } else {
        out.push_back(static_cast<std::uint8_t>(nibble << 4 | v));
        nibble = -1;
      }
    }
  }
  return out;
}

void load(const std::string& path, std::vector<std::pair<std::string, Bytes>>& corpus) {
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0) {
    std::fprintf(stderr, "herald_fuzz_segments: cannot read %s\n", path.c_str());
    std::exit(2);
  }
  if (S_ISDIR(st.st_mode)) {
    std::vector<std::string> names;
    if (DIR* d = ::opendir(path.c_str())) {
      while (dirent* e = ::readdir(d))
        if (e->d_name[0] != '.') names.emplace_back(e->d_name);
      ::closedir(d);
    }
    std::sort(names.begin(), names.end());
    for (const std::string& n : names) load(path + "/" + n, corpus);
    return;
  }
  std::ifstream f(path, std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (path.size() > 4 && path.compare(path.size() - 4, 4, ".hex") == 0) {
    corpus.emplace_back(path, parse_hex(text));
  } else {
    corpus.emplace_back(path, Bytes(text.begin(), text.end()));
  }
}

// A structured random input: a target, a template, then ops of random
// kinds with mostly small slots and interesting values.
Bytes generate(std::mt19937_64& rng) {
  Bytes b;
  b.push_back(static_cast<std::uint8_t>(rng() % 4));
  b.push_back(static_cast<std::uint8_t>(rng() % 4));
  const std::size_t ops = 1 + rng() % 24;
  for (std::size_t i = 0; i < ops; ++i) {
    const std::size_t n = 1 + rng() % 24;
    for (std::size_t k = 0; k < n; ++k) {
      const std::uint64_t r = rng();
      // Bias towards small values (slots, offsets inside the header page).
      b.push_back(static_cast<std::uint8_t>((r >> 8) % 4 == 0 ? r : (r % 4 == 0 ? r % 80 : r % 8)));
    }
  }
  return b;
}

Bytes mutate(Bytes b, std::mt19937_64& rng, const std::vector<std::pair<std::string, Bytes>>& corpus) {
  const std::size_t n = 1 + rng() % 8;
  for (std::size_t i = 0; i < n; ++i) {
    switch (rng() % 6) {
      case 0:
        if (!b.empty()) b[rng() % b.size()] ^= static_cast<std::uint8_t>(1u << (rng() % 8));
        break;
      case 1:
        if (!b.empty()) b[rng() % b.size()] = static_cast<std::uint8_t>(rng());
        break;
      case 2:
        b.insert(b.begin() + static_cast<std::ptrdiff_t>(b.empty() ? 0 : rng() % b.size()),
                 static_cast<std::uint8_t>(rng()));
        break;
      case 3:
        if (b.size() > 2) b.erase(b.begin() + static_cast<std::ptrdiff_t>(1 + rng() % (b.size() - 1)));
        break;
      case 4: {  // splice the tail of another corpus entry
        const Bytes& o = corpus[rng() % corpus.size()].second;
        if (o.size() > 2) b.insert(b.end(), o.begin() + static_cast<std::ptrdiff_t>(2 + rng() % (o.size() - 2)), o.end());
        break;
      }
      default: {  // append a value op with an interesting u64
        const std::uint64_t v = kInteresting[rng() % kNumInteresting];
        b.push_back(static_cast<std::uint8_t>(rng()));
        for (int k = 0; k < 8; ++k) b.push_back(static_cast<std::uint8_t>(v >> (8 * k)));
        break;
      }
    }
  }
  if (b.size() > 4096) b.resize(4096);
  return b;
}

int driver_main(int argc, char** argv) {
  std::uint64_t seed = 0;
  bool have_seed = false;
  std::uint64_t iterations = 2000;
  bool verbose = false;
  std::vector<std::pair<std::string, Bytes>> corpus;
  if (const char* env = std::getenv("HERALD_SEED"); env != nullptr && *env != '\0') {
    seed = std::strtoull(env, nullptr, 0);
    have_seed = true;
  }
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("--seed=", 0) == 0) {
      seed = std::strtoull(a.c_str() + 7, nullptr, 0);
      have_seed = true;
    } else if (a.rfind("--iterations=", 0) == 0) {
      iterations = std::strtoull(a.c_str() + 13, nullptr, 0);
    } else if (a == "--verbose") {
      verbose = true;
    } else if (a == "--help" || a == "-h") {
      std::printf("usage: herald_fuzz_segments [--seed=N] [--iterations=N] [--verbose] [FILE|DIR ...]\n");
      return 0;
    } else {
      load(a, corpus);
    }
  }
  if (!have_seed) seed = std::random_device{}() | static_cast<std::uint64_t>(std::random_device{}()) << 32;
  std::printf("herald_fuzz_segments: seed = %llu (replay with --seed=%llu), %llu iterations, %zu corpus entries\n",
              static_cast<unsigned long long>(seed), static_cast<unsigned long long>(seed),
              static_cast<unsigned long long>(iterations), corpus.size());
  std::fflush(stdout);

  const std::string bus = fuzz_bus();
  Fuzzer f;
  f.templates = make_templates(bus);
  f.ring = std::make_unique<FuzzRing>(bus);
  for (const auto& [name, bytes] : corpus) {
    if (verbose) std::printf("corpus %s (%zu bytes)\n", name.c_str(), bytes.size());
    f.run_one(bytes.data(), bytes.size());
  }
  std::mt19937_64 rng(seed);
  for (std::uint64_t i = 0; i < iterations; ++i) {
    Bytes input = (!corpus.empty() && rng() % 2 == 0) ? mutate(corpus[rng() % corpus.size()].second, rng, corpus)
                                                      : generate(rng);
    if (verbose) std::printf("input %llu: %zu bytes, target %u\n", static_cast<unsigned long long>(i), input.size(),
                             input.empty() ? 0u : input[0] % 4u);
    f.run_one(input.data(), input.size());
  }
  f.ring.reset();  // removes the ring's segments
  std::printf("outcomes:\n");
  for (const auto& [k, n] : g_outcomes) std::printf("  %-28s %llu\n", k.c_str(), static_cast<unsigned long long>(n));
  std::printf("%llu passed, 0 failed\n", static_cast<unsigned long long>(corpus.size() + iterations));
  return 0;
}

#endif

}  // namespace
}  // namespace herald::fuzz

#ifdef HERALD_LIBFUZZER
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static herald::fuzz::Fuzzer* f = [] {
    auto* fz = new herald::fuzz::Fuzzer;
    const std::string bus = herald::fuzz::fuzz_bus();
    fz->templates = herald::fuzz::make_templates(bus);
    fz->ring = std::make_unique<herald::fuzz::FuzzRing>(bus);
    return fz;
  }();
  f->run_one(data, size);
  return 0;
}
#else
int main(int argc, char** argv) { return herald::fuzz::driver_main(argc, argv); }
#endif
