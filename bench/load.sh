#!/usr/bin/env bash
# Service throughput under load: order-service with the resilience stack on and off, the
# fail-fast path with user-service down, and weighted scenarios. Bounded in time (about
# 5 minutes with the defaults, plus the release build), loopback only, stops the services it
# started.
#
#   bench/load.sh                  everything, prints the table, writes bench/load/results.md
#   LOAD_DURATION=5s bench/load.sh shorter runs
#
# Environment (all optional):
#   LOAD_DURATION=8s      length of each wrk run
#   LOAD_THREADS=2        wrk threads
#   LOAD_CONNECTIONS=8    connections for GET, and for the extra 8-writer POST run
#   LOAD_POST_CONNECTIONS=2  connections for POST and the user-service-down runs: two
#                         writers keep SQLite's lock queue out of the figures, and two
#                         clients on two cores keep CPU queueing out of the fail-fast p99
#   LOAD_REPS=3           stack on/off runs are interleaved this many times (on, off, on, ...);
#                         the checks compare medians
#   LOAD_USERS=20         users created up front (orders pick among them)
#   LOAD_SLOW_MS=50       X-Simulate-Latency of the "slow" scenario (honoured only with
#                         ADMIN_TOKEN exported to both the services and this script)
#   LOAD_USER_ADDR=127.0.0.1:5101  LOAD_ORDER_ADDR=127.0.0.1:5102  LOAD_DASHBOARD_ADDR=127.0.0.1:5180
#                         ports of this run (not the defaults)
#   LOAD_RUN_DIR=.run/load  run.sh's RUN_DIR for this run (pids and logs; relative to the
#                         repository root). With its own ports, data and RUN_DIR the run
#                         neither sees nor stops a system started with `./run.sh up`, and can
#                         run while one is up (it then shares the cores, so the figures are
#                         noisier). It refuses to start while services of its own RUN_DIR
#                         still run (another load run), and stops its own at the end.
#   RUN_SKIP_BUILD=1      do not build first
#   LOAD_PROFILE=release  which binaries (debug only to try the script: figures are meaningless)
#   LOAD_OUT=bench/load   where results.jsonl and results.md go (CI's smoke writes to target/)
# Data goes to LOAD_DB_DIR (removed at the start; default /dev/shm/resilience-load, see
# below): the load never touches data/*.db.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
LUA_DIR=$ROOT/bench/load
OUT_DIR=${LOAD_OUT:-$LUA_DIR}
JSONL=$OUT_DIR/results.jsonl
MD=$OUT_DIR/results.md

DURATION=${LOAD_DURATION:-8s}
THREADS=${LOAD_THREADS:-2}
CONNS=${LOAD_CONNECTIONS:-8}
PCONNS=${LOAD_POST_CONNECTIONS:-2}
REPS=${LOAD_REPS:-3}
NUSERS=${LOAD_USERS:-20}
SLOW_MS=${LOAD_SLOW_MS:-50}

export USER_SERVICE_ADDR=${LOAD_USER_ADDR:-127.0.0.1:5101}
export ORDER_SERVICE_ADDR=${LOAD_ORDER_ADDR:-127.0.0.1:5102}
export DASHBOARD_ADDR=${LOAD_DASHBOARD_ADDR:-127.0.0.1:5180}
export USER_SERVICE_URLS=http://$USER_SERVICE_ADDR
export ORDER_SERVICE_URL=http://$ORDER_SERVICE_ADDR
# SQLite files on tmpfs by default: each order's fsync (synchronous=FULL) on a shared disk
# varies more than the whole resilience stack costs, and the comparison is about the stack.
# LOAD_DB_DIR=data/load measures with the disk.
if [ -z "${LOAD_DB_DIR:-}" ]; then
  if [ -d /dev/shm ] && [ -w /dev/shm ]; then LOAD_DB_DIR=/dev/shm/resilience-load; else LOAD_DB_DIR=data/load; fi
fi
export USER_SERVICE_DATABASE_URL=sqlite://$LOAD_DB_DIR/users.db
export ORDER_SERVICE_DATABASE_URL=sqlite://$LOAD_DB_DIR/orders.db
export RUST_LOG=${RUST_LOG:-warn}
# Its own pid and log directory, so another system started with `./run.sh up` is neither seen
# nor stopped by this run.
RUN_DIR=${LOAD_RUN_DIR:-.run/load}
case "$RUN_DIR" in /*) ;; *) RUN_DIR=$ROOT/$RUN_DIR ;; esac
export RUN_DIR
ORDERS=http://$ORDER_SERVICE_ADDR
USERS=http://$USER_SERVICE_ADDR

BENCH=load.sh
# shellcheck source=bench/common.sh
source "$ROOT/bench/common.sh"
require_tools wrk jq curl python3
require_loopback "$USER_SERVICE_ADDR" "$ORDER_SERVICE_ADDR" "$DASHBOARD_ADDR"

if ./run.sh status 2>/dev/null | grep -q " running "; then
  say "services of $RUN_DIR are running (another load run?); stop them first: RUN_DIR=$RUN_DIR ./run.sh down"
  exit 1
fi

cleanup() {
  local pid
  pid=$(cat "$RUN_DIR/user-service.pid" 2>/dev/null || true)
  [ -n "$pid" ] && kill -CONT "$pid" 2>/dev/null || true
  ./run.sh down >/dev/null 2>&1 || true
}
trap cleanup EXIT

rm -rf "$LOAD_DB_DIR" && mkdir -p "$LOAD_DB_DIR" "$OUT_DIR"
: >"$JSONL"
RUN_ID=$(date +%s%N)

PROFILE=${LOAD_PROFILE:-release}
if [ "${RUN_SKIP_BUILD:-}" != 1 ]; then
  say "building ($PROFILE)"
  flag=(); [ "$PROFILE" = release ] && flag=(--release)
  cargo build "${flag[@]}" -p user-service -p order-service >&2
fi
export RUN_PROFILE=$PROFILE RUN_SKIP_BUILD=1

say "starting the services on $USER_SERVICE_ADDR and $ORDER_SERVICE_ADDR"
RESILIENCE=on ./run.sh up >&2

# --- fixtures: users, and one order to read back
user_ids=()
for i in $(seq 1 "$NUSERS"); do
  id=$(curl -sf -X POST "$USERS/users" -H 'Content-Type: application/json' \
    -d "{\"name\":\"load $i\",\"email\":\"load-$i-$RUN_ID@example.com\"}" | jq -r .id)
  user_ids+=("$id")
done
USER_IDS=$(IFS=,; echo "${user_ids[*]}")
ORDER_ID=$(curl -sf -X POST "$ORDERS/orders" -H 'Content-Type: application/json' \
  -H "Idempotency-Key: load-fixture-$RUN_ID" \
  -d "{\"user_id\":${user_ids[0]},\"product_id\":\"sku-42\",\"quantity\":1}" | jq -r .id)
say "fixtures: ${#user_ids[@]} users, order $ORDER_ID"

export LOAD_LUA_DIR=$LUA_DIR LOAD_USER_IDS=$USER_IDS LOAD_ORDER_ID=$ORDER_ID LOAD_PRODUCT_ID=sku-42 \
  LOAD_SLOW_MS=$SLOW_MS

# run CASE STACK SCRIPT THREADS CONNECTIONS [wrk args...]: one wrk run, one JSON line with
# wrk's figures and, under "server", the quantiles of order-service's own latency histogram
# for the route over the same run (see load/server_quantiles.py for why both).
run() {
  local case=$1 stack=$2 script=$3 t=$4 c=$5 method=POST route=/orders
  shift 5
  [ "$script" = get_order.lua ] && method=GET route='/orders/{id}'
  local tmp out result server
  tmp=$(mktemp -d)
  curl -sf "$ORDERS/metrics" >"$tmp/before" || true
  out=$(LOAD_RUN_ID="$RUN_ID-$case-$stack-$RANDOM" wrk -t"$t" -c"$c" -d"$DURATION" --latency "$@" \
    -s "$LUA_DIR/$script" "$ORDERS/" 2>&1) || { say "wrk failed: $out"; rm -rf "$tmp"; return 1; }
  curl -sf "$ORDERS/metrics" >"$tmp/after" || true
  server=$(python3 "$LUA_DIR/server_quantiles.py" "$tmp/before" "$tmp/after" "$method" "$route")
  rm -rf "$tmp"
  result=$(sed -n 's/^RESULT //p' <<<"$out")
  [ -n "$result" ] || { say "no RESULT from wrk: $out"; return 1; }
  jq -c --arg case "$case" --arg stack "$stack" --arg threads "$t" --arg conns "$c" \
    --argjson server "$server" \
    '{case: $case, stack: $stack, threads: ($threads|tonumber), connections: ($conns|tonumber)} + . + {server: $server}' \
    <<<"$result" | tee -a "$JSONL" >&2
}

restart_orders() { # restart_orders on|off
  RESILIENCE=$1 ./run.sh restart order-service >&2
}

# --- 1. throughput, stack on vs off, interleaved
for rep in $(seq 1 "$REPS"); do
  for stack in on off; do
    restart_orders "$stack"
    say "rep $rep, stack $stack: GET /orders/{id}"
    run get_order "$stack" get_order.lua "$THREADS" "$CONNS"
    say "rep $rep, stack $stack: POST /orders"
    run post_orders "$stack" post_orders.lua "$THREADS" "$PCONNS"
    say "rep $rep, stack $stack: POST /orders, $CONNS connections"
    run post_orders_many "$stack" post_orders.lua "$THREADS" "$CONNS"
  done
done

# --- 2. weighted scenarios (stack on; one connection per thread, so each response is
#        counted under its request's scenario)
restart_orders on
say "weighted scenarios (normal / slow with X-Simulate-Latency: $SLOW_MS / malformed)"
run mixed on mixed.lua "$THREADS" "$THREADS"

# --- 3. user-service down: fail fast with the breaker, and without it
./run.sh kill user-service >&2
for stack in on off; do
  restart_orders "$stack"
  if [ "$stack" = on ]; then
    # Trip the breaker: a few orders fail (connection refused), then it opens.
    for i in $(seq 1 20); do
      curl -s -o /dev/null -X POST "$ORDERS/orders" -H 'Content-Type: application/json' \
        -H "Idempotency-Key: trip-$RUN_ID-$i" -d "{\"user_id\":${user_ids[0]},\"product_id\":\"sku-42\",\"quantity\":1}" || true
    done
    state=$(curl -sf "$ORDERS/resilience" | jq -r '[.breakers[].state] | join(",")')
    say "breaker state before the run: $state"
  fi
  say "user-service killed, stack $stack: POST /orders"
  LOAD_COUNT_STATUS=1 run user_down "$stack" post_orders.lua "$THREADS" "$PCONNS"
done

# --- 4. user-service frozen (SIGSTOP: connections open, nothing answers), stack on and off
./run.sh start user-service >&2
upid=$(cat "$RUN_DIR/user-service.pid")
for stack in on off; do
  restart_orders "$stack"
  kill -STOP "$upid"
  if [ "$stack" = on ]; then
    for i in $(seq 1 6); do # 5 timeouts in a row open the breaker (500 ms attempt timeout)
      curl -s -o /dev/null -m 5 -X POST "$ORDERS/orders" -H 'Content-Type: application/json' \
        -H "Idempotency-Key: freeze-$RUN_ID-$i" -d "{\"user_id\":${user_ids[0]},\"product_id\":\"sku-42\",\"quantity\":1}" &
    done
    wait
    state=$(curl -sf "$ORDERS/resilience" | jq -r '[.breakers[].state] | join(",")')
    say "breaker state before the run: $state"
  fi
  say "user-service frozen, stack $stack: POST /orders"
  LOAD_COUNT_STATUS=1 run user_frozen "$stack" post_orders.lua "$THREADS" "$PCONNS" --timeout 1s
  kill -CONT "$upid"
done

./run.sh down >&2
trap - EXIT

python3 "$LUA_DIR/report.py" "$JSONL" --md "$MD" \
  --machine "$(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p' | head -1)" \
  --settings "wrk -t$THREADS -d$DURATION; SQLite in $LOAD_DB_DIR; GET -c$CONNS, POST and user-service down -c$PCONNS, scenarios -c$THREADS; $REPS interleaved reps; $PROFILE build"
say "written: $MD, $JSONL"
