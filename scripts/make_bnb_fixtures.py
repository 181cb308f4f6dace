#!/usr/bin/env python3
"""Fixtures for qgpu's NF4/FP4 support, made by the real bitsandbytes (on CPU) and transformers.

Writes tests/fixtures/bnb/:
- blocks.safetensors: one 5 x 3328 f32 matrix (`original`), quantized by bitsandbytes'
  `quantize_4bit` four ways (nf4, fp4, each with and without double quantization) and stored
  under transformers' names (`nf4_double.weight`, `.weight.absmax`, `.weight.quant_map`,
  `.weight.nested_absmax`, `.weight.nested_quant_map`,
  `.weight.quant_state.bitsandbytes__nf4`), with bitsandbytes' `dequantize_4bit` of each as
  `<variant>.dequantized`. 260 blocks of 64, so double quantization has two nested blocks.
- llama-nf4/, llama-fp4/, qwen2-nf4/: tiny LLaMA (and Qwen2, with q/k/v biases) directories
  quantized by transformers' BitsAndBytesConfig (nf4 with double quantization; fp4 without) and saved by
  `save_pretrained`, with a byte-level BPE tokenizer.json, plus logits.json: the quantized
  model's logits (transformers + bitsandbytes, f32 compute) for a fixed token sequence.
- bert-nf4/: a tiny BERT encoder likewise (nf4, double quantization), with a WordPiece
  tokenizer.json and embeddings.json: mean-pooled, L2-normalised embeddings of two sentences.

Needs torch, bitsandbytes, transformers, accelerate, safetensors and tokenizers (PyPI, CPU).
The tests need none of them.

    python scripts/make_bnb_fixtures.py
"""

import json
import os
import shutil
import sys
import tempfile

import torch
from bitsandbytes import functional as F
from safetensors.torch import save_file
from transformers import (AutoModelForCausalLM, BertConfig, BertModel, BitsAndBytesConfig, LlamaConfig,
                          LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM)

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "bnb")
LAST = 4
TOKENS = [260, 72, 101, 108, 108, 111, 32, 116, 104, 101, 114, 101, 33, 261, 257, 259]


def blocks():
    torch.manual_seed(1)
    original = torch.randn(5, 3328) * 0.05
    original[0, :64] = 0.0  # an all-zero block
    original[1, 64:128] *= 40.0  # one block far larger than the rest
    tensors = {"original": original.contiguous()}
    for quant_type in ["nf4", "fp4"]:
        for double in [False, True]:
            name = f"{quant_type}_{'double' if double else 'plain'}"
            packed, state = F.quantize_4bit(original, blocksize=64, quant_type=quant_type, compress_statistics=double)
            tensors[f"{name}.weight"] = packed.contiguous()
            for key, value in state.as_dict(packed=True).items():
                tensors[f"{name}.weight.{key}"] = value.contiguous()
            tensors[f"{name}.dequantized"] = F.dequantize_4bit(packed, state).float().contiguous()
    save_file(tensors, os.path.join(OUT, "blocks.safetensors"))


def gpt2_byte_chars():
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    chars, n = {}, 0
    for b in range(256):
        if b in printable:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + n)
            n += 1
    return chars


def bpe_tokenizer_json():
    """256 byte tokens, 4 merges and 3 special tokens: ids 0..262."""
    chars = gpt2_byte_chars()
    vocab = {chars[b]: b for b in range(256)}
    merges = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("l", "l")]
    for a, b in merges:
        vocab[a + b] = len(vocab)
    added = [{"id": 260 + i, "content": t, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
              "special": True} for i, t in enumerate(["<|endoftext|>", "<|im_start|>", "<|im_end|>"])]
    return {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added, "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": [f"{a} {b}" for a, b in merges]},
    }


def quantize_dir(model, out, load, quant_type, double, **kwargs):
    """Saves `model` in f32, reloads it through transformers' bitsandbytes quantizer on CPU, and
    saves the quantized model to `out`; returns the quantized model."""
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=quant_type, bnb_4bit_use_double_quant=double,
                                    bnb_4bit_compute_dtype=torch.float32)
        quantized = load.from_pretrained(tmp, quantization_config=config, device_map="cpu", dtype=torch.float32, **kwargs)
    shutil.rmtree(out, ignore_errors=True)
    quantized.save_pretrained(out)
    os.remove(os.path.join(out, "generation_config.json")) if os.path.exists(os.path.join(out, "generation_config.json")) else None
    return quantized


def llama(name, quant_type, double, layers, tied, arch="llama"):
    torch.manual_seed(2)
    Config, Model = {"llama": (LlamaConfig, LlamaForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM)}[arch]
    config = Config(vocab_size=263, hidden_size=128, intermediate_size=192, num_hidden_layers=layers,
                    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-5,
                    rope_theta=10000.0, tie_word_embeddings=tied, bos_token_id=260, eos_token_id=262)
    model = Model(config).float()
    # Larger weights than the init's 0.02 spread, so the logits differ visibly between tokens;
    # Qwen2's q/k/v biases (initialised to zero) get values too.
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if p.dim() == 2:
                p.mul_(4.0)
            elif pname.endswith(".bias"):
                p.copy_(torch.randn_like(p) * 0.5)
    out = os.path.join(OUT, name)
    quantized = quantize_dir(model, out, AutoModelForCausalLM, quant_type, double)
    with open(os.path.join(out, "tokenizer.json"), "w") as f:
        json.dump(bpe_tokenizer_json(), f, ensure_ascii=False)
    with torch.no_grad():
        logits = quantized(torch.tensor([TOKENS])).logits[0].float()
        full = model(torch.tensor([TOKENS])).logits[0].float()
    # The last positions only, to 7 significant digits: the tests compare to about 1e-4.
    last = [[float(f"{v:.7g}") for v in row] for row in logits[-LAST:].tolist()]
    with open(os.path.join(out, "logits.json"), "w") as f:
        json.dump({"tokens": TOKENS, "last_positions": LAST, "logits": last,
                   "max_abs_change_from_f32": float((logits - full).abs().max())}, f)


WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "cat", "sat", "on", "mat", "a", "dog", "ran", "far",
         "##s", "##ing", "and", ".", ",", "quick", "brown", "fox", "jump", "over", "lazy"]


def bert_tokenizer_json():
    vocab = {w: i for i, w in enumerate(WORDS)}
    return {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [{"id": i, "content": w, "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": True} for i, w in enumerate(WORDS[:5])],
        "normalizer": {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": True,
                       "strip_accents": None, "lowercase": True},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                                      {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
                           "pair": [], "special_tokens": {"[CLS]": {"id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]},
                                                          "[SEP]": {"id": "[SEP]", "ids": [3], "tokens": ["[SEP]"]}}},
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100, "vocab": vocab},
    }


def bert():
    torch.manual_seed(3)
    config = BertConfig(vocab_size=len(WORDS), hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=192, max_position_embeddings=64, type_vocab_size=2)
    model = BertModel(config, add_pooling_layer=False).float()
    out = os.path.join(OUT, "bert-nf4")
    quantized = quantize_dir(model, out, BertModel, "nf4", True, add_pooling_layer=False)
    with open(os.path.join(out, "tokenizer.json"), "w") as f:
        json.dump(bert_tokenizer_json(), f)
    from tokenizers import Tokenizer
    tokenizer = Tokenizer.from_file(os.path.join(out, "tokenizer.json"))
    sentences = ["The quick brown fox jumps over the lazy dog.", "A cat sat on the mat, and a dog ran far."]
    embeddings = []
    with torch.no_grad():
        for s in sentences:
            ids = tokenizer.encode(s).ids
            hidden = quantized(torch.tensor([ids])).last_hidden_state[0].float()
            pooled = hidden.mean(dim=0)
            embeddings.append({"text": s, "ids": ids, "embedding": [float(f"{v:.7g}") for v in (pooled / pooled.norm()).tolist()]})
    with open(os.path.join(out, "embeddings.json"), "w") as f:
        json.dump(embeddings, f)


def main():
    os.makedirs(OUT, exist_ok=True)
    blocks()
    llama("llama-nf4", "nf4", True, 2, True)
    llama("llama-fp4", "fp4", False, 1, False)
    llama("qwen2-nf4", "nf4", False, 2, True, arch="qwen2")
    bert()
    print("wrote", os.path.normpath(OUT), file=sys.stderr)


if __name__ == "__main__":
    main()
