#!/usr/bin/env bash
# tests/fixtures/split: tests/fixtures/arch/gemma3.gguf cut into three files by llama.cpp's own
# `llama-gguf-split` (the tool that makes `<name>-0000i-of-0000N.gguf` models), for
# tests/stream_load.rs. Usage: scripts/make_split_fixtures.sh /path/to/llama-gguf-split
# (build it from llama.cpp's source: `cmake --build build --target llama-gguf-split`).
set -euo pipefail
cd "$(dirname "$0")/.."
SPLIT="${1:?path to llama-gguf-split}"
rm -f tests/fixtures/split/gemma3-*.gguf
# 30 tensors a file: the tiny Gemma 3 has 80, so three files, the embedding table in the first.
"$SPLIT" --split --split-max-tensors 30 tests/fixtures/arch/gemma3.gguf tests/fixtures/split/gemma3
ls -l tests/fixtures/split
