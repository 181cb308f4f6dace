#!/usr/bin/env python3
"""Writes tests/fixtures/formats/<TYPE>.bin: random blocks of every GGUF type qgpu reads and
their values as llama.cpp's own gguf-py dequantizes them, the independent oracle of
tests/format_oracle.rs. Needs `pip install gguf numpy`; the tests need only the files.

File layout (little endian): u32 ggml type id, u32 block count, u32 bytes per block,
u32 values per block, the raw blocks, then one f32 per value.

Blocks are seeded random bytes with every f16 scale field overwritten by a finite value of
magnitude 0.01..1 and random sign (random bits there would give inf/NaN, which says nothing
about the layout). Plain types get random finite bit patterns, subnormals included.
"""

import pathlib
import struct
import sys

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize

# type: (values per block, bytes per block, blocks, byte offsets of f16 scale fields)
TYPES = {
    T.F32: (1, 4, 256, []),
    T.F16: (1, 2, 256, []),
    T.BF16: (1, 2, 256, []),
    T.Q8_0: (32, 34, 16, [0]),
    T.Q4_0: (32, 18, 16, [0]),
    T.Q4_1: (32, 20, 16, [0, 2]),
    T.Q5_0: (32, 22, 16, [0]),
    T.Q5_1: (32, 24, 16, [0, 2]),
    T.IQ4_NL: (32, 18, 16, [0]),
    T.MXFP4: (32, 17, 16, []),
    T.Q2_K: (256, 84, 6, [80, 82]),
    T.Q3_K: (256, 110, 6, [108]),
    T.Q4_K: (256, 144, 6, [0, 2]),
    T.Q5_K: (256, 176, 6, [0, 2]),
    T.Q6_K: (256, 210, 6, [208]),
    T.IQ4_XS: (256, 136, 6, [0]),
}


def scale_halves(rng, n):
    mag = rng.uniform(0.01, 1.0, n)
    sign = rng.choice([-1.0, 1.0], n)
    return (mag * sign).astype(np.float16).view(np.uint16)


def blocks(ty, rng):
    size, nbytes, count, scales = TYPES[ty]
    raw = rng.integers(0, 256, size=(count, nbytes), dtype=np.uint8)
    if ty == T.F32:
        bits = raw.view(np.uint32)
        # Exponent 255 is inf/NaN: clear its top bit there.
        bits[(bits >> 23 & 0xFF) == 0xFF] &= ~np.uint32(1 << 30)
    elif ty in (T.F16, T.BF16):
        bits = raw.view(np.uint16)
        mask = 0x7C00 if ty == T.F16 else 0x7F80
        bits[(bits & mask) == mask] &= np.uint16(~(mask & (mask >> 1)) & 0xFFFF)
    elif ty == T.MXFP4:
        # E8M0 exponents around 2^0, plus the two that ggml decodes as subnormals.
        raw[:, 0] = rng.integers(110, 140, size=count)
        raw[0, 0], raw[1, 0] = 0, 1
    for off in scales:
        raw[:, off:off + 2] = scale_halves(rng, count).view(np.uint8).reshape(count, 2)
    return raw


def main():
    out = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/formats")
    out.mkdir(parents=True, exist_ok=True)
    for i, ty in enumerate(TYPES):
        rng = np.random.default_rng(2026 + i)
        raw = blocks(ty, rng)
        size, nbytes, count, _ = TYPES[ty]
        values = dequantize(raw.reshape(-1), ty).astype(np.float32).reshape(-1)
        assert values.size == count * size, (ty.name, values.size)
        assert np.isfinite(values).all(), ty.name
        header = struct.pack("<4I", int(ty), count, nbytes, size)
        (out / f"{ty.name}.bin").write_bytes(header + raw.tobytes() + values.astype("<f4").tobytes())
        print(f"{ty.name}: {count} blocks, {values.size} values")


if __name__ == "__main__":
    main()
