#!/usr/bin/env python3
"""Loads a directory written by `qgpu quantize --format NF4|FP4` in transformers + bitsandbytes
(CPU) and compares its outputs with qgpu's on the same directory.

    python scripts/check_bnb_export.py QGPU_BINARY DIR

A BERT directory: mean-pooled, L2-normalised embeddings of a few sentences (`qgpu embed`),
cosine per sentence. A LLaMA directory: greedy tokens of a prompt (`qgpu run --temperature 0`)
against transformers' greedy generation. Needs torch, transformers, accelerate, bitsandbytes.
"""

import json
import subprocess
import sys

import torch
from tokenizers import Tokenizer
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

SENTENCES = ["The quick brown fox jumps over the lazy dog.", "A man is playing a guitar on stage.",
             "Quantized weights keep most of the accuracy."]


def bert(binary, path):
    model = AutoModel.from_pretrained(path, device_map="cpu", dtype=torch.float32)
    print(type(model.encoder.layer[0].attention.self.query).__name__, file=sys.stderr)
    tokenizer = Tokenizer.from_file(f"{path}/tokenizer.json")
    tokenizer.no_padding()  # MiniLM's tokenizer.json pads to 128
    args = [binary, "embed", "--model", path] + [a for s in SENTENCES for a in ("--text", s)]
    ours = [json.loads(line) for line in subprocess.run(args, check=True, capture_output=True, text=True).stdout.splitlines()]
    worst = 1.0
    with torch.no_grad():
        for s, q in zip(SENTENCES, ours):
            hidden = model(torch.tensor([tokenizer.encode(s).ids])).last_hidden_state[0]
            pooled = hidden.mean(dim=0)
            t = pooled / pooled.norm()
            cos = float(torch.dot(t, torch.tensor(q)) / torch.tensor(q).norm())
            worst = min(worst, cos)
            print(f"{s!r}: cosine qgpu vs transformers {cos:.7f}")
    return worst


def llama(binary, path):
    model = AutoModelForCausalLM.from_pretrained(path, device_map="cpu", dtype=torch.float32)
    tokenizer = Tokenizer.from_file(f"{path}/tokenizer.json")
    prompt = "The capital of France is"
    ids = tokenizer.encode(prompt).ids
    out = model.generate(torch.tensor([ids]), max_new_tokens=16, do_sample=False)[0][len(ids):].tolist()
    text = tokenizer.decode(out)
    ours = subprocess.run([binary, "run", "--model", path, "--prompt", prompt, "--max-tokens", "16", "--temperature", "0"],
                          check=True, capture_output=True, text=True).stdout
    print(f"transformers: {text!r}\nqgpu:         {ours!r}")
    return 1.0 if ours.strip().startswith(text.strip()[:40]) else 0.0


def main():
    binary, path = sys.argv[1], sys.argv[2]
    kind = AutoConfig.from_pretrained(path).model_type
    score = bert(binary, path) if kind == "bert" else llama(binary, path)
    sys.exit(0 if score > 0.9999 else 1)


if __name__ == "__main__":
    main()
