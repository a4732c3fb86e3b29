#!/usr/bin/env bash
# Every offline check of deploy/: no cluster, no Docker, no network but PyPI (once, for the
# tools in deploy/requirements.txt, installed into target/deploy-venv).
#
#   deploy/check.sh                       scrape = the snapshots in deploy/prometheus/testdata
#   SCRAPE="http://127.0.0.1:5001/metrics http://127.0.0.1:5002/metrics" deploy/check.sh
#   LOGS=".run/logs/user-service.log .run/logs/order-service.log" deploy/check.sh
#
#  1. compose.yaml against the compose specification's JSON schema (vendored by
#     check-jsonschema), plus what a schema cannot see (depends_on targets and conditions,
#     healthchecks, loopback-only ports, tagged images)
#  2. the shipped resilience.toml is order-service's built-in DEFAULT_STACK
#  3. the Dockerfile: tagged bases, a HEALTHCHECK on /health/live, a non-root runtime user
#  4. the Helm chart rendered and linted by Helm's SDK, with the default values and with every
#     optional object on; every object against the Kubernetes schemas (kubernetes-validate,
#     strict); a lint for the usual mistakes (latest tags, probes, requests and limits,
#     non-root, anti-affinity, HPA and PDB per Deployment)
#  5. promtool check config, check rules, test rules (rules_test.yml)
#  6. every metric and label named by the rules and the Grafana dashboard is in the scrape
#  7. deploy/logging/vector.toml: Vector cannot be installed from a registry here, so not
#     `vector validate`: the file parses as TOML, every `inputs` names a source or transform,
#     and every field its remap and sink templates read is in the services' JSON lines (LOGS:
#     captured lines in deploy/logging/testdata, or the live run.sh logs)
# Needs: python3-venv, promtool (Debian's prometheus package). Output: target/deploy/.
set -uo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=venv.sh
source deploy/venv.sh || exit 1
OUT=target/deploy
mkdir -p "$OUT"
SCRAPE=${SCRAPE:-deploy/prometheus/testdata/user-service.prom deploy/prometheus/testdata/order-service.prom}
LOGS=${LOGS:-deploy/logging/testdata/user-service.log deploy/logging/testdata/order-service.log}
passed=0 failed=0
check() {
  local what=$1
  shift
  printf '\n== %s\n' "$what"
  if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAILED: $what"; fi
}
dockerfile() {
  local ok=0
  awk '/^FROM /{on = /AS service$/; hc = 0} on && /^HEALTHCHECK/ {hc = 1}
       on && hc && /CMD .*\/health\/live/ {found = 1} END {exit !found}' Dockerfile ||
    { echo "  - the service stage has no HEALTHCHECK on /health/live"; ok=1; }
  grep -Eq '^USER [1-9][0-9]*' Dockerfile || { echo "  - the runtime stage does not switch to a non-root USER"; ok=1; }
  # Every FROM that is not an earlier stage names a tagged image.
  awk '/^FROM /{img = $2; if (!(img in stage) && (img !~ /:/ || img ~ /:latest$/)) bad = 1
       if ($3 == "AS") stage[$4] = 1} END {exit bad}' Dockerfile ||
    { echo "  - a base image is untagged or latest"; ok=1; }
  echo "Dockerfile: checked"
  return $ok
}
render() { # NAME [VALUES]
  "$PY" deploy/check.py helm deploy/helm/resilience "$OUT/helm-$1.yaml" ${2:+--values "$2"} &&
    "$VENV/bin/kubernetes-validate" --strict --quiet "$OUT/helm-$1.yaml" &&
    "$PY" deploy/check.py lint "$OUT/helm-$1.yaml"
}
scrapes=()
for s in $SCRAPE; do scrapes+=(--scrape "$s"); done

check "compose: schema" "$VENV/bin/check-jsonschema" --builtin-schema vendor.compose-spec deploy/compose.yaml
check "compose: depends_on, healthchecks, ports, tags" "$PY" deploy/check.py compose deploy/compose.yaml
check "resilience.toml is order-service's DEFAULT_STACK" \
  "$PY" deploy/check.py stack deploy/helm/resilience/files/resilience.toml examples/order-service/src/config.rs
check "Dockerfile: tagged bases, HEALTHCHECK, non-root" dockerfile
check "helm: default values (render, helm lint, kubernetes-validate, lint)" render default
check "helm: every optional object on" render full deploy/helm/ci/full-values.yaml
check "promtool check config" promtool check config deploy/prometheus/prometheus.yml
check "promtool check rules" promtool check rules deploy/prometheus/rules.yml
check "promtool test rules" promtool test rules deploy/prometheus/rules_test.yml
check "PromQL names against the scrape ($SCRAPE)" \
  "$PY" deploy/check.py promql deploy/prometheus/rules.yml deploy/grafana/dashboards/*.json "${scrapes[@]}"
# shellcheck disable=SC2086 # LOGS is a list of paths
check "vector.toml: TOML, topology, the fields the services write ($LOGS)" \
  "$PY" deploy/check.py vector deploy/logging/vector.toml $LOGS

printf '\ndeploy: %d passed, %d failed\n' "$passed" "$failed"
[ "$failed" = 0 ]
