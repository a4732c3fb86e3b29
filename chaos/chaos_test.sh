#!/usr/bin/env bash
# Bounded chaos run: while chaos-loadgen places orders, kill, slow down and flap the
# services, then print the figures and fail if an order was lost, duplicated or
# stored when it should not have been.
#
#   chaos/chaos_test.sh                    # CHAOS_DURATION=180 s by default
#   CHAOS_DURATION=60 CHAOS_SEED=7 chaos/chaos_test.sh
#
# Environment:
#   CHAOS_DURATION  seconds of load (default 180; at least 40). The run stops by itself.
#   CHAOS_SEED      seed for the random pauses and the load generator (default 42).
#   CHAOS_RATE      orders per second (default 40).  CHAOS_OUT  output dir (default target/chaos).
#   CHAOS_SCENARIOS space-separated subset of: user-kill order-kill user-slow user-flap.
#   ADMIN_TOKEN     fault-injection token; generated and exported to run.sh when unset.
#   RUN_PROFILE     passed through to run.sh (debug|release).
#   USER_SERVICE_ADDR, ORDER_SERVICE_ADDR  as for run.sh (loopback defaults).
# Scenarios, one per time slot after a baseline, each fault at a random moment for a random
# while: user-service killed (SIGKILL) and restarted; order-service killed mid-burst (SIGUSR1
# makes the load generator fire a burst first) and restarted; user-service slowed past
# order-service's attempt timeout (PUT /admin/faults); user-service flapping (killed and
# restarted several times).
# Output in $CHAOS_OUT: summary.json (every figure), events.log (what the script did, epoch ms),
# attempts.csv (every attempt), loadgen.out (the table), run.log (run.sh output).
# Loopback only. Exit: 0 all invariants hold, 1 an invariant failed or the system did not heal,
# 2 the run itself failed.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${CHAOS_DURATION:-180}
SEED=${CHAOS_SEED:-42}
RATE=${CHAOS_RATE:-40}
OUT=${CHAOS_OUT:-target/chaos}
SCENARIOS=${CHAOS_SCENARIOS:-user-kill order-kill user-slow user-flap}
USER_URL=${USER_SERVICE_URL:-http://${USER_SERVICE_ADDR:-127.0.0.1:5001}}
ORDER_URL=${ORDER_SERVICE_URL:-http://${ORDER_SERVICE_ADDR:-127.0.0.1:5002}}
export ADMIN_TOKEN=${ADMIN_TOKEN:-chaos-$(od -An -tx8 -N8 /dev/urandom | tr -d ' \n')}
LOADGEN=${LOADGEN:-target/debug/chaos-loadgen}

for url in "$USER_URL" "$ORDER_URL"; do
  case "$url" in
    http://127.0.0.1:*|http://localhost:*|http://\[::1\]:*) ;;
    *) echo "chaos: $url is not a loopback URL; refusing" >&2; exit 2 ;;
  esac
done
if [ "$DURATION" -lt 40 ]; then
  echo "chaos: CHAOS_DURATION must be at least 40 s (got $DURATION)" >&2
  exit 2
fi

mkdir -p "$OUT"
EVENTS="$OUT/events.log"
SUMMARY="$OUT/summary.json"
: >"$EVENTS"
RANDOM=$SEED
START=$(date +%s)
loadgen_pid=""

log() { printf 'chaos [%4ss] %s\n' "$(( $(date +%s) - START ))" "$*"; }
event() { echo "$(date +%s%3N) $1 ${2:-}" >>"$EVENTS"; }
# rand_between LOW HIGH -> integer seconds in [LOW, HIGH]
rand_between() { echo $(( $1 + RANDOM % ($2 - $1 + 1) )); }
ready() { curl -fs -o /dev/null --max-time 2 "$1/health/ready"; }
# sleep_until T: sleep until T seconds after START
sleep_until() {
  local left=$(( $1 - ($(date +%s) - START) ))
  if [ "$left" -gt 0 ]; then sleep "$left"; fi
}

faults() { # faults JSON: PUT /admin/faults on user-service; prints the HTTP status
  curl -s -o /dev/null -w '%{http_code}' --max-time 3 -X PUT "$USER_URL/admin/faults" \
    -H "Authorization: Bearer $ADMIN_TOKEN" -H 'Content-Type: application/json' -d "$1" || true
}

restart() {
  event restart "$1"
  log "restart $1"
  if ! ./run.sh restart "$1" >>"$OUT/run.log" 2>&1; then
    log "run.sh restart $1 failed (see $OUT/run.log)"
  fi
  event ready "$1"
}

kill_service() {
  event kill "$1"
  log "kill -9 $1"
  ./run.sh kill "$1" >>"$OUT/run.log" 2>&1 || log "run.sh kill $1 failed"
}

# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
  local code=$?
  trap - EXIT INT TERM
  if [ -n "$loadgen_pid" ] && kill -0 "$loadgen_pid" 2>/dev/null; then
    kill "$loadgen_pid" 2>/dev/null || true
  fi
  # Leave the system as a person expects it: no fault injected, everything running.
  faults '{"latency_ms":0,"error_rate":0}' >/dev/null
  for svc in user-service order-service; do
    url=$USER_URL; [ "$svc" = order-service ] && url=$ORDER_URL
    ready "$url" || ./run.sh restart "$svc" >>"$OUT/run.log" 2>&1 || true
  done
  exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# 1. The system: start it if it is not up.
if ! ready "$USER_URL" || ! ready "$ORDER_URL"; then
  log "system not up: ./run.sh up (ADMIN_TOKEN exported for fault injection)"
  ./run.sh up >>"$OUT/run.log" 2>&1 || { log "./run.sh up failed (see $OUT/run.log)"; exit 2; }
fi
if [ ! -x "$LOADGEN" ]; then
  log "building chaos-loadgen"
  cargo build -q -p chaos-loadgen
fi

# 2. Load in the background, bounded by time and count.
log "load: ${DURATION}s at ${RATE} orders/s, seed $SEED; events in $EVENTS"
"$LOADGEN" --user-url "$USER_URL" --order-url "$ORDER_URL" --duration "$DURATION" \
  --rate "$RATE" --seed "$SEED" --events "$EVENTS" --json "$SUMMARY" --attempts-csv "$OUT/attempts.csv" \
  >"$OUT/loadgen.out" 2>"$OUT/loadgen.err" &
loadgen_pid=$!

# 3. Scenarios, one per slot after a baseline.
read -r -a list <<<"$SCENARIOS"
BASELINE=$(( DURATION / 8 > 10 ? DURATION / 8 : 10 ))
TAIL=8
SLOT=$(( (DURATION - BASELINE - TAIL) / ${#list[@]} ))
log "baseline ${BASELINE}s, then ${#list[@]} scenarios of ${SLOT}s each"

scenario_user_kill() {
  sleep "$(rand_between 1 2)"
  kill_service user-service
  sleep "$(rand_between $(( SLOT / 4 )) $(( SLOT * 2 / 5 )))"
  restart user-service
}
scenario_order_kill() {
  sleep "$(rand_between 1 3)"
  # Mid-burst: the load generator fires --burst orders at once on SIGUSR1; kill while they are in flight.
  event burst order-service
  kill -USR1 "$loadgen_pid" 2>/dev/null || true
  sleep 0.05
  kill_service order-service
  sleep "$(rand_between 1 3)"
  restart order-service
}
scenario_user_slow() {
  local status
  sleep 1
  status=$(faults '{"latency_ms":3000,"error_rate":0}')
  if [ "$status" = 404 ] || [ "$status" = 401 ]; then
    log "fault route answered $status: restarting user-service with ADMIN_TOKEN"
    ./run.sh restart user-service >>"$OUT/run.log" 2>&1 || true
    status=$(faults '{"latency_ms":3000,"error_rate":0}')
  fi
  if [ "${status:0:1}" != 2 ]; then
    log "cannot inject latency (PUT /admin/faults -> $status); scenario skipped"
    return
  fi
  event fault user-service
  log "user-service slowed to 3000 ms per request"
  sleep "$(rand_between $(( SLOT / 4 )) $(( SLOT * 2 / 5 )))"
  event clear user-service
  faults '{"latency_ms":0,"error_rate":0}' >/dev/null
  log "user-service latency cleared"
}
scenario_user_flap() {
  local cycles=3 i
  if [ "$SLOT" -lt 20 ]; then cycles=2; fi
  for (( i = 0; i < cycles; i++ )); do
    kill_service user-service
    sleep "$(rand_between 1 2)"
    restart user-service
    sleep "$(rand_between 1 3)"
  done
}

t=$BASELINE
for name in "${list[@]}"; do
  sleep_until "$t"
  if ! kill -0 "$loadgen_pid" 2>/dev/null; then
    log "load generator stopped early"; break
  fi
  event start "$name"
  log "scenario $name"
  case "$name" in
    user-kill) scenario_user_kill ;;
    order-kill) scenario_order_kill ;;
    user-slow) scenario_user_slow ;;
    user-flap) scenario_user_flap ;;
    *) log "unknown scenario $name"; exit 2 ;;
  esac
  t=$(( t + SLOT ))
  # Leave the rest of the slot for recovery.
  sleep_until "$(( t - 1 ))"
  event end "$name"
done

# 4. The load generator heals, reads every order back and checks.
log "waiting for the load generator to heal and check"
set +e
wait "$loadgen_pid"
code=$?
set -e
loadgen_pid=""
cat "$OUT/loadgen.out"
case $code in
  0) log "PASS: figures in $SUMMARY" ;;
  1) log "FAIL: an invariant does not hold or the system did not heal (see above and $SUMMARY)" ;;
  *) log "ERROR: the load generator could not run:"; tail -n 20 "$OUT/loadgen.err" >&2 ;;
esac
exit "$code"
