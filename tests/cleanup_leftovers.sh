#!/bin/sh
# ctest's cleanup fixture (herald_leftovers): a test process that crashed or
# was killed by ctest's timeout never ran its BusGuard destructor. Its buses
# are named t<pid>-... (tests) or b<pid>-... (benches); this removes every
# shared-memory object, heraldd and run directory of such a bus whose process
# is gone, and says what it removed. Buses of live processes are left alone,
# so it is safe while other tests run.
set -u
removed=0

# The pid of the test process that owns bus NAME (t<pid>-... or b<pid>-...),
# printed only when that process is gone; nothing otherwise.
orphan_owner() {
  pid=$(printf '%s' "$1" | sed -n 's/^[tb]\([0-9][0-9]*\)-.*/\1/p')
  [ -n "$pid" ] || return 1
  kill -0 "$pid" 2>/dev/null && return 1
  printf '%s' "$pid"
}

for f in /dev/shm/herald.t[0-9]* /dev/shm/herald.b[0-9]*; do
  [ -e "$f" ] || continue
  owner=$(orphan_owner "${f#/dev/shm/herald.}") || continue
  echo "herald_leftovers: removing $f (its test process $owner is gone)"
  rm -f "$f"
  removed=$((removed + 1))
done
for d in /proc/[0-9]*; do
  cmd=$(tr '\0' ' ' <"$d/cmdline" 2>/dev/null) || continue
  case "$cmd" in
    *heraldd*--bus\ [tb][0-9]*-*) ;;
    *) continue ;;
  esac
  bus=$(printf '%s' "$cmd" | sed -n 's/.*--bus \([^ ]*\).*/\1/p')
  owner=$(orphan_owner "$bus") || continue
  echo "herald_leftovers: stopping heraldd ${d#/proc/} of bus $bus (its test process $owner is gone)"
  kill -KILL "${d#/proc/}" 2>/dev/null
  removed=$((removed + 1))
done
# Run directories (BusGuard's /tmp/herald-test-XXXXXX) hold files named after
# their bus.
for d in /tmp/herald-test-*; do
  [ -d "$d" ] || continue
  owner=$(orphan_owner "$(ls "$d" | head -n1)") || continue
  echo "herald_leftovers: removing $d (its test process $owner is gone)"
  rm -rf "$d"
  removed=$((removed + 1))
done
echo "herald_leftovers: $removed leftover(s) removed"
exit 0
