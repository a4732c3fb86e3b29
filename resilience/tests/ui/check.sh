#!/usr/bin/env bash
# Each program in src/bin must fail to compile, with every line of its .expect file in the
# compiler's output.
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/../../../target}/ui"
status=0
for src in src/bin/*.rs; do
  name=$(basename "$src" .rs)
  ok=1
  if out=$(cargo check --quiet --bin "$name" --color never 2>&1); then
    echo "FAIL $name: compiled, but must not" >&2
    status=1
    continue
  fi
  while IFS= read -r want; do
    [ -z "$want" ] && continue
    if ! grep -qF -- "$want" <<<"$out"; then
      echo "FAIL $name: the compiler's output lacks: $want" >&2
      echo "$out" >&2
      ok=0
      status=1
    fi
  done <"src/bin/$name.expect"
  if [ "$ok" = 1 ]; then echo "ok   $name"; fi
done
exit "$status"
