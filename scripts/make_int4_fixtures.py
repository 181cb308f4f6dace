#!/usr/bin/env python3
"""Fixtures for qgpu's GPTQ and AWQ loading: tiny checkpoints packed as the reference
libraries pack them, with their dequantized f32 values.

Packing follows GPTQModel (`nn_modules/qlinear`: qweight `[in / 8, out]`, eight inputs a word;
qzeros `[groups, out / 8]`; the original "gptq" format stores each zero minus one) and AutoAWQ
(`modules/linear/gemm.py` `from_linear`: qweight `[in, out / 8]` in the order 0 2 4 6 1 3 5 7).
AWQ's packing is checked against AutoAWQ's own `unpack_awq` + `reverse_awq_order`
(`awq/utils/packing_utils.py`, loaded from the autoawq sdist on PyPI when given with
--autoawq DIR); GPTQ's against an unpacking written from GPTQModel's dequantization.

Writes tests/fixtures/int4/:
- layers.safetensors: layers `gptq_g32_sym`, `gptq_g128_asym`, `gptq_g64_act` (a desc_act
  g_idx whose groups are permuted but contiguous), `gptq_v2_g32` (zeros stored as they are),
  `awq_g64`, `awq_g32_sym`, each with `<layer>.dequantized` (f32 `[out, in]`: scale · (q − zero)
  in f32).
- llama-gptq/, llama-awq/, qwen3-gptq/: tiny LLaMA (and Qwen3: q/k norms, head size 64 at
  width 128) directories (config.json with the quantization_config
  transformers writes, model.safetensors, a byte-level BPE tokenizer.json) and logits.json: the
  logits of the same model with every layer dequantized to f32 (transformers, f32).

    python scripts/make_int4_fixtures.py [--autoawq path/to/autoawq-0.2.9]
"""

import argparse
import importlib.util
import json
import os
import shutil
import sys

import numpy as np
import torch
from safetensors.numpy import save_file
from transformers import LlamaConfig, LlamaForCausalLM, Qwen3Config, Qwen3ForCausalLM

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_bnb_fixtures import bpe_tokenizer_json, TOKENS  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "int4")
AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7]


def quantize(w, group, sym, min_zero=0):
    """Round-to-nearest int4 per group of inputs (the last group may be shorter): scales f16
    [groups, out], zeros [groups, out], q [in, out] (as GPTQ/AWQ's quantizers do before
    packing). `min_zero` 1 keeps zeros storable in the original GPTQ format, which stores zero − 1
    in a nibble (a zero of 0 would read back as 16)."""
    out_f, in_f = w.shape
    groups = -(-in_f // group)
    scale = np.zeros((out_f, groups), dtype=np.float16)
    zero = np.zeros((out_f, groups), dtype=np.int64)
    q = np.zeros((out_f, in_f), dtype=np.int64)
    for g in range(groups):
        wg = w[:, g * group:(g + 1) * group]
        if sym:
            s = np.abs(wg).max(axis=1) / 7.5
            z = np.full(out_f, 8, dtype=np.int64)
        else:
            lo, hi = wg.min(axis=1), wg.max(axis=1)
            s = (hi - lo) / 15.0
            z = np.clip(np.round(-lo / np.maximum(s, 1e-8)), min_zero, 15).astype(np.int64)
        s = np.maximum(s, 1e-6).astype(np.float16)
        scale[:, g], zero[:, g] = s, z
        q[:, g * group:(g + 1) * group] = np.clip(np.round(wg / s.astype(np.float32)[:, None]) + z[:, None], 0, 15)
    return scale.T.copy(), zero.T.copy(), q.T.copy()


def dequantize(scale, zero, q, g_of_input):
    """f32 [out, in]: scale[g, j] · (q[k, j] − zero[g, j])."""
    s = scale.astype(np.float32)[g_of_input]  # [in, out]
    z = zero[g_of_input]
    return (s * (q - z).astype(np.float32)).T.copy()


def pack_gptq(q, zero, zero_minus_one):
    in_f, out_f = q.shape
    qweight = np.zeros((in_f // 8, out_f), dtype=np.uint32)
    for i in range(8):
        qweight |= (q[i::8].astype(np.uint32) & 15) << (4 * i)
    z = (zero - 1) if zero_minus_one else zero
    qzeros = np.zeros((zero.shape[0], out_f // 8), dtype=np.uint32)
    for i in range(8):
        qzeros |= (z[:, i::8].astype(np.uint32) & 15) << (4 * i)
    return qweight.view(np.int32), qzeros.view(np.int32)


def unpack_gptq(qweight, qzeros, zero_minus_one):
    """GPTQModel's dequantization of the packed words (its `dequantize_weight`, in numpy)."""
    qw, qz = qweight.view(np.uint32), qzeros.view(np.uint32)
    shifts = np.arange(0, 32, 4, dtype=np.uint32)
    q = ((qw[:, None, :] >> shifts[None, :, None]) & 15).reshape(-1, qw.shape[1])
    z = ((qz[:, :, None] >> shifts[None, None, :]) & 15).reshape(qz.shape[0], -1)
    return q.astype(np.int64), z.astype(np.int64) + (1 if zero_minus_one else 0)


def pack_awq(q, zero):
    in_f, out_f = q.shape
    qweight = np.zeros((in_f, out_f // 8), dtype=np.uint32)
    qzeros = np.zeros((zero.shape[0], out_f // 8), dtype=np.uint32)
    for i in range(8):
        qweight |= (q[:, AWQ_ORDER[i]::8].astype(np.uint32) & 15) << (4 * i)
        qzeros |= (zero[:, AWQ_ORDER[i]::8].astype(np.uint32) & 15) << (4 * i)
    return qweight.view(np.int32), qzeros.view(np.int32)


def check_awq(autoawq, qweight, qzeros, q, zero):
    """AutoAWQ's own unpacking must give back q and zero."""
    if autoawq is None:
        return
    spec = importlib.util.spec_from_file_location("packing_utils", os.path.join(autoawq, "awq/utils/packing_utils.py"))
    pu = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pu)
    iw, iz = pu.unpack_awq(torch.from_numpy(qweight), torch.from_numpy(qzeros), 4)
    iw, iz = pu.reverse_awq_order(iw, iz, 4)
    assert np.array_equal(iw.numpy() & 15, q) and np.array_equal(iz.numpy() & 15, zero), "AutoAWQ unpacks differently"


def layer(rng, out_f, in_f, kind, group, sym, act=False, autoawq=None):
    w = (rng.standard_normal((out_f, in_f)) * 0.05).astype(np.float32)
    scale, zero, q = quantize(w, group, sym)
    groups = in_f // group
    g_of_input = np.arange(in_f) // group
    tensors = {}
    if kind == "awq":
        qweight, qzeros = pack_awq(q, zero)
        check_awq(autoawq, qweight, qzeros, q, zero)
    else:
        zero_minus_one = kind == "gptq"
        if act:
            # desc_act: inputs visited in another order, so groups are permuted; each group
            # still covers contiguous inputs (as when GPTQModel stores `g_idx` after reordering).
            perm = rng.permutation(groups)
            g_of_input = perm[np.arange(in_f) // group]
            scale = scale[np.argsort(perm)]
            zero = zero[np.argsort(perm)]
        qweight, qzeros = pack_gptq(q, zero, zero_minus_one)
        uq, uz = unpack_gptq(qweight, qzeros, zero_minus_one)
        assert np.array_equal(uq, q) and np.array_equal(uz, zero)
        tensors["g_idx"] = g_of_input.astype(np.int32)
    tensors.update({"qweight": qweight, "qzeros": qzeros, "scales": scale})
    return tensors, dequantize(scale, zero, q, g_of_input), w


def layers(autoawq):
    rng = np.random.default_rng(7)
    specs = [("gptq_g32_sym", "gptq", 32, True, False), ("gptq_g128_asym", "gptq", 128, False, False),
             ("gptq_g64_act", "gptq", 64, False, True), ("gptq_v2_g32", "gptq_v2", 32, False, False),
             ("awq_g64", "awq", 64, False, False), ("awq_g32_sym", "awq", 32, True, False)]
    out = {}
    for name, kind, group, sym, act in specs:
        tensors, deq, w = layer(rng, 40, 256, kind, group, sym, act, autoawq)
        for k, v in tensors.items():
            out[f"{name}.{k}"] = np.ascontiguousarray(v)
        out[f"{name}.dequantized"] = deq
    save_file(out, os.path.join(OUT, "layers.safetensors"))


def llama(name, kind, group, autoawq, arch="llama"):
    torch.manual_seed(4)
    if arch == "qwen3":
        # Qwen3: per-head q/k norms, and a head size (64) that is not width / heads (32).
        config = Qwen3Config(vocab_size=263, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, head_dim=64, max_position_embeddings=256,
                             rms_norm_eps=1e-5, tie_word_embeddings=True, bos_token_id=260, eos_token_id=262)
        model = Qwen3ForCausalLM(config).float()
    else:
        config = LlamaConfig(vocab_size=263, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-5,
                             tie_word_embeddings=True, bos_token_id=260, eos_token_id=262)
        model = LlamaForCausalLM(config).float()
    rng = np.random.default_rng(11)
    tensors = {}
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if p.dim() == 2:
                p.mul_(4.0)
            elif "q_norm" in pname or "k_norm" in pname:
                p.copy_(1.0 + torch.randn_like(p) * 0.3)
        for module_name, module in model.named_modules():
            if not isinstance(module, torch.nn.Linear) or module_name == "lm_head":
                continue
            w = module.weight.numpy()
            sym = kind == "gptq" and "mlp" in module_name  # a mix: symmetric MLP, asymmetric attention
            scale, zero, q = quantize(w, group, sym)
            g_of_input = np.arange(w.shape[1]) // group
            if kind == "awq":
                qweight, qzeros = pack_awq(q, zero)
                check_awq(autoawq, qweight, qzeros, q, zero)
            else:
                qweight, qzeros = pack_gptq(q, zero, True)
                tensors[f"{module_name}.g_idx"] = g_of_input.astype(np.int32)
            tensors[f"{module_name}.qweight"] = qweight
            tensors[f"{module_name}.qzeros"] = qzeros
            tensors[f"{module_name}.scales"] = scale
            module.weight.copy_(torch.from_numpy(dequantize(scale, zero, q, g_of_input)))
        linear = {n for n, mod in model.named_modules() if isinstance(mod, torch.nn.Linear)}
        for pname, p in model.named_parameters():
            if pname.removesuffix(".weight") not in linear:
                tensors[pname] = p.numpy().copy()
        logits = model(torch.tensor([TOKENS])).logits[0].float()
    out = os.path.join(OUT, name)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, os.path.join(out, "model.safetensors"),
              metadata={"format": "pt"})
    cfg = config.to_dict()
    if kind == "awq":
        cfg["quantization_config"] = {"quant_method": "awq", "bits": 4, "group_size": group, "zero_point": True,
                                      "version": "gemm", "modules_to_not_convert": None}
    else:
        cfg["quantization_config"] = {"quant_method": "gptq", "bits": 4, "group_size": group, "sym": False,
                                      "desc_act": False, "checkpoint_format": "gptq", "damp_percent": 0.01}
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    with open(os.path.join(out, "tokenizer.json"), "w") as f:
        json.dump(bpe_tokenizer_json(), f, ensure_ascii=False)
    last = [[float(f"{v:.7g}") for v in row] for row in logits[-4:].tolist()]
    with open(os.path.join(out, "logits.json"), "w") as f:
        json.dump({"tokens": TOKENS, "logits": last}, f)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--autoawq", help="an unpacked autoawq sdist, to check AWQ packing with its own unpacking")
    args = parser.parse_args()
    os.makedirs(OUT, exist_ok=True)
    layers(args.autoawq)
    llama("llama-gptq", "gptq", 32, args.autoawq)
    llama("llama-awq", "awq", 64, args.autoawq)
    llama("qwen3-gptq", "gptq", 32, args.autoawq, arch="qwen3")
    print("wrote", os.path.normpath(OUT), file=sys.stderr)


if __name__ == "__main__":
    main()
