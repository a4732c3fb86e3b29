# Shared by the chaos runs (sourced, not run): the loopback guard, the event log the load
# generator reads back, kills and restarts through run.sh, and starting and finishing the
# load generator, whose checker decides whether an order was lost or duplicated.
# The caller sets OUT (output directory), EVENTS (the event log), START (epoch seconds) and
# keeps the load generator's pid in loadgen_pid.
# shellcheck shell=bash
# shellcheck disable=SC2034  # loadgen_pid is read by the scripts that source this file

LOADGEN=${LOADGEN:-target/debug/chaos-loadgen}
loadgen_pid=""

# require_loopback URL...: exit 2 unless every URL is on loopback.
require_loopback() {
  local url
  for url in "$@"; do
    case "$url" in
      http://127.0.0.1:*|http://localhost:*|http://\[::1\]:*) ;;
      *) echo "chaos: $url is not a loopback URL; refusing" >&2; exit 2 ;;
    esac
  done
}

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

# burst_and_kill NAME: the load generator fires --burst orders at once (SIGUSR1), and NAME is
# killed while they are in flight.
burst_and_kill() {
  event burst "$1"
  kill -USR1 "$loadgen_pid" 2>/dev/null || true
  sleep 0.05
  kill_service "$1"
}

# start_loadgen ARGS...: the load generator in the background, writing the summary, the
# attempts and its table into $OUT; its pid in loadgen_pid.
start_loadgen() {
  if [ ! -x "$LOADGEN" ]; then
    log "building chaos-loadgen"
    cargo build -q -p chaos-loadgen
  fi
  "$LOADGEN" --events "$EVENTS" --json "$OUT/summary.json" --attempts-csv "$OUT/attempts.csv" "$@" \
    >"$OUT/loadgen.out" 2>"$OUT/loadgen.err" &
  loadgen_pid=$!
}

stop_loadgen() {
  if [ -n "$loadgen_pid" ] && kill -0 "$loadgen_pid" 2>/dev/null; then
    kill "$loadgen_pid" 2>/dev/null || true
  fi
}

# finish_loadgen: waits while the load generator heals, reads every order back and checks,
# prints its figures table; returns its exit code (0 pass, 1 an invariant failed or the
# system did not heal, 2 it could not run).
finish_loadgen() {
  local code
  log "waiting for the load generator to heal and check"
  set +e
  wait "$loadgen_pid"
  code=$?
  set -e
  loadgen_pid=""
  cat "$OUT/loadgen.out"
  case $code in
    0) log "PASS: figures in $OUT/summary.json" ;;
    1) log "FAIL: an invariant does not hold or the system did not heal (see above and $OUT/summary.json)" ;;
    *) log "ERROR: the load generator could not run:"; tail -n 20 "$OUT/loadgen.err" >&2 ;;
  esac
  return "$code"
}
