#!/usr/bin/env bash
# Starts and stops the system on loopback: user-service, order-service and the dashboard, and a
# second order-service replica (order-service-2) on the same PostgreSQL when asked.
#
#   ./run.sh up                 build (release), start everything, wait until ready, print URLs
#   ./run.sh down               stop everything (SIGTERM, then SIGKILL after a grace period)
#   ./run.sh status             one line per service: pid, readiness
#   ./run.sh restart NAME       stop NAME (if running) and start it again, wait until ready
#   ./run.sh start NAME         start NAME if it is not running, wait until ready
#   ./run.sh stop NAME          stop NAME gracefully
#   ./run.sh kill NAME          SIGKILL NAME at once (for chaos tests)
#   ./run.sh reload NAME        SIGHUP NAME: order-service reads RESILIENCE_CONFIG again and
#                               applies it keeping its state, or refuses it (see its log)
#   NAME is user-service, order-service, order-service-2 or dashboard.
#
#   ORDER_SERVICE_REPLICAS=2 ./run.sh up    also start order-service-2 (the dashboard polls both)
#   ./run.sh start order-service-2          start the second replica beside a running system
# order-service-2 is the same binary on ORDER_SERVICE_2_ADDR, sharing order-service's store, so
# it needs PostgreSQL (ORDER_SERVICE_DATABASE_URL or DATABASE_URL=postgres://...); with SQLite
# run.sh refuses to start it.
#
# Environment (all optional; anything else, such as DATABASE_URL, DEGRADED_MODE, RESILIENCE,
# RESILIENCE_CONFIG, ADMIN_TOKEN, LOG_FORMAT or RUST_LOG, passes through to the services):
#   RUN_PROFILE=release|debug   which target/ binaries to run (default: release for `up`, and
#                               for other commands whatever the last `up` used; CI uses debug)
#   RUN_SKIP_BUILD=1            do not run cargo build first
#   READY_TIMEOUT=60            seconds to wait for each /health/ready
#   STOP_TIMEOUT=15             seconds between SIGTERM and SIGKILL
#   RUN_DIR=.run                pids, logs and the remembered profile (relative to the current
#                               directory). A second system runs beside the first with its own
#                               RUN_DIR, its own *_ADDR ports and its own DATABASE_URL; every
#                               command sees only the services of its RUN_DIR.
#   USER_SERVICE_ADDR=127.0.0.1:5001  ORDER_SERVICE_ADDR=127.0.0.1:5002  DASHBOARD_ADDR=127.0.0.1:8080
#   ORDER_SERVICE_2_ADDR=127.0.0.1:5004 ORDER_SERVICE_REPLICAS=1|2 (how many order-services `up` starts)
# Files: logs in $RUN_DIR/logs/NAME.log, pids in $RUN_DIR/NAME.pid, data in ./data/.
set -euo pipefail
# A relative RUN_DIR is taken from where run.sh was called, before the cd below.
case "${RUN_DIR:-}" in
  "" | /*) ;;
  *) RUN_DIR=$PWD/$RUN_DIR ;;
esac
cd "$(dirname "$0")"

ROOT=$PWD
RUN_DIR=${RUN_DIR:-$ROOT/.run}
LOG_DIR=$RUN_DIR/logs
# The profile `up` used is remembered, so `restart NAME` later runs the same binaries.
PROFILE=${RUN_PROFILE:-$(cat "$RUN_DIR/profile" 2>/dev/null || echo release)}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
READY_TIMEOUT=${READY_TIMEOUT:-60}
STOP_TIMEOUT=${STOP_TIMEOUT:-15}
REPLICAS=${ORDER_SERVICE_REPLICAS:-1}
case "$REPLICAS" in
  1) SERVICES=(user-service order-service dashboard) ;;
  2) SERVICES=(user-service order-service order-service-2 dashboard) ;;
  *) echo "run.sh: ORDER_SERVICE_REPLICAS must be 1 or 2 (got $REPLICAS)" >&2; exit 2 ;;
esac
# Every name a command accepts, in start order; `down` stops them all, whatever `up` started.
ALL_SERVICES=(user-service order-service order-service-2 dashboard)

export USER_SERVICE_ADDR=${USER_SERVICE_ADDR:-127.0.0.1:5001}
export ORDER_SERVICE_ADDR=${ORDER_SERVICE_ADDR:-127.0.0.1:5002}
export ORDER_SERVICE_2_ADDR=${ORDER_SERVICE_2_ADDR:-127.0.0.1:5004}
export DASHBOARD_ADDR=${DASHBOARD_ADDR:-127.0.0.1:8080}
export USER_SERVICE_URLS=${USER_SERVICE_URLS:-http://$USER_SERVICE_ADDR}
export ORDER_SERVICE_URL=${ORDER_SERVICE_URL:-http://$ORDER_SERVICE_ADDR}
# The dashboard polls every replica in this list.
if [ "$REPLICAS" = 2 ]; then
  export ORDER_SERVICE_URLS=${ORDER_SERVICE_URLS:-$ORDER_SERVICE_URL,http://$ORDER_SERVICE_2_ADDR}
fi

case "$PROFILE" in
  release | debug) ;;
  *) echo "run.sh: RUN_PROFILE must be release or debug (got $PROFILE)" >&2; exit 2 ;;
esac

say() { printf 'run.sh: %s\n' "$*"; }
die() { printf 'run.sh: %s\n' "$*" >&2; exit 1; }

addr_of() {
  case "$1" in
    user-service) echo "$USER_SERVICE_ADDR" ;;
    order-service) echo "$ORDER_SERVICE_ADDR" ;;
    order-service-2) echo "$ORDER_SERVICE_2_ADDR" ;;
    dashboard) echo "$DASHBOARD_ADDR" ;;
    *) die "unknown service '$1' (expected one of: ${ALL_SERVICES[*]})" ;;
  esac
}

# The binary NAME runs: a replica runs its service's binary.
binary_of() { echo "${1%-2}"; }
bin_of() { echo "$TARGET_DIR/$PROFILE/$(binary_of "$1")"; }

# order-service's database URL, chosen as order-service chooses it (its config.rs).
order_database_url() { echo "${ORDER_SERVICE_DATABASE_URL:-${DATABASE_URL:-sqlite://data/orders.db}}"; }

# A second replica shares order-service's store: refuse one on SQLite, a file on this machine
# that one process writes (two would take turns on its lock, and no second machine could
# reach it).
replica_store_ok() {
  case "$(order_database_url)" in
    postgres://* | postgresql://*) return 0 ;;
  esac
  say "order-service-2 needs PostgreSQL: replicas share order-service's store, and $(order_database_url)" \
    "is a SQLite file for one process. Set ORDER_SERVICE_DATABASE_URL=postgres://... (or DATABASE_URL)." >&2
  return 1
}
pid_file() { echo "$RUN_DIR/$1.pid"; }

# The pid of NAME if it is running (and is the process we started), else nothing.
running_pid() {
  local f pid
  f=$(pid_file "$1")
  [ -f "$f" ] || return 1
  pid=$(cat "$f" 2>/dev/null || true)
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  # Guard against a recycled pid: the process must be our binary.
  if [ -r "/proc/$pid/cmdline" ] && ! tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$(binary_of "$1")"; then
    return 1
  fi
  echo "$pid"
}

# Whether PID is still running. A process that has exited but not yet been reaped (a zombie:
# the services are re-parented to PID 1, which may reap late) holds no socket any more, so it
# counts as stopped; otherwise a restart would wait on the reaper.
alive() {
  kill -0 "$1" 2>/dev/null || return 1
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  [ "$(echo "${stat##*) }" | cut -d' ' -f1)" != Z ]
}

# HTTP status of NAME's /health/ready ("000" when it does not answer).
ready_code() {
  curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$(addr_of "$1")/health/ready" 2>/dev/null || true
}

build() {
  [ "${RUN_SKIP_BUILD:-0}" = 1 ] && return 0
  command -v cargo >/dev/null || die "cargo not found (or set RUN_SKIP_BUILD=1 with binaries in $TARGET_DIR/$PROFILE)"
  local flag=()
  [ "$PROFILE" = release ] && flag=(--release)
  say "building ($PROFILE): user-service order-service"
  cargo build "${flag[@]}" -p user-service -p order-service
  say "building ($PROFILE): dashboard"
  if ! cargo build "${flag[@]}" -p dashboard; then
    say "warning: the dashboard does not build; starting without it"
  fi
}

wait_ready() {
  local name=$1 pid=$2 waited=0 code
  while :; do
    code=$(ready_code "$name")
    [ "$code" = 200 ] && return 0
    if ! alive "$pid"; then
      say "$name exited during start-up; last log lines:"
      tail -n 20 "$LOG_DIR/$name.log" >&2 || true
      rm -f "$(pid_file "$name")"
      return 1
    fi
    if [ "$waited" -ge $((READY_TIMEOUT * 5)) ]; then
      say "$name not ready after ${READY_TIMEOUT}s (last /health/ready: $code); see $LOG_DIR/$name.log"
      return 1
    fi
    sleep 0.2
    waited=$((waited + 1))
  done
}

start_one() {
  local name=$1 bin pid
  addr_of "$name" >/dev/null
  if pid=$(running_pid "$name"); then
    say "$name already running (pid $pid)"
    return 0
  fi
  if [ "$name" = order-service-2 ]; then
    replica_store_ok || return 1
  fi
  bin=$(bin_of "$name")
  if [ ! -x "$bin" ]; then
    if [ "$name" = dashboard ]; then
      say "warning: $bin not built; dashboard skipped"
      return 0
    fi
    die "$bin not found: run ./run.sh up (RUN_PROFILE=$PROFILE)"
  fi
  mkdir -p "$LOG_DIR" "$ROOT/data"
  printf '\n===== %s start %s =====\n' "$(date -u +%FT%TZ)" "$name" >>"$LOG_DIR/$name.log"
  # setsid: its own session, so a Ctrl-C in this terminal does not reach it; nohup: survives
  # the terminal closing. Both exec, so $! is the service's own pid.
  # The replica is order-service listening on its own address.
  local prefix=()
  if [ "$name" = order-service-2 ]; then prefix=(env "ORDER_SERVICE_ADDR=$ORDER_SERVICE_2_ADDR"); fi
  setsid nohup "${prefix[@]}" "$bin" >>"$LOG_DIR/$name.log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$(pid_file "$name")"
  if wait_ready "$name" "$pid"; then
    say "$name ready (pid $pid) on http://$(addr_of "$name")"
  else
    return 1
  fi
}

stop_one() {
  local name=$1 pid waited=0
  if ! pid=$(running_pid "$name"); then
    rm -f "$(pid_file "$name")"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  while alive "$pid"; do
    if [ "$waited" -ge $((STOP_TIMEOUT * 10)) ]; then
      say "$name did not stop within ${STOP_TIMEOUT}s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  rm -f "$(pid_file "$name")"
  say "$name stopped"
}

kill_one() {
  local name=$1 pid
  addr_of "$name" >/dev/null
  if pid=$(running_pid "$name"); then
    kill -KILL "$pid" 2>/dev/null || true
    # Not our child (an earlier run.sh started it), so poll rather than wait.
    for _ in $(seq 1 50); do alive "$pid" || break; sleep 0.02; done
    say "$name killed (SIGKILL, pid $pid)"
  else
    say "$name was not running"
  fi
  rm -f "$(pid_file "$name")"
}

status() {
  local name pid code
  for name in "${ALL_SERVICES[@]}"; do
    if pid=$(running_pid "$name"); then
      code=$(ready_code "$name")
      if [ "$code" = 200 ]; then
        printf '%-16s running  pid %-7s ready      http://%s\n' "$name" "$pid" "$(addr_of "$name")"
      else
        printf '%-16s running  pid %-7s NOT READY  http://%s (/health/ready: %s)\n' "$name" "$pid" "$(addr_of "$name")" "$code"
      fi
    elif [[ " ${SERVICES[*]} " == *" $name "* ]]; then
      printf '%-16s stopped\n' "$name"
    fi
  done
}

need_name() {
  [ -n "${1:-}" ] || die "usage: ./run.sh $2 NAME (NAME: ${ALL_SERVICES[*]})"
  addr_of "$1" >/dev/null
}

command -v curl >/dev/null || die "curl is needed (apt-get install curl)"
mkdir -p "$RUN_DIR" "$LOG_DIR"

cmd=${1:-}
case "$cmd" in
  up)
    PROFILE=${RUN_PROFILE:-release}
    if [ "$REPLICAS" = 2 ]; then replica_store_ok || exit 1; fi
    build
    echo "$PROFILE" >"$RUN_DIR/profile"
    for name in "${SERVICES[@]}"; do
      start_one "$name" || { say "start-up failed; stopping what was started"; for n in "${SERVICES[@]}"; do stop_one "$n"; done; exit 1; }
    done
    echo
    echo "  user-service   http://$USER_SERVICE_ADDR   (openapi: /openapi.json, metrics: /metrics)"
    echo "  order-service  http://$ORDER_SERVICE_ADDR   (resilience: /resilience)"
    if [ "$REPLICAS" = 2 ]; then
      echo "  order-service-2 http://$ORDER_SERVICE_2_ADDR   (second replica, same PostgreSQL)"
    fi
    if running_pid dashboard >/dev/null; then
      echo "  dashboard      http://$DASHBOARD_ADDR"
    fi
    echo "  logs: $LOG_DIR/   data: $ROOT/data/   stop: ./run.sh down"
    ;;
  down)
    for ((i = ${#ALL_SERVICES[@]} - 1; i >= 0; i--)); do stop_one "${ALL_SERVICES[$i]}"; done
    ;;
  status) status ;;
  restart)
    need_name "${2:-}" restart
    stop_one "$2"
    start_one "$2"
    ;;
  start)
    need_name "${2:-}" start
    start_one "$2"
    ;;
  stop)
    need_name "${2:-}" stop
    stop_one "$2"
    ;;
  kill)
    need_name "${2:-}" kill
    kill_one "$2"
    ;;
  reload)
    need_name "${2:-}" reload
    pid=$(running_pid "$2") || die "$2 is not running"
    kill -HUP "$pid"
    say "$2: SIGHUP sent (the outcome is in $LOG_DIR/$2.log)"
    ;;
  *)
    # The header comment, up to `set -euo pipefail`.
    sed -n '2,/^set /p' "$0" | sed '$d; s/^# \{0,1\}//'
    if [ -z "$cmd" ]; then exit 2; fi
    die "unknown command '$cmd'"
    ;;
esac
