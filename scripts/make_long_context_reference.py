#!/usr/bin/env python3
"""Long-context references for tests/long_context.rs: transformers' f32 log-probabilities at a
few positions of a 3,000+ token prompt, for SmolLM2-135M-Instruct Q4_1 and Gemma 3 270M Q4_K_M.

transformers loads each GGUF with `gguf_file=` and dequantizes it to f32, so the reference runs
exactly the weights qgpu runs (as scripts/make_gemma3_reference.py does for the short prompts).
The prompt is tests/fixtures/long_context.txt (the first part of ARCHITECTURE.md at 922ba2a),
tokenized by each model's own tokenizer; the fixture stores the ids, and the test checks that
qgpu's tokenizer gives the same ones.

    pip install torch transformers gguf accelerate numpy
    python3 scripts/make_long_context_reference.py [MODELS_DIR]   # default ~/.cache/qgpu/models

Writes tests/fixtures/long_context_smollm2.json and tests/fixtures/long_context_gemma3.json.
"""
import json
import os
import sys
import time

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEXT = "tests/fixtures/long_context.txt"
MODELS = {
    "smollm2": "SmolLM2-135M-Instruct.Q4_1.gguf",
    # Window 512: positions past 512 + 127 read the ring cache after it has wrapped.
    "gemma3": "gemma-3-270m-q4_k_m.gguf",
}
# Besides the last position: both sides of the window and of the first chunks past it, and
# two depths, so a failure says where it starts.
CHECKPOINTS = [127, 511, 512, 639, 640, 1024, 2048]


def main():
    models_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.expanduser("~/.cache/qgpu/models")
    text = open(os.path.join(REPO, TEXT), encoding="utf-8").read()
    torch.manual_seed(0)
    for name, file in MODELS.items():
        t0 = time.time()
        tok = AutoTokenizer.from_pretrained(models_dir, gguf_file=file)
        model = AutoModelForCausalLM.from_pretrained(models_dir, gguf_file=file, dtype=torch.float32, attn_implementation="eager").eval()
        ids = tok(text, add_special_tokens=True)["input_ids"]
        assert len(ids) >= 3000, f"{name}: only {len(ids)} tokens"
        positions = [p for p in CHECKPOINTS if p < len(ids) - 1] + [len(ids) - 1]
        config = model.config.get_text_config()
        print(f"{name}: {len(ids)} tokens, sliding_window {getattr(config, 'sliding_window', None)}, "
              f"layer_types {getattr(config, 'layer_types', None)}", file=sys.stderr)
        with torch.no_grad():
            # Only the checkpoints' logits: Gemma's 262144-entry head at every position would be 3 GB.
            out = model(torch.tensor([ids]), logits_to_keep=torch.tensor(positions))
        logprobs = torch.log_softmax(out.logits[0].double(), -1)
        rows = []
        for p, row in zip(positions, logprobs):
            top = torch.topk(row, 10)
            rows.append({"position": p, "top10_ids": top.indices.tolist(), "top10_logprobs": [round(v, 5) for v in top.values.tolist()]})
            print(f"  position {p}: top-1 {top.indices[0].item()} {tok.decode([top.indices[0].item()])!r}, "
                  f"top-2 gap {(top.values[0] - top.values[1]).item():.3f}", file=sys.stderr)
        doc = {
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "model": file,
            "text": TEXT,
            "ids": ids,
            "positions": rows,
        }
        path = os.path.join(REPO, f"tests/fixtures/long_context_{name}.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(doc, f, separators=(",", ":"))
            f.write("\n")
        print(f"  wrote {path} in {time.time() - t0:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
