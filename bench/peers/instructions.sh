#!/usr/bin/env bash
# Instructions per call for each case, counted by callgrind: unlike time, the count does not
# move with the load on the machine, so it is the figure to compare when the machine is busy.
# (It is not time: a contended atomic or a cache miss is one instruction. 1 thread only.)
#
#   bench/peers/instructions.sh            every case (about a minute)
#   bench/peers/instructions.sh breaker    cases whose id contains "breaker"
#
# Needs valgrind. Prints a table and writes instructions.md next to this script.
set -euo pipefail
cd "$(dirname "$0")"
command -v valgrind >/dev/null || { echo "instructions.sh: needs valgrind" >&2; exit 2; }
N=${IR_ITERATIONS:-20000}
cargo build --release --bin profile >&2
bin=target/release/profile
cases=$("$bin" --list | grep -- "${1:-}" || true)
ir() { # instructions inside the measured loop of `profile CASE ITERS`
  valgrind --tool=callgrind --callgrind-out-file=/dev/null --toggle-collect='profile::measured_loop*' \
    "$bin" "$1" "$2" 2>&1 | sed -n 's/.*Collected : //p'
}
{
  echo "| case | instructions per call | ratio to ours |"
  echo "|---|---:|---:|"
  declare -A ours
  for c in $cases; do
    per=$(( $(ir "$c" "$N") / N ))
    group=${c%%/*}
    [ "${c#*/}" = ours ] && ours[$group]=$per
    ratio=""
    [ -n "${ours[$group]:-}" ] && [ "${ours[$group]}" -gt 0 ] && ratio=$(awk -v a="$per" -v b="${ours[$group]}" 'BEGIN { printf "%.2fx", a / b }')
    echo "| $c | $per | $ratio |"
  done
} | tee instructions.md
