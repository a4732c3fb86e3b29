# Shared by the health scripts (sourced, not run): the services' URLs from the same variables
# run.sh reads, the one-line report format, and a failure count.
# shellcheck shell=bash
# shellcheck disable=SC2034  # the variables are read by the scripts that source this file

USER_URL=${USER_SERVICE_URL:-http://${USER_SERVICE_ADDR:-127.0.0.1:5001}}
ORDER_URL=${ORDER_SERVICE_URL:-http://${ORDER_SERVICE_ADDR:-127.0.0.1:5002}}
ORDER_2_URL=${ORDER_SERVICE_2_URL:-http://${ORDER_SERVICE_2_ADDR:-127.0.0.1:5004}}
DASHBOARD_URL=${DASHBOARD_URL:-http://${DASHBOARD_ADDR:-127.0.0.1:8080}}
failures=0

# The services to look at: the three, and the second order-service replica when it was asked
# for (ORDER_SERVICE_REPLICAS=2, as for run.sh) or is running (its /health/live answers).
default_services() {
  if [ "${ORDER_SERVICE_REPLICAS:-1}" = 2 ] ||
    curl -fs -o /dev/null --max-time 1 "$ORDER_2_URL/health/live" 2>/dev/null; then
    echo "user-service order-service order-service-2 dashboard"
  else
    echo "user-service order-service dashboard"
  fi
}

pass() { printf 'PASS  %-34s %s\n' "$1" "$2"; }
fail() { printf 'FAIL  %-34s %s\n' "$1" "$2"; failures=$(( failures + 1 )); }
info() { printf 'INFO  %-34s %s\n' "$1" "$2"; }

# url_of NAME -> the service's base URL (status 1 for an unknown name)
url_of() {
  case "$1" in
    user-service) echo "$USER_URL" ;;
    order-service) echo "$ORDER_URL" ;;
    order-service-2) echo "$ORDER_2_URL" ;;
    dashboard) echo "$DASHBOARD_URL" ;;
    *) return 1 ;;
  esac
}
