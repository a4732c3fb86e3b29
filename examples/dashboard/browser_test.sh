#!/usr/bin/env bash
# Browser test of the dashboard in a real headless Chromium, driven over WebDriver
# (JSON over HTTP to chromedriver with curl + jq; no tool downloads a browser).
#
# Scenario: load the page, see both services up; kill user-service while orders flow
# (order-service's breaker needs failing calls to trip) and see its circuit turn open on
# the page; restart it and see the circuit close. Screenshots go to target/browser/.
#
#   examples/dashboard/browser_test.sh      # starts the system with ./run.sh up if needed
# Environment: CHROMIUM (default /usr/bin/chromium), CHROMEDRIVER (default chromedriver on PATH),
#   DASHBOARD_URL, USER_SERVICE_URL, ORDER_SERVICE_URL (loopback defaults),
#   BROWSER_OPEN_TIMEOUT (s, default 20), BROWSER_CLOSE_TIMEOUT (s, default 60),
#   BROWSER_KEEP_UP=1 to leave a system this script started running.
# Exit: 0 pass, 1 an expectation failed, 2 the browser or the system could not start.
set -euo pipefail
cd "$(dirname "$0")/../.."

CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
CHROMEDRIVER=${CHROMEDRIVER:-$(command -v chromedriver || echo /usr/bin/chromedriver)}
DASHBOARD_URL=${DASHBOARD_URL:-http://${DASHBOARD_ADDR:-127.0.0.1:8080}}
USER_URL=${USER_SERVICE_URL:-http://${USER_SERVICE_ADDR:-127.0.0.1:5001}}
ORDER_URL=${ORDER_SERVICE_URL:-http://${ORDER_SERVICE_ADDR:-127.0.0.1:5002}}
OPEN_TIMEOUT=${BROWSER_OPEN_TIMEOUT:-20}
CLOSE_TIMEOUT=${BROWSER_CLOSE_TIMEOUT:-60}
OUT=target/browser
mkdir -p "$OUT"

for bin in "$CHROMIUM" "$CHROMEDRIVER" curl jq; do
  command -v "$bin" >/dev/null || { echo "browser test: $bin not found (apt-get install chromium chromium-driver jq curl)" >&2; exit 2; }
done

started_system=0
driver_pid=""
traffic_pid=""
session=""
profile=$(mktemp -d)
T0=$(date +%s)
log() { printf 'browser [%3ss] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }

# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
  local code=$?
  trap - EXIT
  [ -n "$traffic_pid" ] && kill "$traffic_pid" 2>/dev/null
  [ -n "$session" ] && curl -s -X DELETE "$WD/session/$session" >/dev/null 2>&1
  [ -n "$driver_pid" ] && kill "$driver_pid" 2>/dev/null
  # user-service must not stay down because this test failed half-way.
  curl -fs -o /dev/null --max-time 2 "$USER_URL/health/ready" || ./run.sh restart user-service >/dev/null 2>&1 || true
  if [ "$started_system" = 1 ] && [ "${BROWSER_KEEP_UP:-0}" != 1 ]; then ./run.sh down >/dev/null 2>&1 || true; fi
  rm -rf "$profile"
  exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ready() { curl -fs -o /dev/null --max-time 2 "$1/health/ready"; }

# 1. The system.
if ! ready "$USER_URL" || ! ready "$ORDER_URL" || ! ready "$DASHBOARD_URL"; then
  log "system not up: ./run.sh up"
  started_system=1
  ./run.sh up >"$OUT/run.log" 2>&1 || { log "./run.sh up failed (see $OUT/run.log)"; exit 2; }
fi

# 2. chromedriver on a free loopback port, then a session.
port=$(( 20000 + RANDOM % 20000 ))
"$CHROMEDRIVER" --port="$port" --allowed-ips=127.0.0.1 >"$OUT/chromedriver.log" 2>&1 &
driver_pid=$!
WD="http://127.0.0.1:$port"
for _ in $(seq 50); do
  curl -fsS "$WD/status" 2>/dev/null | jq -e '.value.ready' >/dev/null && break
  sleep 0.2
done
caps=$(jq -n --arg bin "$CHROMIUM" --arg dir "$profile" '{capabilities: {alwaysMatch: {
  browserName: "chrome",
  "goog:chromeOptions": {binary: $bin, args: ["--headless", "--no-sandbox", "--disable-gpu",
    "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
    "--window-size=1440,1000", ("--user-data-dir=" + $dir)]}}}}')
session=$(curl -fsS -X POST "$WD/session" -H 'Content-Type: application/json' -d "$caps" | jq -r '.value.sessionId // empty') || true
if [ -z "$session" ]; then
  log "could not start a Chromium session (see $OUT/chromedriver.log)"
  exit 2
fi
log "chromium session $session"

wd() { # wd METHOD PATH [JSON]
  if [ "$1" = GET ]; then
    curl -fsS "$WD/session/$session$2"
  else
    curl -fsS -X "$1" "$WD/session/$session$2" -H 'Content-Type: application/json' -d "${3:-"{}"}"
  fi
}
# What the page shows, as JSON: {"user-service": {"up":"true","circuits":{}}, "order-service": {..., "circuits": {"user-service": "open"}}}
read_page() {
  wd POST /execute/sync '{"script": "const out = {}; document.querySelectorAll(\"[data-service]\").forEach(c => { const circuits = {}; c.querySelectorAll(\"[data-breaker]\").forEach(b => { circuits[b.dataset.breaker] = b.dataset.circuitState; }); out[c.dataset.service] = {up: c.dataset.up, ready: c.dataset.ready, circuits}; }); out.feed = document.getElementById(\"feed\").dataset.feedState; return JSON.stringify(out);", "args": []}' | jq -r '.value'
}
# wait_for SECONDS JQ_FILTER DESCRIPTION [SINCE_MS]: poll the page until the filter is true;
# the time reported is counted from SINCE_MS (default: now).
wait_for() {
  local deadline=$(( $(date +%s) + $1 )) start=${4:-} state
  [ -n "$start" ] || start=$(date +%s%3N)
  while [ "$(date +%s)" -le "$deadline" ]; do
    state=$(read_page 2>/dev/null || echo '{}')
    if jq -e "$2" >/dev/null 2>&1 <<<"$state"; then
      log "ok: $3 (after $(( $(date +%s%3N) - start )) ms)"
      return 0
    fi
    sleep 0.25
  done
  log "FAIL: $3 not seen within $1 s; page state: $state"
  return 1
}
screenshot() {
  wd GET /screenshot | jq -r '.value' | base64 -d >"$OUT/$1"
  log "screenshot $OUT/$1"
}
# The order-service breaker that guards user-service (breakers are named `user-service@host:port`).
CIRCUIT='([.["order-service"].circuits | to_entries[] | select(.key | startswith("user-service")) | .value] | first)'

wd POST /url "$(jq -n --arg u "$DASHBOARD_URL/" '{url: $u}')" >/dev/null
wait_for 15 '.feed == "live" and .["user-service"].up == "true" and .["order-service"].up == "true"' \
  "both services shown up"
wait_for 15 "$CIRCUIT == \"closed\"" "user-service circuit shown closed"
screenshot dashboard-1-up.png

# 3. Orders flowing: the breaker only trips on failing calls. Every other order is for a user
# id nobody created: order-service's user cache cannot answer it, so each makes a lookup (404
# while user-service is up, a failure once it is killed, which trips the breaker); the others
# are for a real user, answered from the cache once verified.
user=$(curl -fsS -X POST "$USER_URL/users" -H 'Content-Type: application/json' \
  -d "{\"name\":\"browser test\",\"email\":\"browser-$$-$(date +%s)@example.test\"}" | jq -c '.id')
(
  i=0
  while :; do
    i=$(( i + 1 ))
    who=$user
    [ $(( i % 2 )) = 0 ] && who=$(( 900000000 + i ))
    curl -s -o /dev/null --max-time 3 -X POST "$ORDER_URL/orders" -H 'Content-Type: application/json' \
      -H "Idempotency-Key: browser-$$-$i" \
      -d "{\"user_id\":$who,\"product_id\":\"browser-$i\",\"quantity\":1,\"price\":1.0}" || true
    sleep 0.1
  done
) &
traffic_pid=$!
# A few seconds of traffic so the charts have something to show before the outage.
sleep "${BROWSER_WARMUP:-8}"

# 4. Kill user-service: its card goes down and order-service's circuit opens.
log "./run.sh kill user-service"
killed=$(date +%s%3N)
./run.sh kill user-service >>"$OUT/run.log" 2>&1
wait_for "$OPEN_TIMEOUT" '.["user-service"].up == "false"' "user-service shown down, counted from the kill" "$killed"
wait_for "$OPEN_TIMEOUT" "$CIRCUIT == \"open\"" "user-service circuit shown open, counted from the kill" "$killed"
sleep 1.5 # let a chart tick with the outage on it
screenshot dashboard-2-open.png

# 5. Restart it: the circuit half-opens, probes succeed, and it closes again.
log "./run.sh restart user-service"
restarted=$(date +%s%3N)
./run.sh restart user-service >>"$OUT/run.log" 2>&1
wait_for 30 '.["user-service"].up == "true"' "user-service shown up again, counted from the restart" "$restarted"
wait_for "$CLOSE_TIMEOUT" "$CIRCUIT == \"closed\"" "user-service circuit shown closed again, counted from the restart" "$restarted"
sleep 1.5
screenshot dashboard-3-closed.png

# 6. The page itself must not have logged errors (a failed asset, a script exception).
errors=$(wd POST /se/log '{"type": "browser"}' 2>/dev/null |
  jq -c '[.value[]? | select(.level == "SEVERE") | .message]' || echo '[]')
if [ "$errors" != "[]" ]; then
  log "FAIL: the page logged errors: $errors"
  exit 1
fi
log "ok: no errors in the browser console"
log "PASS"
