#!/usr/bin/env python3
"""Fixtures for Hugging Face Gemma 3 directories, made by transformers (and bitsandbytes) on CPU.

Writes:
- tests/fixtures/hf/gemma3/: a tiny random `gemma3_text` model in bf16 safetensors, with a
  SentencePiece-style tokenizer.json cut from Gemma 3's own (its special and byte pieces, its
  most frequent merged pieces and their parts, renumbered), and
  - logits.json: transformers' f32 logits (eager attention) at the last positions of a prompt
    longer than the sliding window;
  - tokens.json: what transformers' tokenizer makes of a few texts (byte fallback, runs of
    spaces and newlines, special-token text).
  The model has 7 layers with a window of 8 (layers 0-4 and 6 windowed, 5 global), a stated
  head size (32, not width / heads), `query_pre_attn_scalar` 24 (not the head size) and both
  soft-caps, so each of those rules is exercised.
- tests/fixtures/bnb/gemma3-nf4/: the same model quantized by transformers' BitsAndBytesConfig
  (NF4, double quantization), with the logits of the quantized model.

Gemma 3's tokenizer comes from the Gemma 3 270M GGUF that `qgpu fetch gemma3` downloads
(transformers converts a GGUF's tokenizer to tokenizer.json).

    python scripts/make_gemma_fixtures.py "$(qgpu fetch gemma3)"
"""

import copy
import json
import os
import sys
import tempfile

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, Gemma3ForCausalLM, Gemma3TextConfig, PreTrainedTokenizerFast

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_bnb_fixtures import quantize_dir  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")
PIECES = 1200
LAST = 4
PROMPT = "The quick brown fox jumps over the lazy dog, then it runs into the forest and sleeps there."
TEXTS = [
    PROMPT,
    "  two leading spaces,\n\nnewlines\tand a tab",
    "émoji 🦊 and ∑ fall back to bytes",
    "<start_of_turn>user\nhi<end_of_turn>",
]


def small_tokenizer(gguf):
    """Gemma 3's tokenizer.json cut down: the pieces below id 512 (special, unused and byte
    pieces), the pieces below id PIECES that merges make, and their parts; the merges among
    them in their order; renumbered in id order."""
    directory, name = os.path.split(gguf)
    full = json.loads(AutoTokenizer.from_pretrained(directory, gguf_file=name).backend_tokenizer.to_str())
    model = full["model"]
    ids = model["vocab"]
    made = [(a, b) for a, b in model["merges"] if ids[a + b] < PIECES]
    keep = {piece for piece, i in ids.items() if i < 512}
    for a, b in made:
        keep.update((a, b, a + b))
    # Parts come from earlier merges or are single characters; keep every merge among kept pieces.
    merges = [[a, b] for a, b in model["merges"] if a in keep and b in keep and a + b in keep]
    vocab = {piece: i for i, piece in enumerate(sorted(keep, key=lambda p: ids[p]))}
    added = [dict(t, id=vocab[t["content"]]) for t in full["added_tokens"] if t["content"] in vocab]
    model = dict(model, vocab=vocab, merges=merges)
    post = full["post_processor"]
    post["special_tokens"]["<bos>"]["ids"] = [vocab["<bos>"]]
    return dict(full, model=model, added_tokens=added, post_processor=post), len(vocab)


def tiny_gemma3(vocab):
    torch.manual_seed(4)
    config = Gemma3TextConfig(
        vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=7, num_attention_heads=2,
        num_key_value_heads=1, head_dim=32, max_position_embeddings=256, rms_norm_eps=1e-6, sliding_window=8,
        query_pre_attn_scalar=24, attn_logit_softcapping=50.0, final_logit_softcapping=30.0,
        rope_theta=1_000_000.0, rope_local_base_freq=10_000.0, pad_token_id=0, eos_token_id=1, bos_token_id=2,
        tie_word_embeddings=True, attn_implementation="eager")
    model = Gemma3ForCausalLM(config).float()
    # Larger weights than the init's spread, and norms away from zero (Gemma applies 1 + w).
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if p.dim() == 2:
                p.mul_(6.0)
            elif pname.endswith("norm.weight"):
                p.copy_(torch.randn_like(p) * 0.3)
        # Weights as bf16 stores them, so the saved directory holds exactly this model (the
        # parameters only: a `.to(bfloat16)` would round RoPE's frequency buffers too).
        for p in model.parameters():
            p.copy_(p.to(torch.bfloat16).float())
    return model


def write_logits(model, tokens, out, extra=None):
    with torch.no_grad():
        logits = model(torch.tensor([tokens])).logits[0].float()
    last = [[float(f"{v:.7g}") for v in row] for row in logits[-LAST:].tolist()]
    with open(os.path.join(out, "logits.json"), "w") as f:
        json.dump(dict({"tokens": tokens, "last_positions": LAST, "logits": last}, **(extra or {})), f)
    return logits


def main():
    tokenizer_json, vocab = small_tokenizer(sys.argv[1])
    out = os.path.join(ROOT, "hf", "gemma3")
    os.makedirs(out, exist_ok=True)
    tok_path = os.path.join(out, "tokenizer.json")
    with open(tok_path, "w") as f:
        json.dump(tokenizer_json, f, ensure_ascii=False)
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump({"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>", "unk_token": "<unk>",
                   "tokenizer_class": "GemmaTokenizer"}, f)
    tokenizer = PreTrainedTokenizerFast(tokenizer_file=tok_path)
    with open(os.path.join(out, "tokens.json"), "w") as f:
        json.dump([{"text": t, "ids": tokenizer(t)["input_ids"]} for t in TEXTS], f, ensure_ascii=False)
    tokens = tokenizer(PROMPT)["input_ids"]
    assert len(tokens) > 16, len(tokens)

    model = tiny_gemma3(vocab)
    # A bf16 copy on disk (`Module.to` converts in place); the f32 model computes the logits.
    copy.deepcopy(model).to(torch.bfloat16).save_pretrained(out)
    os.remove(os.path.join(out, "generation_config.json")) if os.path.exists(os.path.join(out, "generation_config.json")) else None
    full = write_logits(model, tokens, out)

    nf4 = os.path.join(ROOT, "bnb", "gemma3-nf4")
    quantized = quantize_dir(model, nf4, AutoModelForCausalLM, "nf4", True)
    with open(os.path.join(nf4, "tokenizer.json"), "w") as f:
        json.dump(tokenizer_json, f, ensure_ascii=False)
    with torch.no_grad():
        q = quantized(torch.tensor([tokens])).logits[0].float()
    write_logits(quantized, tokens, nf4, {"max_abs_change_from_f32": float((q - full).abs().max())})
    print(f"wrote {out} and {nf4}: vocab {vocab}, prompt of {len(tokens)} tokens", file=sys.stderr)


if __name__ == "__main__":
    main()
