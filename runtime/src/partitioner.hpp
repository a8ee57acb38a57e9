// Kafka's default partitioner: murmur2 (seed 0x9747b28c) of the key bytes,
// & 0x7fffffff, % partitions. Checked against Kafka's own test vectors, so a
// key lands on the same partition index as in a Kafka topic of the same size.
#pragma once

#include <cstdint>
#include <string_view>

namespace herald::detail {

std::int32_t kafka_murmur2(std::string_view key) noexcept;

inline std::uint32_t partition_for_key(std::string_view key, std::uint32_t partitions) noexcept {
  const auto positive = static_cast<std::uint32_t>(kafka_murmur2(key)) & 0x7fffffffu;
  return positive % partitions;
}

}  // namespace herald::detail
