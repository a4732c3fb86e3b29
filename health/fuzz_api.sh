#!/usr/bin/env bash
# Property-based API fuzzing: schemathesis reads each service's /openapi.json and sends what
# the document allows (and what it does not), failing on any 5xx, any request the document
# allows that the service rejects, and any request it forbids that the service accepts.
#
#   health/fuzz_api.sh                      # against the run.sh ports, services already up
#   USER_SERVICE_ADDR=127.0.0.1:6401 ORDER_SERVICE_ADDR=127.0.0.1:6402 health/fuzz_api.sh
#
# Environment:
#   USER_SERVICE_URL, ORDER_SERVICE_URL  base URLs (default http://$USER_SERVICE_ADDR and
#                       http://$ORDER_SERVICE_ADDR, the run.sh defaults 127.0.0.1:5001/5002)
#   FUZZ_EXAMPLES       examples per operation and phase (default 40)
#   FUZZ_MAX_TIME       seconds per service, at most (default 45)
#   FUZZ_SEED           seed (default 42)
#   FUZZ_VENV           virtualenv with schemathesis (default target/fuzz-venv; created and
#                       filled with the pinned version from PyPI when missing)
#   FUZZ_OUT            reports (default target/fuzz)
# The admin routes are never fuzzed (they would switch faults on). Loopback only; the run is
# bounded by FUZZ_EXAMPLES and FUZZ_MAX_TIME. Exit 0 when both services pass, 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
USER_URL=${USER_SERVICE_URL:-http://${USER_SERVICE_ADDR:-127.0.0.1:5001}}
ORDER_URL=${ORDER_SERVICE_URL:-http://${ORDER_SERVICE_ADDR:-127.0.0.1:5002}}
EXAMPLES=${FUZZ_EXAMPLES:-40}
MAX_TIME=${FUZZ_MAX_TIME:-45}
SEED=${FUZZ_SEED:-42}
VENV=${FUZZ_VENV:-target/fuzz-venv}
OUT=${FUZZ_OUT:-target/fuzz}

for url in "$USER_URL" "$ORDER_URL"; do
  case "$url" in
    http://127.0.0.1:*|http://localhost:*|http://\[::1\]:*) ;;
    *) echo "fuzz: $url is not a loopback URL; refusing" >&2; exit 2 ;;
  esac
done

if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
  echo "fuzz: installing schemathesis $SCHEMATHESIS_VERSION into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "schemathesis==$SCHEMATHESIS_VERSION"
fi

mkdir -p "$OUT"
status=0
for target in "user-service $USER_URL" "order-service $ORDER_URL"; do
  read -r name url <<<"$target"
  echo "fuzz: $name at $url ($EXAMPLES examples per operation, at most $MAX_TIME s)"
  if ! (cd "$OUT" && PYTHONPATH="$OLDPWD/health" SCHEMATHESIS_HOOKS=fuzz_hooks \
      "$OLDPWD/$VENV/bin/schemathesis" --config-file "$OLDPWD/health/fuzz.toml" run "$url/openapi.json" \
      --checks no_server_error_but_a_short_deadline,positive_data_acceptance,negative_data_rejection,valid_order_not_refused_as_invalid \
      --mode all --max-examples "$EXAMPLES" --max-time "$MAX_TIME" --seed "$SEED" \
      --exclude-path-regex '^/admin/' --request-timeout 10 --no-color \
      --report junit --report-junit-path "$name.xml" >"$name.out" 2>&1); then
    status=1
    sed -n '/FAILURES/,$p' "$OUT/$name.out" | head -120
    echo "fuzz: $name FAILED (full output: $OUT/$name.out)"
  else
    grep -E '^Test cases:|^  [0-9]+ generated' "$OUT/$name.out" | tr -s ' ' | paste -sd' ' | sed "s/^/fuzz: $name passed: /"
  fi
done
exit $status
