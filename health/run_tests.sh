#!/usr/bin/env bash
# The demo's test run: the chaos test in the background, the health check every
# HEALTH_INTERVAL seconds while it runs (healing whatever does not answer), then a
# final health check once the chaos is over.
#
#   health/run_tests.sh                  # CHAOS_DURATION etc. are passed to chaos/chaos_test.sh
# Checks during the chaos run see injected faults on purpose; they are reported and counted,
# and each one may restart a service. The run fails when the chaos test fails (an invariant
# does not hold or it could not run), when the final health check fails, or when not one
# check during the chaos run passed.
set -euo pipefail
cd "$(dirname "$0")/.."

INTERVAL=${HEALTH_INTERVAL:-15}
OUT=${CHAOS_OUT:-target/chaos}
mkdir -p "$OUT"

chaos/chaos_test.sh >"$OUT/chaos_test.log" 2>&1 &
chaos_pid=$!
# shellcheck disable=SC2317  # invoked by the traps
stop() { kill "$chaos_pid" 2>/dev/null || true; }
trap stop INT TERM

echo "run_tests: chaos test running (pid $chaos_pid, log $OUT/chaos_test.log)"
# Give the chaos run time to start the system before the first look.
sleep "$INTERVAL"
checks=0
passed=0
while kill -0 "$chaos_pid" 2>/dev/null; do
  checks=$(( checks + 1 ))
  echo "--- health check $checks during chaos ($(date +%T))"
  if health/health_check.sh; then
    passed=$(( passed + 1 ))
  else
    echo "(a failed check while faults are injected is expected now and then)"
  fi
  for _ in $(seq "$INTERVAL"); do
    kill -0 "$chaos_pid" 2>/dev/null || break
    sleep 1
  done
done

set +e
wait "$chaos_pid"
chaos_code=$?
set -e
echo "--- chaos test finished with exit code $chaos_code"
tail -n 25 "$OUT/chaos_test.log"

echo "--- final health check ($(date +%T))"
final=0
health/health_check.sh || final=$?

echo "--- summary: chaos exit $chaos_code; $passed of $checks checks passed during chaos; final check exit $final"
if [ "$chaos_code" -ne 0 ] || [ "$final" -ne 0 ] || { [ "$checks" -gt 0 ] && [ "$passed" -eq 0 ]; }; then
  echo "run_tests: FAIL"
  exit 1
fi
echo "run_tests: PASS"
