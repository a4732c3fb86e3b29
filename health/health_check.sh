#!/usr/bin/env bash
# Health check: every service's /health/ready, then a real interaction (a user and an
# order, replayed with the same Idempotency-Key). A service that does not answer is
# restarted through run.sh and given time to become ready. One line per check.
#
#   health/health_check.sh
# Environment: USER_SERVICE_URL, ORDER_SERVICE_URL, ORDER_SERVICE_2_URL, DASHBOARD_URL (loopback
#   defaults),
#   HEALTH_SERVICES (default "user-service order-service dashboard", and order-service-2
#   when ORDER_SERVICE_REPLICAS=2 or it answers),
#   HEALTH_READY_TIMEOUT seconds to wait after a restart (default 60),
#   HEALTH_NO_RESTART=1 to only report.
# Exit: 0 healthy, 1 something is still unhealthy.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=health/common.sh
. health/common.sh
SERVICES=${HEALTH_SERVICES:-$(default_services)}
READY_TIMEOUT=${HEALTH_READY_TIMEOUT:-60}

# probe URL -> prints "STATUS TIME_MS" (status 000 when nothing answered)
probe() {
  local out
  out=$(curl -s -o /dev/null -w '%{http_code} %{time_total}' --max-time 3 "$1/health/ready" || true)
  awk '{ printf "%s %d\n", ($1 == "" ? "000" : $1), $2 * 1000 }' <<<"${out:-000 0}"
}

wait_ready() { # wait_ready URL SECONDS
  local deadline=$(( $(date +%s) + $2 ))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    curl -fs -o /dev/null --max-time 2 "$1/health/ready" && return 0
    sleep 0.5
  done
  return 1
}

# 1. Readiness of each service; restart what does not answer.
for svc in $SERVICES; do
  url=$(url_of "$svc") || { fail "$svc" "unknown service name"; continue; }
  read -r status ms < <(probe "$url")
  if [ "$status" = 200 ]; then
    pass "$svc ready" "$url/health/ready -> 200 in ${ms} ms"
    continue
  fi
  # One more look before acting: a service may be between two states.
  sleep 1
  read -r status ms < <(probe "$url")
  if [ "$status" = 200 ]; then
    pass "$svc ready" "$url/health/ready -> 200 in ${ms} ms (second try)"
    continue
  fi
  if [ "$status" != 000 ]; then
    # It answers but is not ready: give it time rather than restarting a live process.
    if wait_ready "$url" 15; then
      pass "$svc ready" "$url/health/ready -> 200 after answering $status for a while"
    else
      fail "$svc ready" "$url/health/ready -> $status for 15 s (answering, so not restarted)"
    fi
    continue
  fi
  if [ "${HEALTH_NO_RESTART:-0}" = 1 ]; then
    fail "$svc ready" "$url does not answer (HEALTH_NO_RESTART=1)"
    continue
  fi
  info "$svc restart" "$url does not answer: ./run.sh restart $svc"
  # run.sh restart itself waits (READY_TIMEOUT) for /health/ready; one look confirms it here.
  if READY_TIMEOUT=$READY_TIMEOUT ./run.sh restart "$svc" >/dev/null 2>&1 &&
    curl -fs -o /dev/null --max-time 2 "$url/health/ready"; then
    pass "$svc ready" "ready again after restart"
  else
    fail "$svc ready" "still not ready ${READY_TIMEOUT}s after restart"
  fi
done

# 2. The interaction: create a user, place an order, replay it, read it back.
interaction() {
  local suffix body status user_id key order_id replay_id
  suffix="$(date +%s%N)-$$"
  body=$(curl -s -w '\n%{http_code}' --max-time 5 -X POST "$USER_URL/users" \
    -H 'Content-Type: application/json' \
    -d "{\"name\":\"health $suffix\",\"email\":\"health-$suffix@example.test\"}") || true
  status=${body##*$'\n'}
  user_id=$(jq -c '.id // empty' <<<"${body%$'\n'*}" 2>/dev/null || true)
  if [ "${status:0:1}" != 2 ] || [ -z "$user_id" ]; then
    [ "${status:-000}" = 000 ] && status="no answer"
    echo "POST /users -> $status"
    return 1
  fi
  key="health-$suffix"
  local order
  order=$(jq -cn --argjson u "$user_id" '{user_id: $u, product_id: "health-check", quantity: 1, price: 1.0}')
  body=$(curl -s -w '\n%{http_code}' --max-time 10 -X POST "$ORDER_URL/orders" \
    -H 'Content-Type: application/json' -H "Idempotency-Key: $key" -d "$order") || true
  status=${body##*$'\n'}
  order_id=$(jq -c '.id // empty' <<<"${body%$'\n'*}" 2>/dev/null || true)
  if [ "$status" != 201 ] || [ -z "$order_id" ]; then
    [ "${status:-000}" = 000 ] && status="no answer"
    echo "POST /orders -> $status $(head -c 200 <<<"${body%$'\n'*}")"
    return 1
  fi
  # With a second replica the replay goes there: the key is in the store they share.
  local replay_url=$ORDER_URL replayed=replayed
  if [[ " $SERVICES " == *" order-service-2 "* ]]; then
    replay_url=$ORDER_2_URL replayed="replayed on order-service-2"
  fi
  body=$(curl -s -w '\n%{http_code}' --max-time 10 -X POST "$replay_url/orders" \
    -H 'Content-Type: application/json' -H "Idempotency-Key: $key" -d "$order") || true
  replay_id=$(jq -c '.id // empty' <<<"${body%$'\n'*}" 2>/dev/null || true)
  if [ "$replay_id" != "$order_id" ]; then
    echo "replaying the key ($replay_url) gave order ${replay_id:-none} (status ${body##*$'\n'}), expected $order_id"
    return 1
  fi
  status=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$ORDER_URL/orders/$(jq -r . <<<"$order_id")" || true)
  if [ "$status" != 200 ]; then
    echo "GET /orders/$order_id -> $status"
    return 1
  fi
  echo "user $user_id, order $order_id created, $replayed and read back"
}

if [[ " $SERVICES " == *" user-service "* && " $SERVICES " == *" order-service "* ]]; then
  # Retry a little: a circuit that was open needs a moment to probe and close.
  for try in 1 2 3; do
    if msg=$(interaction); then
      pass "interaction user -> order" "$msg"
      break
    fi
    if [ "$try" = 3 ]; then
      fail "interaction user -> order" "$msg"
    else
      info "interaction user -> order" "attempt $try: $msg; again in 3 s"
      sleep 3
    fi
  done
fi

if [ "$failures" -gt 0 ]; then
  echo "UNHEALTHY: $failures check(s) failed"
  exit 1
fi
echo "HEALTHY"
