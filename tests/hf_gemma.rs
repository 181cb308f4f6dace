//! A Hugging Face Gemma 3 directory (`model_type: "gemma3_text"`, bf16 safetensors and a
//! SentencePiece-style tokenizer.json cut from Gemma 3's own; fixtures from
//! scripts/make_gemma_fixtures.py, made by transformers on CPU) runs without conversion:
//! - its tokenizer encodes as transformers' does (byte fallback, whitespace runs, special-token
//!   text), and as the `tokenizers` crate does with the same tokenizer.json;
//! - the decoder gives transformers' f32 logits: Gemma's `1 + w` norms, the stated head size,
//!   `query_pre_attn_scalar`, the final soft-cap (and not the attention one, which transformers' Gemma 3
//!   ignores), sliding-window layers (window 8 in a 38-token
//!   prompt) and the window layers' own RoPE base all come from config.json.

mod common;

use std::path::PathBuf;

use common::hf_dir::logits_against_fixture;
use qgpu::loader::{GgmlType, HfModel, TensorSource};
use qgpu::model::tokenizer::Tokenizer;
use serde_json::Value;

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf/gemma3")
}

#[test]
fn gemma3_tokenizer_encodes_as_transformers() {
    let source = HfModel::open(fixture()).unwrap();
    let m = source.metadata();
    assert_eq!(m.get_str("tokenizer.ggml.model").unwrap(), "llama");
    assert!(!m.get_bool("tokenizer.ggml.add_space_prefix").unwrap());
    let ours = Tokenizer::from_gguf(m).unwrap();
    assert_eq!((ours.bos_id(), ours.eos_id(), ours.adds_bos()), (Some(2), Some(1), true));

    let cases: Value = serde_json::from_slice(&std::fs::read(fixture().join("tokens.json")).unwrap()).unwrap();
    for case in cases.as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let want: Vec<u32> = case["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        // transformers parses special-token text; qgpu does when asked.
        assert_eq!(ours.encode_special(text).unwrap(), want, "{text:?}");
        assert_eq!(ours.decode(&want[1..]).unwrap(), text, "{text:?}");
    }

    let theirs = tokenizers::Tokenizer::from_file(fixture().join("tokenizer.json")).unwrap();
    for text in ["", " ", "a", "   the end  ", "line\r\nbreak\u{0}", "日本語のテキスト", "<bos> literal <eos>", "x\u{10ffff}y"] {
        let want = theirs.encode(text, true).unwrap().get_ids().to_vec();
        assert_eq!(ours.encode_special(text).unwrap(), want, "{text:?}");
    }
    // Plain text that spells a control token stays text.
    assert_ne!(ours.encode("<end_of_turn>").unwrap(), [2, 106]);
}

#[test]
fn gemma3_directory_gives_transformers_logits() {
    let dir = fixture();
    let source = HfModel::open(&dir).unwrap();
    let m = source.metadata();
    assert_eq!(m.get_str("general.architecture").unwrap(), "gemma3");
    assert_eq!(m.get_u32("gemma3.attention.key_length").unwrap(), 32);
    assert_eq!(m.get_u32("gemma3.attention.sliding_window").unwrap(), 8);
    assert_eq!(m.get_u32("gemma3.attention.sliding_window_pattern").unwrap(), 6);
    assert_eq!(m.get_f32("gemma3.rope.freq_base").unwrap(), 1e6);
    assert_eq!(m.get_f32("gemma3.rope.freq_base_swa").unwrap(), 1e4);
    assert_eq!(m.get_f32("gemma3.attention.scale").unwrap(), (1.0 / 24f64.sqrt()) as f32);
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

    let Some(positions) = logits_against_fixture(&source, &dir) else { return };
    for (pos, got, want) in positions {
        let d = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        let scale = want.iter().map(|v| v.abs()).fold(0.0, f32::max);
        eprintln!("gemma3 position {pos}: max |Δ| {d:.2e} (logits up to {scale:.2})");
        assert!(d <= 1e-4 * scale.max(1.0), "position {pos}: {d}");
        let argmax = |v: &[f32]| v.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
        assert_eq!(argmax(&got), argmax(&want), "position {pos}");
    }
}
