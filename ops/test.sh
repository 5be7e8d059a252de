#!/usr/bin/env bash
# The README's test command: installs what the tests need, then runs them all.
#
# Today the suite needs only the Rust toolchain and the bundled SQLite; the
# server-mode stack (PostgreSQL, PGlite with AGE/pgvector, an S3 server) is
# started here by ops/test-stack.sh once those backends land.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${HOME:-/root}/.cache/strata-target}"

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is required (rustup toolchain)" >&2
  exit 1
fi

cargo test --locked --all-targets "$@"
