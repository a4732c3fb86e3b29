#!/usr/bin/env bash
# Per-call overhead of resilience's layers next to tower-resilience, failsafe and tower.
#
#   bench/peers/run.sh                 # every case, ~6 minutes on 2 cores
#   bench/peers/run.sh breaker         # only cases whose id matches a criterion filter
#   WARMUP=3 MEASURE=5 bench/peers/run.sh   # longer, steadier runs
#   PEERS_CLOCK=cpu bench/peers/run.sh       # per-thread CPU time instead of wall time
#                                            # (steadier on a busy machine; see benches/peers.rs)
#
# Prints the table (case, ns per call, ratio to ours, 2-thread / 1-thread) and the targets
# of issue 6, writes it to results.md and draws peers.svg, all next to this script.
# Its own workspace and target dir (bench/peers/target): the main build is not touched.
set -euo pipefail
cd "$(dirname "$0")"

WARMUP=${WARMUP:-1}
MEASURE=${MEASURE:-2}

cargo bench --bench peers --no-run
start=$(date +%s)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
cargo bench --bench peers -- --warm-up-time "$WARMUP" --measurement-time "$MEASURE" --noplot "$@" \
  | grep -E '^[a-z_]+/[a-z_]+/[12]t|time:' || true

{
  echo "Machine: $(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p' | head -1); $(rustc --version)"
  echo "Crates: $(awk '/^name = "(tower-resilience|failsafe|tower|tokio|criterion)"$/ {n=$3; getline; printf "%s %s, ", n, $3}' Cargo.lock | tr -d '"' | sed 's/, $//')"
  rev=$(git -C ../.. rev-parse --short HEAD 2>/dev/null || echo unknown)
  [ -n "$(git -C ../.. status --porcelain -- resilience 2>/dev/null)" ] && rev="$rev + uncommitted changes"
  echo "resilience: ../../resilience at $rev"
  echo "Settings: --warm-up-time $WARMUP --measurement-time $MEASURE, clock: ${PEERS_CLOCK:-wall}"
  echo "Load average before / after: $load_before / $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
} > results.md
cat results.md
python3 report.py target/criterion --since "$start" --svg peers.svg --md results.body.md
cat results.body.md >> results.md && rm -f results.body.md
echo "written: $(pwd)/results.md, $(pwd)/peers.svg"
