#!/usr/bin/env python3
"""Writes a GPTQ- or AWQ-packed copy of a float Hugging Face directory (LLaMA or BERT), with
round-to-nearest asymmetric int4 per group (the formats' storage, not their calibrated
search): every linear layer's weight (2-D, not an embedding or lm_head) becomes
qweight/qzeros/scales (+ g_idx for GPTQ), packed as scripts/make_int4_fixtures.py packs them.
For `qgpu eval`'s price list of 4-bit formats.

    python scripts/write_int4_checkpoint.py SRC OUT [--packing gptq|awq] [--group 128]
"""

import argparse
import json
import os
import shutil
import sys

import numpy as np
from safetensors.numpy import load_file, save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_int4_fixtures import pack_awq, pack_gptq, quantize  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("src")
    p.add_argument("out")
    p.add_argument("--packing", choices=["gptq", "awq"], default="gptq")
    p.add_argument("--group", type=int, default=128)
    a = p.parse_args()
    os.makedirs(a.out)
    for name in os.listdir(a.src):
        path = os.path.join(a.src, name)
        if name in ("model.safetensors", "config.json"):
            continue
        (shutil.copytree if os.path.isdir(path) else shutil.copy)(path, os.path.join(a.out, name))
    tensors = load_file(os.path.join(a.src, "model.safetensors"))
    out = {}
    for name, w in tensors.items():
        linear = w.ndim == 2 and name.endswith(".weight") and "embed" not in name and not name.startswith("lm_head")
        if not linear or w.shape[1] % 32 or w.shape[0] % 8:
            out[name] = w
            continue
        scale, zero, q = quantize(w.astype(np.float32), a.group, sym=False, min_zero=1 if a.packing == "gptq" else 0)
        prefix = name[: -len(".weight")]
        if a.packing == "gptq":
            qweight, qzeros = pack_gptq(q, zero, True)
            out[f"{prefix}.g_idx"] = (np.arange(w.shape[1]) // a.group).astype(np.int32)
        else:
            qweight, qzeros = pack_awq(q, zero)
        out[f"{prefix}.qweight"], out[f"{prefix}.qzeros"], out[f"{prefix}.scales"] = qweight, qzeros, scale
    save_file({k: np.ascontiguousarray(v) for k, v in out.items()}, os.path.join(a.out, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(a.src, "config.json")) as f:
        config = json.load(f)
    config["quantization_config"] = (
        {"quant_method": "gptq", "bits": 4, "group_size": a.group, "sym": False, "desc_act": False, "checkpoint_format": "gptq"}
        if a.packing == "gptq" else {"quant_method": "awq", "bits": 4, "group_size": a.group, "zero_point": True, "version": "gemm"})
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)


if __name__ == "__main__":
    main()
