"""Offline checks behind deploy/check.sh, one subcommand each.

    promql  RULES DASHBOARD... --scrape FILE|URL...   every metric and label an expression
                                                     names is in a real scrape
    helm    CHART OUT [--values FILE]...              render the chart with Helm's SDK, lint it
    lint    MANIFEST...                               the usual Kubernetes mistakes
    compose FILE                                      what the compose schema cannot see
    stack   TOML RUST_SOURCE                          the shipped resilience config is the
                                                     service's built-in default
    vector  TOML LOG...                               the Vector config's topology, and every
                                                     field it reads is in the services' lines

Each prints what it checked and exits 1 naming every problem it found.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

# Labels Prometheus adds to every scraped series (the `service` one by relabeling, see
# deploy/prometheus/prometheus.yml), and metrics it makes itself.
TARGET_LABELS = {"job", "instance", "service"}
SYNTHETIC_METRICS = {"up", "scrape_duration_seconds", "scrape_samples_scraped", "ALERTS"}
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="(?:[^"\\]|\\.)*"')


def fail(problems: list[str]) -> int:
    for p in problems:
        print(f"  - {p}")
    return 1 if problems else 0


# --- promql -----------------------------------------------------------------------------------


def read_scrape(source: str) -> str:
    if source.startswith("http://"):
        host = urllib.parse.urlsplit(source).hostname or ""
        if not (host.startswith("127.") or host in ("localhost", "::1")):
            raise SystemExit(f"scrape {source}: only loopback URLs are read")
        with urllib.request.urlopen(source, timeout=5) as r:  # noqa: S310 (loopback only)
            return r.read().decode()
    return Path(source).read_text()


def scraped_series(texts: list[str]) -> dict[str, set[str]]:
    """Metric name -> the label names seen on it, from Prometheus text expositions."""
    series: dict[str, set[str]] = {}
    for text in texts:
        for line in text.splitlines():
            m = SAMPLE.match(line)
            if m:
                labels = series.setdefault(m.group(1), set())
                labels.update(LABEL.findall(m.group(2) or ""))
    return series


def dashboard_exprs(path: Path) -> list[tuple[str, str]]:
    """(where, expr) for every target of every panel; Grafana's variables become plain values."""
    out = []
    doc = json.loads(path.read_text())
    panels = list(doc.get("panels", []))
    while panels:
        panel = panels.pop()
        panels.extend(panel.get("panels", []))
        for t in panel.get("targets", []):
            expr = t.get("expr", "")
            expr = re.sub(r"\$__(rate_interval|interval|range)", "5m", expr)
            expr = re.sub(r"\$\{?[a-zA-Z_][a-zA-Z0-9_]*\}?", "x", expr)
            out.append((f"{path.name}: panel {panel.get('title')!r}", expr))
    for v in doc.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            query = v.get("query")
            query = query.get("query", "") if isinstance(query, dict) else query or ""
            m = re.fullmatch(r"label_values\((.*),\s*[a-zA-Z_]+\)", query.strip())
            if m:
                out.append((f"{path.name}: variable {v.get('name')!r}", m.group(1)))
    return out


def rules_exprs(path: Path) -> tuple[list[tuple[str, str]], set[str]]:
    """(where, expr) for every rule, and the names the recording rules define."""
    out, recorded = [], set()
    for group in yaml.safe_load(path.read_text())["groups"]:
        for rule in group["rules"]:
            name = rule.get("alert") or rule.get("record")
            out.append((f"{path.name}: {name}", rule["expr"]))
            if "record" in rule:
                recorded.add(rule["record"])
    return out, recorded


def selectors(expr):
    """Every vector selector in a parsed expression, and every `by`/`on` label list."""
    import promql_parser as pp

    found, grouping = [], []

    def visit(node):
        if isinstance(node, pp.VectorSelector):
            found.append(node)
        elif isinstance(node, pp.MatrixSelector):
            visit(node.vector_selector)
        elif isinstance(node, pp.AggregateExpr):
            if node.modifier is not None and node.modifier.type == pp.AggModifierType.By:
                grouping.extend(node.modifier.labels)
            visit(node.expr)
            if node.param is not None:
                visit(node.param)
        elif isinstance(node, pp.BinaryExpr):
            m = node.modifier
            if m is not None and m.matching is not None and m.matching.type == pp.LabelModifierType.Include:
                grouping.extend(m.matching.labels)
            visit(node.lhs)
            visit(node.rhs)
        elif isinstance(node, pp.Call):
            for a in node.args:
                visit(a)
        elif isinstance(node, (pp.ParenExpr, pp.UnaryExpr, pp.SubqueryExpr)):
            visit(node.expr)

    visit(expr)
    return found, grouping


def cmd_promql(args) -> int:
    import promql_parser as pp

    series = scraped_series([read_scrape(s) for s in args.scrape])
    exprs, recorded = rules_exprs(Path(args.rules))
    for d in args.dashboards:
        exprs += dashboard_exprs(Path(d))
    known_labels = set().union(*series.values()) | TARGET_LABELS | {"le"}
    problems, names = [], set()
    for where, text in exprs:
        try:
            tree = pp.parse(text)
        except Exception as e:  # the parser raises a plain ValueError/RuntimeError
            problems.append(f"{where}: does not parse: {e}")
            continue
        found, grouping = selectors(tree)
        for sel in found:
            name = sel.name
            names.add(name)
            if name in recorded:
                labels = known_labels
            elif name in SYNTHETIC_METRICS:
                labels = TARGET_LABELS
            elif name in series:
                labels = series[name] | TARGET_LABELS
            else:
                problems.append(f"{where}: metric {name} is not in the scrape")
                continue
            for m in sel.matchers.matchers:
                if m.name not in labels:
                    problems.append(f"{where}: {name} has no label {m.name!r}")
        for label in grouping:
            if label not in known_labels:
                problems.append(f"{where}: groups by {label!r}, a label no series has")
    print(f"promql: {len(exprs)} expressions, {len(names)} metric names, checked against "
          f"{len(series)} scraped series names")
    return fail(problems)


# --- helm -------------------------------------------------------------------------------------


def cmd_helm(args) -> int:
    import helm_python as helm

    values: dict = {}
    for f in args.values or []:
        values = deep_merge(values, yaml.safe_load(Path(f).read_text()) or {})
    problems = []
    report = helm.lint(args.chart, values, strict=True)
    for m in report.get("messages", []):
        if m["severity"] >= 2:
            problems.append(f"helm lint: {m['path']}: {m['error']}")
    problems += [f"helm lint: {e}" for e in report.get("errors", [])]
    with helm.Chart.load(args.chart) as chart:
        rendered = chart.render(values, name="resilience", namespace="resilience", is_install=True)
    docs = [text for path, text in sorted(rendered.items()) if path.endswith((".yaml", ".yml"))]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n---\n".join(docs))
    count = sum(1 for d in yaml.safe_load_all(out.read_text()) if d)
    print(f"helm: rendered {count} objects to {out} (Helm SDK {helm.helm_sdk_version()})")
    return fail(problems)


def deep_merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


# --- lint -------------------------------------------------------------------------------------

WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet"}


def lint_workload(where: str, obj: dict, services: dict, problems: list[str]) -> None:
    spec = obj["spec"]["template"]["spec"]
    pod_ctx = spec.get("securityContext", {})
    if not spec.get("affinity", {}).get("podAntiAffinity"):
        problems.append(f"{where}: no pod anti-affinity")
    if "terminationGracePeriodSeconds" not in spec:
        problems.append(f"{where}: no terminationGracePeriodSeconds")
    for c in spec.get("containers", []):
        at = f"{where} container {c['name']}"
        image = c.get("image", "")
        tag = image.rsplit("/", 1)[-1].partition(":")[2]
        if "@sha256:" not in image and tag in ("", "latest"):
            problems.append(f"{at}: image {image!r} has no tag or uses latest")
        for probe in ("readinessProbe", "livenessProbe"):
            if probe not in c:
                problems.append(f"{at}: no {probe}")
        res = c.get("resources", {})
        for kind in ("requests", "limits"):
            for r in ("cpu", "memory"):
                if r not in res.get(kind, {}):
                    problems.append(f"{at}: no {kind}.{r}")
        ctx = {**pod_ctx, **c.get("securityContext", {})}
        if not ctx.get("runAsNonRoot") or ctx.get("runAsUser") == 0:
            problems.append(f"{at}: not forced to run as non-root")
        if ctx.get("privileged") or ctx.get("allowPrivilegeEscalation", True):
            problems.append(f"{at}: may escalate privileges")
    labels = obj["spec"]["template"]["metadata"].get("labels", {})
    if not any(all(labels.get(k) == v for k, v in sel.items()) for sel in services.values()):
        problems.append(f"{where}: no Service selects its pods")


def cmd_lint(args) -> int:
    objs = []
    for f in args.manifests:
        objs += [(f, d) for d in yaml.safe_load_all(Path(f).read_text()) if d]
    services = {o["metadata"]["name"]: o["spec"].get("selector", {}) for _, o in objs if o["kind"] == "Service"}
    kinds: dict[str, set[str]] = {}
    problems: list[str] = []
    for f, o in objs:
        kinds.setdefault(o["kind"], set()).add(o["metadata"]["name"])
    for f, o in objs:
        where = f"{o['kind']}/{o['metadata']['name']}"
        if o["kind"] in WORKLOADS:
            lint_workload(where, o, services, problems)
        if o["kind"] == "HorizontalPodAutoscaler":
            target = o["spec"]["scaleTargetRef"]["name"]
            if target not in kinds.get("Deployment", set()):
                problems.append(f"{where}: scales {target}, which is not rendered")
    for d in kinds.get("Deployment", set()):
        for kind in ("PodDisruptionBudget", "HorizontalPodAutoscaler"):
            if d not in kinds.get(kind, set()):
                problems.append(f"Deployment/{d}: no {kind}")
    print(f"lint: {len(objs)} objects ({', '.join(f'{len(v)} {k}' for k, v in sorted(kinds.items()))})")
    return fail(problems)


# --- compose and the resilience config ----------------------------------------------------------


def cmd_compose(args) -> int:
    doc = yaml.safe_load(Path(args.file).read_text())
    services = doc["services"]
    problems = []
    for name, svc in services.items():
        if "healthcheck" not in svc:
            problems.append(f"{name}: no healthcheck")
        if not svc.get("networks"):
            problems.append(f"{name}: on no named network")
        for dep, cond in (svc.get("depends_on") or {}).items():
            if dep not in services:
                problems.append(f"{name}: depends on {dep}, which is not a service")
            elif cond.get("condition") != "service_healthy":
                problems.append(f"{name}: depends on {dep} without condition service_healthy")
        for port in svc.get("ports", []):
            if not str(port).startswith("127.0.0.1:"):
                problems.append(f"{name}: port {port} is published beyond the host's loopback")
        image = svc.get("image", "")
        if image.partition(":")[2] in ("", "latest"):
            problems.append(f"{name}: image {image!r} has no tag or uses latest")
    print(f"compose: {len(services)} services ({', '.join(services)})")
    return fail(problems)


def cmd_stack(args) -> int:
    import tomllib

    shipped = tomllib.loads(Path(args.toml).read_text())
    m = re.search(r'DEFAULT_STACK: &str = r#"(.*?)"#;', Path(args.rust).read_text(), re.S)
    if not m:
        return fail([f"{args.rust}: no DEFAULT_STACK"])
    problems = [] if tomllib.loads(m.group(1)) == shipped else [
        f"{args.toml} differs from DEFAULT_STACK in {args.rust}"]
    print(f"stack: {args.toml} against {args.rust}'s DEFAULT_STACK")
    return fail(problems)


# --- vector -----------------------------------------------------------------------------------

# What Vector's file and stdin sources put on an event before the remap runs (`timestamp` too,
# but the remap reads the service's own, so it is not listed here).
VECTOR_FIELDS = {"message", "file", "host", "source_type"}
# In every JSON line a service writes (`fields.message` in most, not all: an event may have
# none, as the OpenTelemetry SDK's own do).
ALWAYS = {"timestamp", "level", "target", "fields"}
# In the lines written while a request is handled; the config must name each.
IDS = {"trace_id": 32, "span_id": 16, "request_id": None}
VRL_STRING = re.compile(r"""r?'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|#[^\n]*""")
VRL_PATH = re.compile(r"(?<![\w\]\)])\.([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)")
VRL_ASSIGN = re.compile(r"^\s*\.([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\s*=(?!=)(.*)$")
TEMPLATE = re.compile(r"\{\{\s*\.?([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\s*\}\}")


def vrl_reads(source: str) -> tuple[list[str], set[str]]:
    """The event paths a remap program reads before assigning them, in order, and those it
    assigns. String literals and comments are blanked first."""
    reads: list[str] = []
    assigned: set[str] = set()
    for line in VRL_STRING.sub('""', source).splitlines():
        m = VRL_ASSIGN.match(line)
        rhs = m.group(2) if m else line
        for path in VRL_PATH.findall(rhs):
            if path not in assigned and path not in reads:
                reads.append(path)
        if m:
            assigned.add(m.group(1))
    return reads, assigned


def has_path(obj, path: str) -> bool:
    for part in path.split("."):
        if not isinstance(obj, dict) or part not in obj:
            return False
        obj = obj[part]
    return True


def cmd_vector(args) -> int:
    import tomllib

    problems: list[str] = []
    config = tomllib.loads(Path(args.toml).read_text())
    sources = config.get("sources", {})
    transforms = config.get("transforms", {})
    sinks = config.get("sinks", {})
    if not sources or not sinks:
        problems.append(f"{args.toml}: needs at least one source and one sink")
    producers = set(sources) | set(transforms)
    consumed: set[str] = set()
    for kind, table in (("transforms", transforms), ("sinks", sinks)):
        for name, c in table.items():
            if "type" not in c:
                problems.append(f"{kind}.{name}: no type")
            if not c.get("inputs"):
                problems.append(f"{kind}.{name}: no inputs")
            for i in c.get("inputs", []):
                consumed.add(i)
                if i not in producers:
                    problems.append(f"{kind}.{name}: input {i!r} is no source or transform")
    for name in sorted(producers - consumed):
        problems.append(f"{name}: nothing reads it")
    if not any(s.get("type") == "file" and s.get("include") for s in sources.values()):
        problems.append("no file source: the run.sh log files are not read")

    reads: list[str] = []
    assigned: set[str] = set()
    for name, t in transforms.items():
        if t.get("type") == "remap":
            r, a = vrl_reads(t.get("source", ""))
            reads += [p for p in r if p not in reads]
            assigned |= a
    templates = {m for c in sinks.values() for m in TEMPLATE.findall(json.dumps(c))}
    needed = [p for p in reads if p not in VECTOR_FIELDS]
    needed += sorted(t for t in templates if t not in assigned and t not in needed)
    for field in IDS:
        if field not in needed:
            problems.append(f"{args.toml}: never reads {field}, which every request's lines carry")

    lines = []
    for log in args.logs:
        for n, text in enumerate(Path(log).read_text().splitlines(), 1):
            if text.startswith("{"):
                try:
                    lines.append((f"{log}:{n}", json.loads(text)))
                except json.JSONDecodeError as e:
                    problems.append(f"{log}:{n}: not JSON ({e})")
    if not lines:
        problems.append(f"no JSON line in {' '.join(args.logs)}")
    for where, line in lines:
        for field in sorted(ALWAYS):
            if not has_path(line, field):
                problems.append(f"{where}: no {field}")
        for field, hex_len in IDS.items():
            value = line.get(field)
            if value is not None and hex_len and not re.fullmatch(f"[0-9a-f]{{{hex_len}}}", str(value)):
                problems.append(f"{where}: {field} {value!r} is not {hex_len} hex digits")
    for path in needed:
        if not any(has_path(line, path) for _, line in lines):
            problems.append(f"{args.toml} reads .{path}, which no line of the logs has")
    print(f"vector: {args.toml}: {len(producers)} sources and transforms, {len(sinks)} sinks; "
          f"reads {', '.join('.' + p for p in needed)}; against {len(lines)} JSON lines")
    return fail(problems)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("promql")
    p.add_argument("rules")
    p.add_argument("dashboards", nargs="*")
    p.add_argument("--scrape", action="append", required=True)
    p = sub.add_parser("helm")
    p.add_argument("chart")
    p.add_argument("out")
    p.add_argument("--values", action="append")
    p = sub.add_parser("lint")
    p.add_argument("manifests", nargs="+")
    p = sub.add_parser("compose")
    p.add_argument("file")
    p = sub.add_parser("stack")
    p.add_argument("toml")
    p.add_argument("rust")
    p = sub.add_parser("vector")
    p.add_argument("toml")
    p.add_argument("logs", nargs="+")
    args = ap.parse_args()
    commands = {"promql": cmd_promql, "helm": cmd_helm, "lint": cmd_lint, "compose": cmd_compose,
                "stack": cmd_stack, "vector": cmd_vector}
    return commands[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
