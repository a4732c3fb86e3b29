#!/usr/bin/env python3
"""Turns load.sh's results.jsonl into the table and the checks of issue 6.

usage: report.py RESULTS.jsonl [--md OUT.md] [--machine TEXT] [--settings TEXT]
"""

import argparse
import json
import statistics
import sys

CASES = {
    "get_order": "GET /orders/{id}",
    "post_orders": "POST /orders",
    "post_orders_many": "POST /orders, many writers",
    "mixed": "POST /orders, weighted scenarios",
    "user_down": "POST /orders, user-service killed",
    "user_frozen": "POST /orders, user-service frozen (SIGSTOP)",
}


def statuses(r):
    counts = r.get("counts", {}).get("all", {})
    if not counts:
        return f"non-2xx: {r['errors']['status']}"
    return ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))


def sock_errors(r):
    e = r["errors"]
    parts = [f"{k} {e[k]}" for k in ("connect", "read", "write", "timeout") if e[k]]
    return ", ".join(parts) or "0"


def ms(v):
    return "-" if v is None else f"{v:.2f}"


def table(rows):
    head = ("case", "stack", "conns", "req/s", "wrk p50", "wrk p99", "wrk p99.9",
            "server p50", "server p99", "server p99.9", "responses", "socket errors")
    body = []
    for r in rows:
        sv = r.get("server") or {}
        server = (ms(sv.get("p50_ms")), ms(sv.get("p99_ms")), ms(sv.get("p999_ms")))
        if r["requests"] == 0:
            body.append((CASES.get(r["case"], r["case"]), r["stack"], str(r["connections"]), "0",
                         "-", "-", "-", *server, f"none within {r['seconds']:.0f} s", sock_errors(r)))
            continue
        body.append((
            CASES.get(r["case"], r["case"]),
            r["stack"],
            str(r["connections"]),
            f"{r['rps']:.0f}",
            ms(r["p50_ms"]),
            ms(r["p99_ms"]),
            ms(r["p999_ms"]),
            *server,
            statuses(r),
            sock_errors(r),
        ))
    return head, body


def md_table(head, body):
    align = ["---" if h in ("case", "stack", "responses", "socket errors") else "---:" for h in head]
    out = ["| " + " | ".join(head) + " |", "|" + "|".join(align) + "|"]
    out += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(out)


def server(r, key):
    return (r.get("server") or {}).get(key)


def median(rows, case, stack, key):
    vals = [r[key] if key in r else server(r, key.removeprefix("server_")) for r in rows
            if r["case"] == case and r["stack"] == stack]
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def checks(rows):
    out = []
    for case in ("get_order", "post_orders", "post_orders_many"):
        on, off = median(rows, case, "on", "rps"), median(rows, case, "off", "rps")
        if on and off:
            out.append((f"{CASES[case]}: throughput with the stack >= 0.9x without",
                        f"{on / off:.2f}x ({on:.0f} vs {off:.0f} req/s)", on / off >= 0.9))
        s_on, s_off = median(rows, case, "on", "server_p99_ms"), median(rows, case, "off", "server_p99_ms")
        w_on, w_off = median(rows, case, "on", "p99_ms"), median(rows, case, "off", "p99_ms")
        if s_on and s_off and w_on and w_off:
            out.append((f"{CASES[case]}: p99 with the stack <= 1.2x without (server; wrk)",
                        f"{s_on / s_off:.2f}x ({s_on:.2f} vs {s_off:.2f} ms); wrk {w_on / w_off:.2f}x",
                        s_on / s_off <= 1.2))
    for r in rows:
        if r["case"] == "user_down" and r["stack"] == "on":
            n503 = r.get("counts", {}).get("all", {}).get("503", 0)
            p99 = server(r, "p99_ms")
            out.append(("user-service killed, breaker open: p99 of the fail-fast 503 <= 2 ms (server; wrk)",
                        f"{ms(p99)} ms; wrk {r['p99_ms']:.2f} ms ({n503} of {r['requests']} answered 503)",
                        p99 is not None and p99 <= 2.0 and n503 == r["requests"]))
        if r["case"] == "mixed":
            counts = r.get("counts", {})
            for scenario in ("normal", "slow"):
                c = counts.get(scenario, {})
                total = sum(c.values())
                bad = total - c.get("201", 0)
                if total:
                    out.append((f"weighted scenarios: error rate of {scenario} orders is 0 %",
                                f"{100.0 * bad / total:.2f} % ({bad} of {total})", bad == 0))
            c = counts.get("malformed", {})
            if c:
                five = sum(v for k, v in c.items() if k.startswith("5"))
                out.append(("weighted scenarios: malformed orders never get a 5xx", f"{five} of {sum(c.values())}", five == 0))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("jsonl")
    ap.add_argument("--md")
    ap.add_argument("--machine", default="")
    ap.add_argument("--settings", default="")
    args = ap.parse_args()
    rows = [json.loads(line) for line in open(args.jsonl) if line.strip()]
    if not rows:
        sys.exit("no results")
    head, body = table(rows)
    text = []
    if args.machine:
        text.append(f"Machine: {args.machine}")
    if args.settings:
        text.append(f"Settings: {args.settings}")
    text.append("")
    text.append(md_table(head, body))
    text.append("")
    text.append("| target | measured | met |")
    text.append("|---|---|:---:|")
    for what, measured, met in checks(rows):
        text.append(f"| {what} | {measured} | {'yes' if met else '**no**'} |")
    out = "\n".join(text) + "\n"
    print(out)
    if args.md:
        with open(args.md, "w") as f:
            f.write(out)


if __name__ == "__main__":
    main()
