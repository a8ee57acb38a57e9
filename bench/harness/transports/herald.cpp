#include "bench/harness/transports/herald.hpp"

#include <dirent.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cctype>
#include <cstring>

#include "bench/harness/peers.hpp"
#include "shm/record_layout.hpp"

namespace herald::bench {

namespace {

Wait to_wait(WaitMode w) {
  switch (w) {
    case WaitMode::kSpin: return Wait::kBusySpin;
    case WaitMode::kYield: return Wait::kSpinYield;
    case WaitMode::kBlock: return Wait::kPark;
  }
  return Wait::kPark;
}

std::string topic_of(int route) { return "r" + std::to_string(route); }

std::string group_of(const RowSpec& spec, const Endpoint& ep) {
  return "g" + std::to_string(spec.scenario == Scenario::kFanout ? ep.index : 0);
}

// Every /dev/shm object of the bus, in case Bus::destroy left one (a crash).
void remove_bus_objects(const std::string& bus) noexcept {
  const std::string prefix = "herald." + bus + ".";
  if (DIR* d = ::opendir("/dev/shm")) {
    while (dirent* e = ::readdir(d))
      if (std::strncmp(e->d_name, prefix.c_str(), prefix.size()) == 0) ::shm_unlink((std::string("/") + e->d_name).c_str());
    ::closedir(d);
  }
}

}  // namespace

bool HeraldTransport::single_producer(const RowSpec& spec) { return spec.scenario != Scenario::kMpsc; }

std::string HeraldTransport::describe(const RowSpec& spec) {
  const std::uint64_t packed = shm::record_size(0, 0, spec.size);
  const std::uint64_t alone = shm::claim_bytes(packed);
  std::string how = spec.mode == "batch"   ? "Producer::publish_batch of up to 64 events (each message written into its slot of the caller's batch buffer, then copied into the log)"
                    : spec.mode == "claim" ? "zero-copy Producer::claim + Claim::commit (written in place)"
                                           : "Producer::publish(payload, partition), one event per call";
  return how + "; a " + std::to_string(spec.size) + " B payload in herald's envelope (128-bit id and time filled by "
         "the runtime; no key, type or headers) = " +
         (spec.mode == "batch" ? "a " + std::to_string(packed) + " B log record (48 B header, packed 16 B aligned in the batch's claim)"
                               : "a " + std::to_string(alone) + " B log record (48 B header, padded to 64 B)") +
         "; 1 partition, " + std::to_string(spec.ring_bytes >> 20) +
         " MiB ring, " +
         (single_producer(spec) ? "single-producer topic (claims move tail by plain store)"
                                : "multi-producer topic (claims CAS tail)") +
         "; lossless group(s); Consumer::poll zero-copy, committed per poll; "
         "herald Wait::" + (spec.wait == WaitMode::kSpin ? "kBusySpin" : spec.wait == WaitMode::kYield ? "kSpinYield" : "kPark");
}

std::string HeraldTransport::skip_reason(const RowSpec& spec) {
  if (spec.mode != "publish" && spec.mode != "batch" && spec.mode != "claim")
    return "unknown herald mode '" + spec.mode + "'";
  if (spec.size + 48 > spec.ring_bytes / 4) return "message larger than a quarter of the ring";
  return {};
}

HeraldTransport::Host::Host(const RowSpec& spec) {
  bus_name = "hb" + std::to_string(::getpid()) + "-";
  for (char c : spec.unique) bus_name += std::isalnum(static_cast<unsigned char>(c)) || c == '-' ? c : '_';
  if (bus_name.size() > 64) bus_name.resize(64);
  remove_bus_objects(bus_name);
  auto b = Bus::attach(bus_name);
  if (!b) throw BenchError("attach bus " + bus_name + ": " + b.error().message());
  bus.emplace(std::move(b).value());
  const int routes = spec.scenario == Scenario::kPingPong ? 2 : 1;
  const int groups = spec.scenario == Scenario::kFanout ? spec.consumers : 1;
  for (int r = 0; r < routes; ++r) {
    // One producer per topic except in mpsc: the topic says so, and its
    // producer moves tail with a plain store instead of a CAS.
    TopicConfig cfg{.partitions = 1, .ring_bytes = spec.ring_bytes, .default_policy = Policy::kLossless,
                    .single_producer = single_producer(spec)};
    if (auto t = bus->create_topic(topic_of(r), cfg); !t)
      throw BenchError("create topic: " + t.error().message());
    // The groups exist (and gate) before any producer starts.
    for (int g = 0; g < groups; ++g) {
      auto c = bus->consumer(topic_of(r), {.group = "g" + std::to_string(g), .policy = Policy::kLossless,
                                           .start = Offset::earliest()});
      if (!c) throw BenchError("create group: " + c.error().message());
    }
  }
}

HeraldTransport::Host::~Host() {
  bus.reset();
  (void)Bus::destroy(bus_name);
  remove_bus_objects(bus_name);
}

HeraldTransport::Sender::Sender(Host& host, const RowSpec& spec, Endpoint ep) : size_(spec.size) {
  mode_ = spec.mode == "batch" ? Mode::kBatch : spec.mode == "claim" ? Mode::kClaim : Mode::kPublish;
  auto b = Bus::attach(host.bus_name);
  if (!b) throw BenchError("attach: " + b.error().message());
  bus_.emplace(std::move(b).value());
  auto p = bus_->producer(topic_of(ep.route), {.deadline = std::chrono::milliseconds(200), .wait = to_wait(spec.wait)});
  if (!p) throw BenchError("producer: " + p.error().message());
  producer_.emplace(std::move(p).value());
  if (mode_ == Mode::kBatch) {
    // The batch's Messages are built once: each views its own slot of the
    // gather buffer, and only a message of another size re-points its view.
    gathered_.resize(kBatch * size_);
    batch_.resize(kBatch);
    for (std::size_t i = 0; i < kBatch; ++i)
      batch_[i] = Message{.payload = Bytes(gathered_.data() + i * size_, size_), .partition = 0};
  }
}

bool HeraldTransport::Sender::retry_or_throw(const Error& e) {
  if (e.code == Errc::kBackPressured) return false;
  throw BenchError("publish: " + e.message());
}

std::byte* HeraldTransport::Sender::next_slot(std::size_t n) {
  if (pending_ == kBatch && !drain()) return nullptr;
  if (n > size_) throw BenchError("publish_batch: a message of " + std::to_string(n) + " bytes in a row of " +
                                  std::to_string(size_));
  std::byte* slot = gathered_.data() + pending_ * size_;
  if (batch_[pending_].payload.size() != n) batch_[pending_].payload = Bytes(slot, n);
  return slot;
}

bool HeraldTransport::Sender::commit_slot() {
  if (++pending_ == kBatch) (void)drain();
  return true;
}

bool HeraldTransport::Sender::gather(const std::byte* p, std::size_t n) {
  return gather_with(n, [&](std::byte* slot) { std::memcpy(slot, p, n); });
}

bool HeraldTransport::Sender::drain() {
  while (done_ < pending_) {
    auto r = producer_->publish_batch(std::span<const Message>(batch_.data() + done_, pending_ - done_));
    if (!r) return retry_or_throw(r.error());
    done_ += r->published;
    if (r->error && r->error->code != Errc::kBackPressured) throw BenchError("publish_batch: " + r->error->message());
    if (r->published == 0) return false;
  }
  pending_ = done_ = 0;
  return true;
}

void HeraldTransport::Sender::flush() {
  if (mode_ != Mode::kBatch) return;
  const std::uint64_t until = mono_ns() + 30'000'000'000ull;
  while (!drain())
    if (mono_ns() > until) throw BenchError("publish_batch: back-pressured for 30 s");
}

HeraldTransport::Receiver::Receiver(Host& host, const RowSpec& spec, Endpoint ep) {
  auto b = Bus::attach(host.bus_name);
  if (!b) throw BenchError("attach: " + b.error().message());
  bus_.emplace(std::move(b).value());
  auto c = bus_->consumer(topic_of(ep.route), {.group = group_of(spec, ep), .policy = Policy::kLossless,
                                               .start = Offset::earliest(), .commit_mode = CommitMode::kAfterHandle,
                                               .wait = to_wait(spec.wait)});
  if (!c) throw BenchError("consumer: " + c.error().message());
  consumer_.emplace(std::move(c).value());
}

namespace {

RepResult run_herald_rep(const RowSpec& spec) {
  using T = HeraldTransport;
  if (spec.mode == "batch") return detail::run_rep<T::ModeTransport<T::Mode::kBatch>>(spec);
  if (spec.mode == "claim") return detail::run_rep<T::ModeTransport<T::Mode::kClaim>>(spec);
  return detail::run_rep<T::ModeTransport<T::Mode::kPublish>>(spec);  // skip_reason refused any other
}

}  // namespace

TransportEntry herald_transport() {
  return TransportEntry{std::string(HeraldTransport::kName), &HeraldTransport::describe, &HeraldTransport::skip_reason,
                        &run_herald_rep};
}

}  // namespace herald::bench
