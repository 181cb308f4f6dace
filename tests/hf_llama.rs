//! A Hugging Face LLaMA directory read as a GGUF-named source. The directories are built here
//! from tiny synthetic llama GGUFs the way `transformers` would store them: HF names, q/k rows
//! in HF's rotate-halves order (the inverse of llama.cpp's permutation), f32, f16, bf16, one
//! file or two shards with an index, a byte-level BPE `tokenizer.json`. Then the source's
//! tensors must equal the GGUF's, `qgpu quantize` must write the same bytes from either, the
//! CPU reference forward of the converted file must give the original's logits, the GPU model
//! must run it, and the converted tokenizer must encode like `tokenizers` does from the json.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;

use common::hf_dir::{hf_name, unpermute, write_safetensors, Dtype, HfTensor};
use common::llama_ref::RefLlama;
use common::tiny_gguf::{tiny_llama_gguf, TinySpec};
use qgpu::convert::{no_progress, quantize_model, ConvertOptions, QuantPlan};
use qgpu::loader::{GgufFile, HfModel, LoadError, SafetensorsSet, TensorSource};
use qgpu::quant::reference::TestRng;
use qgpu::model::llama::{Llama, LlamaOptions, Logits};
use qgpu::ops::KvType;
use qgpu::model::tokenizer::Tokenizer;
use qgpu::quant::Format;
use serde_json::{json, Value};

use common::TempDir;

fn spec(tied: bool) -> TinySpec {
    // 4 heads of 24 sharing 2 KV heads: the q and k permutations differ.
    TinySpec {
        dim: 96,
        n_heads: 4,
        n_kv_heads: 2,
        weight_format: Format::F32,
        embed_format: Format::F32,
        tied_head: tied,
        ..TinySpec::odd()
    }
}

/// GPT-2's byte → char map.
fn byte_char(b: u8) -> char {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    if printable(b) {
        b as char
    } else {
        let n = (0..b).filter(|&x| !printable(x)).count() as u32;
        char::from_u32(256 + n).unwrap()
    }
}

const MERGES: [(&str, &str); 4] = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("l", "l")];
const ADDED: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
const TEMPLATE: &str = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

/// A 263-token byte-level BPE tokenizer.json: 256 byte tokens, 4 merges, 3 special tokens.
/// `pairs`: merges as `["a", "b"]` (newer files) rather than `"a b"`.
fn tokenizer_json(pairs: bool) -> String {
    let mut vocab = serde_json::Map::new();
    for b in 0..=255u8 {
        vocab.insert(byte_char(b).to_string(), json!(vocab.len()));
    }
    for (a, b) in MERGES {
        vocab.insert(format!("{a}{b}"), json!(vocab.len()));
    }
    let merges: Vec<Value> = MERGES.iter().map(|(a, b)| if pairs { json!([a, b]) } else { json!(format!("{a} {b}")) }).collect();
    let added: Vec<Value> = ADDED
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"id": 260 + i, "content": t, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}))
        .collect();
    json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added, "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null, "end_of_word_suffix": null,
                  "fuse_unk": false, "byte_fallback": false, "ignore_merges": false, "vocab": vocab, "merges": merges}
    })
    .to_string()
}

fn config_json(s: &TinySpec) -> Value {
    json!({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
        "hidden_size": s.dim, "intermediate_size": s.ffn, "num_hidden_layers": s.n_layers,
        "num_attention_heads": s.n_heads, "num_key_value_heads": s.n_kv_heads,
        "max_position_embeddings": s.context, "rms_norm_eps": s.eps, "rope_theta": s.rope_base,
        "rope_scaling": null, "vocab_size": s.vocab, "tie_word_embeddings": s.tied_head,
        "bos_token_id": 260, "eos_token_id": 262, "torch_dtype": "float32"
    })
}

/// How the directory stores its weights.
enum Storage {
    /// One `model.safetensors`, every tensor in this dtype.
    Single(Dtype),
    /// Two shards and an index: F16 tensors in the first, BF16 in the second.
    Sharded,
}

/// Writes a HF LLaMA directory holding `gguf`'s model; returns the dtype each GGUF tensor was
/// stored in.
fn write_hf_dir(dir: &Path, gguf: &GgufFile, s: &TinySpec, storage: &Storage) -> BTreeMap<String, Dtype> {
    let head_dim = s.dim / s.n_heads;
    let mut tensors: Vec<HfTensor> = Vec::new();
    let mut dtypes = BTreeMap::new();
    for (i, t) in gguf.tensors().iter().enumerate() {
        let mut values = gguf.tensor_f32(&t.name).unwrap();
        let rows = t.dims.get(1).copied().unwrap_or(1) as usize;
        if t.name.ends_with("attn_q.weight") {
            values = unpermute(&values, rows, s.n_heads);
        } else if t.name.ends_with("attn_k.weight") {
            values = unpermute(&values, rows, s.n_kv_heads);
            assert_eq!(rows, s.n_kv_heads * head_dim);
        }
        let dtype = match storage {
            Storage::Single(d) => *d,
            Storage::Sharded if i % 2 == 0 => Dtype::F16,
            Storage::Sharded => Dtype::BF16,
        };
        dtypes.insert(t.name.clone(), dtype);
        tensors.push((hf_name(&t.name), t.dims.iter().rev().copied().collect(), dtype, values));
    }
    match storage {
        Storage::Single(_) => write_safetensors(&dir.join("model.safetensors"), &tensors.iter().collect::<Vec<_>>()),
        Storage::Sharded => {
            let mut map = serde_json::Map::new();
            for (dtype, file) in [(Dtype::F16, "model-00001-of-00002.safetensors"), (Dtype::BF16, "model-00002-of-00002.safetensors")] {
                let part: Vec<&HfTensor> = tensors.iter().filter(|t| t.2 == dtype).collect();
                for t in &part {
                    map.insert(t.0.clone(), json!(file));
                }
                write_safetensors(&dir.join(file), &part);
            }
            let index = json!({"metadata": {"total_size": 0}, "weight_map": map});
            std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
        }
    }
    std::fs::write(dir.join("config.json"), config_json(s).to_string()).unwrap();
    std::fs::write(dir.join("tokenizer.json"), tokenizer_json(matches!(storage, Storage::Single(_)))).unwrap();
    let tokenizer_config = json!({"bos_token": "<|endoftext|>", "eos_token": "<|im_end|>", "add_bos_token": false, "chat_template": TEMPLATE});
    std::fs::write(dir.join("tokenizer_config.json"), tokenizer_config.to_string()).unwrap();
    dtypes
}

fn convert(source: &dyn TensorSource, format: Format, out: &Path) -> GgufFile {
    quantize_model(source, &QuantPlan::new(format), &ConvertOptions { threads: 2, ..Default::default() }, out, &mut no_progress).unwrap();
    GgufFile::open(out).unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

const TOKENS: [u32; 9] = [260, 5, 77, 256, 259, 140, 3, 261, 199];

/// The source's tensors are the GGUF's (rounded to the stored dtype), with the same dims.
fn check_tensors(hf: &HfModel, gguf: &GgufFile, dtypes: &BTreeMap<String, Dtype>) {
    let mut names: Vec<String> = hf.tensors().into_iter().map(|t| t.name).collect();
    let mut want: Vec<String> = gguf.tensors().iter().map(|t| t.name.clone()).collect();
    names.sort();
    want.sort();
    assert_eq!(names, want);
    for t in gguf.tensors() {
        let got = hf.tensor(&t.name).unwrap();
        assert_eq!(got.dims, t.dims, "{}", t.name);
        let dtype = dtypes[&t.name];
        let expected: Vec<f32> = gguf.tensor_f32(&t.name).unwrap().iter().map(|&v| dtype.round(v)).collect();
        assert_eq!(hf.tensor_f32(&t.name).unwrap(), expected, "{} ({dtype:?})", t.name);
    }
}

#[test]
fn f32_directory_converts_to_the_same_model() {
    let s = spec(false);
    let gguf = GgufFile::from_bytes(tiny_llama_gguf(&s, 11)).unwrap();
    let dir = TempDir::new("f32");
    let dtypes = write_hf_dir(&dir.0, &gguf, &s, &Storage::Single(Dtype::F32));
    let hf = HfModel::open(&dir.0).unwrap();
    check_tensors(&hf, &gguf, &dtypes);

    let m = hf.metadata();
    for key in [
        "llama.context_length",
        "llama.embedding_length",
        "llama.feed_forward_length",
        "llama.block_count",
        "llama.attention.head_count",
        "llama.attention.head_count_kv",
        "llama.rope.dimension_count",
        "llama.vocab_size",
    ] {
        assert_eq!(m.get_u32(key).unwrap(), gguf.metadata().get_u32(key).unwrap(), "{key}");
    }
    for key in ["llama.rope.freq_base", "llama.attention.layer_norm_rms_epsilon"] {
        assert_eq!(m.get_f32(key).unwrap(), gguf.metadata().get_f32(key).unwrap(), "{key}");
    }

    // F32 out: the CPU forward of the converted file gives the original's logits exactly.
    let f32_file = convert(&hf, Format::F32, &dir.0.join("out-f32.gguf"));
    let want = RefLlama::from_gguf(&gguf).unwrap().forward(&TOKENS);
    let got = RefLlama::from_gguf(&f32_file).unwrap().forward(&TOKENS);
    for (pos, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(max_diff(g, w), 0.0, "position {pos}");
    }

    // Q8_0 out: byte for byte what quantizing the original GGUF writes.
    let from_hf = convert(&hf, Format::Q8_0, &dir.0.join("hf-q8.gguf"));
    let from_gguf = convert(&gguf, Format::Q8_0, &dir.0.join("gguf-q8.gguf"));
    for t in from_gguf.tensors() {
        let other = from_hf.tensor(&t.name).unwrap_or_else(|| panic!("{} missing", t.name));
        assert_eq!((other.ggml_type, &other.dims), (t.ggml_type, &t.dims), "{}", t.name);
        assert!(from_hf.tensor_bytes(&t.name).unwrap() == from_gguf.tensor_bytes(&t.name).unwrap(), "{} bytes differ", t.name);
    }

    // The GPU model runs the converted file like the CPU reference does.
    let Some(ctx) = common::context() else { return };
    let options = LlamaOptions { context: s.context, chunk: 16, kv_type: KvType::F32, ..Default::default() };
    let mut model = pollster::block_on(Llama::load(&ctx, &from_hf, options, &mut |_, _| {})).unwrap();
    let all = pollster::block_on(model.forward(&ctx, &TOKENS, Logits::All)).unwrap();
    let want = RefLlama::from_gguf(&from_hf).unwrap().forward(&TOKENS);
    for (pos, w) in want.iter().enumerate() {
        let d = max_diff(&all[pos * s.vocab..(pos + 1) * s.vocab], w);
        assert!(d <= 2e-3, "GPU position {pos}: {d}");
    }

    // And the directory itself, with no conversion, runs like the original GGUF.
    gpu_matches_reference(&ctx, &hf, &gguf, &s);
}

/// The GPU model loaded straight from `source` gives `reference`'s CPU logits (within 2e-3).
fn gpu_matches_reference(ctx: &qgpu::gpu::Context, source: &dyn TensorSource, reference: &GgufFile, s: &TinySpec) {
    let options = LlamaOptions { context: s.context, chunk: 16, kv_type: KvType::F32, ..Default::default() };
    let mut model = pollster::block_on(Llama::load(ctx, source, options, &mut |_, _| {})).unwrap();
    let all = pollster::block_on(model.forward(ctx, &TOKENS, Logits::All)).unwrap();
    let want = RefLlama::from_gguf(reference).unwrap().forward(&TOKENS);
    for (pos, w) in want.iter().enumerate() {
        let d = max_diff(&all[pos * s.vocab..(pos + 1) * s.vocab], w);
        assert!(d <= 2e-3, "GPU from the directory, position {pos}: {d}");
    }
}

#[test]
fn sharded_f16_bf16_directory_with_tied_head() {
    let s = spec(true);
    let gguf = GgufFile::from_bytes(tiny_llama_gguf(&s, 12)).unwrap();
    let dir = TempDir::new("sharded");
    let dtypes = write_hf_dir(&dir.0, &gguf, &s, &Storage::Sharded);
    assert!(dtypes.values().any(|&d| d == Dtype::F16) && dtypes.values().any(|&d| d == Dtype::BF16));
    let hf = HfModel::open(&dir.0).unwrap();
    assert!(hf.tensor("output.weight").is_none());
    check_tensors(&hf, &gguf, &dtypes);

    // Logits within the rounding of f16/bf16 weights.
    let converted = convert(&hf, Format::F32, &dir.0.join("out.gguf"));
    let want = RefLlama::from_gguf(&gguf).unwrap().forward(&TOKENS);
    let got = RefLlama::from_gguf(&converted).unwrap().forward(&TOKENS);
    for (pos, (g, w)) in got.iter().zip(&want).enumerate() {
        let d = max_diff(g, w);
        assert!(d > 0.0 && d < 0.1, "position {pos}: {d}");
    }

    // On the GPU straight from the directory (F16 and BF16 as stored): the logits
    // of the same rounded weights.
    let Some(ctx) = common::context() else { return };
    gpu_matches_reference(&ctx, &hf, &converted, &s);
}

#[test]
fn tokenizer_converts_and_encodes_like_tokenizers() {
    let s = spec(false);
    let gguf = GgufFile::from_bytes(tiny_llama_gguf(&s, 13)).unwrap();
    for storage in [Storage::Single(Dtype::BF16), Storage::Sharded] {
        let dir = TempDir::new("tokenizer");
        write_hf_dir(&dir.0, &gguf, &s, &storage);
        let hf = HfModel::open(&dir.0).unwrap();
        // Through a written GGUF, as `qgpu run` sees it.
        let file = convert(&hf, Format::Q8_0, &dir.0.join("out.gguf"));
        let m = file.metadata();
        assert_eq!(m.get_str("tokenizer.ggml.model").unwrap(), "gpt2");
        assert_eq!(m.get_str("tokenizer.ggml.pre").unwrap(), "default");
        assert_eq!(m.get_str("tokenizer.chat_template").unwrap(), TEMPLATE);
        let ours = Tokenizer::from_gguf(m).unwrap();
        assert_eq!((ours.bos_id(), ours.eos_id(), ours.adds_bos()), (Some(260), Some(262), false));
        assert_eq!(ours.vocab_size(), s.vocab);

        let theirs = tokenizers::Tokenizer::from_str(&tokenizer_json(true)).unwrap();
        for text in ["the hello world", " the  thee\tll<|im_start|>user\nhé €5<|im_end|>", "tthe Ġ\u{0}"] {
            let want = theirs.encode(text, false).unwrap().get_ids().to_vec();
            // transformers parses special-token text; qgpu does when asked.
            assert_eq!(ours.encode_special(text).unwrap(), want, "{text:?}");
            assert_eq!(ours.decode(&want).unwrap(), text);
        }
        assert_eq!(ours.encode(" the hell").unwrap(), [258, 32, 257, 259], "the merges were not applied");
    }
}

#[test]
fn unusable_directories_are_typed_errors() {
    let s = spec(false);
    let gguf = GgufFile::from_bytes(tiny_llama_gguf(&s, 14)).unwrap();
    let dir = TempDir::new("errors");
    write_hf_dir(&dir.0, &gguf, &s, &Storage::Single(Dtype::F16));
    let bad_config = |edit: &dyn Fn(&mut Value)| {
        let mut config = config_json(&s);
        edit(&mut config);
        std::fs::write(dir.0.join("config.json"), config.to_string()).unwrap();
        match HfModel::open(&dir.0) {
            Err(LoadError::BadModel { reason, .. }) => reason,
            other => panic!("expected BadModel, got {other:?}"),
        }
    };
    assert!(bad_config(&|c| c["rope_scaling"] = json!({"type": "linear", "factor": 2.0})).contains("rope_scaling"));
    // transformers 5 writes `rope_parameters`; only plain RoPE is read from it.
    assert!(bad_config(&|c| c["rope_parameters"] = json!({"rope_type": "yarn", "rope_theta": 1e6, "factor": 4.0})).contains("rope_parameters"));
    assert!(bad_config(&|c| c["rope_parameters"] = json!({"rope_type": "default", "rope_theta": -1.0})).contains("rope_theta"));
    assert!(bad_config(&|c| c["model_type"] = json!("gpt_neox")).contains("gpt_neox"));
    assert!(bad_config(&|c| c["num_key_value_heads"] = json!(3)).contains("KV heads"));
    assert!(bad_config(&|c| c["hidden_act"] = json!("gelu")).contains("hidden_act"));
    assert!(bad_config(&|c| c.as_object_mut().unwrap().remove("intermediate_size").map(drop).unwrap()).contains("intermediate_size"));
    // A config whose head count does not fit the stored q rows.
    assert!(bad_config(&|c| {
        c["num_attention_heads"] = json!(2);
        c["num_key_value_heads"] = json!(2);
    })
    .contains("heads"));

    // ... and its base is the one used.
    let mut config = config_json(&s);
    config.as_object_mut().unwrap().remove("rope_theta");
    config["rope_parameters"] = json!({"rope_type": "default", "rope_theta": 500000.0});
    std::fs::write(dir.0.join("config.json"), config.to_string()).unwrap();
    assert_eq!(HfModel::open(&dir.0).unwrap().metadata().get_f32("llama.rope.freq_base").unwrap(), 500000.0);

    std::fs::write(dir.0.join("config.json"), config_json(&s).to_string()).unwrap();
    let mut tokenizer: Value = serde_json::from_str(&tokenizer_json(false)).unwrap();
    tokenizer["pre_tokenizer"] = json!({"type": "Metaspace", "replacement": "▁"});
    std::fs::write(dir.0.join("tokenizer.json"), tokenizer.to_string()).unwrap();
    assert!(matches!(HfModel::open(&dir.0), Err(LoadError::BadModel { reason, .. }) if reason.contains("pre_tokenizer")));
    std::fs::remove_file(dir.0.join("tokenizer.json")).unwrap();
    assert!(matches!(HfModel::open(&dir.0), Err(LoadError::BadModel { reason, .. }) if reason.contains("tokenizer.json")));
}

/// `rows × k` matrix times `x`.
fn matvec(m: &[f32], x: &[f32]) -> Vec<f32> {
    m.chunks_exact(x.len()).map(|row| row.iter().zip(x).map(|(a, b)| a * b).sum()).collect()
}

/// Angle of rotation pair `i` of a head of `d` dims at position `pos`.
fn angle(pos: usize, i: usize, d: usize, base: f32) -> f32 {
    pos as f32 * base.powf(-2.0 * i as f32 / d as f32)
}

/// `transformers`' LLaMA RoPE on one head: dims `i` and `i + d/2` rotate together.
fn rope_halves(v: &mut [f32], pos: usize, base: f32) {
    let d = v.len();
    for i in 0..d / 2 {
        let (s, c) = angle(pos, i, d, base).sin_cos();
        let (a, b) = (v[i], v[i + d / 2]);
        v[i] = a * c - b * s;
        v[i + d / 2] = b * c + a * s;
    }
}

/// GGUF llama's (and qgpu's) RoPE on one head: dims `2i` and `2i + 1` rotate together.
fn rope_pairs(v: &mut [f32], pos: usize, base: f32) {
    let d = v.len();
    for i in 0..d / 2 {
        let (s, c) = angle(pos, i, d, base).sin_cos();
        let (a, b) = (v[2 * i], v[2 * i + 1]);
        v[2 * i] = a * c - b * s;
        v[2 * i + 1] = a * s + b * c;
    }
}

/// Attention scores q·k of every head, from q/k weights, inputs, positions and a RoPE.
fn scores(wq: &[f32], wk: &[f32], x: &[f32], y: &[f32], s: &TinySpec, rope: fn(&mut [f32], usize, f32)) -> Vec<f32> {
    let hd = s.dim / s.n_heads;
    let (mut q, mut k) = (matvec(wq, x), matvec(wk, y));
    q.chunks_exact_mut(hd).for_each(|h| rope(h, 7, s.rope_base));
    k.chunks_exact_mut(hd).for_each(|h| rope(h, 3, s.rope_base));
    (0..s.n_heads)
        .map(|h| {
            let kv = h / (s.n_heads / s.n_kv_heads);
            q[h * hd..(h + 1) * hd].iter().zip(&k[kv * hd..(kv + 1) * hd]).map(|(a, b)| a * b).sum()
        })
        .collect()
}

/// The permutation is the right one, checked against HF's own RoPE rather than against this
/// file's inverse: attention scores from the stored HF q/k weights under `transformers`'
/// rotate-halves RoPE equal those from the loaded weights under the adjacent-pairs RoPE.
#[test]
fn permuted_weights_under_pair_rope_score_like_hf_rope() {
    let s = spec(false);
    let gguf = GgufFile::from_bytes(tiny_llama_gguf(&s, 15)).unwrap();
    let dir = TempDir::new("rope");
    write_hf_dir(&dir.0, &gguf, &s, &Storage::Single(Dtype::F32));
    let hf = HfModel::open(&dir.0).unwrap();
    let stored = SafetensorsSet::open(&dir.0).unwrap();
    let stored_f32 = |name: &str| -> Vec<f32> {
        let (_, bytes) = stored.get(name).unwrap();
        bytes.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()
    };
    let mut rng = TestRng::new(3);
    let (x, y) = (rng.vec(s.dim), rng.vec(s.dim));
    let want = scores(
        &stored_f32("model.layers.1.self_attn.q_proj.weight"),
        &stored_f32("model.layers.1.self_attn.k_proj.weight"),
        &x,
        &y,
        &s,
        rope_halves,
    );
    let got = scores(&hf.tensor_f32("blk.1.attn_q.weight").unwrap(), &hf.tensor_f32("blk.1.attn_k.weight").unwrap(), &x, &y, &s, rope_pairs);
    assert!(max_diff(&got, &want) < 1e-4, "{got:?} vs {want:?}");
    // Without the permutation the scores differ: the check can fail.
    let unpermuted = scores(&stored_f32("model.layers.1.self_attn.q_proj.weight"), &stored_f32("model.layers.1.self_attn.k_proj.weight"), &x, &y, &s, rope_pairs);
    assert!(max_diff(&unpermuted, &want) > 1e-2);
}

/// The real model: SmolLM2's GGUF (dequantized) written back as the Hugging Face directory it
/// came from, its tokenizer.json rebuilt from the GGUF vocabulary. The directory must read back
/// as the same tensors, the same `tokenizer.*` metadata (49152 tokens, merges, SmolLM
/// pre-tokenizer, chat template), encode transformers' fixture ids, and quantize to the same
/// Q8_0 bytes as the GGUF. Needs the model (`scripts/fetch-model.sh`); skipped without it
/// unless CI=true.
#[test]
fn smollm2_through_a_hf_directory() {
    let path = common::model_path();
    if !path.exists() {
        assert!(!std::env::var("CI").is_ok_and(|v| v == "true"), "CI=true and no model at {}", path.display());
        eprintln!("skipping: no model at {}", path.display());
        return;
    }
    let gguf = GgufFile::open(&path).unwrap();
    let m = gguf.metadata();
    let u = |k: &str| m.get_u32(k).unwrap();
    assert_eq!(m.get_str("tokenizer.ggml.pre").unwrap(), "smollm");
    let (heads, kv_heads) = (u("llama.attention.head_count") as usize, u("llama.attention.head_count_kv") as usize);
    let tokens = m.get_string_array("tokenizer.ggml.tokens").unwrap().to_vec();
    let types = m.get_i32_array("tokenizer.ggml.token_type").unwrap().to_vec();
    let merges = m.get_string_array("tokenizer.ggml.merges").unwrap().to_vec();
    let template = m.get_str("tokenizer.chat_template").unwrap().to_owned();
    let dir = TempDir::new("smollm2");

    let config = json!({
        "model_type": "llama", "hidden_act": "silu", "hidden_size": u("llama.embedding_length"),
        "intermediate_size": u("llama.feed_forward_length"), "num_hidden_layers": u("llama.block_count"),
        "num_attention_heads": heads, "num_key_value_heads": kv_heads,
        "max_position_embeddings": u("llama.context_length"), "rope_theta": m.get_f32("llama.rope.freq_base").unwrap(),
        "rms_norm_eps": m.get_f32("llama.attention.layer_norm_rms_epsilon").unwrap(), "vocab_size": tokens.len(),
        "tie_word_embeddings": gguf.tensor("output.weight").is_none(), "rope_scaling": null,
        "bos_token_id": u("tokenizer.ggml.bos_token_id"), "eos_token_id": u("tokenizer.ggml.eos_token_id"),
    });
    std::fs::write(dir.0.join("config.json"), config.to_string()).unwrap();
    let mut vocab = serde_json::Map::new();
    let mut added = Vec::new();
    for (i, (t, &ty)) in tokens.iter().zip(&types).enumerate() {
        if ty == 3 || ty == 4 {
            added.push(json!({"id": i, "content": t, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": ty == 3}));
        }
        // transformers keeps added tokens in the BPE vocabulary too.
        vocab.insert(t.clone(), json!(i));
    }
    let tokenizer = json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added, "normalizer": null,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}]},
        "post_processor": null, "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null, "end_of_word_suffix": null,
                  "fuse_unk": false, "byte_fallback": false, "ignore_merges": false, "vocab": vocab, "merges": merges}
    })
    .to_string();
    std::fs::write(dir.0.join("tokenizer.json"), &tokenizer).unwrap();
    let mut tokenizer_config = json!({"chat_template": template});
    if let Ok(add) = m.get_bool("tokenizer.ggml.add_bos_token") {
        tokenizer_config["add_bos_token"] = json!(add);
    }
    std::fs::write(dir.0.join("tokenizer_config.json"), tokenizer_config.to_string()).unwrap();
    let hf_tensors: Vec<HfTensor> = gguf
        .tensors()
        .iter()
        .map(|t| {
            let mut values = gguf.tensor_f32(&t.name).unwrap();
            let rows = t.dims.get(1).copied().unwrap_or(1) as usize;
            if t.name.ends_with("attn_q.weight") {
                values = unpermute(&values, rows, heads);
            } else if t.name.ends_with("attn_k.weight") {
                values = unpermute(&values, rows, kv_heads);
            }
            (hf_name(&t.name), t.dims.iter().rev().copied().collect(), Dtype::F32, values)
        })
        .collect();
    write_safetensors(&dir.0.join("model.safetensors"), &hf_tensors.iter().collect::<Vec<_>>());
    drop(hf_tensors);

    let hf = HfModel::open(&dir.0).unwrap();
    let dtypes = gguf.tensors().iter().map(|t| (t.name.clone(), Dtype::F32)).collect();
    check_tensors(&hf, &gguf, &dtypes);
    let hm = hf.metadata();
    assert_eq!(hm.get_string_array("tokenizer.ggml.tokens").unwrap(), tokens.as_slice());
    assert_eq!(&*hm.get_i32_array("tokenizer.ggml.token_type").unwrap(), types.as_slice());
    assert_eq!(hm.get_string_array("tokenizer.ggml.merges").unwrap(), merges.as_slice());
    for key in ["tokenizer.ggml.pre", "tokenizer.chat_template"] {
        assert_eq!(hm.get_str(key).unwrap(), m.get_str(key).unwrap(), "{key}");
    }
    for key in ["tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id"] {
        assert_eq!(hm.get_u32(key).unwrap(), m.get_u32(key).unwrap(), "{key}");
    }

    // transformers' ids for the fixture prompts, from the converted metadata and from the json.
    let ours = Tokenizer::from_gguf(hm).unwrap();
    let theirs = tokenizers::Tokenizer::from_str(&tokenizer).unwrap();
    let fixture: Value =
        serde_json::from_str(&std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/smollm2_reference.json")).unwrap()).unwrap();
    for case in fixture["cases"].as_array().unwrap() {
        let prompt = case["prompt"].as_str().unwrap();
        let want: Vec<u32> = case["input_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        let text = if case["chat"].as_bool().unwrap() {
            ours.apply_chat_template(&[qgpu::model::chat::ChatMessage::user(prompt)], true).unwrap()
        } else {
            prompt.to_owned()
        };
        assert_eq!(ours.encode_special(&text).unwrap(), want, "{prompt:?}");
        assert_eq!(theirs.encode(text.as_str(), false).unwrap().get_ids(), want.as_slice(), "{prompt:?}");
    }

    let from_hf = convert(&hf, Format::Q8_0, &dir.0.join("hf-q8.gguf"));
    let from_gguf = convert(&gguf, Format::Q8_0, &dir.0.join("gguf-q8.gguf"));
    for t in from_gguf.tensors() {
        assert!(from_hf.tensor_bytes(&t.name).unwrap() == from_gguf.tensor_bytes(&t.name).unwrap(), "{} bytes differ", t.name);
    }
}

/// The binary end to end: `qgpu quantize` (plain and `--calibrate`) takes the directory,
/// `qgpu run` on the result and on the directory prints the CPU reference's greedy
/// continuation, and `qgpu eval` scores the results against the directory.
#[test]
fn cli_quantizes_a_directory_and_runs_the_result() {
    let s = spec(false);
    let gguf = GgufFile::from_bytes(tiny_llama_gguf(&s, 16)).unwrap();
    let dir = TempDir::new("cli");
    let model = dir.0.join("model");
    std::fs::create_dir(&model).unwrap();
    write_hf_dir(&model, &gguf, &s, &Storage::Single(Dtype::F32));
    let qgpu = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_qgpu")).args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "qgpu {args:?} failed: {stderr}");
        String::from_utf8(out.stdout).unwrap()
    };
    let (model, out) = (model.to_str().unwrap(), dir.0.join("q8.gguf"));
    qgpu(&["quantize", "--model", model, "--out", out.to_str().unwrap(), "--format", "Q8_0"]);
    let written = GgufFile::open(&out).unwrap();
    let from_gguf = convert(&gguf, Format::Q8_0, &dir.0.join("gguf-q8.gguf"));
    for t in from_gguf.tensors() {
        assert!(written.tensor_bytes(&t.name).unwrap() == from_gguf.tensor_bytes(&t.name).unwrap(), "{} bytes differ", t.name);
    }

    let Some(_) = common::context() else { return };
    // The CPU reference's greedy text on a GGUF, stopped at any special token.
    let tokenizer = Tokenizer::from_gguf(written.metadata()).unwrap();
    let prompt = "the hello world";
    let greedy = |file: &GgufFile| -> (String, usize) {
        let reference = RefLlama::from_gguf(file).unwrap();
        let mut ids = tokenizer.encode(prompt).unwrap();
        let start = ids.len();
        while ids.len() < start + 6 {
            let logits = reference.forward(&ids).pop().unwrap();
            let next = (0..logits.len()).max_by(|&a, &b| logits[a].total_cmp(&logits[b])).unwrap() as u32;
            if next >= 260 {
                break;
            }
            ids.push(next);
        }
        assert!(ids.len() - start >= 3, "the greedy run stopped early: {ids:?}");
        (tokenizer.decode(&ids[start..]).unwrap(), ids.len() - start)
    };
    let args = ["--prompt", prompt, "--temperature", "0", "--repeat-penalty", "1", "--context", "32"];
    // `qgpu run` on the written file, and on the directory itself.
    for (path, file) in [(out.to_str().unwrap(), &written), (model, &gguf)] {
        let (want, n) = greedy(file);
        let got = qgpu(&[&["run", "--model", path, "--max-tokens", &n.to_string()], &args[..]].concat());
        assert_eq!(got.trim_end_matches('\n'), want, "qgpu run --model {path}");
    }

    let text = dir.0.join("calibration.txt");
    std::fs::write(&text, "the hello world, the hell of the world\nhello there ".repeat(8)).unwrap();
    let calibrated = dir.0.join("q4.gguf");
    qgpu(&["quantize", "--model", model, "--out", calibrated.to_str().unwrap(), "--format", "Q4_0", "--calibrate", text.to_str().unwrap()]);
    let file = GgufFile::open(&calibrated).unwrap();
    assert!(file.metadata().get_str("qgpu.quantization").unwrap().contains("calibration.txt"));
    let leftovers: Vec<_> = std::fs::read_dir(&dir.0).unwrap().map(|e| e.unwrap().file_name()).filter(|n| n.to_string_lossy().starts_with('.')).collect();
    assert!(leftovers.is_empty(), "scratch files left: {leftovers:?}");

    // `qgpu eval` against the directory as the full-precision reference.
    let json = dir.0.join("eval.json");
    qgpu(&["eval", "--reference", model, "--model", out.to_str().unwrap(), "--model", calibrated.to_str().unwrap(), "--text", text.to_str().unwrap(), "--json", json.to_str().unwrap()]);
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(doc["kind"], "language_model");
    let kl = |i: usize| doc["models"][i]["kl_mean"].as_f64().unwrap();
    assert!(kl(0) >= 0.0 && kl(0) < kl(1), "Q8_0 KL {} vs Q4_0 KL {}", kl(0), kl(1));
    assert_eq!(doc["reference"]["bytes_by_type"].as_object().unwrap().keys().collect::<Vec<_>>(), ["F32"]);
}
