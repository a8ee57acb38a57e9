#!/bin/sh
# herald-bench refuses bad arguments before it runs anything: exit status 2,
# a message that names the option, and no --out/--plot file left behind.
# Usage: bad_args_test.sh HERALD_BENCH SCRATCH_DIR
set -u
bench=$1
dir=$2
mkdir -p "$dir" || exit 1
fails=0
# Its work directory goes under TMPDIR; a refused run must not leave one.
rm -rf "$dir/tmp" && mkdir -p "$dir/tmp" || exit 1
TMPDIR=$dir/tmp
export TMPDIR

# expect "MESSAGE FRAGMENT" ARGS...
expect() {
  want=$1
  shift
  out=$("$bench" "$@" 2>&1 >/dev/null)
  rc=$?
  if [ "$rc" -ne 2 ]; then
    echo "FAIL: herald-bench $*: exit status $rc, expected 2; stderr: $out"
    fails=$((fails + 1))
  elif ! printf '%s' "$out" | grep -qF -- "$want"; then
    echo "FAIL: herald-bench $*: stderr does not say '$want': $out"
    fails=$((fails + 1))
  else
    echo "ok: herald-bench $* -> $(printf '%s' "$out" | head -n 1)"
  fi
}

expect "--size: empty item in '64,,1K'" --size 64,,1K
expect "--size: empty item in '64,'" --size 64,
expect "--peers: empty item" --peers ring,,herald
expect "--peers: unknown transport 'foo'" --peers foo
expect "--scenario: unknown scenario 'nope'" --scenario nope
expect "--size: 0 is outside" --size 0
expect "--reps takes 1..1000" --reps 0
expect "--reps takes 1..1000, not '5x'" --reps 5x
expect "--duration: must be > 0" --duration 0s
expect "--rate: must be > 0" --rate 0
expect "--out: cannot write $dir/missing/x.json" --out "$dir/missing/x.json"
expect "--plot: cannot write $dir/missing/x.svg" --plot "$dir/missing/x.svg"
expect "--out needs a file name" --out=
expect "unknown argument '--bogus'" --bogus
expect "sends no message in the latency scenario" --scenario latency --rate 1 --duration 200ms
expect "--quick is a flag and takes no value" --quick=0
expect "--out needs a value" --out --json

# A writable --out that is refused for another reason leaves no file.
expect "--scenario: unknown scenario" --out "$dir/new.json" --scenario nope
if [ -e "$dir/new.json" ]; then
  echo "FAIL: $dir/new.json was left behind"
  fails=$((fails + 1))
fi
# The write check creates and removes a new file; an existing one is kept.
printf 'keep\n' >"$dir/keep.json"
expect "--scenario: unknown scenario" --out "$dir/keep.json" --scenario nope
if [ "$(cat "$dir/keep.json")" != "keep" ]; then
  echo "FAIL: $dir/keep.json was changed"
  fails=$((fails + 1))
fi
rm -f "$dir/keep.json"

left=$(ls -A "$dir/tmp")
if [ -n "$left" ]; then
  echo "FAIL: refused runs left work directories behind: $left"
  fails=$((fails + 1))
fi

if [ "$fails" -ne 0 ]; then
  echo "$fails case(s) failed"
  exit 1
fi
echo "all cases passed"
