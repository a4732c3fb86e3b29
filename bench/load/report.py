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


def table(rows):
    head = ("case", "stack", "req/s", "p50 ms", "p99 ms", "p99.9 ms", "max ms", "responses", "socket errors")
    body = []
    for r in rows:
        body.append((
            CASES.get(r["case"], r["case"]),
            r["stack"],
            f"{r['rps']:.0f}",
            f"{r['p50_ms']:.2f}",
            f"{r['p99_ms']:.2f}",
            f"{r['p999_ms']:.2f}",
            f"{r['max_ms']:.1f}",
            statuses(r),
            sock_errors(r),
        ))
    return head, body


def md_table(head, body):
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" if i < 2 or i > 6 else "---:" for i in range(len(head))) + "|"]
    out += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(out)


def mean(rows, case, stack, key):
    vals = [r[key] for r in rows if r["case"] == case and r["stack"] == stack]
    return statistics.mean(vals) if vals else None


def checks(rows):
    out = []
    for case in ("get_order", "post_orders"):
        on, off = mean(rows, case, "on", "rps"), mean(rows, case, "off", "rps")
        if on and off:
            out.append((f"{CASES[case]}: throughput with the stack >= 0.9x without", f"{on / off:.2f}x ({on:.0f} vs {off:.0f} req/s)", on / off >= 0.9))
        on, off = mean(rows, case, "on", "p99_ms"), mean(rows, case, "off", "p99_ms")
        if on and off:
            out.append((f"{CASES[case]}: p99 with the stack <= 1.2x without", f"{on / off:.2f}x ({on:.2f} vs {off:.2f} ms)", on / off <= 1.2))
    for r in rows:
        if r["case"] == "user_down" and r["stack"] == "on":
            n503 = r.get("counts", {}).get("all", {}).get("503", 0)
            out.append(("user-service killed, breaker open: p99 of the fail-fast 503 <= 2 ms",
                        f"{r['p99_ms']:.2f} ms ({n503} of {r['requests']} answered 503)", r["p99_ms"] <= 2.0 and n503 == r["requests"]))
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
