#!/bin/sh
# Runs one exhaustive SPIN check of a model in docs/models/ (safety and
# invalid end states) and compares the verdict with the expected one:
#   check_model.sh ok|error WORKDIR [--model FILE.pml] [spin -D switches...]
# The model is log-protocol.pml unless --model names another.
# "error" checks are the model's counterexamples (a rule SPIN must break):
# they keep the model honest, so a change that makes it blind fails too.
set -eu
expect=$1; work=$2; shift 2
name=log-protocol.pml
if [ "${1:-}" = --model ]; then name=$2; shift 2; fi
model="$(cd "$(dirname "$0")/../../docs/models" && pwd)/$name"
command -v spin >/dev/null || { echo "check_model: spin is not installed (apt-get install spin)"; exit 1; }
rm -rf "$work"; mkdir -p "$work"; cd "$work"
cp "$model" .
spin "$@" -a "$name" >spin.out 2>&1 || { cat spin.out; exit 1; }
${CC:-cc} -O2 -DCOLLAPSE -DNOCLAIM -DNFAIR=3 -w -o pan pan.c
./pan -m2000000 -w24 >pan.out 2>&1 || true
grep -E "errors:|states, stored|depth reached|elapsed" pan.out || true
errors=$(sed -n 's/.*errors: \([0-9][0-9]*\).*/\1/p' pan.out | head -n1)
[ -n "$errors" ] || { echo "check_model: pan gave no verdict"; tail -20 pan.out; exit 1; }
if [ "$expect" = ok ] && [ "$errors" -eq 0 ]; then echo "check_model: $* : no error, as expected"; exit 0; fi
if [ "$expect" = error ] && [ "$errors" -gt 0 ]; then echo "check_model: $* : SPIN finds the known error, as expected"; exit 0; fi
echo "check_model: $* : expected $expect, pan reports $errors error(s)"
[ -f "$name.trail" ] && spin "$@" -t -p "$name" | tail -40
exit 1
