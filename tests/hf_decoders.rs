//! Hugging Face decoder directories beyond LLaMA/Qwen run without conversion (fixtures from
//! scripts/make_hf_decoder_fixtures.py: tiny bf16 models made by transformers on CPU):
//! - Gemma 3 (`gemma3_text`): Gemma's `1 + w` norms, the stated head size,
//!   `query_pre_attn_scalar`, the final soft-cap (and not the attention one, which
//!   transformers' Gemma 3 ignores), sliding-window layers (window 8 in a 38-token prompt) and
//!   the window layers' own RoPE base, all from config.json;
//! - Phi-3: fused `qkv_proj` / `gate_up_proj` and partial RoPE;
//! - SmolLM3: no RoPE in every fourth layer;
//!
//! each giving transformers' f32 logits. Their SentencePiece-style tokenizers (a cut of Gemma 3's
//! own; the same made Llama 2-style for Phi-3) encode as transformers' and as the `tokenizers`
//! crate's with the same tokenizer.json.

mod common;

use std::path::PathBuf;

use common::hf_dir::logits_against_fixture;
use qgpu::loader::{GgmlType, HfModel, TensorSource};
use qgpu::model::tokenizer::Tokenizer;
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf").join(name)
}

/// The tokenizer of directory `name` against transformers' ids (tokens.json) and against the
/// `tokenizers` crate.
fn tokenizer_encodes_as_transformers(name: &str, add_space_prefix: bool) {
    let source = HfModel::open(fixture(name)).unwrap();
    let m = source.metadata();
    assert_eq!(m.get_str("tokenizer.ggml.model").unwrap(), "llama");
    assert_eq!(m.get_bool("tokenizer.ggml.add_space_prefix").unwrap(), add_space_prefix);
    let ours = Tokenizer::from_gguf(m).unwrap();
    assert_eq!((ours.bos_id(), ours.eos_id(), ours.adds_bos()), (Some(2), Some(1), true));

    let cases: Value = serde_json::from_slice(&std::fs::read(fixture(name).join("tokens.json")).unwrap()).unwrap();
    for case in cases.as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let want: Vec<u32> = case["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        // transformers parses special-token text; qgpu does when asked.
        assert_eq!(ours.encode_special(text).unwrap(), want, "{name}: {text:?}");
        // Not always the text: a `▁` prepended after special pieces decodes as a space.
        assert_eq!(ours.decode(&want[1..]).unwrap(), case["decoded"].as_str().unwrap(), "{name}: {text:?}");
    }

    let theirs = tokenizers::Tokenizer::from_file(fixture(name).join("tokenizer.json")).unwrap();
    for text in [" ", "a", "   the end  ", "line\r\nbreak\u{0}", "日本語のテキスト", "<bos> literal <eos>", "x\u{10ffff}y"] {
        let want = theirs.encode(text, true).unwrap().get_ids().to_vec();
        assert_eq!(ours.encode_special(text).unwrap(), want, "{name}: {text:?}");
    }
    // Plain text that spells a control token stays text.
    assert_ne!(ours.encode("<end_of_turn>").unwrap(), [2, 106]);
}

#[test]
fn gemma3_tokenizer_encodes_as_transformers() {
    tokenizer_encodes_as_transformers("gemma3", false);
}

#[test]
fn llama2_style_tokenizer_encodes_as_transformers() {
    tokenizer_encodes_as_transformers("phi3", true);
}

/// The decoder of directory `name` against transformers' logits.
fn logits_match_transformers(name: &str, source: &HfModel) {
    let Some(positions) = logits_against_fixture(source, &fixture(name)) else { return };
    for (pos, got, want) in positions {
        let d = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        let scale = want.iter().map(|v| v.abs()).fold(0.0, f32::max);
        eprintln!("{name} position {pos}: max |Δ| {d:.2e} (logits up to {scale:.2})");
        assert!(d <= 1e-4 * scale.max(1.0), "{name} position {pos}: {d}");
        let argmax = |v: &[f32]| v.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
        assert_eq!(argmax(&got), argmax(&want), "{name} position {pos}");
    }
}

#[test]
fn gemma3_directory_gives_transformers_logits() {
    let dir = fixture("gemma3");
    let source = HfModel::open(&dir).unwrap();
    let m = source.metadata();
    assert_eq!(m.get_str("general.architecture").unwrap(), "gemma3");
    assert_eq!(m.get_u32("gemma3.attention.key_length").unwrap(), 32);
    assert_eq!(m.get_u32("gemma3.attention.sliding_window").unwrap(), 8);
    assert_eq!(m.get_u32("gemma3.attention.sliding_window_pattern").unwrap(), 6);
    assert_eq!(m.get_f32("gemma3.rope.freq_base").unwrap(), 1e6);
    assert_eq!(m.get_f32("gemma3.rope.freq_base_swa").unwrap(), 1e4);
    assert_eq!(m.get_f32("gemma3.attention.scale").unwrap(), (1.0 / 24f64.sqrt()) as f32);
    assert_eq!(m.get_f32("gemma3.final_logit_softcapping").unwrap(), 30.0);
    assert!(m.get_f32("gemma3.attn_logit_softcapping").is_err(), "transformers' Gemma 3 does not cap attention logits");
    // Four norms a layer plus q/k norms, all `1 + w` in f32; the matrices stay bf16.
    let tensors = source.tensors();
    let norms: Vec<_> = tensors.iter().filter(|t| t.name.ends_with("norm.weight")).collect();
    assert_eq!(norms.len(), 7 * 6 + 1);
    assert!(norms.iter().all(|t| t.ggml_type == GgmlType::F32));
    assert!(tensors.iter().filter(|t| !t.name.ends_with("norm.weight")).all(|t| t.ggml_type == GgmlType::BF16));
    let set = qgpu::loader::SafetensorsSet::open(&dir).unwrap();
    let (_, stored) = set.get("model.norm.weight").unwrap();
    let stored_norm = half::bf16::from_le_bytes([stored[0], stored[1]]).to_f32();
    let given = source.tensor_bytes("output_norm.weight").unwrap();
    assert_eq!(f32::from_le_bytes(given[..4].try_into().unwrap()), 1.0 + stored_norm);
    logits_match_transformers("gemma3", &source);
}

#[test]
fn phi3_directory_gives_transformers_logits() {
    let source = HfModel::open(fixture("phi3")).unwrap();
    let m = source.metadata();
    assert_eq!(m.get_str("general.architecture").unwrap(), "phi3");
    // 3/4 of each 32-dimension head rotates.
    assert_eq!(m.get_u32("phi3.rope.dimension_count").unwrap(), 24);
    let names: Vec<String> = source.tensors().into_iter().map(|t| t.name).collect();
    assert!(names.contains(&"blk.0.attn_qkv.weight".to_owned()) && names.contains(&"blk.0.ffn_up.weight".to_owned()));
    assert!(!names.iter().any(|n| n.contains("attn_q.") || n.contains("ffn_gate")));
    logits_match_transformers("phi3", &source);
}

#[test]
fn smollm3_directory_gives_transformers_logits() {
    let source = HfModel::open(fixture("smollm3")).unwrap();
    assert_eq!(source.metadata().get_str("general.architecture").unwrap(), "smollm3");
    logits_match_transformers("smollm3", &source);

    // A `no_rope_layers` other than every fourth layer is refused, naming the key.
    let dir = common::TempDir::new("smollm3");
    for f in ["model.safetensors", "tokenizer.json"] {
        std::fs::copy(fixture("smollm3").join(f), dir.0.join(f)).unwrap();
    }
    let mut config: Value = serde_json::from_slice(&std::fs::read(fixture("smollm3").join("config.json")).unwrap()).unwrap();
    config["no_rope_layers"] = serde_json::json!([1, 0, 1, 0]);
    std::fs::write(dir.0.join("config.json"), config.to_string()).unwrap();
    match HfModel::open(&dir.0) {
        Err(qgpu::loader::LoadError::BadModel { reason, .. }) => assert!(reason.contains("no_rope_layers"), "{reason}"),
        other => panic!("expected BadModel, got {other:?}"),
    }
}
