#!/usr/bin/env bash
# Every test qgpu has, from a fresh Debian machine: installs what is missing, then runs them.
# With CI=true, GPU tests fail rather than skip when no adapter is found.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
scripts/setup.sh
cargo build --release --locked
./target/release/qgpu info
cargo test --locked
