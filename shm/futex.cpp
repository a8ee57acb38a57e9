#include "shm/futex.hpp"

#include <linux/futex.h>
#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>

namespace herald::shm {

FutexWait futex_wait(const std::atomic<std::uint32_t>* word, std::uint32_t expected,
                     std::uint64_t timeout_ns) noexcept {
  timespec ts{};
  ts.tv_sec = static_cast<time_t>(timeout_ns / 1'000'000'000ull);
  ts.tv_nsec = static_cast<long>(timeout_ns % 1'000'000'000ull);
  // Shared (not FUTEX_PRIVATE_FLAG): the word lives in a shared mapping and
  // waiters and wakers are different processes. The kernel keys a shared
  // futex on (inode, offset), so different virtual addresses match.
  const long r = ::syscall(SYS_futex, reinterpret_cast<const std::uint32_t*>(word), FUTEX_WAIT, expected, &ts,
                           nullptr, 0);
  if (r == 0) return FutexWait::kWoken;
  switch (errno) {
    case ETIMEDOUT: return FutexWait::kTimedOut;
    case EAGAIN: return FutexWait::kValueChanged;
    default: return FutexWait::kInterrupted;
  }
}

int futex_wake(const std::atomic<std::uint32_t>* word, int count) noexcept {
  const long r = ::syscall(SYS_futex, reinterpret_cast<const std::uint32_t*>(word), FUTEX_WAKE, count, nullptr,
                           nullptr, 0);
  return r < 0 ? 0 : static_cast<int>(r);
}

namespace {
long membarrier(int cmd) noexcept { return ::syscall(SYS_membarrier, cmd, 0, 0); }
}  // namespace

bool membarrier_usable() noexcept {
  static const bool usable = [] {
    const long mask = membarrier(MEMBARRIER_CMD_QUERY);
    return mask > 0 && (mask & MEMBARRIER_CMD_GLOBAL_EXPEDITED) != 0 &&
           (mask & MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) != 0;
  }();
  return usable;
}

bool membarrier_register() noexcept {
#if defined(__SANITIZE_THREAD__)
  return false;  // TSan cannot see the IPI barrier: producers keep the seq_cst fence
#else
  return membarrier_usable() && membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) == 0;
#endif
}

bool membarrier_heavy_fence() noexcept {
  return membarrier_usable() && membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED) == 0;
}

}  // namespace herald::shm
