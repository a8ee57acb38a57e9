// Where a bus keeps its files (socket, daemon lock, admin lock, daemon log):
// $HERALD_RUN_DIR if set; else /run/herald when it is (or can be made)
// writable; else /tmp/herald (mode 1777; its owner and mode are checked so
// another user cannot plant a trap there).
#pragma once

#include <string>

#include "herald/result.hpp"

namespace herald::detail {

Result<std::string> run_dir();

std::string socket_path(const std::string& dir, const std::string& bus);      // <dir>/<bus>.sock
std::string daemon_lock_path(const std::string& dir, const std::string& bus); // <dir>/<bus>.lock
std::string admin_lock_path(const std::string& dir, const std::string& bus);  // <dir>/<bus>.admin.lock
std::string daemon_log_path(const std::string& dir, const std::string& bus);  // <dir>/<bus>.log

// An exclusive flock(2) on a file, released on destruction. flock, not
// fcntl locks (Boost's file_lock): a second lock or any close of the file in
// the same process would silently drop an fcntl lock.
class FileLock {
 public:
  // Blocks until the lock is held.
  static Result<FileLock> acquire(const std::string& path);
  // kBusy if another process holds it.
  static Result<FileLock> try_acquire(const std::string& path);
  // An exclusive open-file-description lock (fcntl F_OFD_SETLK) on one byte
  // of the file: independent of the file's flock (Linux keeps the two
  // apart) and of other bytes, so one lock file serves several locks.
  // kBusy if another open file description holds it.
  static Result<FileLock> try_acquire_byte(const std::string& path, long byte);
  FileLock() = default;
  FileLock(FileLock&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  FileLock& operator=(FileLock&& o) noexcept;
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;
  ~FileLock();
  [[nodiscard]] int fd() const noexcept { return fd_; }

 private:
  explicit FileLock(int fd) : fd_(fd) {}
  int fd_ = -1;
};

}  // namespace herald::detail
