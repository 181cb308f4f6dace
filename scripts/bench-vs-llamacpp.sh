#!/usr/bin/env bash
# qgpu against llama.cpp (its Vulkan backend) on the same model and machine: `qgpu bench
# --model` and `llama-bench` take turns, round after round, then a ratio table per test
# (qgpu t/s ÷ llama.cpp t/s, each averaged over the rounds) and its geometric mean.
#
#   scripts/bench-vs-llamacpp.sh [MODEL.gguf]
#
# Settings (environment): LLAMA_BIN (llama.cpp's bin directory, default /work/llamacpp/bin),
# P (prompt lengths, default 512), N (generation lengths, 128), D (depths, 0,512,2048),
# R (repetitions per run, 5), ROUNDS (alternations, 1), KV (KV cache type, f16), OUT (directory
# for the JSON reports, target/bench-vs-llamacpp), QGPU (the qgpu binary, target/release/qgpu,
# built if missing). On lavapipe (a CPU Vulkan driver) prefilling 2048 tokens of SmolLM2 takes
# minutes; start with e.g. P=64 N=16 D=0,512 R=2.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh

MODEL=${1:-$QGPU_CACHE_DIR/models/SmolLM2-135M-Instruct.Q4_1.gguf}
LLAMA_BIN=${LLAMA_BIN:-/work/llamacpp/bin}
QGPU=${QGPU:-target/release/qgpu}
P=${P:-512} N=${N:-128} D=${D:-0,512,2048} R=${R:-5} ROUNDS=${ROUNDS:-1} KV=${KV:-f16}
OUT=${OUT:-target/bench-vs-llamacpp}

[ -f "$MODEL" ] || { echo "no model at $MODEL" >&2; exit 1; }
[ -x "$LLAMA_BIN/llama-bench" ] || { echo "no llama-bench in $LLAMA_BIN (set LLAMA_BIN)" >&2; exit 1; }
if [ ! -x "$QGPU" ]; then
  cargo build --release --bin qgpu
fi
mkdir -p "$OUT"
# llama.cpp quantizes the V cache only with flash attention.
LLAMA_KV=(-ctk "$KV" -ctv "$KV")
[ "$KV" = f16 ] || LLAMA_KV+=(-fa 1)

for round in $(seq 1 "$ROUNDS"); do
  echo "round $round/$ROUNDS: qgpu" >&2
  "$QGPU" bench --model "$MODEL" -p "$P" -n "$N" -d "$D" -r "$R" --kv-type "$KV" --json "$OUT/qgpu-$round.json"
  echo "round $round/$ROUNDS: llama-bench" >&2
  GGML_VK_VISIBLE_DEVICES=${GGML_VK_VISIBLE_DEVICES:-0} "$LLAMA_BIN/llama-bench" -m "$MODEL" -ngl 99 \
    -p "$P" -n "$N" -d "$D" -r "$R" "${LLAMA_KV[@]}" -o json > "$OUT/llamacpp-$round.json"
done

python3 - "$OUT" "$ROUNDS" <<'EOF'
import json, math, sys
out, rounds = sys.argv[1], int(sys.argv[2])

def name(kind, tokens, depth):
    return f"{kind}{tokens}" + (f" @ d{depth}" if depth else "")

qgpu, llama = {}, {}
for r in range(1, rounds + 1):
    for t in json.load(open(f"{out}/qgpu-{r}.json"))["tests"]:
        qgpu.setdefault(t["test"], []).append(t["tokens_per_s"]["mean"])
    for t in json.load(open(f"{out}/llamacpp-{r}.json")):
        kind, tokens = ("pp", t["n_prompt"]) if t["n_prompt"] > 0 else ("tg", t["n_gen"])
        llama.setdefault(name(kind, tokens, t.get("n_depth", 0)), []).append(t["avg_ts"])

mean = lambda v: sum(v) / len(v)
print(f"{'test':<18} {'qgpu t/s':>12} {'llama.cpp t/s':>14} {'qgpu/llama.cpp':>15}")
logs = []
for test, q in qgpu.items():
    if test not in llama:
        print(f"{test:<18} {mean(q):>12.2f} {'-':>14} {'-':>15}")
        continue
    ratio = mean(q) / mean(llama[test])
    logs.append(math.log(ratio))
    print(f"{test:<18} {mean(q):>12.2f} {mean(llama[test]):>14.2f} {ratio:>14.3f}x")
if logs:
    print(f"geometric mean qgpu/llama.cpp over {len(logs)} tests: {math.exp(sum(logs) / len(logs)):.3f}x ({rounds} round(s))")
EOF
