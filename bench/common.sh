# Sourced by the service benchmarks (load.sh, group_commit.sh, scaling.sh): the checks each
# makes before it starts anything. Set BENCH to the script's name first.

say() { printf '%s: %s\n' "$BENCH" "$*" >&2; }

# require_tools TOOL...: exit 2 naming the first one missing.
require_tools() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { say "needs $tool (apt-get install -y wrk jq curl python3)"; exit 2; }
  done
}

# require_loopback ADDR...: exit 2 unless every address is on 127.0.0.0/8 (loads only ever
# target this machine).
require_loopback() {
  local addr
  for addr in "$@"; do
    case "$addr" in 127.*) ;; *) say "$addr is not on loopback"; exit 2 ;; esac
  done
}
