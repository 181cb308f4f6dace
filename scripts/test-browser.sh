#!/usr/bin/env bash
# Browser test: headless Chromium (SwiftShader WebGPU) runs qgpu's wasm package:
# kernel self-test against the CPU oracle, the SmolLM2 reference greedy continuation, MiniLM
# sentence embeddings against sentence-transformers, and the
# demo page (screenshot in ${CARGO_TARGET_DIR:-target}/browser-artifacts/demo.png).
# Installs Chromium (apt), playwright-core and binaryen (npm ci into tests/browser/node_modules),
# the wasm target and wasm-bindgen-cli when missing; fetches the default model and MiniLM;
# builds web/pkg.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
. scripts/python-env.sh

CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$CHROMIUM" ]; then
    echo "installing chromium..."
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm
fi
if [ ! -d tests/browser/node_modules/playwright-core ] || [ ! -d tests/browser/node_modules/binaryen ] || [ ! -d tests/browser/node_modules/esbuild ]; then
    npm ci --prefix tests/browser --no-audit --no-fund
fi

# scripts/test.sh passes the qgpu it built for the tests; alone, this script builds a release one.
if [ -n "${QGPU_BIN:-}" ]; then
    QGPU="$QGPU_BIN"
else
    cargo build --release --locked --quiet
    QGPU="${CARGO_TARGET_DIR:-target}/release/qgpu"
fi
MODEL="$("$QGPU" fetch)"
"$QGPU" fetch minilm >/dev/null
"$QGPU" fetch gemma3 >/dev/null

# What native qgpu samples for a fixed seed; the page must produce the same text.
QGPU_NATIVE_SAMPLED="$("$QGPU" run --model "$MODEL" --prompt "Once upon a time" --max-tokens 8 \
    --temperature 0.8 --top-k 40 --top-p 0.95 --min-p 0.05 --repeat-penalty 1.1 --repeat-last-n 64 --seed 7)"
export QGPU_NATIVE_SAMPLED
# The same for a Q8_0 KV cache, greedy, on the reference prompt (tests/browser/run.mjs).
QGPU_NATIVE_Q8_0_KV="$("$QGPU" run --model "$MODEL" --prompt "$(node -e "console.log(require('./tests/fixtures/smollm2_reference.json').cases[2].prompt)")" \
    --max-tokens 8 --temperature 0 --repeat-penalty 1 --kv-type q8_0)"
export QGPU_NATIVE_Q8_0_KV

# A bitsandbytes NF4 copy of MiniLM, written by qgpu, and what native qgpu embeds with it: the page
# loads the directory's files as they are (tests/browser/run.mjs).
TEST_MODELS="${CARGO_TARGET_DIR:-target}/browser-models"
rm -rf "$TEST_MODELS/minilm-nf4"
mkdir -p "$TEST_MODELS"
"$QGPU" quantize --model "$("$QGPU" fetch minilm)" --out "$TEST_MODELS/minilm-nf4" --format NF4 >/dev/null 2>&1
QGPU_NATIVE_NF4_EMBED="$("$QGPU" embed --model "$TEST_MODELS/minilm-nf4" --text "A man is playing a guitar." --text "Quantized weights keep most of the accuracy.")"
# Two quantized decoder directories from the fixtures (bitsandbytes NF4 LLaMA, GPTQ Qwen3), and
# native qgpu's greedy text with each: the page loads them from a URL and from a directory pick.
HF_PROMPT="Hello world"
for dir in tests/fixtures/bnb/llama-nf4 tests/fixtures/int4/qwen3-gptq; do
    rm -rf "$TEST_MODELS/$(basename "$dir")"
    cp -r "$dir" "$TEST_MODELS/"
done
QGPU_NATIVE_HF_GREEDY="$(for dir in tests/fixtures/bnb/llama-nf4 tests/fixtures/int4/qwen3-gptq; do
    "$QGPU" run --model "$dir" --prompt "$HF_PROMPT" --max-tokens 8 --temperature 0 --repeat-penalty 1 |
        node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.stringify(s)))'
done)"
# The OpenAI-style engine's greedy chat answer must equal native `qgpu run --chat`'s
# (tests/browser/engine_check.mjs; the bundled sample app asks the same).
QGPU_CHAT_PROMPT="What are the three primary colors?"
QGPU_NATIVE_CHAT="$("$QGPU" run --model "$MODEL" --chat --prompt "$QGPU_CHAT_PROMPT" --max-tokens 8 --temperature 0 --repeat-penalty 1)"
export QGPU_CHAT_PROMPT QGPU_NATIVE_CHAT

# The default model split in three by gguf-py's own writer (as llama.cpp's converter splits): the
# page loads it as one model from the URL of its second file (tests/browser/run.mjs).
rm -rf "$TEST_MODELS/split"
mkdir -p "$TEST_MODELS/split"
"$QGPU_PYTHON" scripts/split_gguf.py "$MODEL" "$TEST_MODELS/split/smollm2" --max-tensors 100 >/dev/null

QGPU_TEST_MODELS="$(cd "$TEST_MODELS" && pwd)"
export QGPU_NATIVE_NF4_EMBED QGPU_TEST_MODELS QGPU_NATIVE_HF_GREEDY HF_PROMPT

scripts/build-web.sh

# The npm package from a bundler: esbuild bundles a sample app that imports `qgpu-web/engine`
# through the package's exports (web/ linked as node_modules/qgpu-web), with the engine's
# worker as a second entry point beside it and the wasm file copied next to both, as an app
# ships them. Served at /test-models/sample-app/.
SAMPLE_SRC="$TEST_MODELS/sample-src"
rm -rf "$SAMPLE_SRC" "$TEST_MODELS/sample-app"
mkdir -p "$SAMPLE_SRC/node_modules" "$TEST_MODELS/sample-app"
cp tests/browser/sample-app/main.js tests/browser/sample-app/index.html "$SAMPLE_SRC/"
ln -s "$(pwd)/web" "$SAMPLE_SRC/node_modules/qgpu-web"
tests/browser/node_modules/.bin/esbuild "$SAMPLE_SRC/main.js" "$SAMPLE_SRC/node_modules/qgpu-web/worker.js" \
    --bundle --format=esm --entry-names='[name]' --outdir="$TEST_MODELS/sample-app" --log-level=warning
cp web/pkg/qgpu_bg.wasm tests/browser/sample-app/index.html "$TEST_MODELS/sample-app/"

export CHROMIUM
node tests/browser/run.mjs
