#!/usr/bin/env bash
# Kill loop: SIGKILL order-service every few seconds while 64 clients place orders as fast as
# it answers, restart it each time, then check every order: no acknowledged order lost, none
# stored twice, nothing stored that was definitely refused, and nothing stored that was not
# attempted. The orders whose fate a client never learned (in flight when the process died)
# are sent again with their keys after the run; each either turns out stored once or is
# placed once. So the store ends holding exactly the acknowledged orders plus the unknown ones
# that resolved. The checks are chaos-loadgen's (the same as chaos/chaos_test.sh's).
#
#   chaos/kill_loop.sh                         # 60 s, 64 clients, a kill every 2-5 s
#   KILL_DURATION=30 KILL_EVERY=1-3 chaos/kill_loop.sh
#
# Environment:
#   KILL_DURATION     seconds of load (default 60; 10 to 600). The run stops by itself.
#   KILL_CONNECTIONS  concurrent clients, each placing one order after another (default 64).
#   KILL_EVERY        MIN-MAX seconds between a restart and the next kill (default 2-5).
#   KILL_SEED         seed for the pauses and the load generator (default 7).
#   KILL_OUT          output dir (default target/kill-loop): summary.json, events.log,
#                     attempts.csv, loadgen.out, run.log.
#   RUN_DIR, RUN_PROFILE, USER_SERVICE_ADDR, ORDER_SERVICE_ADDR, *_DATABASE_URL: as for
#                     run.sh (the system is started with `./run.sh up` if it is not up).
# Loopback only. Exit: 0 every invariant holds, 1 one does not (or the system did not heal),
# 2 the run itself failed.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${KILL_DURATION:-60}
CONNS=${KILL_CONNECTIONS:-64}
EVERY=${KILL_EVERY:-2-5}
SEED=${KILL_SEED:-7}
OUT=${KILL_OUT:-target/kill-loop}
USER_URL=${USER_SERVICE_URL:-http://${USER_SERVICE_ADDR:-127.0.0.1:5001}}
ORDER_URL=${ORDER_SERVICE_URL:-http://${ORDER_SERVICE_ADDR:-127.0.0.1:5002}}
LOADGEN=${LOADGEN:-${CARGO_TARGET_DIR:-target}/debug/chaos-loadgen}

for url in "$USER_URL" "$ORDER_URL"; do
  case "$url" in
    http://127.0.0.1:*|http://localhost:*|http://\[::1\]:*) ;;
    *) echo "kill_loop: $url is not a loopback URL; refusing" >&2; exit 2 ;;
  esac
done
if ! [[ "$DURATION" =~ ^[0-9]+$ ]] || [ "$DURATION" -lt 10 ] || [ "$DURATION" -gt 600 ]; then
  echo "kill_loop: KILL_DURATION must be 10 to 600 seconds (got $DURATION)" >&2
  exit 2
fi
if ! [[ "$EVERY" =~ ^([0-9]+)-([0-9]+)$ ]] || [ "${BASH_REMATCH[1]}" -gt "${BASH_REMATCH[2]}" ]; then
  echo "kill_loop: KILL_EVERY must be MIN-MAX in seconds, like 2-5 (got $EVERY)" >&2
  exit 2
fi
EVERY_MIN=${BASH_REMATCH[1]}
EVERY_MAX=${BASH_REMATCH[2]}

mkdir -p "$OUT"
EVENTS=$OUT/events.log
: >"$EVENTS"
: >"$OUT/run.log"
RANDOM=$SEED
START=$(date +%s)
loadgen_pid=""

log() { printf 'kill_loop [%4ss] %s\n' "$(( $(date +%s) - START ))" "$*"; }
event() { echo "$(date +%s%3N) $1 ${2:-}" >>"$EVENTS"; }
ready() { curl -fs -o /dev/null --max-time 2 "$1/health/ready"; }

# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
  local code=$?
  trap - EXIT INT TERM
  if [ -n "$loadgen_pid" ] && kill -0 "$loadgen_pid" 2>/dev/null; then
    kill "$loadgen_pid" 2>/dev/null || true
  fi
  # Leave order-service running, as a person expects after a chaos run.
  ready "$ORDER_URL" || ./run.sh start order-service >>"$OUT/run.log" 2>&1 || true
  exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if ! ready "$USER_URL" || ! ready "$ORDER_URL"; then
  log "system not up: ./run.sh up"
  ./run.sh up >>"$OUT/run.log" 2>&1 || { log "./run.sh up failed (see $OUT/run.log)"; exit 2; }
fi
if [ ! -x "$LOADGEN" ]; then
  log "building chaos-loadgen"
  cargo build -q -p chaos-loadgen
fi

# As fast as order-service answers: each client places its next order when the last is
# answered (the rate is only a ceiling). Four attempts per key while the load runs (a
# refused connection or no answer is retried with the same key); the rest after it.
log "load: ${DURATION}s, $CONNS clients, a kill every ${EVERY_MIN}-${EVERY_MAX}s, seed $SEED"
"$LOADGEN" --user-url "$USER_URL" --order-url "$ORDER_URL" --duration "$DURATION" \
  --rate 1000000 --concurrency "$CONNS" --max-orders 2000000 --users 20 --seed "$SEED" \
  --timeout-ms 5000 --attempts 4 --events "$EVENTS" --json "$OUT/summary.json" \
  --attempts-csv "$OUT/attempts.csv" >"$OUT/loadgen.out" 2>"$OUT/loadgen.err" &
loadgen_pid=$!

# The load generator first waits for readiness and creates its users: start killing once it
# places orders (its progress line), so every kill lands under load.
for _ in $(seq 1 100); do
  grep -q "loadgen: run " "$OUT/loadgen.err" 2>/dev/null && break
  kill -0 "$loadgen_pid" 2>/dev/null || break
  sleep 0.1
done
loaded=$(date +%s)
kills=0
event start kill-loop
while :; do
  sleep "$(( EVERY_MIN + RANDOM % (EVERY_MAX - EVERY_MIN + 1) ))"
  # Leave the last seconds for the load to end on a running service.
  [ $(( $(date +%s) - loaded )) -lt $(( DURATION - 3 )) ] || break
  kill -0 "$loadgen_pid" 2>/dev/null || { log "load generator stopped early"; break; }
  event kill order-service
  ./run.sh kill order-service >>"$OUT/run.log" 2>&1 || log "run.sh kill order-service failed"
  kills=$(( kills + 1 ))
  event restart order-service
  if ./run.sh start order-service >>"$OUT/run.log" 2>&1; then
    event ready order-service
    log "kill $kills: order-service killed (SIGKILL) and ready again"
  else
    log "run.sh start order-service failed (see $OUT/run.log)"
  fi
done
event end kill-loop

log "waiting for the load generator to heal and check"
set +e
wait "$loadgen_pid"
code=$?
set -e
loadgen_pid=""
if [ "$code" -le 1 ] && [ -s "$OUT/summary.json" ]; then
  # Keys with an attempt cut off by a kill (no answer), and how many of them a later attempt
  # with the same key got acknowledged (replayed if the cut-off one had committed, else placed).
  read -r cut resolved < <(awk -F, 'NR > 1 && $4 == "unknown" { u[$1] = 1 } NR > 1 && $4 == "ok" { ok[$1] = 1 }
    END { n = 0; a = 0; for (k in u) { n++; if (k in ok) a++ }; print n, a }' "$OUT/attempts.csv")
  echo "keys with an attempt cut off by a kill: $cut; acknowledged by a later attempt with the same key: $resolved"
  jq -r --argjson kills "$kills" '
    "kills: \($kills); orders placed: \(.keys); acknowledged: \(.invariants.acked) (\(.overall.ok_per_s | floor)/s, attempt p50 \(.overall.p50_ms | floor) ms, p99 \(.overall.p99_ms | floor) ms)",
    "attempts: \(.attempts.total): \(.attempts.ok) ok, \(.attempts.unknown) cut off (no answer), \(.attempts.refused) refused (service down), \(.attempts.failed) refused with a status; \(.resent) keys resent after the load",
    "keys definitely refused: \(.invariants.failed); keys still without an answer after resending: \(.invariants.unknown) (of them stored: \(.invariants.unknown_stored))",
    "acknowledged lost: \(.invariants.acked_lost); duplicated: \(.invariants.duplicated); refused but stored: \(.invariants.failed_but_stored); stored but never attempted: \(.invariants.unexpected); orders read back: \(.invariants.stored)"' \
    "$OUT/summary.json"
fi
case $code in
  0) log "PASS: figures in $OUT/summary.json" ;;
  1) log "FAIL: an invariant does not hold or the system did not heal (see $OUT/summary.json, $OUT/loadgen.out)" ;;
  *) log "ERROR: the load generator could not run:"; tail -n 20 "$OUT/loadgen.err" >&2 ;;
esac
exit "$code"
