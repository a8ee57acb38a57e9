#!/bin/sh
# ctest's cleanup fixture (herald_leftovers): a test process that crashed or
# was killed by ctest's timeout never ran its BusGuard destructor. Its buses
# are named t<pid>-... (tests) or b<pid>-... (benches); this removes every
# shared-memory object and stops every heraldd of such a bus whose process is
# gone, and says what it removed. Buses of live processes are left alone, so
# it is safe while other tests run.
set -u
removed=0
for f in /dev/shm/herald.t[0-9]* /dev/shm/herald.b[0-9]*; do
  [ -e "$f" ] || continue
  name=${f#/dev/shm/herald.}
  pid=$(printf '%s' "$name" | sed -n 's/^[tb]\([0-9][0-9]*\)-.*/\1/p')
  [ -n "$pid" ] || continue
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "herald_leftovers: removing $f (its test process $pid is gone)"
    rm -f "$f"
    removed=$((removed + 1))
  fi
done
for d in /proc/[0-9]*; do
  cmd=$(tr '\0' ' ' <"$d/cmdline" 2>/dev/null) || continue
  case "$cmd" in
    *heraldd*--bus\ [tb][0-9]*-*) ;;
    *) continue ;;
  esac
  bus=$(printf '%s' "$cmd" | sed -n 's/.*--bus \([^ ]*\).*/\1/p')
  owner=$(printf '%s' "$bus" | sed -n 's/^[tb]\([0-9][0-9]*\)-.*/\1/p')
  [ -n "$owner" ] || continue
  if ! kill -0 "$owner" 2>/dev/null; then
    echo "herald_leftovers: stopping heraldd ${d#/proc/} of bus $bus (its test process $owner is gone)"
    kill -KILL "${d#/proc/}" 2>/dev/null
    removed=$((removed + 1))
  fi
done
# Run directories (BusGuard's /tmp/herald-test-XXXXXX) hold files named after
# their bus: removed when that bus's test process is gone.
for d in /tmp/herald-test-*; do
  [ -d "$d" ] || continue
  first=$(ls "$d" | head -n1)
  [ -n "$first" ] || continue
  pid=$(printf '%s' "$first" | sed -n 's/^[tb]\([0-9][0-9]*\)-.*/\1/p')
  [ -n "$pid" ] || continue
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "herald_leftovers: removing $d (its test process $pid is gone)"
    rm -rf "$d"
    removed=$((removed + 1))
  fi
done
echo "herald_leftovers: $removed leftover(s) removed"
exit 0
