#!/usr/bin/env bash
# qgpu serve against llama-server (llama.cpp's Vulkan backend) on the same model and machine:
# each server in turn on a loopback port, loaded by scripts/bench_serve.py at 1, 2, 4 and 8
# concurrent streaming clients; then a table and a chart of both.
#
#   scripts/bench-serve.sh [MODEL.gguf]
#
# Settings (environment): LLAMA_BIN (llama.cpp's bin directory, default /work/llamacpp/bin;
# unset or missing: qgpu alone), CLIENTS (1,2,4,8), REQUESTS (per client per level, 1),
# MAX_TOKENS (32), CONTEXT (positions per sequence, 512), QGPU_PARALLEL (8), LLAMA_PARALLEL (4),
# OUT (target/bench-serve), QGPU (target/release/qgpu, built if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh

MODEL=${1:-$QGPU_CACHE_DIR/models/SmolLM2-135M-Instruct.Q4_1.gguf}
LLAMA_BIN=${LLAMA_BIN:-/work/llamacpp/bin}
QGPU=${QGPU:-target/release/qgpu}
CLIENTS=${CLIENTS:-1,2,4,8} REQUESTS=${REQUESTS:-1} MAX_TOKENS=${MAX_TOKENS:-32} CONTEXT=${CONTEXT:-512}
QGPU_PARALLEL=${QGPU_PARALLEL:-8} LLAMA_PARALLEL=${LLAMA_PARALLEL:-4}
OUT=${OUT:-target/bench-serve}
PORT=${PORT:-18181}

[ -f "$MODEL" ] || { echo "no model at $MODEL" >&2; exit 1; }
[ -x "$QGPU" ] || cargo build --release --bin qgpu
mkdir -p "$OUT"

server_pid=
stop_server() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null; server_pid=; }
trap stop_server EXIT
wait_healthy() {
  for _ in $(seq 1 600); do
    curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && return 0
    kill -0 "$server_pid" 2>/dev/null || { echo "the server exited" >&2; return 1; }
    sleep 1
  done
  echo "the server did not become healthy" >&2; return 1
}

echo "qgpu serve --parallel $QGPU_PARALLEL" >&2
"$QGPU" serve --model "$MODEL" --port "$PORT" --parallel "$QGPU_PARALLEL" --context "$CONTEXT" 2>"$OUT/qgpu.log" &
server_pid=$!
wait_healthy
python3 scripts/bench_serve.py --url "http://127.0.0.1:$PORT" --name "qgpu serve" --clients "$CLIENTS" \
  --requests "$REQUESTS" --max-tokens "$MAX_TOKENS" --json "$OUT/qgpu.json"
stop_server
runs=("$OUT/qgpu.json")

if [ -x "$LLAMA_BIN/llama-server" ]; then
  echo "llama-server --parallel $LLAMA_PARALLEL" >&2
  # llama-server splits -c among its slots: CONTEXT positions each, as qgpu's.
  GGML_VK_VISIBLE_DEVICES=${GGML_VK_VISIBLE_DEVICES:-0} "$LLAMA_BIN/llama-server" -m "$MODEL" -ngl 99 \
    --host 127.0.0.1 --port "$PORT" --parallel "$LLAMA_PARALLEL" -c $((CONTEXT * LLAMA_PARALLEL)) 2>"$OUT/llama-server.log" &
  server_pid=$!
  wait_healthy
  python3 scripts/bench_serve.py --url "http://127.0.0.1:$PORT" --name "llama-server (Vulkan)" --clients "$CLIENTS" \
    --requests "$REQUESTS" --max-tokens "$MAX_TOKENS" --json "$OUT/llama-server.json"
  stop_server
  runs+=("$OUT/llama-server.json")
fi
python3 scripts/bench_serve.py report "$OUT/serve.svg" "${runs[@]}"
