// A log-linear latency histogram (HdrHistogram-style buckets: each power of
// two is split into 2^kSubBits linear sub-buckets, so every recorded value
// is within 1/2^kSubBits of its bucket). Fixed size, no allocation after
// construction; record() is a few instructions. Debian has no C/C++
// HdrHistogram, hence this one.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>
#include <cstdio>
#include <string>

namespace herald::tools {

class Histogram {
 public:
  static constexpr unsigned kSubBits = 7;  // 128 sub-buckets: < 0.8% relative error
  static constexpr unsigned kBuckets = 64 - kSubBits;

  void record(std::uint64_t v) noexcept {
    ++counts_[index(v)];
    ++total_;
    max_ = std::max(max_, v);
    min_ = std::min(min_, v);
    sum_ += v;
  }
  // Coordinated-omission correction: also records the latencies the samples
  // that could not be sent on time would have seen (HdrHistogram's
  // recordValueWithExpectedInterval).
  void record_corrected(std::uint64_t v, std::uint64_t expected_interval) noexcept {
    record(v);
    if (expected_interval == 0) return;
    for (std::uint64_t missing = v > expected_interval ? v - expected_interval : 0; missing >= expected_interval;
         missing -= expected_interval)
      record(missing);
  }
  void merge(const Histogram& o) noexcept {
    for (std::size_t i = 0; i < counts_.size(); ++i) counts_[i] += o.counts_[i];
    total_ += o.total_;
    max_ = std::max(max_, o.max_);
    min_ = std::min(min_, o.min_);
    sum_ += o.sum_;
  }

  [[nodiscard]] std::uint64_t count() const noexcept { return total_; }
  [[nodiscard]] std::uint64_t max() const noexcept { return total_ ? max_ : 0; }
  [[nodiscard]] std::uint64_t min() const noexcept { return total_ ? min_ : 0; }
  [[nodiscard]] double mean() const noexcept { return total_ ? static_cast<double>(sum_) / static_cast<double>(total_) : 0; }

  // The value at percentile q (0..100): the upper edge of the bucket that
  // holds the q-th value, capped at the true maximum.
  [[nodiscard]] std::uint64_t percentile(double q) const noexcept {
    if (total_ == 0) return 0;
    const auto want = static_cast<std::uint64_t>(static_cast<double>(total_) * q / 100.0 + 0.5);
    const std::uint64_t rank = std::max<std::uint64_t>(1, std::min(want, total_));
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < counts_.size(); ++i) {
      seen += counts_[i];
      if (seen >= rank) return std::min(upper(i), max_);
    }
    return max_;
  }

  // The raw buckets, for plots and merging across processes.
  [[nodiscard]] const auto& buckets() const noexcept { return counts_; }
  static std::uint64_t bucket_upper(std::size_t i) noexcept { return upper(i); }

 private:
  static std::size_t index(std::uint64_t v) noexcept {
    if (v < (1ull << kSubBits)) return static_cast<std::size_t>(v);
    const unsigned msb = 63u - static_cast<unsigned>(std::countl_zero(v));
    const unsigned shift = msb - kSubBits;
    const std::uint64_t sub = (v >> shift) & ((1ull << kSubBits) - 1);
    return static_cast<std::size_t>((shift + 1) * (1ull << kSubBits) + sub);
  }
  static std::uint64_t upper(std::size_t i) noexcept {
    const std::uint64_t sub = i & ((1ull << kSubBits) - 1);
    const std::uint64_t block = i >> kSubBits;
    if (block == 0) return sub;
    const unsigned shift = static_cast<unsigned>(block - 1);
    return (((1ull << kSubBits) | sub) << shift) + ((1ull << shift) - 1);
  }

  std::array<std::uint64_t, (kBuckets + 1) << kSubBits> counts_{};
  std::uint64_t total_ = 0;
  std::uint64_t max_ = 0;
  std::uint64_t min_ = UINT64_MAX;
  std::uint64_t sum_ = 0;
};

// "812ns", "12.4us", "3.10ms", "1.20s"
inline std::string format_ns(std::uint64_t ns) {
  char buf[32];
  if (ns < 1000) std::snprintf(buf, sizeof buf, "%lluns", static_cast<unsigned long long>(ns));
  else if (ns < 1'000'000) std::snprintf(buf, sizeof buf, "%.1fus", static_cast<double>(ns) / 1e3);
  else if (ns < 1'000'000'000) std::snprintf(buf, sizeof buf, "%.2fms", static_cast<double>(ns) / 1e6);
  else std::snprintf(buf, sizeof buf, "%.2fs", static_cast<double>(ns) / 1e9);
  return buf;
}

}  // namespace herald::tools
