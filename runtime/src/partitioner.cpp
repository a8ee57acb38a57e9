#include "runtime/src/partitioner.hpp"

namespace herald::detail {

// A transcription of the algorithm (org.apache.kafka.common.utils.Utils#murmur2)
// in unsigned 32-bit arithmetic, which wraps exactly like Java's int.
std::int32_t kafka_murmur2(std::string_view key) noexcept {
  const auto* data = reinterpret_cast<const unsigned char*>(key.data());
  const auto length = static_cast<std::uint32_t>(key.size());
  constexpr std::uint32_t seed = 0x9747b28cu;
  constexpr std::uint32_t m = 0x5bd1e995u;
  constexpr int r = 24;
  std::uint32_t h = seed ^ length;
  const std::uint32_t length4 = length / 4;
  for (std::uint32_t i = 0; i < length4; ++i) {
    const std::uint32_t i4 = i * 4;
    std::uint32_t k = std::uint32_t{data[i4]} | std::uint32_t{data[i4 + 1]} << 8 | std::uint32_t{data[i4 + 2]} << 16 |
                      std::uint32_t{data[i4 + 3]} << 24;
    k *= m;
    k ^= k >> r;
    k *= m;
    h *= m;
    h ^= k;
  }
  const std::uint32_t tail = length & ~3u;
  switch (length % 4) {
    case 3: h ^= std::uint32_t{data[tail + 2]} << 16; [[fallthrough]];
    case 2: h ^= std::uint32_t{data[tail + 1]} << 8; [[fallthrough]];
    case 1:
      h ^= std::uint32_t{data[tail]};
      h *= m;
      break;
    default: break;
  }
  h ^= h >> 13;
  h *= m;
  h ^= h >> 15;
  return static_cast<std::int32_t>(h);
}

}  // namespace herald::detail
