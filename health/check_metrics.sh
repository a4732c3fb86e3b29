#!/usr/bin/env bash
# Lints every running service's /metrics with `promtool check metrics` (HELP text on every
# family, counter names, units, exposition syntax), after sending each one a request with a
# made-up method, which must show up as method="_OTHER" and never as itself, and checking that
# the standard process metrics (CPU, memory, file descriptors, start time) are there. One line
# per check; any word from promtool is a failure.
#
#   health/check_metrics.sh
# Environment: USER_SERVICE_URL, ORDER_SERVICE_URL, ORDER_SERVICE_2_URL, DASHBOARD_URL (loopback
#   defaults, or from the *_ADDR variables as run.sh reads them),
#   METRICS_SERVICES (default "user-service order-service dashboard", and order-service-2
#   when ORDER_SERVICE_REPLICAS=2 or it answers),
#   PROMTOOL (default promtool on PATH; Debian package `prometheus`).
# Exit: 0 clean, 1 a service did not answer or promtool reported something, 2 no promtool.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=health/common.sh
. health/common.sh
SERVICES=${METRICS_SERVICES:-$(default_services)}
PROMTOOL=${PROMTOOL:-$(command -v promtool || echo /usr/bin/promtool)}
[ -x "$PROMTOOL" ] || { echo "check_metrics: promtool not found (apt-get install prometheus)" >&2; exit 2; }

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

for svc in $SERVICES; do
  url=$(url_of "$svc") || { fail "$svc" "unknown service name"; continue; }
  # One made-up method: answered 405, counted under method="_OTHER".
  curl -s -o /dev/null --max-time 3 -X BREWCOFFEE "$url/health/live" || true
  if ! curl -fsS --max-time 5 --max-filesize 16777216 -o "$out/$svc.prom" "$url/metrics" 2>"$out/$svc.curl"; then
    fail "$svc /metrics" "no answer: $(head -c 200 "$out/$svc.curl")"
    continue
  fi
  if grep -q 'BREWCOFFEE' "$out/$svc.prom"; then
    fail "$svc method label" "a made-up method became a label value"
  elif ! grep -q 'method="_OTHER"' "$out/$svc.prom"; then
    fail "$svc method label" "the made-up method was not counted as _OTHER"
  else
    pass "$svc method label" "made-up method counted as _OTHER"
  fi
  # The process families service-kit reads from /proc/self (Linux only).
  if [ "$(uname -s)" = Linux ]; then
    missing=()
    for family in process_cpu_seconds_total:counter process_resident_memory_bytes:gauge \
      process_virtual_memory_bytes:gauge process_open_fds:gauge process_max_fds:gauge \
      process_start_time_seconds:gauge; do
      name=${family%%:*}
      grep -qx "# TYPE $name ${family#*:}" "$out/$svc.prom" && grep -Eq "^$name [0-9]" "$out/$svc.prom" ||
        missing+=("$name")
    done
    if [ ${#missing[@]} -eq 0 ]; then
      pass "$svc process metrics" "$(awk '/^process_open_fds /{o=$2} /^process_resident_memory_bytes /{r=$2}
        END {printf "%d fds open, %.0f MiB resident", o, r / 1048576}' "$out/$svc.prom")"
    else
      fail "$svc process metrics" "missing or mistyped: ${missing[*]}"
    fi
  fi
  rc=0
  report=$("$PROMTOOL" check metrics <"$out/$svc.prom" 2>&1) || rc=$?
  if [ "$rc" -eq 0 ] && [ -z "$report" ]; then
    pass "$svc promtool check metrics" "$(grep -c '^# TYPE ' "$out/$svc.prom") families, nothing reported"
  else
    fail "$svc promtool check metrics" "exit $rc: $(printf '%s' "$report" | head -n 20 | tr '\n' ';')"
  fi
done

[ "$failures" -eq 0 ]
