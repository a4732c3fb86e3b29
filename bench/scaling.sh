#!/usr/bin/env bash
# How cost grows with concurrency, in one run: throughput, latency and memory per open
# connection for GET /users/{id} (user-service), GET /orders/{id} and durable POST /orders
# (order-service; SQLite files on disk, WAL, synchronous=FULL, the group commit), at 1, 4, 16,
# 64 and 256 connections. Bounded (about 2 minutes with the defaults), loopback only; stops
# the services it started.
#
#   bench/scaling.sh                                   release build (built first)
#   SCALING_CONNECTIONS="1 4" SCALING_DURATION=1s RUN_PROFILE=debug RUN_SKIP_BUILD=1 \
#     bench/scaling.sh                                 the CI smoke: debug binaries, seconds
#
# Environment (all optional):
#   SCALING_CONNECTIONS="1 4 16 64 256"   SCALING_DURATION=5s (whole seconds)   SCALING_THREADS=2
#   SCALING_USER_ADDR=127.0.0.1:5301  SCALING_ORDER_ADDR=127.0.0.1:5302  SCALING_RUN_DIR=.run/scaling
#   SCALING_DB_DIR=data/scaling (removed first)   SCALING_OUT=target/scaling
#   RUN_PROFILE=release|debug (default release)   RUN_SKIP_BUILD=1 (use the binaries as built)
# Writes $SCALING_OUT/results.jsonl (one line per run), results.md (the table) and scaling.svg
# (requests per second against connections, one line per case).
#
# Memory: each service's resident set (VmRSS) is read before the first run and in the middle
# of every run, while wrk holds its connections open; "KiB per added conn" is the growth from
# the case's previous run over the connections added (none for a case's first run: that is the
# service warming up): buffers, tasks and what the load itself allocates and the allocator
# keeps, so an upper bound on what one more open connection costs.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
LUA_DIR=$ROOT/bench/load

CONNECTIONS=${SCALING_CONNECTIONS:-1 4 16 64 256}
DURATION=${SCALING_DURATION:-5s}
THREADS=${SCALING_THREADS:-2}
DB_DIR=${SCALING_DB_DIR:-data/scaling}
OUT=${SCALING_OUT:-target/scaling}
export USER_SERVICE_ADDR=${SCALING_USER_ADDR:-127.0.0.1:5301}
export ORDER_SERVICE_ADDR=${SCALING_ORDER_ADDR:-127.0.0.1:5302}
export USER_SERVICE_URLS=http://$USER_SERVICE_ADDR
export RUN_DIR=${SCALING_RUN_DIR:-$ROOT/.run/scaling}
export RUN_PROFILE=${RUN_PROFILE:-release} RUST_LOG=${RUST_LOG:-warn}
export USER_SERVICE_DATABASE_URL=sqlite://$DB_DIR/users.db
export ORDER_SERVICE_DATABASE_URL=sqlite://$DB_DIR/orders.db
USERS=http://$USER_SERVICE_ADDR
ORDERS=http://$ORDER_SERVICE_ADDR

BENCH=scaling.sh
# shellcheck source=bench/common.sh
source "$ROOT/bench/common.sh"
require_tools wrk jq curl python3
require_loopback "$USER_SERVICE_ADDR" "$ORDER_SERVICE_ADDR"
case "$DURATION" in
  [1-9]s | [1-9][0-9]s) seconds=${DURATION%s} ;;
  *) say "SCALING_DURATION must be whole seconds, 1s to 99s (got $DURATION)"; exit 2 ;;
esac
for c in $CONNECTIONS; do
  case "$c" in '' | *[!0-9]* | 0) say "SCALING_CONNECTIONS must be positive integers (got $c)"; exit 2 ;; esac
  [ "$c" -le 1024 ] || { say "at most 1024 connections (got $c)"; exit 2; }
done

stop_all() { ./run.sh down >/dev/null 2>&1 || true; }
trap stop_all EXIT
if ./run.sh status 2>/dev/null | grep -q " running "; then
  say "services of $RUN_DIR are running (another run?); stop them first: RUN_DIR=$RUN_DIR ./run.sh down"
  exit 1
fi
rm -rf "$DB_DIR" && mkdir -p "$DB_DIR" "$OUT"
JSONL=$OUT/results.jsonl
: >"$JSONL"

./run.sh start user-service >&2
RUN_SKIP_BUILD=1 ./run.sh start order-service >&2

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$(cat "$RUN_DIR/$1.pid")/status"; }

RUN_ID=$(date +%s%N)
user_ids=()
for i in $(seq 1 20); do
  user_ids+=("$(curl -sf -X POST "$USERS/users" -H 'Content-Type: application/json' \
    -d "{\"name\":\"scaling $i\",\"email\":\"scaling-$i-$RUN_ID@example.com\"}" | jq -r .id)")
done
order_id=$(curl -sf -X POST "$ORDERS/orders" -H 'Content-Type: application/json' \
  -H "Idempotency-Key: scaling-$RUN_ID" \
  -d "{\"user_id\":${user_ids[0]},\"product_id\":\"sku-42\",\"quantity\":1}" | jq -r .id)
[ -n "$order_id" ] && [ "$order_id" != null ] || { say "could not create the order to read"; exit 1; }
export LOAD_LUA_DIR=$LUA_DIR LOAD_USER_IDS=$(IFS=,; echo "${user_ids[*]}") LOAD_PRODUCT_ID=sku-42
export LOAD_ORDER_ID=$order_id
declare -A idle_kib=([user-service]=$(rss_kib user-service) [order-service]=$(rss_kib order-service))
load_start=$(loadavg)

# run CASE SERVICE CONNS URL SCRIPT: one wrk run, its memory sampled halfway, one JSON line.
run() {
  local case=$1 service=$2 conns=$3 url=$4 script=$5 threads=$THREADS tmp out result rss lb la
  [ "$conns" -lt "$threads" ] && threads=$conns # wrk needs a connection per thread
  tmp=$(mktemp)
  lb=$(loadavg)
  LOAD_RUN_ID="$RUN_ID-${case//[^a-z]/}-$conns" LOAD_COUNT_STATUS=1 \
    wrk -t"$threads" -c"$conns" -d"$DURATION" --latency -s "$LUA_DIR/$script" "$url" >"$tmp" 2>&1 &
  local wrk_pid=$!
  sleep "$(awk -v s="$seconds" 'BEGIN { print s / 2 }')"
  rss=$(rss_kib "$service")
  wait "$wrk_pid" || { say "wrk failed: $(cat "$tmp")"; rm -f "$tmp"; return 1; }
  la=$(loadavg)
  out=$(cat "$tmp") && rm -f "$tmp"
  result=$(sed -n 's/^RESULT //p' <<<"$out")
  [ -n "$result" ] || { say "no RESULT from wrk: $out"; return 1; }
  jq -c --arg case "$case" --arg service "$service" --argjson conns "$conns" --argjson rss "$rss" \
    --argjson idle "${idle_kib[$service]}" --arg lb "$lb" --arg la "$la" \
    '{case: $case, service: $service, connections: $conns} + .
      + {rss_kib: $rss, idle_rss_kib: $idle, load_before: $lb, load_after: $la}' \
    <<<"$result" | tee -a "$JSONL" >&2
}

for c in $CONNECTIONS; do
  run "GET /users/{id}" user-service "$c" "$USERS/users/${user_ids[0]}" common.lua
done
for c in $CONNECTIONS; do
  run "GET /orders/{id}" order-service "$c" "$ORDERS/" get_order.lua
done
for c in $CONNECTIONS; do
  run "POST /orders (durable)" order-service "$c" "$ORDERS/" post_orders.lua
done
stop_all
trap - EXIT

python3 bench/scaling_report.py "$JSONL" --md "$OUT/results.md" --svg "$OUT/scaling.svg" \
  --header "Load average at the start / end: $load_start / $(loadavg); profile $RUN_PROFILE; $(nproc) CPUs; wrk -t$THREADS -d$DURATION"
cat "$OUT/results.md"
say "written: $OUT/results.md, $OUT/scaling.svg, $JSONL"
