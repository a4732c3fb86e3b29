#!/usr/bin/env python3
"""Reads criterion's estimates for the peers benchmark, prints the comparison table,
checks the targets of issue 6, and draws the chart as a self-contained SVG.

usage: report.py CRITERION_DIR [--since EPOCH] [--md OUT.md] [--svg OUT.svg]
"""

import argparse
import json
import math
import os
import sys
from pathlib import Path

# Display order of groups and, inside a group, of implementations (ours first).
GROUPS = [
    "bare", "breaker_closed", "breaker_open", "bulkhead", "timeout", "retry", "stack",
    "rate_limit", "hedge", "cache_hit", "cache_miss", "fallback",
]
LABELS = {
    "bare": "bare service_fn (floor)",
    "breaker_closed": "circuit breaker, closed (count window 100)",
    "breaker_open": "circuit breaker, open (rejection)",
    "bulkhead": "bulkhead (permit acquire + release)",
    "timeout": "timeout that never fires",
    "retry": "retry, first attempt succeeds",
    "stack": "full stack (bulkhead > deadline > retry > breaker > attempt timeout)",
    "rate_limit": "rate limiter, far below its limit",
    "hedge": "hedge that never fires",
    "cache_hit": "cache, fresh hit",
    "cache_miss": "cache, miss (call + store)",
    "fallback": "fallback, success path",
}
IMPL_ORDER = [
    "service_fn",
    "ours",
    "ours_prometheus",
    "ours_deadline",
    "ours_percentile",
    "tower_resilience",
    "governor",
    "governor_std_clock",
    "failsafe",
    "failsafe_consecutive",
    "tower",
    "tower_concurrency_limit",
]
COLORS = {"1t": "#2b6cb0", "2t": "#dd6b20"}


def load(root: Path, since: float):
    """{(group, impl, threads): ns} from every */new/estimates.json written since `since`."""
    out = {}
    for est in root.glob("*/*/*/new/estimates.json"):
        if est.stat().st_mtime < since:
            continue
        meta = json.loads((est.parent / "benchmark.json").read_text())
        data = json.loads(est.read_text())
        # criterion's headline figure is the slope when it sampled linearly, else the mean.
        point = (data.get("slope") or data["mean"])["point_estimate"]
        out[(meta["group_id"], meta["function_id"], meta["value_str"])] = point
    return out


def order_key(key):
    group, impl, threads = key
    g = GROUPS.index(group) if group in GROUPS else len(GROUPS)
    i = IMPL_ORDER.index(impl) if impl in IMPL_ORDER else len(IMPL_ORDER)
    return (g, group, i, impl, threads)


def fmt_ns(v):
    return f"{v:.1f}" if v < 100 else f"{v:.0f}"


def table(results):
    rows = []
    for key in sorted(results, key=order_key):
        group, impl, threads = key
        ns = results[key]
        ours = results.get((group, "ours", threads))
        ratio = "" if ours is None else f"{ns / ours:.2f}x"
        one = results.get((group, impl, "1t"))
        contention = f"{ns / one:.2f}x" if threads == "2t" and one else ""
        rows.append((f"{group}/{impl}/{threads}", fmt_ns(ns), ratio, contention))
    head = ("case", "ns per call", "ratio to ours", "2t / 1t")
    return head, rows


def print_table(head, rows, out):
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]

    def line(r):
        cells = (str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
        return "| " + " | ".join(cells) + " |"

    print(line(head), file=out)
    print("|" + "|".join("-" * (w + 2) if i == 0 else "-" * (w + 1) + ":" for i, w in enumerate(widths)) + "|", file=out)
    for r in rows:
        print(line(r), file=out)


def targets(results):
    """The targets of issue 6, each as (text, measured, met) — met is None when a figure is missing."""
    get = results.get
    out = []

    def ratio(a, b):
        x, y = get(a), get(b)
        return None if x is None or y is None else x / y

    for threads in ("1t", "2t"):
        r = ratio(("breaker_closed", "ours", threads), ("breaker_closed", "tower_resilience", threads))
        out.append((f"closed breaker <= 0.2x tower-resilience's ({threads})", r, None if r is None else r <= 0.2))
        r = ratio(("breaker_closed", "ours", threads), ("breaker_closed", "failsafe", threads))
        out.append((f"closed breaker <= failsafe's, default policy ({threads})", r, None if r is None else r <= 1.0))
        r = ratio(("breaker_closed", "ours", threads), ("breaker_closed", "failsafe_consecutive", threads))
        out.append((f"closed breaker <= failsafe's, consecutive-failures policy ({threads})", r, None if r is None else r <= 1.0))
        r = ratio(("stack", "ours", threads), ("stack", "tower_resilience", threads))
        out.append((f"stack <= 0.3x tower-resilience's ({threads})", r, None if r is None else r <= 0.3))
    for group in GROUPS[1:]:
        for impl in ("ours", "ours_prometheus", "ours_deadline"):
            r = ratio((group, impl, "2t"), (group, impl, "1t"))
            if r is not None:
                out.append((f"{group}/{impl}: 2 threads at most double 1 thread", r, r <= 2.0))
    return out


def svg(results, path: Path):
    """Horizontal bars on a log axis: one row per (group, implementation), 1t and 2t bars."""
    rows = []
    for group in GROUPS:
        impls = sorted({k[1] for k in results if k[0] == group}, key=lambda i: order_key((group, i, "")))
        if impls:
            rows.append(("group", group, None))
            rows.extend(("impl", group, i) for i in impls)
    values = [v for v in results.values() if v > 0]
    if not rows or not values:
        return
    lo = 10 ** math.floor(math.log10(min(values)))
    hi = 10 ** math.ceil(math.log10(max(values)))
    left, right, top, row_h, bar_h = 260, 90, 56, 26, 9
    width = 980
    plot_w = width - left - right
    height = top + row_h * len(rows) + 40

    def x(v):
        return left + plot_w * (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))

    e = []
    e.append(f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">')
    e.append(f'<rect width="{width}" height="{height}" fill="white"/>')
    e.append(f'<text x="{left}" y="22" font-size="15" font-weight="bold">Per-call overhead, ns (log scale; lower is better)</text>')
    for j, (t, c) in enumerate(COLORS.items()):
        label = "1 thread" if t == "1t" else "2 threads sharing one service (per-thread time per call)"
        e.append(f'<rect x="{left + j * 110}" y="32" width="12" height="10" fill="{c}"/>')
        e.append(f'<text x="{left + j * 110 + 16}" y="41">{label}</text>')
    decade = lo
    while decade <= hi * 1.0001:
        gx = x(decade)
        e.append(f'<line x1="{gx:.1f}" y1="{top - 4}" x2="{gx:.1f}" y2="{height - 30}" stroke="#ddd"/>')
        e.append(f'<text x="{gx:.1f}" y="{height - 14}" text-anchor="middle" fill="#555">{decade:g}</text>')
        decade *= 10
    y = top
    for kind, group, impl in rows:
        if kind == "group":
            e.append(f'<text x="8" y="{y + 17}" font-weight="bold">{LABELS.get(group, group)}</text>')
        else:
            weight = "bold" if impl.startswith("ours") else "normal"
            e.append(f'<text x="{left - 8}" y="{y + 16}" text-anchor="end" font-weight="{weight}">{impl}</text>')
            for j, t in enumerate(("1t", "2t")):
                v = results.get((group, impl, t))
                if v is None:
                    continue
                by = y + 4 + j * (bar_h + 1)
                e.append(f'<rect x="{left}" y="{by}" width="{max(x(v) - left, 1):.1f}" height="{bar_h}" fill="{COLORS[t]}"/>')
                e.append(f'<text x="{x(v) + 4:.1f}" y="{by + bar_h - 1}" font-size="10" fill="#333">{fmt_ns(v)}</text>')
        y += row_h
    e.append("</svg>")
    path.write_text("\n".join(e) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("root", type=Path)
    ap.add_argument("--since", type=float, default=0.0, help="ignore estimates older than this epoch")
    ap.add_argument("--md", type=Path)
    ap.add_argument("--svg", type=Path)
    args = ap.parse_args()
    results = load(args.root, args.since)
    if not results:
        sys.exit(f"no criterion estimates under {args.root}")
    head, rows = table(results)
    outs = [sys.stdout]
    md = open(args.md, "w") if args.md else None
    if md:
        outs.append(md)
    for out in outs:
        print_table(head, rows, out)
        print(file=out)
        print("| target | measured | met |", file=out)
        print("|---|---:|:---:|", file=out)
        for text, measured, met in targets(results):
            m = "n/a" if measured is None else f"{measured:.2f}x"
            ok = "n/a" if met is None else ("yes" if met else "**no**")
            print(f"| {text} | {m} | {ok} |", file=out)
    if md:
        md.close()
    if args.svg:
        svg(results, args.svg)
        print(f"\nchart: {args.svg}")


if __name__ == "__main__":
    main()
