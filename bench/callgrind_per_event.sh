#!/usr/bin/env bash
# Instructions per event on the hot path, counted by callgrind (perf has no
# hardware counters on the VMs herald is measured on). Runs
# herald_hot_path_workload once per mode and prints, per mode, the inclusive
# instruction count of the produce and consume phases divided by the events.
#
#   bench/callgrind_per_event.sh [build dir, default build/rel] [size, default 64]
#
# Under valgrind the event clock takes its slow path on every read (a
# clock_gettime there takes longer than an anchor sample may bracket, so
# none is kept): ~55 of the herald modes' produce instructions per event
# are that, where a native run reads the TSC. `protocol` is the log
# protocol without the runtime (see herald_hot_path_workload).
set -euo pipefail
build=${1:-build/rel}
size=$(numfmt --from=iec "${2:-64}")  # 1K -> 1024
events=102400
bin="${HERALD_WORKLOAD:-$build/bench/herald_hot_path_workload}"
out=$(mktemp -d /tmp/herald-callgrind-XXXXXX)
trap 'rm -rf "$out"' EXIT
printf '%-8s %6s %14s %14s %14s\n' mode size "produce Ir/ev" "consume Ir/ev" "total Ir/ev"
for mode in ring protocol publish payload batch claim lossy; do
  valgrind --tool=callgrind --callgrind-out-file="$out/$mode.out" \
    "$bin" --mode="$mode" --events=$events --size="$size" >/dev/null 2>"$out/$mode.log"
  ann=$(callgrind_annotate --inclusive=yes "$out/$mode.out" 2>/dev/null)
  # The first line naming each phase function carries its inclusive total.
  prod=$(grep -m1 -E 'hot_path_workload\.cpp:.*(ring_|protocol_)?produce_round' <<<"$ann" | awk '{gsub(",","",$1); print $1}')
  cons=$(grep -m1 -E 'hot_path_workload\.cpp:.*(ring_|protocol_)?consume_round' <<<"$ann" | awk '{gsub(",","",$1); print $1}')
  awk -v m="$mode" -v s="$size" -v p="$prod" -v c="$cons" -v e=$events \
    'BEGIN { printf "%-8s %6s %14.1f %14.1f %14.1f\n", m, s, p / e, c / e, (p + c) / e }'
done
