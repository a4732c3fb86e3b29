#!/usr/bin/env python3
"""The table and chart of bench/scaling.sh, from its results.jsonl.

    python3 bench/scaling_report.py results.jsonl --md results.md --svg scaling.svg --header TEXT

The chart plots requests per second against connections (log scale), one line per case, with
p99 latency written at each point: where a line flattens while p99 grows is the knee.
"""

import argparse
import json
import math


def kib_per_added_connection(runs):
    """The memory each connection added costs: the resident set's growth from the case's
    previous (smaller) run over the connections added; None for a case's first run, whose
    growth is the service warming up (runtime threads, caches, the store), not connections.
    An upper bound: what the load allocates and the allocator keeps counts too."""
    out, last = [], {}
    for r in runs:
        before = last.get(r["case"])
        if before is None or r["connections"] <= before[1]:
            out.append(None)
        else:
            grown = max(r["rss_kib"] - before[0], 0)
            out.append(grown / (r["connections"] - before[1]))
        last[r["case"]] = (r["rss_kib"], r["connections"])
    return out


def table(runs, header):
    lines = [header, "",
             "| case | conns | req/s | p50 ms | p99 ms | p99.9 ms | RSS MiB | KiB per added conn "
             "| non-2xx / socket errors | load avg before -> after |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for r, per_conn in zip(runs, kib_per_added_connection(runs)):
        e = r["errors"]
        socket = e["connect"] + e["read"] + e["write"] + e["timeout"]
        lines.append(
            f"| {r['case']} | {r['connections']} | {r['rps']:,.0f} | {float(r['p50_ms']):.2f} "
            f"| {float(r['p99_ms']):.2f} | {float(r['p999_ms']):.2f} | {r['rss_kib'] / 1024:.1f} "
            f"| {'-' if per_conn is None else f'{per_conn:.1f}'} | {e['status']} / {socket} "
            f"| {r['load_before']} -> {r['load_after']} |")
    return "\n".join(lines) + "\n"


def chart(runs):
    cases = []
    for r in runs:
        if r["case"] not in cases:
            cases.append(r["case"])
    width, height, left, right, top, bottom = 760, 420, 70, 220, 30, 50
    conns = sorted({r["connections"] for r in runs})
    top_rps = max(r["rps"] for r in runs) * 1.1 or 1.0
    lo, hi = math.log2(conns[0]), math.log2(conns[-1])
    span = (hi - lo) or 1.0

    def x(c):
        return left + (math.log2(c) - lo) / span * (width - left - right)

    def y(rps):
        return top + (1 - rps / top_rps) * (height - top - bottom)

    colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="11">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{left}" y="18" font-size="13">requests per second against open '
           f'connections (p99 ms at each point)</text>']
    for i in range(5):
        v = top_rps * i / 4
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{y(v):.1f}" y2="{y(v):.1f}" '
                   f'stroke="#ddd"/>')
        out.append(f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v:,.0f}</text>')
    for c in conns:
        out.append(f'<text x="{x(c):.1f}" y="{height - bottom + 16}" text-anchor="middle">{c}</text>')
    out.append(f'<text x="{(left + width - right) / 2:.0f}" y="{height - 12}" '
               f'text-anchor="middle">connections</text>')
    for i, case in enumerate(cases):
        color = colors[i % len(colors)]
        points = [r for r in runs if r["case"] == case]
        path = " ".join(f"{x(r['connections']):.1f},{y(r['rps']):.1f}" for r in points)
        out.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{path}"/>')
        for r in points:
            out.append(f'<circle cx="{x(r["connections"]):.1f}" cy="{y(r["rps"]):.1f}" r="3" '
                       f'fill="{color}"/>')
            out.append(f'<text x="{x(r["connections"]) + 4:.1f}" y="{y(r["rps"]) - 6:.1f}" '
                       f'fill="{color}">{float(r["p99_ms"]):.1f}</text>')
        ly = top + 16 * i
        out.append(f'<rect x="{width - right + 50}" y="{ly}" width="10" height="10" fill="{color}"/>')
        out.append(f'<text x="{width - right + 64}" y="{ly + 9}">{case}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("jsonl")
    parser.add_argument("--md", required=True)
    parser.add_argument("--svg", required=True)
    parser.add_argument("--header", default="")
    args = parser.parse_args()
    with open(args.jsonl) as f:
        runs = [json.loads(line) for line in f if line.strip()]
    if not runs:
        raise SystemExit("scaling_report.py: no runs in " + args.jsonl)
    with open(args.md, "w") as f:
        f.write(table(runs, args.header))
    with open(args.svg, "w") as f:
        f.write(chart(runs))


if __name__ == "__main__":
    main()
