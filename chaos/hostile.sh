#!/usr/bin/env bash
# Hostile clients: attacks a running system on loopback the way a careless or malicious client
# would, measures each, and fails when a service does not hold up. Assumes `./run.sh up` has
# started the system (it does not start or stop anything).
#
#   chaos/hostile.sh                          # every attack, about 1-2 minutes
#   HOSTILE_ONLY=slowloris,wal chaos/hostile.sh
#
# Attacks (name: what it does -> what must hold):
#   deadline      50 POST /orders with x-request-deadline-ms: 1 -> each 504 (not 503); every
#                 user-service breaker still closed, /health/ready 200, the next order 201.
#   slowloris     50 connections to user-service, one header byte a second -> all closed within
#                 HEADER_READ_TIMEOUT_MS + 2 s; /health/live meanwhile under 100 ms.
#   fault-header  GET with X-Simulate-Latency: 1h and no admin token -> answered within 1 s.
#   method-flood  500 requests with made-up methods per service -> at most 5 new
#                 http_server_request_duration_seconds series; promtool finds nothing in any
#                 /metrics, the dashboard's included.
#   wal           5,000 POST /users -> user-service's SQLite -wal file under 4 MB (skipped on
#                 PostgreSQL).
#   idempotency   a second user's order under another user's Idempotency-Key -> 201; no
#                 idempotency key in GET /orders bodies; two Idempotency-Key headers -> 400.
#   overload      300 concurrent POST /orders -> no 503 that blames user-service while it is up;
#                 GET /nonexistent stays 404.
#   retention     order-service restarted with IDEMPOTENCY_RETENTION=2s: its sweeper empties the
#                 idempotency table (idempotency_keys_stored -> 0) within 10 s; then restarted
#                 again with the configured retention (uses ./run.sh restart, so run it last).
#   small-holes   dashboard Host: evil.example -> 421; 20 wrong admin tokens -> some 429 with
#                 Retry-After (skipped without ADMIN_TOKEN); a duplicate email's 409 does not echo
#                 the email; wrong JSON types -> 4xx that names no Rust type.
#
# Environment:
#   USER_SERVICE_ADDR, ORDER_SERVICE_ADDR, DASHBOARD_ADDR  as for run.sh (loopback defaults);
#     USER_SERVICE_URL, ORDER_SERVICE_URL, DASHBOARD_URL override the whole base URL.
#   HOSTILE_ONLY       comma-separated subset of the attack names above.
#   HOSTILE_OUT        output dir (default target/hostile).
#   HEADER_READ_TIMEOUT_MS  the services' header-read timeout (default 10000).
#   USER_SERVICE_DATABASE_URL, DATABASE_URL  where user-service keeps its data, as the service
#                      reads them (default sqlite://data/users.db, relative to the repository).
#   ORDER_SERVICE_DATABASE_URL  the same for order-service (for the idempotency table figure).
#   HOSTILE_IDEMPOTENCY_METRIC  a gauge on order-service's /metrics holding the idempotency
#                      table's size (default idempotency_keys_stored); read before the SQLite
#                      fallback.
#   PROMTOOL           default promtool (on PATH, else /usr/bin/promtool).
# Output in $HOSTILE_OUT: summary.json (every check and figure), hostile.log (this output),
# NAME.json (the raw measurements of each attack).
# Loopback only; every loop is bounded in count and time.
# Exit: 0 every check passed, 1 a check failed, 2 the run itself could not run.
set -euo pipefail
cd "$(dirname "$0")/.."

USER_URL=${USER_SERVICE_URL:-http://${USER_SERVICE_ADDR:-127.0.0.1:5001}}
ORDER_URL=${ORDER_SERVICE_URL:-http://${ORDER_SERVICE_ADDR:-127.0.0.1:5002}}
DASH_URL=${DASHBOARD_URL:-http://${DASHBOARD_ADDR:-127.0.0.1:8080}}
OUT=${HOSTILE_OUT:-target/hostile}
HEADER_TIMEOUT_MS=${HEADER_READ_TIMEOUT_MS:-10000}
IDEM_METRIC=${HOSTILE_IDEMPOTENCY_METRIC:-idempotency_keys_stored}
ATTACKS=(deadline slowloris fault-header method-flood wal idempotency overload small-holes retention)
RUN_ID=$(date +%s)-$$

die() { printf 'hostile: %s\n' "$*" >&2; exit 2; }

for url in "$USER_URL" "$ORDER_URL" "$DASH_URL"; do
  case "$url" in
    http://127.0.0.1:*|http://localhost:*|http://\[::1\]:*) ;;
    *) die "$url is not a loopback URL; refusing" ;;
  esac
done
for tool in curl jq python3; do
  command -v "$tool" >/dev/null || die "$tool is needed"
done
PROMTOOL=${PROMTOOL:-$(command -v promtool || echo /usr/bin/promtool)}
case "$HEADER_TIMEOUT_MS" in
  '' | *[!0-9]*) die "HEADER_READ_TIMEOUT_MS must be a whole number of milliseconds" ;;
esac

selected=()
if [ -n "${HOSTILE_ONLY:-}" ]; then
  IFS=, read -r -a wanted <<<"$HOSTILE_ONLY"
  for w in "${wanted[@]}"; do
    w=${w// /}
    [ -n "$w" ] || continue
    case " ${ATTACKS[*]} " in
      *" $w "*) selected+=("$w") ;;
      *) die "unknown attack '$w' in HOSTILE_ONLY (expected: ${ATTACKS[*]})" ;;
    esac
  done
else
  selected=("${ATTACKS[@]}")
fi

mkdir -p "$OUT"
RESULTS=$OUT/results.jsonl
FIGURES=$OUT/figures.jsonl
: >"$RESULTS"
: >"$FIGURES"
exec 3>&1 4>&2 > >(tee "$OUT/hostile.log") 2>&1
tee_pid=$!
# Lets tee write the last lines before the script's exit status reaches the caller.
finish() {
  local code=$?
  exec 1>&3 2>&4
  wait "$tee_pid" 2>/dev/null || true
  exit "$code"
}
trap finish EXIT
START=$(date +%s)

log() { printf 'hostile [%4ss] %s\n' "$(( $(date +%s) - START ))" "$*"; }

# check ATTACK NAME FIGURE TARGET COMMAND...: one PASS/FAIL line; PASS when COMMAND succeeds.
check() {
  local attack=$1 name=$2 fig=$3 target=$4 verdict=FAIL
  shift 4
  if "$@"; then verdict=PASS; fi
  log "$verdict $attack/$name: $fig (target: $target)"
  jq -nc --arg a "$attack" --arg c "$name" --arg r "$verdict" --arg f "$fig" --arg t "$target" \
    '{attack:$a, check:$c, result:$r, figure:$f, target:$t}' >>"$RESULTS"
}
skip() {
  log "SKIP $1/$2: $3"
  jq -nc --arg a "$1" --arg c "$2" --arg n "$3" '{attack:$a, check:$c, result:"SKIP", figure:$n}' >>"$RESULTS"
}
# figure KEY VALUE: a figure for CHAOS.md, kept in summary.json.
figure() {
  log "figure $1: $2"
  jq -nc --arg k "$1" --arg v "$2" '{($k): $v}' >>"$FIGURES"
}
# jqt EXPR FILE: true when the jq expression is true of FILE (for check's COMMAND).
jqt() { jq -e "$1" "$2" >/dev/null 2>&1; }
# holds EXPR: true when the jq expression (of numbers put in by the caller) is true.
holds() { jq -ne "$1" >/dev/null 2>&1; }

# The measuring tools, written next to the output so they run with the stdlib python3 alone.
TOOLS=$OUT/hostile_tools.py
cat >"$TOOLS" <<'PY'
"""Measuring tools for hostile.sh; each subcommand prints one JSON object."""
import argparse
import http.client
import json
import re
import select
import socket
import statistics
import threading
import time
import urllib.parse


def split(url):
    u = urllib.parse.urlsplit(url)
    return u.hostname, u.port or 80


def pct(values, q):
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))], 1)


def get_ms(host, port, path, timeout):
    """One GET on a fresh connection: (status or error name, milliseconds)."""
    t = time.monotonic()
    c = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        r.read()
        status = r.status
    except Exception as e:  # a probe records what went wrong instead of stopping
        status = type(e).__name__
    finally:
        c.close()
    return status, (time.monotonic() - t) * 1000


def load(a):
    """COUNT requests over CONCURRENCY kept-alive connections, stopped after MAX_SECONDS."""
    host, port = split(a.url)
    match = re.compile(a.match, re.I) if a.match else None
    lock = threading.Lock()
    state = {"next": 0, "done": 0, "matched": 0, "overflow": 0}
    statuses, errors, retry_after, problems, lat = {}, {}, {}, {}, []
    probes = {}
    started = time.monotonic()
    stop_at = started + a.max_seconds
    running = threading.Event()
    running.set()

    def fill(template, i):
        return template.replace("{i}", str(i)).replace("{run}", a.run)

    # Every worker starts at once, so a burst of CONCURRENCY requests is one burst.
    gate = threading.Barrier(a.concurrency)

    def worker():
        conn = None
        try:
            gate.wait(5)
        except threading.BrokenBarrierError:
            pass
        while True:
            with lock:
                i = state["next"]
                if i >= a.count or time.monotonic() >= stop_at:
                    break
                state["next"] += 1
            if conn is None:
                left = max(0.1, stop_at - time.monotonic())
                conn = http.client.HTTPConnection(host, port, timeout=min(a.timeout, left))
            headers = {}
            for h in a.header:
                k, _, v = h.partition(":")
                headers[k.strip()] = fill(v.strip(), i)
            body = None
            if a.body is not None:
                body = fill(a.body, i).encode()
                headers.setdefault("Content-Type", "application/json")
            t = time.monotonic()
            try:
                conn.request(fill(a.method, i), fill(a.path, i), body=body, headers=headers)
                r = conn.getresponse()
                raw = r.read(65536)
                ms = (time.monotonic() - t) * 1000
                key = str(r.status)
                title = detail = ""
                try:
                    doc = json.loads(raw)
                    if isinstance(doc, dict):
                        title = str(doc.get("title", ""))
                        detail = str(doc.get("detail", ""))
                except ValueError:
                    pass
                with lock:
                    state["done"] += 1
                    statuses[key] = statuses.get(key, 0) + 1
                    lat.append(ms)
                    if r.getheader("Retry-After") is not None:
                        retry_after[key] = retry_after.get(key, 0) + 1
                    if r.status >= 400:
                        p = (r.status, title, detail[:200])
                        if p in problems or len(problems) < 20:
                            problems[p] = problems.get(p, 0) + 1
                        else:
                            state["overflow"] += 1
                    if match and str(r.status) == a.match_status and (
                        match.search(title) or match.search(detail)
                    ):
                        state["matched"] += 1
                if r.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except Exception as e:  # counted, and the next request gets a fresh connection
                with lock:
                    errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
                conn.close()
                conn = None
        if conn is not None:
            conn.close()

    def prober():
        while running.is_set() and time.monotonic() < stop_at:
            status, _ = get_ms(host, port, a.probe, 2)
            with lock:
                probes[str(status)] = probes.get(str(status), 0) + 1
            time.sleep(0.05)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(a.concurrency)]
    probe = threading.Thread(target=prober, daemon=True) if a.probe else None
    if probe:
        probe.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.1, stop_at + a.timeout - time.monotonic()))
    running.clear()
    if probe:
        probe.join(3)
    with lock:
        print(json.dumps({
            "sent": state["next"], "answered": state["done"],
            "elapsed_s": round(time.monotonic() - started, 2),
            "statuses": statuses, "errors": errors, "retry_after": retry_after,
            "matched": state["matched"],
            "problems": [{"status": s, "title": t, "detail": d, "count": n}
                         for (s, t, d), n in sorted(problems.items(), key=lambda kv: -kv[1])],
            "problems_not_listed": state["overflow"],
            "latency_ms": {"p50": pct(lat, 0.5), "p99": pct(lat, 0.99),
                           "max": round(max(lat), 1) if lat else None},
            "probe": probes,
        }))


def slowloris(a):
    """CONNS connections that send a request head one byte a second; when does each close?"""
    host, port = split(a.url)
    head = b"GET /health/live HTTP/1.1\r\nHost: " + host.encode() + b"\r\nX-Slow: "
    conns = []
    for _ in range(a.conns):
        s = socket.create_connection((host, port), timeout=2)
        s.setblocking(False)
        conns.append({"sock": s, "opened": time.monotonic(), "sent": 0,
                      "closed": None, "answered": None})
    started = conns[0]["opened"] if conns else time.monotonic()
    bound = started + a.bound_s
    samples = []

    def attached():
        return sum(1 for c in conns if c["closed"] is None)

    def prober():
        while time.monotonic() < bound and (attached() or len(samples) < 5):
            n = attached()
            status, ms = get_ms(host, port, a.probe, 2)
            samples.append({"attached": n, "status": status, "ms": round(ms, 1)})
            time.sleep(0.25)

    probe = threading.Thread(target=prober, daemon=True)
    probe.start()
    next_byte = time.monotonic()
    while time.monotonic() < bound and attached():
        now = time.monotonic()
        if now >= next_byte:
            for c in conns:
                if c["closed"] is not None:
                    continue
                # The request line and `Host` in the first second, then one byte a second.
                chunk = head[c["sent"]:] if c["sent"] == 0 else b"a"
                try:
                    c["sock"].send(chunk)
                    c["sent"] += len(chunk)
                except OSError:
                    c["closed"] = now
            next_byte = now + a.interval
        live = [c for c in conns if c["closed"] is None]
        ready, _, _ = select.select([c["sock"] for c in live], [], [],
                                    max(0.0, min(next_byte, bound) - time.monotonic()))
        for c in live:
            if c["sock"] in ready:
                try:
                    data = c["sock"].recv(4096)
                except OSError:
                    data = b""
                if data:
                    if c["answered"] is None:
                        c["answered"] = data.split(b"\r\n", 1)[0].decode("latin-1")
                else:
                    c["closed"] = time.monotonic()
    probe.join(3)
    for c in conns:
        c["sock"].close()
    closed = [c["closed"] - c["opened"] for c in conns if c["closed"] is not None]
    during = [s for s in samples if s["attached"] > 0]
    answers = {}
    for c in conns:
        if c["answered"]:
            answers[c["answered"]] = answers.get(c["answered"], 0) + 1
    print(json.dumps({
        "conns": len(conns), "closed": len(closed), "still_open": len(conns) - len(closed),
        "closed_after_s": {"min": round(min(closed), 2) if closed else None,
                           "median": round(statistics.median(closed), 2) if closed else None,
                           "max": round(max(closed), 2) if closed else None},
        "bytes_sent_max": max((c["sent"] for c in conns), default=0),
        "answers": answers, "watched_s": round(time.monotonic() - started, 1),
        "probe": {"samples": len(samples), "while_attached": len(during),
                  "max_ms_while_attached": max((s["ms"] for s in during), default=None),
                  "max_ms": max((s["ms"] for s in samples), default=None),
                  "failed": [s for s in samples if s["status"] != 200][:5]},
    }))


def sqlite_rows(a):
    """Rows and bytes of one table, read-only (the service keeps writing meanwhile)."""
    import sqlite3
    db = sqlite3.connect(f"file:{a.path}?mode=ro", uri=True, timeout=2)
    try:
        rows = db.execute(f'SELECT count(*) FROM "{a.table}"').fetchone()[0]
        print(json.dumps({"rows": rows}))
    finally:
        db.close()


p = argparse.ArgumentParser()
sub = p.add_subparsers(dest="cmd", required=True)
lp = sub.add_parser("load")
lp.add_argument("--url", required=True)
lp.add_argument("--method", default="GET")
lp.add_argument("--path", required=True)
lp.add_argument("--count", type=int, required=True)
lp.add_argument("--concurrency", type=int, default=1)
lp.add_argument("--max-seconds", type=float, default=30)
lp.add_argument("--timeout", type=float, default=5)
lp.add_argument("--header", action="append", default=[])
lp.add_argument("--body")
lp.add_argument("--run", default="")
lp.add_argument("--match")
lp.add_argument("--match-status", default="503")
lp.add_argument("--probe")
sp = sub.add_parser("slowloris")
sp.add_argument("--url", required=True)
sp.add_argument("--conns", type=int, default=50)
sp.add_argument("--interval", type=float, default=1.0)
sp.add_argument("--bound-s", type=float, required=True)
sp.add_argument("--probe", default="/health/live")
qp = sub.add_parser("sqlite-rows")
qp.add_argument("--path", required=True)
qp.add_argument("--table", required=True)
args = p.parse_args()
{"load": load, "slowloris": slowloris, "sqlite-rows": sqlite_rows}[args.cmd](args)
PY

tools() { python3 "$TOOLS" "$@"; }

# http METHOD URL [curl args...]: prints "STATUS" and leaves the body in $OUT/body and the
# headers in $OUT/headers; STATUS is 000 when nothing came back.
http() {
  local method=$1 url=$2
  shift 2
  curl -s -o "$OUT/body" -D "$OUT/headers" -w '%{http_code}' --max-time 10 -X "$method" "$url" "$@" || true
}
post_json() { http POST "$1" -H 'Content-Type: application/json' -d "$2" "${@:3}"; }

# new_user LABEL: creates a user with a unique email and prints its id (exit 2 when it cannot).
new_user() {
  local code
  code=$(post_json "$USER_URL/users" "{\"name\":\"hostile $1\",\"email\":\"hostile-$1-$RUN_ID@example.com\"}")
  [ "$code" = 201 ] || die "cannot create a user for the $1 attack (POST /users -> $code: $(head -c 300 "$OUT/body"))"
  jq -r .id "$OUT/body"
}

# Series of the request histogram (its _count lines); empty when /metrics does not answer 200.
series() {
  local code
  code=$(http GET "$1/metrics")
  [ "$code" = 200 ] || return 0
  grep -c '^http_server_request_duration_seconds_count' "$OUT/body" || true
}

# The SQLite file behind a database URL as the services read it (path relative to the
# repository, where run.sh starts them); empty for PostgreSQL.
sqlite_path() {
  case "$1" in
    sqlite:*) local rest=${1#sqlite:}; rest=${rest#//}; echo "${rest%%\?*}" ;;
    *) ;;
  esac
}


# Waits (at most 20 s) until no user-service breaker is open, so an attack that places orders
# does not measure the previous attack's open circuit.
settle() {
  local i
  for i in $(seq 1 40); do
    if [ "$(http GET "$ORDER_URL/resilience")" = 200 ] && jqt 'all(.breakers[]; .state != "open")' "$OUT/body"; then
      [ "$i" = 1 ] || log "breakers no longer open after $(( (i - 1) / 2 )) s"
      return 0
    fi
    sleep 0.5
  done
  log "a user-service breaker is still open after 20 s"
}

attack_deadline() {
  local user out code states ready next
  user=$(new_user deadline) || return 1
  out=$OUT/deadline.json
  tools load --url "$ORDER_URL" --method POST --path /orders --count 50 --concurrency 1 \
    --max-seconds 20 --run "$RUN_ID" --header 'Idempotency-Key: hostile-deadline-{run}-{i}' \
    --header 'x-request-deadline-ms: 1' \
    --body "{\"user_id\":$user,\"product_id\":\"hostile-deadline\",\"quantity\":1}" >"$out" || return 1
  check deadline status "$(jq -r '"\(.answered) of 50 answered, statuses \(.statuses | tojson)" + ([.problems[] | select(.status == 503) | "; 503 says: \(.detail)"][0] // "")' "$out")" \
    "every one 504 (the caller's deadline passed), none 503" \
    jqt '.answered == 50 and (.statuses["504"] // 0) == 50' "$out"
  code=$(http GET "$ORDER_URL/resilience")
  cp "$OUT/body" "$OUT/deadline-resilience.json"
  if [ "$code" = 200 ]; then
    states=$(jq -r '[.breakers[] | "\(.name)=\(.state) (\(.failures) failures in \(.calls) calls)"] | join(", ")' "$OUT/body")
  else
    states="GET /resilience -> $code"
  fi
  figure breaker_after_deadline_attack "$states"
  check deadline breaker "$states" "every user-service breaker closed" \
    jqt '[.breakers[] | select(.name | startswith("user-service")) | .state] | length > 0 and all(. == "closed")' \
    "$OUT/deadline-resilience.json"
  code=$(http GET "$ORDER_URL/health/ready")
  cp "$OUT/body" "$OUT/deadline-ready.json"
  ready=$(jq -c '[.checks | to_entries[] | select(.key | startswith("upstream")) | {(.key): (.value[0].observedValue // .value[0].status)}] | add' "$OUT/body" 2>/dev/null || echo '?')
  check deadline ready "/health/ready $code, upstream $ready" "200 with every upstream circuit closed" \
    jqt "$code == 200 and ([.checks | to_entries[] | select(.key | startswith(\"upstream\")) | .value[0].observedValue] | length > 0 and all(. == \"closed\"))" \
    "$OUT/deadline-ready.json"
  next=$(post_json "$ORDER_URL/orders" "{\"user_id\":$user,\"product_id\":\"hostile-after\",\"quantity\":1}" \
    -H "Idempotency-Key: hostile-deadline-after-$RUN_ID")
  check deadline next-order "the next normal POST /orders -> $next $(jq -r '.detail // empty' "$OUT/body" 2>/dev/null)" \
    201 holds "$next == 201"
}

attack_slowloris() {
  local out bound limit
  out=$OUT/slowloris.json
  bound=$(awk -v ms="$HEADER_TIMEOUT_MS" 'BEGIN { print (ms + 5000) / 1000 }')
  limit=$(awk -v ms="$HEADER_TIMEOUT_MS" 'BEGIN { print (ms + 2000) / 1000 }')
  log "slowloris: 50 connections to user-service, a header byte a second, watched for ${bound}s"
  tools slowloris --url "$USER_URL" --conns 50 --bound-s "$bound" >"$out" || return 1
  figure slowloris_cutoff_s "$(jq -r '"\(.closed_after_s.max // "none") (\(.closed) of \(.conns) closed by the server within \(.watched_s) s; answers \(.answers | tojson))"' "$out")"
  check slowloris cut-off \
    "$(jq -r '"\(.closed) of \(.conns) closed by the server" + (if .closed > 0 then ", after \(.closed_after_s.min)-\(.closed_after_s.max) s (median \(.closed_after_s.median))" else "" end) + "; \(.still_open) still open at \(.watched_s) s"' "$out")" \
    "all 50 closed within ${limit} s (HEADER_READ_TIMEOUT_MS ${HEADER_TIMEOUT_MS} + 2 s)" \
    jqt ".closed == .conns and .closed_after_s.max <= $limit" "$out"
  check slowloris live-latency \
    "$(jq -r '"GET /health/live max \(.probe.max_ms_while_attached // .probe.max_ms) ms over \(.probe.while_attached) probes while attached (\(.probe.samples) in all), \(.probe.failed | length) failed"' "$out")" \
    "under 100 ms, every probe 200" \
    jqt '.probe.samples > 0 and (.probe.failed | length) == 0 and (.probe.max_ms_while_attached // .probe.max_ms) < 100' "$out"
}

attack_fault_header() {
  local name url res code secs
  for name in user-service order-service; do
    url="$USER_URL/users/1"
    [ "$name" = order-service ] && url="$ORDER_URL/orders/1"
    res=$(curl -s -o /dev/null -w '%{http_code} %{time_total}' --max-time 3 -H 'X-Simulate-Latency: 1h' "$url" || true)
    read -r code secs <<<"$res"
    check fault-header "$name" "GET /${url#http://*/} with X-Simulate-Latency: 1h and no token -> $code after ${secs} s" \
      "answered within 1 s (the header ignored without the admin token)" \
      holds "$code != 0 and $secs < 1"
  done
}

attack_method_flood() {
  local name url path before after out code lines growth=()
  [ -x "$PROMTOOL" ] || die "promtool not found (set PROMTOOL; Debian: apt-get install prometheus)"
  for name in user-service order-service dashboard; do
    case $name in
      user-service) url=$USER_URL path=/users ;;
      order-service) url=$ORDER_URL path=/orders ;;
      *) url=$DASH_URL path=/api/state ;;
    esac
    out=$OUT/method-flood-$name.json
    before=$(series "$url")
    tools load --url "$url" --method 'FOO{i}' --path "$path" --count 500 --concurrency 8 --max-seconds 20 >"$out" || return 1
    after=$(series "$url")
    if [ -z "$before" ] || [ -z "$after" ]; then
      skip method-flood "series:$name" "no /metrics to count series in (see promtool:$name)"
    else
      growth+=("$name $before->$after")
      check method-flood "series:$name" \
        "http_server_request_duration_seconds series $before -> $after after $(jq -r '"\(.answered) made-up-method requests (statuses \(.statuses | tojson))"' "$out")" \
        "at most 5 new series" holds "$after - $before <= 5"
    fi
  done
  figure series_after_method_flood "${growth[*]:-none measurable}"
  for name in user-service order-service dashboard; do
    case $name in
      user-service) url=$USER_URL ;;
      order-service) url=$ORDER_URL ;;
      *) url=$DASH_URL ;;
    esac
    code=$(http GET "$url/metrics")
    if [ "$code" != 200 ]; then
      check method-flood "promtool:$name" "GET /metrics -> $code" "served, and promtool check metrics reports nothing" false
      continue
    fi
    "$PROMTOOL" check metrics <"$OUT/body" >"$OUT/promtool-$name.txt" 2>&1 || true
    lines=$(grep -c . "$OUT/promtool-$name.txt" || true)
    check method-flood "promtool:$name" \
      "promtool check metrics: $lines problems$( [ "$lines" = 0 ] || printf ', first: %s' "$(head -n1 "$OUT/promtool-$name.txt")")" \
      "nothing reported" holds "$lines == 0"
  done
}

attack_wal() {
  local url path wal before size out
  url=${USER_SERVICE_DATABASE_URL:-${DATABASE_URL:-sqlite://data/users.db}}
  path=$(sqlite_path "$url")
  if [ -z "$path" ]; then
    skip wal size "user-service's store is not SQLite (${url%%:*}); no -wal file to measure"
    return 0
  fi
  wal=$path-wal
  before=$(stat -c %s "$wal" 2>/dev/null || echo 0)
  out=$OUT/wal.json
  log "wal: 5000 POST /users, 8 at a time (at most 75 s); $wal is $before bytes before"
  tools load --url "$USER_URL" --method POST --path /users --count 5000 --concurrency 8 \
    --max-seconds 75 --run "$RUN_ID" --body '{"name":"hostile wal","email":"hostile-wal-{run}-{i}@example.com"}' >"$out" || return 1
  check wal inserts "$(jq -r '"\(.statuses["201"] // 0) of 5000 created in \(.elapsed_s) s (statuses \(.statuses | tojson), errors \(.errors | tojson))"' "$out")" \
    "all 5000 -> 201" jqt '(.statuses["201"] // 0) == 5000' "$out"
  if [ ! -f "$wal" ]; then
    figure wal_bytes_after_5000_inserts "no $wal"
    check wal size "no $wal after the inserts (is $url the store user-service uses?)" "under 4 MB" false
    return 0
  fi
  size=$(stat -c %s "$wal")
  figure wal_bytes_after_5000_inserts "$size ($(awk -v b="$size" 'BEGIN { printf "%.1f MB", b / 1048576 }'); $before before; main file $(stat -c %s "$path" 2>/dev/null || echo '?'))"
  check wal size "$wal $before -> $size bytes" "under 4 MB (4194304 bytes)" holds "$size < 4194304"
}

# answered_without CODE WANT FILE TEXT...: CODE matches the glob WANT and FILE contains none of
# the TEXTs (case-insensitive).
answered_without() {
  local code=$1 want=$2 file=$3 t
  shift 3
  # shellcheck disable=SC2254  # WANT is a glob on purpose
  case $code in $want) ;; *) return 1 ;; esac
  for t in "$@"; do
    if grep -qiF -- "$t" "$file"; then return 1; fi
  done
}

attack_idempotency() {
  local a b key ca cb ida code
  settle
  a=$(new_user idem-a) || return 1
  b=$(new_user idem-b) || return 1
  key=hostile-idem-$RUN_ID
  ca=$(post_json "$ORDER_URL/orders" "{\"user_id\":$a,\"product_id\":\"hostile-a\",\"quantity\":1}" -H "Idempotency-Key: $key")
  cp "$OUT/body" "$OUT/idempotency-a.json"
  ida=$(jq -r '.id // 0' "$OUT/idempotency-a.json" 2>/dev/null || echo 0)
  cb=$(post_json "$ORDER_URL/orders" "{\"user_id\":$b,\"product_id\":\"hostile-b\",\"quantity\":2}" -H "Idempotency-Key: $key")
  cp "$OUT/body" "$OUT/idempotency-b.json"
  check idempotency other-user \
    "user A's order -> $ca; user B, same key, another body -> $cb $(jq -r '.detail // "order \(.id) for user \(.user_id)"' "$OUT/idempotency-b.json" 2>/dev/null)" \
    "201 for both, B's a new order of B's (a key is no one else's to squat)" \
    jqt "$ca == 201 and $cb == 201 and .user_id == $b and .id != $ida" "$OUT/idempotency-b.json"
  code=$(http GET "$ORDER_URL/orders?user_id=$a")
  check idempotency list-body "GET /orders?user_id=A -> $code, $(jq '.items | length' "$OUT/body" 2>/dev/null || echo '?') orders; mentions the key: $(grep -qiF -e idempotency_key -e "$key" "$OUT/body" && echo yes || echo no)" \
    "200 with no idempotency_key field or value" answered_without "$code" 200 "$OUT/body" idempotency_key "$key"
  code=$(http GET "$ORDER_URL/orders")
  check idempotency list-all-body "GET /orders -> $code; mentions idempotency_key: $(grep -qiF idempotency_key "$OUT/body" && echo yes || echo no)" \
    "200 with no idempotency_key field" answered_without "$code" 200 "$OUT/body" idempotency_key
  code=$(http GET "$ORDER_URL/orders/$ida")
  check idempotency order-body "GET /orders/{id} -> $code; mentions the key: $(grep -qiF -e idempotency_key -e "$key" "$OUT/body" && echo yes || echo no)" \
    "200 with no idempotency_key field or value" answered_without "$code" 200 "$OUT/body" idempotency_key "$key"
  code=$(post_json "$ORDER_URL/orders" "{\"user_id\":$a,\"product_id\":\"hostile-two\",\"quantity\":1}" \
    -H "Idempotency-Key: $key-one" -H "Idempotency-Key: $key-two")
  check idempotency two-keys "two Idempotency-Key headers -> $code $(jq -r '.detail // "order \(.id) stored"' "$OUT/body" 2>/dev/null)" \
    400 holds "$code == 400"
}

# Rejections the resilience stack counted itself (bulkhead full, circuit open) so far.
local_rejections() {
  if [ "$(http GET "$ORDER_URL/resilience")" = 200 ]; then
    jq -r '"bulkhead \([.bulkheads[].rejected_total] | add // 0), breaker \([.breakers[].rejected_total] | add // 0)"' "$OUT/body"
  else
    echo "GET /resilience failed"
  fi
}

attack_overload() {
  local out up_before up_after rejected_before
  settle
  up_before=$(http GET "$USER_URL/health/ready")
  rejected_before=$(local_rejections)
  out=$OUT/overload.json
  log "overload: 300 concurrent POST /orders (at most 5 s), GET /nonexistent meanwhile"
  # Every order names its own user id, one nobody created ("9000000" then the order's number):
  # order-service's user cache and its coalescing would otherwise turn 300 lookups of one user
  # into one, and the burst would never reach the lookup bulkhead this attack is about. Each
  # is answered 422 (no such user) or, past the bulkhead, 503 naming order-service itself.
  tools load --url "$ORDER_URL" --method POST --path /orders --count 300 --concurrency 300 \
    --max-seconds 5 --timeout 5 --run "$RUN_ID" --header 'Idempotency-Key: hostile-overload-{run}-{i}' \
    --body '{"user_id":9000000{i},"product_id":"hostile-burst","quantity":1}' \
    --match 'user.service is unavailable' --match-status 503 --probe /nonexistent >"$out" || return 1
  up_after=$(http GET "$USER_URL/health/ready")
  check overload blame \
    "$(jq -r '"\(.matched) of \(.statuses["503"] // 0) 503s blame user-service; statuses \(.statuses | tojson), errors \(.errors | tojson)"' "$out"); user-service ready $up_before/$up_after (before/after); order-service's own rejections: $rejected_before -> $(local_rejections)" \
    "no 503 blames user-service while it is up (a local limit names order-service's own)" \
    jqt ".matched == 0 and $up_before == 200 and $up_after == 200" "$out"
  check overload not-found "GET /nonexistent during the burst: $(jq -c .probe "$out")" "404 every time" \
    jqt '(.probe | keys) == ["404"]' "$out"
}

# Words of Rust's type system that an API error must not show a client.
RUST_WORDS='\b(struct|enum|String|Vec|Option|[iu](8|16|32|64|128|size)|f32|f64)\b'

attack_small_holes() {
  local evil own name url code out email label body spec
  evil=$(http GET "$DASH_URL/" -H 'Host: evil.example')
  own=$(http GET "$DASH_URL/")
  check small-holes host "dashboard GET / with Host: evil.example -> $evil; with its own address -> $own" \
    "421, and 200 for its own address" holds "$evil == 421 and $own == 200"

  for name in user-service order-service; do
    url=$USER_URL
    [ "$name" = order-service ] && url=$ORDER_URL
    code=$(http GET "$url/admin/faults" -H 'Authorization: Bearer wrong')
    if [ "$code" = 404 ]; then
      skip small-holes "admin-tokens:$name" "skipped: no ADMIN_TOKEN (GET /admin/faults -> 404)"
      continue
    fi
    out=$OUT/admin-tokens-$name.json
    tools load --url "$url" --path /admin/faults --count 20 --max-seconds 10 \
      --header 'Authorization: Bearer wrong-{i}' >"$out" || return 1
    check small-holes "admin-tokens:$name" \
      "21 wrong tokens -> $code, then $(jq -c .statuses "$out"), Retry-After on $(jq -c .retry_after "$out")" \
      "some 429, each with Retry-After" \
      jqt '(.statuses["429"] // 0) > 0 and (.retry_after["429"] // 0) == .statuses["429"]' "$out"
  done

  email="hostile-dup-$RUN_ID@example.com"
  post_json "$USER_URL/users" "{\"name\":\"hostile dup\",\"email\":\"$email\"}" >/dev/null
  code=$(post_json "$USER_URL/users" "{\"name\":\"hostile dup\",\"email\":\"$email\"}")
  check small-holes duplicate-email "second POST /users -> $code: $(jq -r .detail "$OUT/body" 2>/dev/null)" \
    "409 whose body does not contain the email" answered_without "$code" 409 "$OUT/body" "$email"

  # label|url|body: the first is the issue's; the others reach the same decoder another way.
  for spec in \
    "users-name|$USER_URL/users|{\"name\":1,\"email\":\"x@y.z\"}" \
    "users-body|$USER_URL/users|\"x\"" \
    "orders-user-id|$ORDER_URL/orders|{\"user_id\":\"x\",\"product_id\":\"p\",\"quantity\":1}"; do
    IFS='|' read -r label url body <<<"$spec"
    code=$(post_json "$url" "$body" -H "Idempotency-Key: hostile-type-$label-$RUN_ID")
    check small-holes "wrong-type:$label" "POST /${url#http://*/} $body -> $code: $(jq -r .detail "$OUT/body" 2>/dev/null)" \
      "4xx naming no Rust type" holds "$code >= 400 and $code < 500 and $(grep -qE "$RUST_WORDS" "$OUT/body" && echo 1 || echo 0) == 0"
  done
  code=$(http GET "$USER_URL/users/abc")
  check small-holes "wrong-type:path-id" "GET /users/abc -> $code: $(jq -r .detail "$OUT/body" 2>/dev/null)" \
    "4xx naming no Rust type" holds "$code >= 400 and $code < 500 and $(grep -qE "$RUST_WORDS" "$OUT/body" && echo 1 || echo 0) == 0"
}

# The idempotency gauge's value on order-service's /metrics, or nothing.
idempotency_gauge() {
  [ "$(http GET "$ORDER_URL/metrics")" = 200 ] &&
    awk -v m="$IDEM_METRIC" '$1 == m { print $2; found = 1 } END { exit !found }' "$OUT/body"
}

# The idempotency table's rows, read from order-service's SQLite file, or nothing.
idempotency_rows() {
  local path
  path=$(sqlite_path "${ORDER_SERVICE_DATABASE_URL:-${DATABASE_URL:-sqlite://data/orders.db}}")
  [ -n "$path" ] && [ -f "$path" ] &&
    tools sqlite-rows --path "$path" --table idempotency_keys 2>/dev/null | jq -er .rows
}

attack_retention() {
  local user before after="" i
  user=$(new_user retention)
  post_json "$ORDER_URL/orders" "{\"user_id\":$user,\"product_id\":\"retention\",\"quantity\":1}" \
    -H "Idempotency-Key: hostile-retention-$RUN_ID" >/dev/null
  # The table's rows where they can be read live (SQLite); the gauge is as of the last sweep.
  before=$(idempotency_rows) || before=$(idempotency_gauge) || before="?"
  RUN_SKIP_BUILD=1 IDEMPOTENCY_RETENTION=2s ./run.sh restart order-service >/dev/null
  for i in $(seq 1 20); do
    sleep 0.5
    after=$(idempotency_gauge) || after=""
    [ "$after" = 0 ] && break
  done
  # Back to the retention the system was started with.
  RUN_SKIP_BUILD=1 ./run.sh restart order-service >/dev/null
  figure idempotency_table_after_retention "$before records before, ${after:-?} $((i / 2)) s after a restart with IDEMPOTENCY_RETENTION=2s"
  check retention table "$IDEM_METRIC $before -> ${after:-none} within $((i / 2)) s of a restart with a 2 s retention" \
    "0 within 10 s (every record older than the retention swept)" holds "\"${after:-x}\" == \"0\" and \"$before\" != \"0\""
}

# The idempotency table's size: order-service's gauge when it has one, else the SQLite rows.
idempotency_size() {
  local url path rows
  if [ "$(http GET "$ORDER_URL/metrics")" = 200 ] &&
    rows=$(awk -v m="$IDEM_METRIC" '$1 == m || index($1, m "{") == 1 { s += $2; n++ } END { if (n) print s; else exit 1 }' "$OUT/body"); then
    echo "$rows ($IDEM_METRIC on /metrics)"
    return 0
  fi
  url=${ORDER_SERVICE_DATABASE_URL:-${DATABASE_URL:-sqlite://data/orders.db}}
  path=$(sqlite_path "$url")
  if [ -n "$path" ] && [ -f "$path" ] &&
    rows=$(tools sqlite-rows --path "$path" --table idempotency_keys 2>/dev/null | jq -r .rows); then
    echo "$rows rows in $path idempotency_keys"
    return 0
  fi
  echo "not measurable (no $IDEM_METRIC gauge, no SQLite file)"
}

# ---- run ----
if ! curl -fs -o /dev/null --max-time 2 "$USER_URL/health/ready" ||
  ! curl -fs -o /dev/null --max-time 2 "$ORDER_URL/health/ready"; then
  die "the system is not up at $USER_URL and $ORDER_URL (start it with ./run.sh up)"
fi
log "attacks: ${selected[*]}; user-service $USER_URL, order-service $ORDER_URL, dashboard $DASH_URL; output in $OUT"
errored=()
for name in "${selected[@]}"; do
  log "== $name"
  # A subshell: an attack that cannot run (its setup failed) does not stop the others.
  if ! ( "attack_${name//-/_}" ); then
    errored+=("$name")
    check "$name" run "the attack could not run (see above)" "runs to the end" false
  fi
done
figure idempotency_table_size "$(idempotency_size)"

jq -s '{checks: .}' "$RESULTS" >"$OUT/checks.json"
jq -s 'add // {}' "$FIGURES" >"$OUT/figures.json"
jq -n --slurpfile c "$OUT/checks.json" --slurpfile f "$OUT/figures.json" \
  --arg started "$START" --arg ended "$(date +%s)" \
  '{started: ($started | tonumber), ended: ($ended | tonumber), checks: $c[0].checks, figures: $f[0],
    passed: ([$c[0].checks[] | select(.result == "PASS")] | length),
    failed: ([$c[0].checks[] | select(.result == "FAIL")] | length),
    skipped: ([$c[0].checks[] | select(.result == "SKIP")] | length)}' >"$OUT/summary.json"
rm -f "$OUT/checks.json" "$OUT/figures.json"

echo
echo "hostile clients: $(( $(date +%s) - START )) s"
jq -r '.checks[] | "  \(.result)  \(.attack)/\(.check)"' "$OUT/summary.json"
echo "figures:"
jq -r '.figures | to_entries[] | "  \(.key): \(.value)"' "$OUT/summary.json"
passed=$(jq .passed "$OUT/summary.json")
failed=$(jq .failed "$OUT/summary.json")
skipped=$(jq .skipped "$OUT/summary.json")
[ "$skipped" = 0 ] || echo "$skipped skipped"
echo "$passed passed, $failed failed"
if [ ${#errored[@]} -gt 0 ]; then
  log "ERROR: could not run: ${errored[*]}"
  exit 2
fi
[ "$failed" = 0 ]
