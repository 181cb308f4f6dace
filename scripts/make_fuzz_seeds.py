#!/usr/bin/env python3
"""Writes seed inputs for the fuzz targets into fuzz/corpus/<target>/ (not committed).

Each target cuts its input into length-prefixed parts (fuzz/fuzz_targets/split.rs): a
little-endian u16 length, then that many bytes, for every part but the last. The seeds are
small valid inputs, so the fuzzer starts from the paths real files take:

    python3 scripts/make_fuzz_seeds.py [SmolLM2.gguf]

With a GGUF given, its chat template is a seed too (needs PyPI `gguf`).
"""
import json
import os
import struct
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fuzz", "corpus")


def parts(*chunks: bytes) -> bytes:
    out = b""
    for c in chunks[:-1]:
        assert len(c) < 65536
        out += struct.pack("<H", len(c)) + c
    return out + chunks[-1]


def write(target: str, name: str, data: bytes) -> None:
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


TEMPLATES = {
    "chatml": "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
    "gemma": "{{ bos_token }}{% set system = namespace(text='') %}{% for message in messages %}{% if message['role'] == 'system' %}{% set system.text = message['content'] | trim + '\\n\\n' %}{% else %}{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}{{ '<start_of_turn>' + role + '\\n' + system.text + message['content'] | trim + '<end_of_turn>\\n' }}{% set system.text = '' %}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}",
    "llama3": "{{- bos_token }}{%- for message in messages %}{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}{%- endfor %}{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}",
    "loops": "{% set ns = namespace(n=0) %}{% for m in messages %}{% if loop.first and m.role != 'system' %}{{ raise_exception('system first') }}{% endif %}{% set ns.n = ns.n + m.content|length %}{{ m.role|upper ~ ':' ~ m.content.strip() ~ (' ' * 3) }}{% endfor %}{{ ns.n }}{{ messages|map(attribute='role')|join(',') }}",
}


def main() -> None:
    for name, t in TEMPLATES.items():
        write("chat_template", name, parts(t.encode(), b"user", "hi <|im_end|> ☃".encode()))
    if len(sys.argv) > 1:
        import gguf

        r = gguf.GGUFReader(sys.argv[1])
        f = r.fields["tokenizer.chat_template"]
        write("chat_template", "gguf", parts(bytes(f.parts[f.data[0]]), b"user", b"What is 2+2?"))

    vocab = "\0".join(["<unk>", "<s>", "</s>", "<|im_start|>", "▁", "a", "b", "c", "ab", "▁a", "▁ab", "bc", "abc", "<0x0A>", "é"])
    for flags, text in [(b"\x00", "abc ab\nbé"), (b"\x02\x04\x01\x02", "<s>ab<|im_start|>c"), (b"\x01", "a bc abc")]:
        write("tokenizer", f"vocab{flags[0]}", parts(flags, vocab.encode(), text.encode()))

    config = {"model_type": "bert", "hidden_size": 8, "num_attention_heads": 2, "num_hidden_layers": 1,
              "intermediate_size": 16, "max_position_embeddings": 8, "type_vocab_size": 2, "vocab_size": 5,
              "layer_norm_eps": 1e-12}
    tokenizer = {"version": "1.0", "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                 "max_input_chars_per_word": 100, "vocab": {"[UNK]": 0, "[CLS]": 1, "[SEP]": 2, "a": 3, "##a": 4}},
                 "pre_tokenizer": {"type": "BertPreTokenizer"}}
    tensors = {"embeddings.word_embeddings.weight": [5, 8], "embeddings.position_embeddings.weight": [8, 8],
               "encoder.layer.0.attention.self.query.weight": [8, 8], "encoder.layer.0.attention.self.query.bias": [8]}
    header, data = {}, b""
    for name, shape in tensors.items():
        n = 1
        for d in shape:
            n *= d
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [len(data), len(data) + 4 * n]}
        data += struct.pack(f"<{n}f", *[(i % 7) / 7 for i in range(n)])
    h = json.dumps(header).encode()
    st = struct.pack("<Q", len(h)) + h + data
    write("safetensors", "bert", parts(json.dumps(config).encode(), json.dumps(tokenizer).encode(), b"", st))
    llama = {"model_type": "llama", "hidden_size": 8, "num_attention_heads": 2, "num_key_value_heads": 1,
             "num_hidden_layers": 1, "intermediate_size": 16, "max_position_embeddings": 32, "vocab_size": 5,
             "rms_norm_eps": 1e-5, "rope_theta": 10000.0}
    write("safetensors", "llama", parts(json.dumps(llama).encode(), json.dumps(tokenizer).encode(), b"{}", st))


if __name__ == "__main__":
    main()
