#!/usr/bin/env bash
# Runs every cargo-fuzz target for SECONDS each (default 20) on its kept
# corpus (fuzz/corpus/<target>), installing cargo-fuzz when missing. New
# inputs found go to a scratch copy, so a run never edits the repository;
# a crash fails the run and leaves its input in fuzz/artifacts/.
#
#   ops/fuzz.sh [SECONDS] [TARGET...]
#
# The toolchain here is stable only; libFuzzer's instrumentation needs
# nightly flags, which RUSTC_BOOTSTRAP=1 allows on stable.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_EACH=${1:-20}
shift || true
TOOLS=${STRATA_TOOLS_DIR:-${HOME:-/root}/.cache/strata-tools}
export PATH="$TOOLS/bin:$PATH"
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${HOME:-/root}/.cache/strata-target}/fuzz"

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz 0.13.2 (cargo install, about a minute)" >&2
  cargo install cargo-fuzz --version 0.13.2 --locked --root "$TOOLS" --quiet
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cd fuzz && cargo fuzz list)
fi

cd fuzz
cargo fuzz build --release --debug-assertions
scratch=$(mktemp -d /tmp/strata-fuzz.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
for target in "${targets[@]}"; do
  mkdir -p "$scratch/$target"
  echo "fuzz: $target for ${SECONDS_EACH}s" >&2
  # -rss_limit_mb and -timeout turn memory bombs and hangs into failures.
  if ! cargo fuzz run --release --debug-assertions "$target" "$scratch/$target" "corpus/$target" -- \
    -max_total_time="$SECONDS_EACH" -rss_limit_mb=1024 -timeout=10 -max_len=65536 \
    -print_final_stats=1 >"$scratch/$target.log" 2>&1; then
    tail -n 40 "$scratch/$target.log" >&2
    echo "fuzz: $target FAILED (its input is in fuzz/artifacts/$target)" >&2
    exit 1
  fi
  grep -E '^stat::number_of_executed_units|^Done' "$scratch/$target.log" >&2 || true
done
echo "fuzz: ${#targets[@]} targets ran ${SECONDS_EACH}s each, no failure" >&2
