#!/usr/bin/env bash
# Two order-service replicas on one PostgreSQL under load: the load generator spreads orders
# over both (each retry of a key goes to the other replica), and each replica in turn is
# killed (SIGKILL) mid-burst and restarted. Then the figures, and two checks that no
# acknowledged order was lost and none stored twice: the load generator's, through the API,
# and one straight against the database.
#
#   ORDER_SERVICE_DATABASE_URL=postgres://resilience:resilience@127.0.0.1:5432/orders \
#   USER_SERVICE_DATABASE_URL=postgres://resilience:resilience@127.0.0.1:5432/users \
#     chaos/replicas.sh                    # CHAOS_DURATION=60 s by default
#
# Environment:
#   ORDER_SERVICE_DATABASE_URL (or DATABASE_URL)  the replicas' shared PostgreSQL (required;
#                   the database check reads it with psql)
#   CHAOS_DURATION  seconds of load (default 60; at least 30). The run stops by itself.
#   CHAOS_SEED      seed for the random pauses and the load generator (default 42).
#   CHAOS_RATE      orders per second (default 40).  CHAOS_OUT  output dir (default target/chaos-replicas).
#   RUN_PROFILE     passed through to run.sh (debug|release).
#   USER_SERVICE_ADDR, ORDER_SERVICE_ADDR, ORDER_SERVICE_2_ADDR  as for run.sh (loopback defaults).
# The system is started with ORDER_SERVICE_REPLICAS=2 ./run.sh up if it is not up (or only
# order-service-2 if the rest is), and left running.
# Output in $CHAOS_OUT: summary.json, events.log, attempts.csv, loadgen.out, run.log as for
# chaos_test.sh, and db_check.txt. Loopback only. Exit: 0 every check holds, 1 a check failed
# or the system did not heal, 2 the run itself failed.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${CHAOS_DURATION:-60}
SEED=${CHAOS_SEED:-42}
RATE=${CHAOS_RATE:-40}
OUT=${CHAOS_OUT:-target/chaos-replicas}
USER_URL=http://${USER_SERVICE_ADDR:-127.0.0.1:5001}
ORDER_URL=http://${ORDER_SERVICE_ADDR:-127.0.0.1:5002}
ORDER_2_URL=http://${ORDER_SERVICE_2_ADDR:-127.0.0.1:5004}
DB_URL=${ORDER_SERVICE_DATABASE_URL:-${DATABASE_URL:-}}
export ORDER_SERVICE_REPLICAS=2
# shellcheck source=chaos/common.sh
. chaos/common.sh

require_loopback "$USER_URL" "$ORDER_URL" "$ORDER_2_URL"
if [ "$DURATION" -lt 30 ]; then
  echo "chaos: CHAOS_DURATION must be at least 30 s (got $DURATION)" >&2
  exit 2
fi
case "$DB_URL" in
  postgres://* | postgresql://*) ;;
  *) echo "chaos: replicas share PostgreSQL: set ORDER_SERVICE_DATABASE_URL=postgres://..." >&2; exit 2 ;;
esac
command -v psql >/dev/null || { echo "chaos: psql is needed for the database check (apt-get install postgresql-client)" >&2; exit 2; }

mkdir -p "$OUT"
EVENTS="$OUT/events.log"
: >"$EVENTS"
RANDOM=$SEED
START=$(date +%s)

# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
  local code=$?
  trap - EXIT INT TERM
  stop_loadgen
  # Leave both replicas running, as they were asked for.
  ready "$ORDER_URL" || ./run.sh restart order-service >>"$OUT/run.log" 2>&1 || true
  ready "$ORDER_2_URL" || ./run.sh restart order-service-2 >>"$OUT/run.log" 2>&1 || true
  exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# 1. The system with both replicas.
if ! ready "$USER_URL" || ! ready "$ORDER_URL"; then
  log "system not up: ORDER_SERVICE_REPLICAS=2 ./run.sh up"
  ./run.sh up >>"$OUT/run.log" 2>&1 || { log "./run.sh up failed (see $OUT/run.log)"; tail -n 5 "$OUT/run.log" >&2; exit 2; }
elif ! ready "$ORDER_2_URL"; then
  log "order-service-2 not up: ./run.sh start order-service-2"
  ./run.sh start order-service-2 >>"$OUT/run.log" 2>&1 || { log "starting order-service-2 failed (see $OUT/run.log)"; tail -n 5 "$OUT/run.log" >&2; exit 2; }
fi

# 2. Load over both replicas.
log "load: ${DURATION}s at ${RATE} orders/s over $ORDER_URL and $ORDER_2_URL, seed $SEED"
start_loadgen --user-url "$USER_URL" --order-url "$ORDER_URL,$ORDER_2_URL" --duration "$DURATION" \
  --rate "$RATE" --seed "$SEED"

# 3. A baseline, then each replica killed mid-burst and restarted, one slot each.
BASELINE=$(( DURATION / 6 > 5 ? DURATION / 6 : 5 ))
TAIL=6
SLOT=$(( (DURATION - BASELINE - TAIL) / 2 ))
log "baseline ${BASELINE}s, then each replica killed in a slot of ${SLOT}s"
t=$BASELINE
n=0
for name in order-service order-service-2; do
  n=$((n + 1))
  sleep_until "$t"
  if ! kill -0 "$loadgen_pid" 2>/dev/null; then
    log "load generator stopped early"; break
  fi
  event start "replica-$n-kill"
  log "scenario replica-$n-kill ($name)"
  sleep "$(rand_between 1 3)"
  burst_and_kill "$name"
  # Down long enough that its keys are retried on the other replica.
  sleep "$(rand_between 2 4)"
  restart "$name"
  t=$(( t + SLOT ))
  sleep_until "$(( t - 1 ))"
  event end "replica-$n-kill"
done

# 4. The load generator's check (through the API), then the database's own.
code=0
finish_loadgen || code=$?
if [ "$code" = 2 ]; then exit 2; fi

run_id=$(jq -r .run_id "$OUT/summary.json")
# Acknowledged (key, order id) pairs: every ok attempt of the load and the healing.
awk -F, 'NR > 1 && $4 == "ok" { sub(/.*id=/, "", $5); print $1 "\t" $5 }' "$OUT/attempts.csv" |
  sort -u >"$OUT/acked.tsv"
# The orders of this run carry their key's number in product_id (chaos-RUN-SEQ).
{
  echo "CREATE TEMP TABLE acked (seq BIGINT, id BIGINT);"
  echo "\\copy acked FROM STDIN"
  cat "$OUT/acked.tsv"
  echo "\\."
  cat <<SQL
WITH run AS (
  SELECT id, split_part(product_id, '-', 3)::bigint AS seq FROM orders
  WHERE product_id LIKE 'chaos-$run_id-%'
)
SELECT (SELECT count(*) FROM run),
       (SELECT count(DISTINCT seq) FROM acked),
       (SELECT count(DISTINCT a.seq) FROM acked a
         WHERE NOT EXISTS (SELECT 1 FROM run r WHERE r.id = a.id AND r.seq = a.seq)),
       (SELECT count(*) - count(DISTINCT seq) FROM run),
       (SELECT count(*) FROM (SELECT seq FROM acked GROUP BY seq HAVING count(DISTINCT id) > 1) d);
SQL
} | psql "$DB_URL" -X -q -t -A -F ' ' -v ON_ERROR_STOP=1 -f - >"$OUT/db_check.txt" 2>"$OUT/db_check.err" || {
  log "ERROR: the database check could not run:"; cat "$OUT/db_check.err" >&2; exit 2
}
read -r stored acked lost duplicated split <"$OUT/db_check.txt"
log "database: run $run_id, $stored orders stored, $acked keys acknowledged; lost $lost, duplicated $duplicated, keys acknowledged with two ids $split"
if [ "$lost" != 0 ] || [ "$duplicated" != 0 ] || [ "$split" != 0 ]; then
  log "FAIL: the database does not hold exactly one order per acknowledged key"
  code=1
elif [ "$code" = 0 ]; then
  log "PASS: lost 0 and duplicated 0, through the API and in the database"
fi
exit "$code"
