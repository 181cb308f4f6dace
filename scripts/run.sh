#!/usr/bin/env bash
# The main job, from a fresh Debian machine: installs what is missing, builds, fetches the
# default model (SmolLM2-135M-Instruct Q4_1) into the cache, and answers a prompt on the GPU.
# Usage: scripts/run.sh ["your prompt"] [more qgpu run flags]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
scripts/setup.sh
cargo build --release --locked --quiet
prompt="${1:-Give three tips for staying focused while studying.}"
shift || true
exec "${CARGO_TARGET_DIR:-target}/release/qgpu" run --chat --prompt "$prompt" --stats "$@"
