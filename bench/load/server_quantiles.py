#!/usr/bin/env python3
"""Latency quantiles of one run from the service's own histogram.

usage: server_quantiles.py BEFORE.txt AFTER.txt METHOD ROUTE

BEFORE and AFTER are scrapes of /metrics around the run; the difference of the
`http_server_request_duration_seconds` buckets for METHOD and ROUTE (all statuses) is the
run's histogram. Prints {"count": n, "p50_ms": .., "p99_ms": .., "p999_ms": .., "statuses": {..}}
with quantiles interpolated linearly inside a bucket, as Prometheus's histogram_quantile does.

wrk's own percentiles are corrected for coordinated omission (it adds synthetic samples for
every response slower than the mean interval), so one 500 ms outlier becomes hundreds of
samples; the server's histogram counts each request once.
"""

import json
import math
import re
import sys

METRIC = "http_server_request_duration_seconds_bucket"
LINE = re.compile(r"^" + METRIC + r"\{(?P<labels>.*)\}\s+(?P<value>\S+)$")  # labels may hold "{id}"
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def buckets(path, method, route):
    """{(status, le): count} for METHOD and ROUTE."""
    out = {}
    try:
        text = open(path).read()
    except OSError:
        return out
    for line in text.splitlines():
        m = LINE.match(line)
        if not m:
            continue
        labels = dict(LABEL.findall(m.group("labels")))
        if labels.get("method") != method or labels.get("route") != route:
            continue
        le = math.inf if labels["le"] == "+Inf" else float(labels["le"])
        out[(labels.get("status", ""), le)] = float(m.group("value"))
    return out


def quantile(q, cumulative):
    """cumulative: sorted [(le, count)]; linear inside the bucket that holds rank q*total."""
    total = cumulative[-1][1]
    if total == 0:
        return None
    rank = q * total
    lower_le, lower_count = 0.0, 0.0
    for le, count in cumulative:
        if count >= rank:
            if math.isinf(le):
                return lower_le  # beyond the last finite bucket: its bound is all we know
            if count == lower_count:
                return le
            return lower_le + (le - lower_le) * (rank - lower_count) / (count - lower_count)
        lower_le, lower_count = le, count
    return cumulative[-1][0]


def main():
    before_path, after_path, method, route = sys.argv[1:5]
    before, after = buckets(before_path, method, route), buckets(after_path, method, route)
    per_le, statuses = {}, {}
    for (status, le), count in after.items():
        delta = count - before.get((status, le), 0.0)
        per_le[le] = per_le.get(le, 0.0) + delta
        if math.isinf(le) and delta:
            statuses[status] = int(delta)
    cumulative = sorted(per_le.items())
    result = {"count": int(cumulative[-1][1]) if cumulative else 0, "statuses": statuses}
    for name, q in (("p50_ms", 0.5), ("p99_ms", 0.99), ("p999_ms", 0.999)):
        v = quantile(q, cumulative) if cumulative else None
        result[name] = None if v is None else round(v * 1000, 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
