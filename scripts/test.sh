#!/usr/bin/env bash
# Every test qgpu has, from a fresh Debian machine: installs what is missing (lavapipe when no
# Vulkan device exists; a Python virtual environment with the `openai` package for the server
# test; the wasm target, wasm-bindgen-cli, Chromium and playwright-core for the browser test),
# fetches the default model and MiniLM for the end-to-end tests, then runs them.
# With CI=true, GPU and model tests fail rather than skip when no adapter or model is found.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
scripts/setup.sh
# The server test talks to `qgpu serve` through the official `openai` package, pinned; the
# browser test splits a model with gguf-py.
. scripts/python-env.sh
# A fresh clone builds once: no incremental caches, which only pay when rebuilding.
[ "${CI:-}" = true ] && export CARGO_INCREMENTAL=0
# One native build serves everything: the test binaries and the qgpu binary they run (a separate
# release build would compile every dependency a second time, in time and in disk).
cargo test --locked --lib --bins --tests --no-run
QGPU_BIN="${CARGO_TARGET_DIR:-target}/debug/qgpu"
export QGPU_BIN
"$QGPU_BIN" info
"$QGPU_BIN" fetch
"$QGPU_BIN" fetch minilm
"$QGPU_BIN" fetch gemma3
# Library, binary and integration tests (benches are timed separately: `cargo bench`).
cargo test --locked --lib --bins --tests
# The wasm package in headless Chromium: kernel self-test, the reference model, the demo page.
scripts/test-browser.sh
