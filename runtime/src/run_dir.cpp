#include "runtime/src/run_dir.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace herald::detail {

namespace {

Error errno_error(const std::string& what, int e) {
  Errc code = Errc::kIo;
  if (e == EACCES || e == EPERM) code = Errc::kPermissionDenied;
  if (e == ENOENT) code = Errc::kNotFound;
  if (e == ENOSPC) code = Errc::kNoSpace;
  return Error{code, what + ": " + std::strerror(e)};
}

bool writable_dir(const std::string& dir) { return ::access(dir.c_str(), W_OK | X_OK) == 0; }

// /tmp/herald is shared by every user: create it 1777, and refuse it unless
// it is a real directory (not a symlink) that is sticky or ours or root's.
Result<std::string> tmp_dir() {
  const std::string dir = "/tmp/herald";
  if (::mkdir(dir.c_str(), 01777) == 0) {
    ::chmod(dir.c_str(), 01777);  // the umask narrowed it
    return dir;
  }
  if (errno != EEXIST) return fail(errno_error("create " + dir, errno));
  struct stat st{};
  if (::lstat(dir.c_str(), &st) != 0) return fail(errno_error("stat " + dir, errno));
  if (!S_ISDIR(st.st_mode))
    return fail(Errc::kPermissionDenied, dir + " is not a directory (a symlink or file planted there?); remove it");
  const bool trusted_owner = st.st_uid == 0 || st.st_uid == ::geteuid();
  const bool sticky_open = (st.st_mode & 01777) == 01777;
  if (!trusted_owner && !sticky_open)
    return fail(Errc::kPermissionDenied, dir + " belongs to uid " + std::to_string(st.st_uid) +
                                             " and is not mode 1777; remove it or set HERALD_RUN_DIR");
  if (!writable_dir(dir)) return fail(Errc::kPermissionDenied, dir + " is not writable; set HERALD_RUN_DIR");
  return dir;
}

}  // namespace

Result<std::string> run_dir() {
  if (const char* env = std::getenv("HERALD_RUN_DIR"); env != nullptr && *env != '\0') {
    std::string dir(env);
    if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST)
      return fail(errno_error("create HERALD_RUN_DIR " + dir, errno));
    if (!writable_dir(dir)) return fail(Errc::kPermissionDenied, "HERALD_RUN_DIR " + dir + " is not writable");
    return dir;
  }
  const std::string run = "/run/herald";
  if (writable_dir(run)) return run;
  if (::mkdir(run.c_str(), 0755) == 0 || (errno == EEXIST && writable_dir(run))) return run;
  return tmp_dir();
}

std::string socket_path(const std::string& dir, const std::string& bus) { return dir + "/" + bus + ".sock"; }
std::string daemon_lock_path(const std::string& dir, const std::string& bus) { return dir + "/" + bus + ".lock"; }
std::string admin_lock_path(const std::string& dir, const std::string& bus) {
  return dir + "/" + bus + ".admin.lock";
}
std::string daemon_log_path(const std::string& dir, const std::string& bus) { return dir + "/" + bus + ".log"; }

namespace {
// Opens the lock file and takes `lock(fd)` (0, or -1 and errno) on it;
// kBusy when another holds it. `what` names the lock in errors.
template <class Lock>
Result<FileLock> lock_impl(const std::string& path, const std::string& what, Lock lock, FileLock (*make)(int)) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return fail(errno_error("open lock file " + path, errno));
  for (;;) {
    if (lock(fd) == 0) return make(fd);
    if (errno == EINTR) continue;
    const int e = errno;
    ::close(fd);
    if (e == EWOULDBLOCK || e == EAGAIN || e == EACCES) return fail(Errc::kBusy, what + " is locked by another process");
    return fail(errno_error("lock " + what, e));
  }
}
}  // namespace

Result<FileLock> FileLock::acquire(const std::string& path) {
  return lock_impl(path, path, [](int fd) { return ::flock(fd, LOCK_EX); }, [](int fd) { return FileLock(fd); });
}
Result<FileLock> FileLock::try_acquire(const std::string& path) {
  return lock_impl(path, path, [](int fd) { return ::flock(fd, LOCK_EX | LOCK_NB); }, [](int fd) { return FileLock(fd); });
}
Result<FileLock> FileLock::try_acquire_byte(const std::string& path, long byte) {
  // Released when the descriptor closes (the lock belongs to the open file
  // description, not to the process: no other close drops it).
  auto ofd_lock = [byte](int fd) {
    struct flock fl{};
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = byte;
    fl.l_len = 1;
    return ::fcntl(fd, F_OFD_SETLK, &fl);
  };
  return lock_impl(path, path + " (byte " + std::to_string(byte) + ")", ofd_lock, [](int fd) { return FileLock(fd); });
}

FileLock& FileLock::operator=(FileLock&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = o.fd_;
    o.fd_ = -1;
  }
  return *this;
}

FileLock::~FileLock() {
  if (fd_ >= 0) ::close(fd_);  // closing the only descriptor releases the flock
}

}  // namespace herald::detail
