#!/usr/bin/env bash
# Durable POST /orders, before and after the group commit, in one run: SQLite with its files on
# disk (WAL, synchronous=FULL) and PostgreSQL, at 2, 16 and 64 connections; then the same
# without a user-service round trip per order, and user-service's own GET /users/{id}, to show
# what bounds the figures. Bounded (about 5 minutes with the defaults), loopback only; stops
# the services it started.
#
#   bench/group_commit.sh                      the after build only (built first)
#   GC_BEFORE=/tmp/before bench/group_commit.sh  with main's code too: GC_BEFORE is a
#        CARGO_TARGET_DIR holding release/user-service and release/order-service built from it,
#        for example: git archive main | tar -x -C /tmp/before-src &&
#        (cd /tmp/before-src && CARGO_TARGET_DIR=/tmp/before cargo build --release \
#         -p user-service -p order-service)
#
# Environment (all optional):
#   GC_BEFORE            target dir of the "before" binaries (none: that build is skipped)
#   GC_AFTER             target dir of the "after" binaries (default $CARGO_TARGET_DIR or
#                        target; built with cargo first unless GC_SKIP_BUILD=1)
#   GC_BACKENDS="sqlite postgres"   GC_CONNECTIONS="2 16 64"   GC_DURATION=10s   GC_THREADS=2
#   GC_DB_DIR=data/group-commit     SQLite files (on disk: that is the point; removed first)
#   GC_PG=postgres://resilience:resilience@127.0.0.1:5432   GC_PG_PREFIX=gc_bench_
#                        databases ${GC_PG_PREFIX}users and ${GC_PG_PREFIX}orders are dropped
#                        and created for each build (needs psql and a role with CREATEDB)
#   GC_USER_ADDR=127.0.0.1:5201  GC_ORDER_ADDR=127.0.0.1:5202  GC_RUN_DIR=.run/group-commit
#   GC_OUT=target/group-commit   results.jsonl (one line per run) and results.md
#   GC_PROFILE=release   the binaries' profile (debug only to try the script, as CI's smoke
#                        does with GC_SKIP_BUILD=1: figures are meaningless)
# Each case starts from empty databases, with 20 users; every request is a new order (its own
# Idempotency-Key). "no lookup" runs with DEGRADED_MODE=accept and user-service stopped: the
# open breaker refuses each lookup at once and the order is stored `pending`, so the figure is
# order-service and its store alone.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
LUA_DIR=$ROOT/bench/load

BACKENDS=${GC_BACKENDS:-sqlite postgres}
CONNECTIONS=${GC_CONNECTIONS:-2 16 64}
DURATION=${GC_DURATION:-10s}
THREADS=${GC_THREADS:-2}
DB_DIR=${GC_DB_DIR:-data/group-commit}
PG=${GC_PG:-postgres://resilience:resilience@127.0.0.1:5432}
PG_PREFIX=${GC_PG_PREFIX:-gc_bench_}
OUT=${GC_OUT:-target/group-commit}
AFTER=${GC_AFTER:-${CARGO_TARGET_DIR:-$ROOT/target}}
BEFORE=${GC_BEFORE:-}
export USER_SERVICE_ADDR=${GC_USER_ADDR:-127.0.0.1:5201}
export ORDER_SERVICE_ADDR=${GC_ORDER_ADDR:-127.0.0.1:5202}
export USER_SERVICE_URLS=http://$USER_SERVICE_ADDR
export RUN_DIR=${GC_RUN_DIR:-$ROOT/.run/group-commit}
export RUN_PROFILE=${GC_PROFILE:-release} RUN_SKIP_BUILD=1 RUST_LOG=${RUST_LOG:-warn} DEGRADED_MODE=accept
USERS=http://$USER_SERVICE_ADDR
ORDERS=http://$ORDER_SERVICE_ADDR

BENCH=group_commit.sh
# shellcheck source=bench/common.sh
source "$ROOT/bench/common.sh"
require_tools wrk jq curl python3
case "$BACKENDS" in *postgres*) command -v psql >/dev/null || { say "needs psql for PostgreSQL"; exit 2; } ;; esac
require_loopback "$USER_SERVICE_ADDR" "$ORDER_SERVICE_ADDR"
case "$PG" in postgres://*@127.0.0.1:*|postgres://*@localhost:*) ;; *) say "GC_PG must be on loopback"; exit 2 ;; esac
if [ -n "$BEFORE" ] && [ ! -x "$BEFORE/release/order-service" ]; then
  say "GC_BEFORE=$BEFORE has no release/order-service"; exit 2
fi

mkdir -p "$OUT"
JSONL=$OUT/results.jsonl
: >"$JSONL"
if [ "${GC_SKIP_BUILD:-}" != 1 ]; then
  say "building the after binaries (release) into $AFTER"
  CARGO_TARGET_DIR=$AFTER cargo build --release -p user-service -p order-service >&2
fi

stop_all() { ./run.sh down >/dev/null 2>&1 || true; }
trap stop_all EXIT
if ./run.sh status 2>/dev/null | grep -q " running "; then
  say "services of $RUN_DIR are running (another run?); stop them first: RUN_DIR=$RUN_DIR ./run.sh down"
  exit 1
fi

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

fresh_databases() { # fresh_databases BACKEND: empty stores, URLs exported
  case "$1" in
    sqlite)
      rm -rf "$DB_DIR" && mkdir -p "$DB_DIR"
      export USER_SERVICE_DATABASE_URL=sqlite://$DB_DIR/users.db
      export ORDER_SERVICE_DATABASE_URL=sqlite://$DB_DIR/orders.db
      ;;
    postgres)
      for db in users orders; do
        psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS ${PG_PREFIX}$db" >/dev/null
        psql -q "$PG/postgres" -c "CREATE DATABASE ${PG_PREFIX}$db" >/dev/null
      done
      export USER_SERVICE_DATABASE_URL=$PG/${PG_PREFIX}users
      export ORDER_SERVICE_DATABASE_URL=$PG/${PG_PREFIX}orders
      ;;
  esac
}

# run BACKEND BUILD CASE CONNS URL SCRIPT: one wrk run, one JSON line.
run() {
  local backend=$1 build=$2 case=$3 conns=$4 url=$5 script=$6 tmp out result server batches
  tmp=$(mktemp -d)
  curl -sf "$ORDERS/metrics" >"$tmp/before" 2>/dev/null || : >"$tmp/before"
  local load_before load_after
  load_before=$(loadavg)
  out=$(LOAD_RUN_ID="$RUN_ID-$backend-$build-${case// /-}-$conns" LOAD_COUNT_STATUS=1 \
    wrk -t"$THREADS" -c"$conns" -d"$DURATION" --latency -s "$LUA_DIR/$script" "$url" 2>&1) ||
    { say "wrk failed: $out"; rm -rf "$tmp"; return 1; }
  load_after=$(loadavg)
  curl -sf "$ORDERS/metrics" >"$tmp/after" 2>/dev/null || : >"$tmp/after"
  if [ "$script" = post_orders.lua ]; then
    server=$(python3 "$LUA_DIR/server_quantiles.py" "$tmp/before" "$tmp/after" POST /orders)
  else
    server=null
  fi
  # Orders per commit over the run, from the group commit's counters (absent before it).
  batches=$(python3 - "$tmp/before" "$tmp/after" <<'EOF'
import sys
def read(path):
    out = {}
    for line in open(path):
        for name in ("orders_write_batches_total", "orders_write_batch_orders_total"):
            if line.startswith(name + " "):
                out[name] = float(line.split()[1])
    return out
b, a = read(sys.argv[1]), read(sys.argv[2])
n = a.get("orders_write_batches_total", 0) - b.get("orders_write_batches_total", 0)
o = a.get("orders_write_batch_orders_total", 0) - b.get("orders_write_batch_orders_total", 0)
print("null" if n <= 0 else '{"commits": %d, "orders_per_commit": %.1f}' % (n, o / n))
EOF
)
  rm -rf "$tmp"
  result=$(sed -n 's/^RESULT //p' <<<"$out")
  [ -n "$result" ] || { say "no RESULT from wrk: $out"; return 1; }
  jq -c --arg backend "$backend" --arg build "$build" --arg case "$case" --arg conns "$conns" \
    --arg lb "$load_before" --arg la "$load_after" --argjson server "$server" --argjson batches "$batches" \
    '{backend: $backend, build: $build, case: $case, connections: ($conns|tonumber)} + .
      + {server: $server, batches: $batches, load_before: $lb, load_after: $la}' \
    <<<"$result" | tee -a "$JSONL" >&2
}

RUN_ID=$(date +%s%N)
for backend in $BACKENDS; do
  for build in before after; do
    case $build in
      before) [ -n "$BEFORE" ] || continue; export CARGO_TARGET_DIR=$BEFORE ;;
      after) export CARGO_TARGET_DIR=$AFTER ;;
    esac
    say "$backend, $build ($CARGO_TARGET_DIR/release)"
    stop_all
    fresh_databases "$backend"
    ./run.sh start user-service >&2
    ./run.sh start order-service >&2
    user_ids=()
    for i in $(seq 1 20); do
      user_ids+=("$(curl -sf -X POST "$USERS/users" -H 'Content-Type: application/json' \
        -d "{\"name\":\"gc $i\",\"email\":\"gc-$i-$RUN_ID@example.com\"}" | jq -r .id)")
    done
    export LOAD_LUA_DIR=$LUA_DIR LOAD_USER_IDS=$(IFS=,; echo "${user_ids[*]}") LOAD_PRODUCT_ID=sku-42
    for c in $CONNECTIONS; do
      run "$backend" "$build" lookup "$c" "$ORDERS/" post_orders.lua
    done
    # What one user-service answers on its own, at the highest concurrency.
    top=${CONNECTIONS##* }
    out=$(wrk -t"$THREADS" -c"$top" -d"$DURATION" --latency \
      -s "$LUA_DIR/common.lua" "$USERS/users/${user_ids[0]}" 2>&1)
    jq -c --arg backend "$backend" --arg build "$build" --arg conns "$top" \
      '{backend: $backend, build: $build, case: "user-service GET /users/{id}", connections: ($conns|tonumber)} + .' \
      <<<"$(sed -n 's/^RESULT //p' <<<"$out")" | tee -a "$JSONL" >&2
    # No round trip to user-service: stop it and let the breaker open.
    ./run.sh stop user-service >&2
    for i in $(seq 1 10); do
      curl -s -o /dev/null -X POST "$ORDERS/orders" -H 'Content-Type: application/json' \
        -H "Idempotency-Key: trip-$RUN_ID-$backend-$build-$i" \
        -d "{\"user_id\":${user_ids[0]},\"product_id\":\"sku-42\",\"quantity\":1}" || true
    done
    say "breaker: $(curl -sf "$ORDERS/resilience" | jq -r '[.breakers[].state] | join(",")')"
    for c in $CONNECTIONS; do
      run "$backend" "$build" "no lookup" "$c" "$ORDERS/" post_orders.lua
    done
    stop_all
  done
done
trap - EXIT

# The table.
{
  echo "| backend | build | case | conns | orders/s | wrk p50 ms | wrk p99 ms | server p50 ms | server p99 ms | orders per commit | non-2xx / socket errors | load avg before -> after |"
  echo "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|"
  jq -r '[.backend, .build, .case, (.connections|tostring), (.rps|floor|tostring), .p50_ms, .p99_ms,
      (.server.p50_ms // "-" | tostring), (.server.p99_ms // "-" | tostring),
      (.batches.orders_per_commit // "-" | tostring),
      "\(.errors.status) / \(.errors.connect + .errors.read + .errors.write + .errors.timeout)",
      "\(.load_before // "-") -> \(.load_after // "-")"] | "| " + join(" | ") + " |"' "$JSONL"
} >"$OUT/results.md"
cat "$OUT/results.md"
say "written: $OUT/results.md, $JSONL"
