#!/usr/bin/env python3
"""Splits a GGUF file as llama.cpp's gguf-split does (`<prefix>-0000i-of-0000N.gguf`, the
metadata in the first file, `split.*` keys in each), with gguf-py's own writer (PyPI `gguf`,
llama.cpp's library). The browser test uses it to make a split SmolLM2.

Usage: split_gguf.py IN.gguf OUT_PREFIX --max-tensors N
"""
import argparse

import gguf


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("prefix")
    ap.add_argument("--max-tensors", type=int, required=True)
    args = ap.parse_args()
    reader = gguf.GGUFReader(args.src)
    arch = reader.fields["general.architecture"].contents()
    writer = gguf.GGUFWriter(args.prefix + ".gguf", arch, split_max_tensors=args.max_tensors)
    for name, field in reader.fields.items():
        # The writer adds the container's own keys (and the architecture) itself.
        if name.startswith("GGUF.") or name in ("general.architecture", "general.alignment") or name.startswith("split."):
            continue
        vtype = field.types[0]
        sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(name, field.contents(), vtype, sub_type=sub)
    for t in reader.tensors:
        # The stored bytes as they are: quantized blocks are not re-encoded.
        writer.add_tensor(t.name, t.data, raw_dtype=t.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


if __name__ == "__main__":
    main()
