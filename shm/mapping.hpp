// Shared-memory objects and their mappings. mapping.cpp is the only
// translation unit that includes Boost.Interprocess; it maps
// interprocess_exception to herald::Errc and never lets one escape.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "herald/result.hpp"

namespace herald::shm {

enum class Access { kReadOnly, kReadWrite };

struct SegmentPerms {
  unsigned mode = 0600;   // permission bits
  long gid = -1;          // a Unix group to own the segment, -1 for none
};

// One POSIX shared-memory object, mapped whole. Move-only.
class Segment {
 public:
  // Creates `name` with exactly `bytes` bytes: shm_open(O_EXCL) + ftruncate +
  // posix_fallocate, so a full /dev/shm is a clear kNoSpace error now rather
  // than a SIGBUS later. The new segment is zero-filled and mapped
  // read-write. On any failure nothing is left behind.
  static Result<Segment> create(const std::string& name, std::uint64_t bytes, const SegmentPerms& perms);
  // Opens and maps an existing segment whole. A segment smaller than a page
  // is kCorrupt (truncated) — callers validate the rest.
  static Result<Segment> open(const std::string& name, Access access);
  // Unlinks the name (mappings stay valid). Missing is kNotFound.
  static Result<void> remove(const std::string& name);
  static bool exists(const std::string& name);
  // Names in /dev/shm that start with prefix.
  static std::vector<std::string> list(const std::string& prefix);

  Segment();
  Segment(Segment&&) noexcept;
  Segment& operator=(Segment&&) noexcept;
  ~Segment();

  // Inline: TopicMap's accessors (groups, cursors, readers) resolve through
  // it on every poll and commit.
  std::byte* data() const noexcept { return data_; }
  std::uint64_t size() const noexcept;
  Access access() const noexcept;
  const std::string& name() const noexcept;

  // Maps [offset, offset + bytes) of this object twice, back to back, so that
  // base[i] and base[i + bytes] are the same byte: a record that crosses the
  // end of a ring is contiguous. offset and bytes must be page multiples.
  class DoubleMap;
  Result<DoubleMap> map_twice(std::uint64_t offset, std::uint64_t bytes) const;

  // Closes the object's file descriptor once every mapping of it is made
  // (the mappings stay): a process holding hundreds of topics (heraldd)
  // used to keep two fds per topic and met RLIMIT_NOFILE at ~510 topics of
  // the 1024 a bus may hold. map_twice fails afterwards.
  void release_handle() noexcept;

 private:
  struct Impl;
  explicit Segment(std::unique_ptr<Impl> impl) noexcept;  // create/open: sets data_ from the mapping
  std::unique_ptr<Impl> impl_;
  std::byte* data_ = nullptr;  // impl_'s mapping address (nullptr when empty)
};

// Installs this process's page-table entries for [p, p + n) of a shared
// mapping, as Segment::DoubleMap::populate does for a ring (see there).
// fork() does not copy a shared mapping's page-table entries, so a child
// that inherits a mapping populated by its parent faults on first touch
// all the same: it calls this itself. Best effort, as populate.
void populate_pages(std::byte* p, std::uint64_t n) noexcept;

class Segment::DoubleMap {
 public:
  DoubleMap();
  DoubleMap(DoubleMap&&) noexcept;
  DoubleMap& operator=(DoubleMap&&) noexcept;
  ~DoubleMap();
  std::byte* data() const noexcept;
  std::uint64_t bytes() const noexcept;  // of one copy

  // Installs this process's page-table entries for all of the first copy
  // and the first `spill` bytes of the second (where a record that crosses
  // the end continues), so that reading and writing them later takes no
  // page fault. Without it every process faults once per 4 KiB page on its
  // first lap of a ring, and when the producer and a consumer fault on the
  // same page at once, one of them sleeps on the kernel's page lock: a stall
  // of several microseconds every 32 records of 128 bytes. Best effort: on a
  // failure the pages fault in on first touch, as before.
  void populate(std::uint64_t spill) const noexcept;

 private:
  friend class Segment;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace herald::shm
