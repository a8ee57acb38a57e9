#include "shm/mapping.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <boost/interprocess/exceptions.hpp>
#include <boost/interprocess/mapped_region.hpp>
#include <boost/interprocess/shared_memory_object.hpp>
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <optional>
#include <utility>

#include "shm/segment_layout.hpp"

namespace bip = boost::interprocess;

namespace herald::shm {

namespace {

Errc errc_from_errno(int e) {
  switch (e) {
    case ENOENT: return Errc::kNotFound;
    case EEXIST: return Errc::kAlreadyExists;
    case EACCES:
    case EPERM: return Errc::kPermissionDenied;
    case ENOSPC:
    case ENOMEM:
    case EFBIG: return Errc::kNoSpace;
    case EINVAL:
    case ENAMETOOLONG: return Errc::kInvalidArgument;
    default: return Errc::kIo;
  }
}

// Every Boost failure becomes an Error naming the operation and the object.
Error from_boost(const bip::interprocess_exception& ex, const std::string& what, const std::string& name) {
  const int native = ex.get_native_error();
  Errc code = native != 0 ? errc_from_errno(native) : Errc::kIo;
  if (native == 0) {
    switch (ex.get_error_code()) {
      case bip::not_found_error: code = Errc::kNotFound; break;
      case bip::already_exists_error: code = Errc::kAlreadyExists; break;
      case bip::security_error: code = Errc::kPermissionDenied; break;
      case bip::out_of_space_error:
      case bip::out_of_memory_error: code = Errc::kNoSpace; break;
      default: break;
    }
  }
  std::string detail = what + " /dev/shm/" + name + ": " + ex.what();
  // Boost's what() is often strerror already ("Too many open files (Too
  // many open files)"); add it only when it says something more.
  if (native != 0 && std::string_view(ex.what()) != std::strerror(native))
    detail += " (" + std::string(std::strerror(native)) + ")";
  if (native == EMFILE || native == ENFILE) detail += "; raise RLIMIT_NOFILE (ulimit -n)";
  return Error{code, std::move(detail)};
}

Error from_errno(int e, const std::string& what, const std::string& name) {
  return Error{errc_from_errno(e), what + " /dev/shm/" + name + ": " + std::strerror(e)};
}

}  // namespace

struct Segment::Impl {
  std::string name;
  Access access = Access::kReadOnly;
  bip::shared_memory_object object;
  bip::mapped_region region;
};

struct Segment::DoubleMap::Impl {
  std::byte* base = nullptr;
  std::uint64_t bytes = 0;
  std::optional<bip::mapped_region> first, second;
  ~Impl() {
    // The two regions unmap themselves (their destructors); what is left of
    // the 2*bytes reservation (if a mapping failed half-way) is unmapped here.
    if (base == nullptr) return;
    if (!first) ::munmap(base, bytes);
    if (!second) ::munmap(base + bytes, bytes);
  }
};

Segment::Segment() = default;
Segment::Segment(std::unique_ptr<Impl> impl) noexcept
    : impl_(std::move(impl)), data_(static_cast<std::byte*>(impl_->region.get_address())) {}
Segment::Segment(Segment&& o) noexcept : impl_(std::move(o.impl_)), data_(std::exchange(o.data_, nullptr)) {}
Segment& Segment::operator=(Segment&& o) noexcept {
  impl_ = std::move(o.impl_);
  data_ = std::exchange(o.data_, nullptr);
  return *this;
}
Segment::~Segment() = default;
std::uint64_t Segment::size() const noexcept { return impl_ ? impl_->region.get_size() : 0; }
Access Segment::access() const noexcept { return impl_ ? impl_->access : Access::kReadOnly; }
const std::string& Segment::name() const noexcept {
  static const std::string empty;
  return impl_ ? impl_->name : empty;
}

Result<Segment> Segment::create(const std::string& name, std::uint64_t bytes, const SegmentPerms& perms) {
  if (bytes == 0 || bytes % kPageBytes != 0)
    return fail(Errc::kInvalidArgument, "segment size " + std::to_string(bytes) + " is not a page multiple");
  auto impl = std::make_unique<Impl>();
  impl->name = name;
  impl->access = Access::kReadWrite;
  try {
    bip::permissions p(static_cast<int>(perms.mode));
    impl->object = bip::shared_memory_object(bip::create_only, name.c_str(), bip::read_write, p);
  } catch (const bip::interprocess_exception& ex) {
    return fail(from_boost(ex, "create", name));
  }
  // From here on, a failure must unlink what we created.
  auto undo = [&](Error e) -> Result<Segment> {
    bip::shared_memory_object::remove(name.c_str());
    return fail(std::move(e));
  };
  const int fd = impl->object.get_mapping_handle().handle;
  // The umask may have narrowed the mode: set exactly what was asked.
  if (::fchmod(fd, static_cast<mode_t>(perms.mode)) != 0) return undo(from_errno(errno, "chmod", name));
  if (perms.gid >= 0 && ::fchown(fd, static_cast<uid_t>(-1), static_cast<gid_t>(perms.gid)) != 0)
    return undo(from_errno(errno, "chown to gid " + std::to_string(perms.gid), name));
  try {
    impl->object.truncate(static_cast<bip::offset_t>(bytes));
  } catch (const bip::interprocess_exception& ex) {
    return undo(from_boost(ex, "truncate to " + std::to_string(bytes) + " bytes", name));
  }
  // Reserve the pages now: tmpfs otherwise allocates on first touch and a
  // full /dev/shm becomes SIGBUS in whoever writes first.
  if (int e = ::posix_fallocate(fd, 0, static_cast<off_t>(bytes)); e != 0) {
    Error err = from_errno(e, "allocate " + std::to_string(bytes) + " bytes for", name);
    if (e == ENOSPC) {
      // Say how far off it is: "full" misleads when the request alone is
      // larger than the whole of /dev/shm.
      struct statvfs vfs{};
      if (::statvfs("/dev/shm", &vfs) == 0) {
        const double gib = 1024.0 * 1024.0 * 1024.0;
        char buf[160];
        std::snprintf(buf, sizeof buf, "; /dev/shm has %.1f GiB free of %.1f GiB, this needs %.1f GiB",
                      static_cast<double>(vfs.f_bavail) * static_cast<double>(vfs.f_frsize) / gib,
                      static_cast<double>(vfs.f_blocks) * static_cast<double>(vfs.f_frsize) / gib,
                      static_cast<double>(bytes) / gib);
        err.detail += buf;
      }
      err.detail += ": free space or make the rings smaller";
    }
    return undo(std::move(err));
  }
  try {
    impl->region = bip::mapped_region(impl->object, bip::read_write);
  } catch (const bip::interprocess_exception& ex) {
    return undo(from_boost(ex, "map", name));
  }
  return Segment(std::move(impl));
}

Result<Segment> Segment::open(const std::string& name, Access access) {
  auto impl = std::make_unique<Impl>();
  impl->name = name;
  impl->access = access;
  const auto mode = access == Access::kReadWrite ? bip::read_write : bip::read_only;
  try {
    impl->object = bip::shared_memory_object(bip::open_only, name.c_str(), mode);
  } catch (const bip::interprocess_exception& ex) {
    return fail(from_boost(ex, "open", name));
  }
  bip::offset_t size = 0;
  if (!impl->object.get_size(size)) return fail(Errc::kIo, "stat /dev/shm/" + name + " failed");
  if (size < static_cast<bip::offset_t>(kPageBytes))
    return fail(Errc::kCorrupt, "/dev/shm/" + name + " is " + std::to_string(size) +
                                    " bytes, smaller than its header page (truncated?)");
  try {
    impl->region = bip::mapped_region(impl->object, mode);
  } catch (const bip::interprocess_exception& ex) {
    return fail(from_boost(ex, "map", name));
  }
  return Segment(std::move(impl));
}

Result<void> Segment::remove(const std::string& name) {
  if (::shm_unlink(("/" + name).c_str()) != 0) return fail(from_errno(errno, "remove", name));
  return {};
}

bool Segment::exists(const std::string& name) {
  struct stat st{};
  return ::stat(("/dev/shm/" + name).c_str(), &st) == 0;
}

std::vector<std::string> Segment::list(const std::string& prefix) {
  std::vector<std::string> out;
  DIR* d = ::opendir("/dev/shm");
  if (d == nullptr) return out;
  while (dirent* e = ::readdir(d)) {
    std::string_view n(e->d_name);
    if (n.substr(0, prefix.size()) == prefix) out.emplace_back(n);
  }
  ::closedir(d);
  return out;
}

namespace {

// MADV_POPULATE_READ (Linux 5.14): the page tables for the range, as read
// faults would install them. On a shared tmpfs mapping that is enough for
// writers too: a shmem mapping needs no write notification, so a read
// fault on a writable shared mapping installs a writable entry (the first
// write then takes no fault; measured, and asserted in mapping_test).
#ifdef MADV_POPULATE_READ
constexpr int kMadvPopulateRead = MADV_POPULATE_READ;
#else
constexpr int kMadvPopulateRead = 22;
#endif

}  // namespace

void populate_pages(std::byte* p, std::uint64_t n) noexcept {
  if (n == 0 || ::madvise(p, n, kMadvPopulateRead) == 0 || errno != EINVAL) return;
  // An older kernel: one read per page, a fault each (relaxed atomic loads:
  // other processes write these bytes).
  for (std::uint64_t off = 0; off < n; off += kPageBytes)
    (void)__atomic_load_n(reinterpret_cast<const unsigned char*>(p + off), __ATOMIC_RELAXED);
}

void Segment::DoubleMap::populate(std::uint64_t spill) const noexcept {
  if (!impl_) return;
  populate_pages(impl_->base, impl_->bytes);
  // Clamped first, so a huge spill cannot wrap (bytes is a page multiple).
  populate_pages(impl_->base + impl_->bytes, align_up(std::min(impl_->bytes, spill), kPageBytes));
}

Segment::DoubleMap::DoubleMap() = default;
Segment::DoubleMap::DoubleMap(DoubleMap&&) noexcept = default;
Segment::DoubleMap& Segment::DoubleMap::operator=(DoubleMap&&) noexcept = default;
Segment::DoubleMap::~DoubleMap() = default;
std::byte* Segment::DoubleMap::data() const noexcept { return impl_ ? impl_->base : nullptr; }
std::uint64_t Segment::DoubleMap::bytes() const noexcept { return impl_ ? impl_->bytes : 0; }

void Segment::release_handle() noexcept {
  // A default object holds no handle; the moved-out one closes its fd.
  if (impl_) impl_->object = bip::shared_memory_object();
}

Result<Segment::DoubleMap> Segment::map_twice(std::uint64_t offset, std::uint64_t bytes) const {
  if (!impl_) return fail(Errc::kInvalidArgument, "map_twice on an empty segment");
  if (impl_->object.get_mapping_handle().handle < 0)
    return fail(Errc::kInvalidArgument, "map_twice after release_handle on /dev/shm/" + impl_->name);
  if (offset % kPageBytes != 0 || bytes % kPageBytes != 0 || bytes == 0)
    return fail(Errc::kInvalidArgument, "ring at offset " + std::to_string(offset) + " of " + std::to_string(bytes) +
                                            " bytes is not page aligned");
  if (offset + bytes > size() || offset + bytes < offset)
    return fail(Errc::kCorrupt, "ring [" + std::to_string(offset) + ", +" + std::to_string(bytes) +
                                    ") lies outside /dev/shm/" + impl_->name + " (" + std::to_string(size()) +
                                    " bytes)");
  auto dm = std::make_unique<DoubleMap::Impl>();
  // Reserve 2*bytes of address space, then map the ring over each half with
  // MAP_FIXED (replacing the reservation).
  void* reserve = ::mmap(nullptr, 2 * bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (reserve == MAP_FAILED) return fail(from_errno(errno, "reserve address space for a ring of", impl_->name));
  dm->base = static_cast<std::byte*>(reserve);
  dm->bytes = bytes;
  const auto mode = impl_->access == Access::kReadWrite ? bip::read_write : bip::read_only;
  try {
    dm->first.emplace(impl_->object, mode, static_cast<bip::offset_t>(offset), bytes, dm->base, MAP_FIXED);
    dm->second.emplace(impl_->object, mode, static_cast<bip::offset_t>(offset), bytes, dm->base + bytes, MAP_FIXED);
  } catch (const bip::interprocess_exception& ex) {
    return fail(from_boost(ex, "double-map a ring of", impl_->name));
  }
  DoubleMap out;
  out.impl_ = std::move(dm);
  return out;
}

}  // namespace herald::shm
