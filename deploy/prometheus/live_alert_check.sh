#!/usr/bin/env bash
# Live check of the alerts against the running local system: starts the Debian `prometheus`
# on loopback with the shipped scrape config and rules (every `for:` cut to a few seconds, the
# scrape interval to one), kills user-service, sends orders until order-service's breaker
# opens, and waits for ServiceDown and CircuitOpen to fire through /api/v1/alerts; then restarts
# user-service, sends orders until the breaker closes, and waits for both to resolve.
#
#   ./run.sh up && deploy/prometheus/live_alert_check.sh
#
# Environment: the same RUN_DIR, USER_SERVICE_ADDR and ORDER_SERVICE_ADDR as `./run.sh up`;
# PROM_ADDR (127.0.0.1:6690); ALERT_WAIT (45: seconds to wait for each change);
# LIVE_OUT (target/live-alert-check: config, rules, TSDB and Prometheus' log).
# Bounded: about two minutes at most; one order a quarter second while waiting.
# Prometheus is stopped on exit, and user-service started again if the check left it down.
set -euo pipefail
case "${RUN_DIR:-}" in
  "" | /*) ;;
  *) export RUN_DIR=$PWD/$RUN_DIR ;;
esac
cd "$(dirname "$0")/../.."
ROOT=$PWD
USER_SERVICE_ADDR=${USER_SERVICE_ADDR:-127.0.0.1:5001}
ORDER_SERVICE_ADDR=${ORDER_SERVICE_ADDR:-127.0.0.1:5002}
PROM_ADDR=${PROM_ADDR:-127.0.0.1:6690}
ALERT_WAIT=${ALERT_WAIT:-45}
OUT=${LIVE_OUT:-$ROOT/target/live-alert-check}
case "$PROM_ADDR" in 127.*) ;; *) echo "PROM_ADDR must be on loopback (got $PROM_ADDR)" >&2; exit 2 ;; esac

log() { printf 'live-alert-check [%s] %s\n' "$(date +%T)" "$*"; }
die() { log "FAILED: $*" >&2; exit 1; }
for tool in prometheus promtool curl jq; do
  command -v "$tool" >/dev/null || die "$tool is needed (apt-get install prometheus curl jq)"
done
# shellcheck source=../venv.sh
source deploy/venv.sh

prom_pid=
user_killed=0
cleanup() {
  local rc=$?
  if [ -n "$prom_pid" ] && kill -0 "$prom_pid" 2>/dev/null; then
    kill -TERM "$prom_pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$prom_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$prom_pid" 2>/dev/null || true
  fi
  if [ "$user_killed" = 1 ]; then ./run.sh start user-service >/dev/null 2>&1 || true; fi
  [ "$rc" = 0 ] || log "Prometheus' log: $OUT/prometheus.log"
  exit "$rc"
}
trap cleanup EXIT INT TERM

# The shipped files, changed only where a live run must differ: local targets, a one-second
# scrape and evaluation, and short `for:` (the expressions stay as shipped).
rm -rf "$OUT" && mkdir -p "$OUT/data"
sed -E 's/^([[:space:]]*for:).*/\1 5s/' deploy/prometheus/rules.yml >"$OUT/rules.yml"
"$PY" - deploy/prometheus/prometheus.yml "$OUT/prometheus.yml" \
  "user-service=$USER_SERVICE_ADDR" "order-service=$ORDER_SERVICE_ADDR" <<'PY'
import sys, yaml
src, dst, *pairs = sys.argv[1:]
targets = dict(p.split("=", 1) for p in pairs)
config = yaml.safe_load(open(src))
config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
config["rule_files"] = ["rules.yml"]
for job in config["scrape_configs"]:
    job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
yaml.safe_dump(config, open(dst, "w"), sort_keys=False)
PY
promtool check config "$OUT/prometheus.yml" >/dev/null || die "the generated config does not pass promtool"

prometheus --config.file="$OUT/prometheus.yml" --storage.tsdb.path="$OUT/data" \
  --storage.tsdb.retention.time=1h --web.listen-address="$PROM_ADDR" >"$OUT/prometheus.log" 2>&1 &
prom_pid=$!
log "prometheus (pid $prom_pid) on http://$PROM_ADDR"

# Polls `probe` (a function) every quarter second until it succeeds, for at most $2 seconds,
# calling `send_order` between polls when $3 is "with-orders".
wait_for() {
  local what=$1 limit=$2 traffic=${3:-} deadline=$((SECONDS + $2))
  while ! probe; do
    [ "$SECONDS" -lt "$deadline" ] || die "$what: not after ${limit}s"
    kill -0 "$prom_pid" 2>/dev/null || die "prometheus exited"
    [ "$traffic" = with-orders ] && send_order
    sleep 0.25
  done
  log "$what"
}

api() { curl -sf --max-time 2 "http://$PROM_ADDR/api/v1/$1" 2>/dev/null; }
# The names of the firing alerts, one a line; fails when Prometheus does not answer.
firing() {
  local doc
  doc=$(api alerts) || return 1
  jq -r '.data.alerts[] | select(.state == "firing") | .labels.alertname' <<<"$doc" | sort -u
}
# Succeeds when every alert named is firing ($1 = yes) or none is ($1 = no).
alerts_are() {
  local want=$1 now name
  shift
  now=$(firing) || return 1
  for name in "$@"; do
    if grep -qx "$name" <<<"$now"; then [ "$want" = yes ] || return 1; else [ "$want" = no ] || return 1; fi
  done
}
targets_up() { [ "$(api 'query?query=count(up%3D%3D1)' | jq -r '.data.result[0].value[1] // 0')" = 2 ]; }

probe() { curl -sf --max-time 1 "http://$PROM_ADDR/-/ready" >/dev/null; }
wait_for "prometheus ready" 20
probe() { targets_up; }
wait_for "both services scraped (up == 1, service label from the job)" 20
api 'query?query=up' | jq -e '[.data.result[].metric.service] | sort == ["order-service","user-service"]' >/dev/null ||
  die "the scrape does not label targets with service"

user=$(curl -sf --max-time 5 -X POST "http://$USER_SERVICE_ADDR/users" -H 'content-type: application/json' \
  -d "{\"name\":\"alert check\",\"email\":\"alert-check-$$-$RANDOM@example.com\"}" | jq -r .id) ||
  die "could not create a user"
orders=0
# Every other order is for a user id nobody created: order-service's user cache cannot answer
# it, so it makes a lookup (404 while user-service is up; a failure, which the breaker counts,
# while it is down).
send_order() {
  orders=$((orders + 1))
  local who=$user
  [ $((orders % 2)) = 0 ] && who=$((900000000 + orders))
  curl -s -o /dev/null --max-time 3 -X POST "http://$ORDER_SERVICE_ADDR/orders" \
    -H 'content-type: application/json' -H "Idempotency-Key: alert-check-$$-$orders" \
    -d "{\"user_id\":$who,\"product_id\":\"alert-check\",\"quantity\":1}" || true
}
for _ in 1 2 3; do send_order; done
firing_before=$(firing | tr '\n' ' ')
[ -z "$firing_before" ] || log "note: firing before the kill: $firing_before"
alerts_are no ServiceDown CircuitOpen || die "ServiceDown or CircuitOpen fires before anything was killed"

log "killing user-service; sending orders so order-service's breaker opens"
./run.sh kill user-service >/dev/null
user_killed=1
probe() { alerts_are yes ServiceDown CircuitOpen; }
wait_for "ServiceDown and CircuitOpen firing" "$ALERT_WAIT" with-orders
api alerts | jq -r '.data.alerts[] | select(.state == "firing") | "  firing: \(.labels.alertname) \(.labels | del(.alertname) | tostring)"'

log "restarting user-service; sending orders so the breaker's probe closes it"
./run.sh restart user-service >/dev/null
user_killed=0
probe() { alerts_are no ServiceDown CircuitOpen; }
wait_for "ServiceDown and CircuitOpen resolved" "$ALERT_WAIT" with-orders
log "passed ($orders orders sent)"
