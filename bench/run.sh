#!/usr/bin/env bash
# Runs every workload of bench/RESULTS.md on a release build: embedded mode,
# then server mode on the test stack's PostgreSQL 15, then the AGE ratio on
# its PGlite server. One JSON line per workload goes to bench/out/results.jsonl.
#
#   bench/run.sh            everything
#   bench/run.sh embedded   only the embedded rows (no test stack)
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${HOME:-/root}/.cache/strata-target}"
cargo build --release --locked --bin strata --bin strata-bench
B=$CARGO_TARGET_DIR/release/strata-bench
mkdir -p bench/out
OUT=bench/out/results.jsonl
run() { echo "== strata-bench $*" >&2; "$B" --json "$OUT" "$@"; }

run startup
run get-entity
run get-entity --env STRATA_AUTH=off
run write
run pokec
run crdt
run big-graph --data-dir "${BIG_GRAPH_DIR:-/tmp/strata-bench-1m}" --reuse

[ "${1:-all}" = embedded ] && exit 0

export STRATA_STACK_DIR="${STRATA_STACK_DIR:-$(mktemp -d /tmp/strata-bench-stack.XXXXXX)}"
ops/test-stack.sh start >/dev/null
trap 'ops/test-stack.sh stop' EXIT
set -a
# shellcheck disable=SC1091
source "$STRATA_STACK_DIR/env"
set +a

run get-entity --postgres "$STRATA_TEST_PG_URL"
run write --postgres "$STRATA_TEST_PG_URL"
run pokec --postgres "$STRATA_TEST_PG_URL"
# Loading the 1M-entity graph through the API takes ~22 minutes here.
run big-graph --postgres "$STRATA_TEST_PG_URL"
# Each AGE run on a PGlite server no other client has used (PGlite keeps
# prepared-statement names across connections).
age_ratio() {
  ops/test-stack.sh start >/dev/null
  source "$STRATA_STACK_DIR/env"
  run --batch-size 100 --env STRATA_REQUEST_TIMEOUT_SECS=600 \
    age-ratio --pglite "$STRATA_TEST_PGLITE_URL" "$@"
}
age_ratio --entities 300 --relationships 3000 --queries 100
age_ratio --entities 1000 --relationships 8000 --queries 40
