#!/usr/bin/env bash
# The test command: every unit, integration, property and doc test of the workspace.
# PostgreSQL store tests run too when TEST_DATABASE_URL points at a server (.ci/run sets one up).
set -euo pipefail
cd "$(dirname "$0")"
cargo test --workspace --all-features "$@"
