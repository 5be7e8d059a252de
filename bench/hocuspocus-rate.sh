#!/usr/bin/env bash
# The Hocuspocus route's rate with the real @hocuspocus/provider: starts
# the release daemon on a fresh data directory, makes a project, and runs
# ops/interop/hocuspocus-rate.mjs RUNS times (N providers x EDITS edits).
#
#   bench/hocuspocus-rate.sh [N] [EDITS] [RUNS]    (DAEMON_BIN=path: another strata binary)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${HOME:-/root}/.cache/strata-target}"
BIN=${DAEMON_BIN:-$CARGO_TARGET_DIR/release/strata}
[ -x "$BIN" ] || cargo build --release --locked --bin strata
[ -d ops/interop/node_modules ] || (cd ops/interop && npm ci --no-audit --no-fund --loglevel=error >/dev/null)

KEY=bench-hocuspocus-admin-key-$RANDOM$RANDOM
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
DATA=$(mktemp -d /tmp/strata-hocuspocus-rate.XXXXXX)
STRATA_DATA_DIR=$DATA STRATA_LISTEN=127.0.0.1:$PORT STRATA_ADMIN_KEY=$KEY STRATA_LOG=warn "$BIN" serve &
DAEMON=$!
trap 'kill $DAEMON 2>/dev/null; wait $DAEMON 2>/dev/null; rm -rf "$DATA"' EXIT
API=http://127.0.0.1:$PORT
for _ in $(seq 100); do curl -sf "$API/healthz" >/dev/null && break; sleep 0.1; done
post() { curl -sf -X POST -H "Authorization: Bearer $KEY" -H 'content-type: application/json' "$API$1" -d "$2" >/dev/null; }
post /v1/orgs '{"id":"bench","name":"bench"}'
post /v1/orgs/bench/projects '{"id":"rate","name":"rate"}'
for _ in $(seq "${3:-3}"); do
  node ops/interop/hocuspocus-rate.mjs "$API/v1/orgs/bench/projects/rate" "$KEY" "${1:-8}" "${2:-500}"
done
