//! GPTQ and AWQ checkpoints (fixtures from scripts/make_int4_fixtures.py, packed as GPTQModel
//! and AutoAWQ pack, AWQ's checked with AutoAWQ's own unpacking):
//! - each layer becomes Q4_0 blocks (symmetric: exactly the packed values) or Q4_1 blocks
//!   (exact but for the f16 rounding of the offset);
//! - a tiny LLaMA in each format runs as it is and gives the logits of its dequantized f32
//!   model (transformers);
//! - `qgpu quantize` to Q4_0 / Q4_1 copies those blocks unchanged;
//! - lying metadata is a typed error naming the key.

mod common;

use std::path::{Path, PathBuf};

use common::hf_dir::{f32_tensor, logits_against_fixture, open_set, raw_set, renamed, RawTensors};
use common::TempDir;
use qgpu::convert::{no_progress, quantize_model, ConvertOptions, QuantPlan};
use qgpu::loader::int4::{self, Int4Config, Packing};
use qgpu::loader::{GgufFile, HfModel, LoadError, SafetensorsSet, TensorSource};
use qgpu::quant::{reference, Format};
use serde_json::Value;

const OUT: usize = 40;
const IN: usize = 256;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/int4")
}

fn layers() -> SafetensorsSet {
    open_set(&fixtures().join("layers.safetensors"))
}

fn config(packing: Packing, group: usize) -> Int4Config {
    Int4Config { packing, group_size: Some(group) }
}

const GPTQ: Packing = Packing::Gptq { zero_minus_one: true };

/// (layer, packing, group, symmetric)
const LAYERS: [(&str, Packing, usize, bool); 6] = [
    ("gptq_g32_sym", GPTQ, 32, true),
    ("gptq_g128_asym", GPTQ, 128, false),
    ("gptq_g64_act", GPTQ, 64, false),
    ("gptq_v2_g32", Packing::Gptq { zero_minus_one: false }, 32, false),
    ("awq_g64", Packing::Awq, 64, false),
    ("awq_g32_sym", Packing::Awq, 32, true),
];

#[test]
fn layers_become_blocks_of_their_values() {
    let set = layers();
    for (layer, packing, group, symmetric) in LAYERS {
        let w = int4::describe(&set, layer, config(packing, group)).unwrap();
        assert_eq!((w.rows, w.cols), (OUT, IN), "{layer}");
        assert_eq!(w.format, if symmetric { Format::Q4_0 } else { Format::Q4_1 }, "{layer}");
        let blocks = int4::blocks(&set, &w).unwrap();
        let mut got = vec![f32::NAN; OUT * IN];
        reference::dequantize_into(w.format, &blocks, &mut got);
        let want = f32_tensor(&set, &format!("{layer}.dequantized"));
        for (i, (&g, &v)) in got.iter().zip(&want).enumerate() {
            if symmetric {
                assert_eq!(g.to_bits(), v.to_bits(), "{layer} [{}, {}]: {g} vs {v}", i / IN, i % IN);
            } else {
                // Q4_1's offset m = −scale · zero is rounded to f16: at most half an f16 ulp of
                // m, which is below 2^-11 of the largest |value| of the block plus its scale·15.
                let block = &want[i / 32 * 32..i / 32 * 32 + 32];
                let bound = block.iter().fold(0.0f32, |a, x| a.max(x.abs())) * 2.0 * 2f32.powi(-11);
                assert!((g - v).abs() <= bound.max(1e-7), "{layer} [{}, {}]: {g} vs {v}", i / IN, i % IN);
            }
        }
        assert!(want.iter().any(|&v| v > 0.0) && want.iter().any(|&v| v < 0.0), "{layer}: one-signed");
    }
}

fn argmax(v: &[f32]) -> usize {
    (0..v.len()).fold(0, |best, i| if v[i] > v[best] { i } else { best })
}

/// The checkpoints run as they are and give their dequantized model's logits.
#[test]
fn llama_checkpoints_give_dequantized_logits() {
    // Qwen3: per-head q/k norms and a head size of 64 at width 128.
    for name in ["llama-gptq", "llama-awq", "qwen3-gptq"] {
        let dir = fixtures().join(name);
        let source = HfModel::open(&dir).unwrap();
        if name.starts_with("qwen3") {
            assert_eq!(source.metadata().get_u32("qwen3.attention.key_length").unwrap(), 64);
            let qk_norms = source.tensors().iter().filter(|t| t.name.ends_with("attn_q_norm.weight") || t.name.ends_with("attn_k_norm.weight")).count();
            assert_eq!(qk_norms, 2 * 2);
        }
        let quantized = source.tensors().iter().filter(|t| matches!(t.ggml_type.name(), "Q4_0" | "Q4_1")).count();
        assert_eq!(quantized, 14, "{name}: q, k, v, o, gate, up, down in 2 layers");
        let Some(positions) = logits_against_fixture(&source, &dir) else { return };
        for (pos, got, want) in positions {
            let d = got.iter().zip(&want).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
            eprintln!("{name} position {pos}: max |Δ| {d:.2e}");
            // Q4_1 rounds each block's offset to f16 (3.6e-3 measured on GPTQ, whose attention
            // layers are asymmetric; all of AWQ is), not the kernels.
            assert!(d <= 1e-2, "{name} position {pos}: {d}");
            assert_eq!(argmax(&got), argmax(&want), "{name} position {pos}");
        }
    }
}

/// Re-quantizing a GPTQ checkpoint to the blocks it already is copies them: symmetric layers
/// into Q4_0 and asymmetric into Q4_1 come out exactly as loaded.
#[test]
fn quantize_to_q4_0_and_q4_1_copies_the_blocks() {
    let dir = fixtures().join("llama-gptq");
    let source = HfModel::open(&dir).unwrap();
    let plan = QuantPlan::parse("F32", "blk.*.ffn_*=Q4_0,blk.*.attn_*=Q4_1").unwrap();
    let tmp = TempDir::new("int4-quantize");
    let out = tmp.0.join("out.gguf");
    let report = quantize_model(&source, &plan, &ConvertOptions::default(), &out, &mut no_progress).unwrap();
    let file = GgufFile::open(&out).unwrap();
    let mut copied = 0;
    for t in report.tensors.iter().filter(|t| matches!(t.written, Format::Q4_0 | Format::Q4_1)) {
        assert!(t.copied, "{}: re-quantized instead of copied", t.name);
        assert!(file.tensor_bytes(&t.name).unwrap() == &source.tensor_bytes(&t.name).unwrap()[..], "{}", t.name);
        copied += 1;
    }
    assert_eq!(copied, 14);
}

// ---- metadata that lies ---------------------------------------------------------------------

type Tensors = RawTensors;

/// Layer `gptq_g64_act` renamed to `w`, after `edit`.
fn edited(edit: impl Fn(&mut Tensors)) -> SafetensorsSet {
    let mut tensors = renamed(&layers(), "gptq_g64_act.", "w.");
    edit(&mut tensors);
    raw_set(&tensors)
}

fn bad_key(set: &SafetensorsSet) -> String {
    match int4::describe(set, "w", config(GPTQ, 64)).and_then(|w| int4::blocks(set, &w)) {
        Err(LoadError::BadQuantization { tensor, key, reason }) => {
            assert_eq!(tensor, "w.qweight");
            eprintln!("{key}: {reason}");
            key
        }
        Ok(b) => panic!("expected BadQuantization, got {} bytes", b.len()),
        Err(other) => panic!("expected BadQuantization, got {other:?}"),
    }
}

fn set_i32(t: &mut Tensors, name: &str, index: usize, value: i32) {
    t.get_mut(name).unwrap().2[4 * index..4 * index + 4].copy_from_slice(&value.to_le_bytes());
}

#[test]
fn lying_int4_metadata_is_a_typed_error_naming_the_key() {
    assert!(int4::describe(&edited(|_| {}), "w", config(GPTQ, 64)).is_ok());
    // A g_idx past the groups, negative, or splitting a 32-value block between groups.
    assert_eq!(bad_key(&edited(|t| set_i32(t, "w.g_idx", 64, 4))), "w.g_idx");
    assert_eq!(bad_key(&edited(|t| set_i32(t, "w.g_idx", 0, -1))), "w.g_idx");
    assert_eq!(bad_key(&edited(|t| set_i32(t, "w.g_idx", 5, 3))), "w.g_idx");
    assert_eq!(bad_key(&edited(|t| t.get_mut("w.g_idx").unwrap().1 = vec![64, 4])), "w.g_idx");
    // Companions missing, of the wrong dtype, or of a shape that disagrees with the config.
    for companion in ["w.scales", "w.qzeros"] {
        assert_eq!(bad_key(&edited(|t| drop(t.remove(companion)))), companion);
    }
    assert_eq!(bad_key(&edited(|t| t.get_mut("w.scales").unwrap().0 = "BF16".into())), "w.scales");
    let groups_wrong = |t: &mut Tensors| {
        let s = t.get_mut("w.scales").unwrap();
        s.2.truncate(2 * 2 * OUT);
        s.1 = vec![2, OUT as u64];
    };
    assert_eq!(bad_key(&edited(groups_wrong)), "w.scales");
    // A qweight whose rows are not whole 32-value blocks.
    let odd = |t: &mut Tensors| {
        let q = t.get_mut("w.qweight").unwrap();
        q.2.truncate(4 * 3 * OUT);
        q.1 = vec![3, OUT as u64];
    };
    assert_eq!(bad_key(&edited(odd)), "w.qweight");
    assert_eq!(bad_key(&edited(|t| drop(t.remove("w.qweight")))), "w.qweight");
}

#[test]
fn unsupported_int4_configs_name_their_key() {
    let dir = TempDir::new("int4-config");
    for f in ["model.safetensors", "tokenizer.json"] {
        std::fs::copy(fixtures().join("llama-awq").join(f), dir.0.join(f)).unwrap();
    }
    let config: Value = serde_json::from_slice(&std::fs::read(fixtures().join("llama-awq/config.json")).unwrap()).unwrap();
    let cases = [
        (("awq", "bits"), serde_json::json!(8), "quantization_config.bits"),
        (("awq", "version"), serde_json::json!("gemv"), "quantization_config.version"),
        (("awq", "group_size"), serde_json::json!(16), "quantization_config.group_size"),
        (("awq", "group_size"), serde_json::json!(-1), "quantization_config.group_size"),
        (("awq", "zero_point"), serde_json::json!(false), "quantization_config.zero_point"),
        (("gptq", "checkpoint_format"), serde_json::json!("marlin"), "quantization_config.checkpoint_format"),
    ];
    for ((method, field), value, key) in cases {
        let mut c = config.clone();
        c["quantization_config"]["quant_method"] = method.into();
        c["quantization_config"][field] = value;
        std::fs::write(dir.0.join("config.json"), c.to_string()).unwrap();
        match HfModel::open(&dir.0) {
            Err(LoadError::UnsupportedQuantization { key: k, .. }) => assert_eq!(k, key, "{field}"),
            other => panic!("{field}: expected UnsupportedQuantization, got {other:?}"),
        }
    }
}
