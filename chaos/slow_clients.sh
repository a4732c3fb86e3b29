#!/usr/bin/env bash
# Slow clients must not hold a restart: opens SLOW_CLIENTS connections to a running
# user-service that send a request head one byte a second (slowloris), then times
# `./run.sh restart user-service` and fails unless it took under SLOW_RESTART_MAX_S, the
# slow connections were all closed, and the restarted service answers.
#
#   ./run.sh up && chaos/slow_clients.sh
#   RUN_DIR=.run-x USER_SERVICE_ADDR=127.0.0.1:6201 chaos/slow_clients.sh
#
# Environment:
#   SLOW_CLIENTS        slow connections to open (default 200; at most 900)
#   SLOW_RESTART_MAX_S  the restart must take less than this many seconds (default 3)
#   SLOW_DURATION_S     the slow clients give up after this long in any case (default 30)
#   USER_SERVICE_ADDR, RUN_DIR, RUN_PROFILE  as for run.sh (loopback only)
# Exit: 0 pass, 1 the restart was too slow or a check failed, 2 the run itself failed.
set -euo pipefail
cd "$(dirname "$0")/.."

CLIENTS=${SLOW_CLIENTS:-200}
MAX_S=${SLOW_RESTART_MAX_S:-3}
DURATION=${SLOW_DURATION_S:-30}
ADDR=${USER_SERVICE_ADDR:-127.0.0.1:5001}
HOST=${ADDR%:*}
PORT=${ADDR##*:}

log() { printf 'slow_clients: %s\n' "$*"; }
fail() { log "FAIL: $*"; exit 1; }

case "$HOST" in
  127.0.0.1 | localhost) ;;
  *) log "$ADDR is not a loopback address; refusing" >&2; exit 2 ;;
esac
if ! [ "$CLIENTS" -ge 1 ] 2>/dev/null || [ "$CLIENTS" -gt 900 ]; then
  log "SLOW_CLIENTS must be 1..900 (got $CLIENTS)" >&2
  exit 2
fi
if [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$ADDR/health/ready")" != 200 ]; then
  log "user-service not ready on $ADDR: run ./run.sh up first" >&2
  exit 2
fi

OUT=$(mktemp -d)
slow_pid=""
cleanup() {
  [ -n "$slow_pid" ] && kill "$slow_pid" 2>/dev/null || true
  rm -rf "$OUT"
}
trap cleanup EXIT

# The slow clients: print "open N" once connected, then drip a header byte a second to each
# until the server closes it; print "closed N" when all are closed or DURATION has passed.
python3 - "$HOST" "$PORT" "$CLIENTS" "$DURATION" >"$OUT/slow.log" 2>&1 <<'PY' &
import socket, sys, time
host, port, n, duration = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
socks = []
for _ in range(n):
    s = socket.create_connection((host, port), timeout=2)
    s.sendall(b"GET /users/1 HTTP/1.1\r\nHost: x\r\n")
    s.setblocking(False)
    socks.append(s)
print(f"open {len(socks)}", flush=True)
start, closed = time.monotonic(), set()
while len(closed) < n and time.monotonic() - start < duration:
    for i, s in enumerate(socks):
        if i in closed:
            continue
        try:
            if s.recv(1024) == b"":
                closed.add(i)
                continue
        except BlockingIOError:
            pass
        except OSError:
            closed.add(i)
            continue
        try:
            s.send(b"x")
        except OSError:
            closed.add(i)
    time.sleep(1)
print(f"closed {len(closed)} after {time.monotonic() - start:.1f}s", flush=True)
PY
slow_pid=$!

for _ in $(seq 1 100); do
  grep -q '^open' "$OUT/slow.log" && break
  kill -0 "$slow_pid" 2>/dev/null || { cat "$OUT/slow.log" >&2; log "slow clients failed to connect" >&2; exit 2; }
  sleep 0.1
done
grep -q '^open' "$OUT/slow.log" || { log "slow clients did not connect within 10 s" >&2; exit 2; }
log "$(head -n1 "$OUT/slow.log") slow connections to $ADDR; restarting user-service"

start_ns=$(date +%s%N)
RUN_SKIP_BUILD=1 ./run.sh restart user-service >"$OUT/restart.log" 2>&1 || { cat "$OUT/restart.log" >&2; fail "./run.sh restart user-service failed"; }
elapsed_ms=$(( ($(date +%s%N) - start_ns) / 1000000 ))
log "restart took ${elapsed_ms} ms (limit ${MAX_S} s)"

# The slow clients see their connections closed within a few seconds of the restart.
for _ in $(seq 1 50); do
  grep -q '^closed' "$OUT/slow.log" && break
  sleep 0.1
done
closed=$(grep '^closed' "$OUT/slow.log" || echo "closed ? (still open 5 s after the restart)")
log "slow clients: $closed"
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://$ADDR/health/ready")

[ "$elapsed_ms" -lt $((MAX_S * 1000)) ] || fail "restart took ${elapsed_ms} ms with $CLIENTS slow clients attached"
case "$closed" in
  "closed $CLIENTS "*) ;;
  *) fail "not every slow connection was closed: $closed" ;;
esac
[ "$code" = 200 ] || fail "restarted user-service not ready (/health/ready: $code)"
log "PASS"
