#!/usr/bin/env bash
# The long crash-cycle run: the test in crates/p2pctl/tests/crash_cycle.rs
# with many more kills. alice sends bob messages over their peer session
# and broadcasts while `kill -9` hits the server or bob's p2pd at random
# moments (each restarted at once); at the end every acknowledged message
# and broadcast must be in bob's inbox exactly once, in order.
#
# Usage: scripts/crash-cycle.sh [CYCLES]          (default 500, or $CYCLES)
#
# Environment:
#   CYCLES=N          kills (the suite's run does 10)
#   SEED=N            replay a run: every run prints its CRASH_SEED
#   PROFILE=release   build and run optimised binaries (default: dev)
#   CARGO_TARGET_DIR  where to build (default: target)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

CYCLES=${1:-${CYCLES:-500}}
case "$CYCLES" in '' | *[!0-9]*) echo "crash-cycle: CYCLES must be a number, not '$CYCLES'" >&2; exit 2 ;; esac
PROFILE_ARGS=()
case "${PROFILE:-dev}" in
  dev) ;;
  release) PROFILE_ARGS=(--release) ;;
  *) echo "crash-cycle: PROFILE is dev or release, not '$PROFILE'" >&2; exit 2 ;;
esac

# The test starts the real binaries from the target dir: build them first.
cargo build "${PROFILE_ARGS[@]}" --bins --quiet
export CRASH_CYCLES=$CYCLES
if [ -n "${SEED:-}" ]; then
  export CRASH_SEED=$SEED
fi
exec cargo test "${PROFILE_ARGS[@]}" --quiet -p p2pctl --test crash_cycle -- --nocapture
