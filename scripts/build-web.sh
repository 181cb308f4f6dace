#!/usr/bin/env bash
# Builds the browser package into web/pkg: the library for wasm32 (release), wasm-bindgen's
# ES-module glue, then wasm-opt from npm's binaryen when it is available (Debian's binaryen 108
# produces modules that break in the browser, so only npm's is used). Installs the rust target
# and wasm-bindgen-cli (same version as the crate's wasm-bindgen) when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f scripts/env.sh ] && . scripts/env.sh
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
WB_VERSION=0.2.130

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
    rustup target add wasm32-unknown-unknown
fi
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$WB_VERSION" ]; then
    echo "installing wasm-bindgen-cli $WB_VERSION (about 5 minutes)..."
    cargo install wasm-bindgen-cli --version "$WB_VERSION"
fi

cargo rustc --lib --release --target wasm32-unknown-unknown --crate-type cdylib
WASM_IN="$TARGET_DIR/wasm32-unknown-unknown/release/qgpu.wasm"
rm -rf web/pkg
wasm-bindgen --target web --out-dir web/pkg "$WASM_IN"
OUT=web/pkg/qgpu_bg.wasm
before=$(stat -c %s "$OUT")
echo "wasm (after wasm-bindgen): $before bytes"

# wasm-opt from npm's binaryen: a local install under web/node_modules or tests/browser/node_modules.
WASM_OPT=""
for candidate in tests/browser/node_modules/.bin/wasm-opt web/node_modules/.bin/wasm-opt; do
    [ -x "$candidate" ] && WASM_OPT="$candidate" && break
done
if [ -n "$WASM_OPT" ] && [ "${QGPU_NO_WASM_OPT:-}" != 1 ]; then
    "$WASM_OPT" -O --enable-reference-types --enable-bulk-memory --enable-nontrapping-float-to-int \
        --enable-sign-ext --enable-multivalue --enable-mutable-globals "$OUT" -o "$OUT.opt"
    mv "$OUT.opt" "$OUT"
    echo "wasm (after wasm-opt -O): $(stat -c %s "$OUT") bytes"
else
    echo "wasm-opt (npm binaryen) not found: skipped (npm ci --prefix tests/browser installs it)"
fi
echo "built web/pkg"
