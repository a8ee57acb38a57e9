#include "bench/harness/transports/ring.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "bench/harness/peers.hpp"
#include "bench/harness/runner.hpp"

namespace herald::bench {

std::string RingTransport::describe(const RowSpec& spec) {
  return "the baseline SPSC byte ring (bench/baseline_spsc_ring.hpp) in a shared-memory segment: an 8 B length + "
         "the payload, padded to 8 (" + std::to_string(ring_record_bytes(spec.size)) +
         " B per message); no envelope, no commit word, no gating groups, no crash repair, no parking; indices "
         "published every 32 records and whenever a side would wait";
}

std::string RingTransport::skip_reason(const RowSpec& spec) {
  if (spec.scenario == Scenario::kMpsc || spec.scenario == Scenario::kFanout)
    return "single producer / single consumer by design";
  if (ring_record_bytes(spec.size) > spec.ring_bytes / 4) return "message larger than a quarter of the ring";
  return {};
}

RingTransport::Host::Host(const RowSpec& spec) {
  bytes = kHeaderBytes + spec.ring_bytes;
  const int routes = spec.scenario == Scenario::kPingPong ? 2 : 1;
  for (int r = 0; r < routes; ++r) {
    const std::string name = "/hbring-" + std::to_string(::getpid()) + "-" + spec.unique + "-" + std::to_string(r);
    const int fd = ::shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0) throw BenchError("shm_open " + name + ": " + std::strerror(errno));
    ::shm_unlink(name.c_str());  // the children inherit the mapping; no name is left behind
    if (::ftruncate(fd, static_cast<off_t>(bytes)) != 0) {
      ::close(fd);
      throw BenchError("ftruncate " + name + ": " + std::strerror(errno));
    }
    void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
    ::close(fd);
    if (p == MAP_FAILED) throw BenchError("mmap " + name + ": " + std::strerror(errno));
    base[r] = static_cast<std::byte*>(p);
    ring_init(reinterpret_cast<SpscRingLayout*>(base[r]), spec.ring_bytes);
  }
}

RingTransport::Host::~Host() {
  for (std::byte* b : base)
    if (b != nullptr) ::munmap(b, bytes);
}

TransportEntry ring_transport() { return make_transport<RingTransport>(); }

}  // namespace herald::bench
