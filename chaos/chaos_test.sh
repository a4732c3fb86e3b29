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
# shellcheck source=chaos/common.sh
. chaos/common.sh

require_loopback "$USER_URL" "$ORDER_URL"
if [ "$DURATION" -lt 40 ]; then
  echo "chaos: CHAOS_DURATION must be at least 40 s (got $DURATION)" >&2
  exit 2
fi

mkdir -p "$OUT"
EVENTS="$OUT/events.log"
: >"$EVENTS"
RANDOM=$SEED
START=$(date +%s)

faults() { # faults JSON: PUT /admin/faults on user-service; prints the HTTP status
  curl -s -o /dev/null -w '%{http_code}' --max-time 3 -X PUT "$USER_URL/admin/faults" \
    -H "Authorization: Bearer $ADMIN_TOKEN" -H 'Content-Type: application/json' -d "$1" || true
}

# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
  local code=$?
  trap - EXIT INT TERM
  stop_loadgen
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

# 2. Load in the background, bounded by time and count.
log "load: ${DURATION}s at ${RATE} orders/s, seed $SEED; events in $EVENTS"
start_loadgen --user-url "$USER_URL" --order-url "$ORDER_URL" --duration "$DURATION" \
  --rate "$RATE" --seed "$SEED"

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
  burst_and_kill order-service
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
code=0
finish_loadgen || code=$?
exit "$code"
