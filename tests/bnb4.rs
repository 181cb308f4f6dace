//! NF4 and FP4 against bitsandbytes itself (fixtures from scripts/make_bnb_fixtures.py, made by
//! the real bitsandbytes and transformers on CPU):
//! - the blocks qgpu assembles from a checkpoint's tensors dequantize to bitsandbytes'
//!   `dequantize_4bit` output bit for bit, with and without double quantization, and qgpu's
//!   quantizer writes bitsandbytes' nibbles and absmax;
//! - the GPU multiplies by exactly those values;
//! - whole transformers checkpoints (`save_pretrained` of a `BitsAndBytesConfig` model) run
//!   without conversion and give the logits / embeddings transformers computes with them;
//! - metadata that lies is a typed error naming the key.

mod common;

use std::path::{Path, PathBuf};

use common::hf_dir::{f32_tensor, logits_against_fixture, open_set, raw_set, renamed, RawTensors};
use common::TempDir;
use qgpu::loader::bnb::{self, Bnb4Weight};
use qgpu::loader::{HfModel, LoadError, SafetensorsSet, TensorSource};
use qgpu::model::bert::{BertOptions, Embedder};
use qgpu::ops::{linear, GpuMatrix, GpuTensor};
use qgpu::quant::reference::{self, Bnb4Kind, TestRng};
use qgpu::quant::{Format, QuantMatrixRef};
use serde_json::Value;

const VARIANTS: [(&str, Format, bool); 4] =
    [("nf4_plain", Format::NF4, false), ("nf4_double", Format::NF4, true), ("fp4_plain", Format::FP4, false), ("fp4_double", Format::FP4, true)];
const ROWS: usize = 5;
const COLS: usize = 3328;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bnb")
}

fn blocks_set() -> SafetensorsSet {
    open_set(&fixtures().join("blocks.safetensors"))
}

fn weight(set: &SafetensorsSet, variant: &str) -> Bnb4Weight {
    bnb::describe(set, &format!("{variant}.weight")).unwrap().expect("a bitsandbytes weight")
}

#[test]
fn blocks_dequantize_as_bitsandbytes_does() {
    let set = blocks_set();
    for (variant, format, double) in VARIANTS {
        let w = weight(&set, variant);
        assert_eq!((w.format(), w.rows, w.cols), (format, ROWS, COLS), "{variant}");
        let want_bits = if double { 4.0 + (8.0 + 32.0 / 256.0) / 64.0 } else { 4.5 };
        assert_eq!(w.stored_bits_per_weight(), want_bits, "{variant}");
        let blocks = bnb::blocks(&set, &w).unwrap();
        assert_eq!(blocks.len(), ROWS * COLS / 64 * 36);
        let mut got = vec![f32::NAN; ROWS * COLS];
        reference::dequantize_into(format, &blocks, &mut got);
        let want = f32_tensor(&set, &format!("{variant}.dequantized"));
        let bad: Vec<usize> = (0..got.len()).filter(|&i| got[i] != want[i]).collect();
        assert!(bad.is_empty(), "{variant}: {} values differ from bitsandbytes; first at {}: {} vs {}", bad.len(), bad[0], got[bad[0]], want[bad[0]]);
        // Not degenerate: both signs, the all-zero block, the large block.
        assert!(want.iter().any(|&v| v > 0.0) && want.iter().any(|&v| v < 0.0));
        assert!(want[..64].iter().all(|&v| v == 0.0), "{variant}: the zero block");
        let big = want[COLS + 64..COLS + 128].iter().fold(0.0f32, |a, v| a.max(v.abs()));
        assert!(big > 10.0 * want[COLS..COLS + 64].iter().fold(0.0f32, |a, v| a.max(v.abs())), "{variant}: the large block");
    }
}

/// qgpu's quantizer (round to nearest over bitsandbytes' midpoints) writes the nibbles and
/// absmax bitsandbytes wrote for the same matrix.
#[test]
fn quantizer_matches_bitsandbytes() {
    let set = blocks_set();
    let original = f32_tensor(&set, "original");
    for (variant, format, _) in VARIANTS.into_iter().filter(|v| !v.2) {
        let ours = reference::quantize(format, ROWS, COLS, &original).unwrap();
        let theirs = bnb::blocks(&set, &weight(&set, variant)).unwrap();
        let kind = reference::bnb4_kind(format).unwrap();
        let values = |bytes: &[u8]| {
            let mut v = vec![0.0f32; ROWS * COLS];
            reference::dequantize_into(format, bytes, &mut v);
            v
        };
        // FP4 has two zero codes (+0 and -0): compare what they decode to.
        assert_eq!(values(ours.data()), values(&theirs), "{variant}");
        if kind == Bnb4Kind::Nf4 {
            assert!(ours.data() == &theirs[..], "{variant}: bytes differ");
        }
    }
}

/// The GPU's product with the checkpoint's blocks equals the f64 product with bitsandbytes'
/// dequantized values, for one row and an odd batch.
#[test]
fn gpu_multiplies_by_bitsandbytes_values() {
    let Some(ctx) = common::context() else { return };
    let set = blocks_set();
    let mut rng = TestRng::new(41);
    for (variant, format, _) in VARIANTS {
        let blocks = bnb::blocks(&set, &weight(&set, variant)).unwrap();
        let w = QuantMatrixRef::new(format, ROWS, COLS, &blocks).unwrap();
        let gw = GpuMatrix::upload(&ctx, w).unwrap();
        let deq = f32_tensor(&set, &format!("{variant}.dequantized"));
        for m in [1, 7] {
            let x = rng.vec(m * COLS);
            let gx = GpuTensor::from_slice(&ctx, m, COLS, &x).unwrap();
            let gy = GpuTensor::zeros(&ctx, m, ROWS).unwrap();
            pollster::block_on(linear(&ctx, &gw, &gx, &gy, None)).unwrap();
            let got = pollster::block_on(gy.read(&ctx)).unwrap();
            for i in 0..m {
                for r in 0..ROWS {
                    let want: f64 = (0..COLS).map(|c| x[i * COLS + c] as f64 * deq[r * COLS + c] as f64).sum();
                    let scale: f64 = (0..COLS).map(|c| (x[i * COLS + c] as f64 * deq[r * COLS + c] as f64).abs()).sum();
                    let got = got[i * ROWS + r] as f64;
                    assert!((got - want).abs() <= 1e-5 * scale.max(1e-3), "{variant} M={m} [{i},{r}]: {got} vs {want}");
                }
            }
        }
    }
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
}

fn argmax(v: &[f32]) -> usize {
    (0..v.len()).fold(0, |best, i| if v[i] > v[best] { i } else { best })
}

/// transformers' bitsandbytes checkpoints of a tiny LLaMA run as they are and give the logits
/// transformers computed with them (f32 compute), far closer than to the unquantized model's.
#[test]
fn llama_checkpoints_give_transformers_logits() {
    // Qwen2: q/k/v biases, and q/k rows kept in Hugging Face's order (its RoPE rotates halves).
    // Gemma 3: four `1 + w` norms a layer and sliding windows (tests/hf_gemma.rs has the float model).
    let cases = [("llama-nf4", Format::NF4, "llama"), ("llama-fp4", Format::FP4, "llama"), ("qwen2-nf4", Format::NF4, "qwen2"), ("gemma3-nf4", Format::NF4, "gemma3")];
    for (name, format, arch) in cases {
        let dir = fixtures().join(name);
        let source = HfModel::open(&dir).unwrap();
        assert_eq!(source.metadata().get_str("general.architecture").unwrap(), arch);
        let quantized: Vec<_> = source.tensors().into_iter().filter(|t| t.ggml_type.name() == format.name()).collect();
        // q, k, v, o, gate, up, down in every layer; embeddings and norms stay float.
        let layers = source.metadata().get_u32(&format!("{arch}.block_count")).unwrap() as usize;
        assert_eq!(quantized.len(), 7 * layers, "{name}");
        let biases = source.tensors().iter().filter(|t| t.name.ends_with(".bias")).count();
        assert_eq!(biases, if arch == "qwen2" { 3 * layers } else { 0 }, "{name}");
        let fixture: Value = serde_json::from_slice(&std::fs::read(dir.join("logits.json")).unwrap()).unwrap();
        let quantization_effect = fixture["max_abs_change_from_f32"].as_f64().unwrap() as f32;
        let Some(positions) = logits_against_fixture(&source, &dir) else { return };
        for (pos, got, want) in positions {
            let d = max_diff(&got, &want);
            eprintln!("{name} position {pos}: max |Δ| {d:.2e} (quantization moved logits by up to {quantization_effect:.2})");
            assert!(d <= 1e-4 && d < quantization_effect / 1000.0, "{name} position {pos}: {d}");
            assert_eq!(argmax(&got), argmax(&want), "{name} position {pos}");
        }
    }
}

/// A transformers bitsandbytes BERT checkpoint embeds like transformers (mean pooled).
#[test]
fn bert_checkpoint_gives_transformers_embeddings() {
    let dir = fixtures().join("bert-nf4");
    let source = HfModel::open(&dir).unwrap();
    assert_eq!(source.tensors().iter().filter(|t| t.ggml_type.name() == "NF4").count(), 12);
    let fixture: Value = serde_json::from_slice(&std::fs::read(dir.join("embeddings.json")).unwrap()).unwrap();
    let Some(ctx) = common::context() else { return };
    let mut embedder = pollster::block_on(Embedder::load(&ctx, &source, BertOptions::default())).unwrap();
    for case in fixture.as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let ids: Vec<u32> = case["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        let want: Vec<f32> = case["embedding"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
        assert_eq!(embedder.tokenize(&[text]).unwrap()[0].ids, ids, "{text}");
        let got = pollster::block_on(embedder.embed(&ctx, &[text])).unwrap();
        let cos = common::cosine(&got[0], &want);
        eprintln!("{text:?}: cosine {cos:.9}");
        assert!(cos >= 0.99999, "{text:?}: cosine {cos}");
    }
}

// ---- metadata that lies ---------------------------------------------------------------------

/// The `nf4_double` tensors of the blocks fixture, renamed to `w.weight...`, after `edit`.
fn edited(edit: impl Fn(&mut RawTensors)) -> SafetensorsSet {
    let mut tensors = renamed(&blocks_set(), "nf4_double.weight", "w.weight");
    edit(&mut tensors);
    raw_set(&tensors)
}

const STATE: &str = "w.weight.quant_state.bitsandbytes__nf4";

fn edit_state(tensors: &mut RawTensors, edit: impl Fn(&mut Value)) {
    let entry = tensors.get_mut(STATE).unwrap();
    let mut state: Value = serde_json::from_slice(&entry.2).unwrap();
    edit(&mut state);
    entry.2 = state.to_string().into_bytes();
    entry.1 = vec![entry.2.len() as u64];
}

fn bad_key(set: &SafetensorsSet) -> String {
    match bnb::describe(set, "w.weight").and_then(|w| bnb::blocks(set, &w.expect("described"))) {
        Err(LoadError::BadQuantization { tensor, key, reason }) => {
            assert_eq!(tensor, "w.weight");
            eprintln!("{key}: {reason}");
            key
        }
        Ok(blocks) => panic!("expected BadQuantization, got {} bytes of blocks", blocks.len()),
        Err(other) => panic!("expected BadQuantization, got {other:?}"),
    }
}

#[test]
fn lying_quantization_metadata_is_a_typed_error_naming_the_key() {
    // The untouched copy reads.
    assert!(bnb::describe(&edited(|_| {}), "w.weight").unwrap().is_some());
    let shape_key = format!("{STATE}.shape");
    // A shape with more values than the nibbles hold; and one of 2^62 values.
    assert_eq!(bad_key(&edited(|t| edit_state(t, |s| s["shape"] = serde_json::json!([10, 3328])))), "w.weight");
    assert_eq!(bad_key(&edited(|t| edit_state(t, |s| s["shape"] = serde_json::json!([1u64 << 31, 1u64 << 31])))), "w.weight");
    assert_eq!(bad_key(&edited(|t| edit_state(t, |s| s["shape"] = serde_json::json!([5, 3328, 1])))), shape_key);
    // As many values, in rows that are not whole 64-value blocks.
    assert_eq!(bad_key(&edited(|t| edit_state(t, |s| s["shape"] = serde_json::json!([520, 32])))), shape_key);
    // Block sizes qgpu cannot lay out, or bitsandbytes never writes.
    assert_eq!(bad_key(&edited(|t| edit_state(t, |s| s["blocksize"] = serde_json::json!(32)))), format!("{STATE}.blocksize"));
    assert_eq!(bad_key(&edited(|t| edit_state(t, |s| s["blocksize"] = serde_json::json!(0)))), format!("{STATE}.blocksize"));
    // A blocksize of 128 needs half the absmax codes stored.
    assert_eq!(bad_key(&edited(|t| edit_state(t, |s| s["blocksize"] = serde_json::json!(128)))), "w.weight.absmax");
    assert_eq!(bad_key(&edited(|t| edit_state(t, |s| s["quant_type"] = serde_json::json!("fp4")))), format!("{STATE}.quant_type"));
    assert_eq!(bad_key(&edited(|t| edit_state(t, |s| s["dtype"] = serde_json::json!("int8")))), format!("{STATE}.dtype"));
    assert_eq!(bad_key(&edited(|t| edit_state(t, |s| s["nested_offset"] = serde_json::json!("x")))), format!("{STATE}.nested_offset"));
    assert_eq!(bad_key(&edited(|t| edit_state(t, |s| s.as_object_mut().unwrap().retain(|k, _| k != "nested_blocksize")))), format!("{STATE}.nested_blocksize"));
    // Missing or mis-sized companions.
    assert_eq!(bad_key(&edited(|t| drop(t.remove("w.weight.absmax")))), "w.weight.absmax");
    assert_eq!(bad_key(&edited(|t| drop(t.remove("w.weight.nested_absmax")))), "w.weight.nested_absmax");
    assert_eq!(bad_key(&edited(|t| drop(t.remove("w.weight.quant_map")))), "w.weight.quant_map");
    assert_eq!(
        bad_key(&edited(|t| {
            let a = t.get_mut("w.weight.absmax").unwrap();
            a.2.truncate(100);
            a.1 = vec![100];
        })),
        "w.weight.absmax"
    );
    // A codebook that is not bitsandbytes' own.
    assert_eq!(bad_key(&edited(|t| t.get_mut("w.weight.quant_map").unwrap().2[0..4].copy_from_slice(&0.5f32.to_le_bytes()))), "w.weight.quant_map");
    assert_eq!(
        bad_key(&edited(|t| {
            let s = t.get_mut(STATE).unwrap();
            s.2 = b"{not json".to_vec();
            s.1 = vec![9];
        })),
        STATE
    );
    // A weight with no quant state is not a bitsandbytes weight at all.
    assert!(bnb::describe(&edited(|t| drop(t.remove(STATE))), "w.weight").unwrap().is_none());
}

#[test]
fn unsupported_quantization_configs_name_their_key() {
    let dir = TempDir::new("bnb-config");
    for f in ["model.safetensors", "tokenizer.json"] {
        std::fs::copy(fixtures().join("llama-nf4").join(f), dir.0.join(f)).unwrap();
    }
    let config: Value = serde_json::from_slice(&std::fs::read(fixtures().join("llama-nf4/config.json")).unwrap()).unwrap();
    let cases = [
        ("load_in_8bit", serde_json::json!(true), "quantization_config.load_in_8bit"),
        ("load_in_4bit", serde_json::json!(false), "quantization_config.load_in_4bit"),
        ("quant_method", serde_json::json!("hqq"), "quantization_config.quant_method"),
    ];
    for (field, value, key) in cases {
        let mut c = config.clone();
        c["quantization_config"][field] = value;
        std::fs::write(dir.0.join("config.json"), c.to_string()).unwrap();
        match HfModel::open(&dir.0) {
            Err(LoadError::UnsupportedQuantization { key: k, .. }) => assert_eq!(k, key),
            other => panic!("{field}: expected UnsupportedQuantization, got {other:?}"),
        }
    }
}

/// A GGUF cannot hold NF4: writing one is a typed error, not a file llama.cpp would misread.
#[test]
fn nf4_never_goes_into_a_gguf() {
    let mut w = qgpu::loader::GgufWriter::new();
    let data = vec![0u8; 36];
    match w.add_tensor("x", &[64], qgpu::loader::GgmlType::NF4, data) {
        Err(qgpu::loader::GgufError::NotAGgufType { tensor, .. }) => assert_eq!(tensor, "x"),
        other => panic!("expected NotAGgufType, got {other:?}"),
    }
    assert_eq!(qgpu::loader::GgmlType::from_id(qgpu::quant::QGPU_TYPE_BASE), None);
}

// ---- writing ------------------------------------------------------------------------------

/// `fixture`'s directory with every bitsandbytes weight dequantized to f32 (as bitsandbytes
/// would) and no `quantization_config`: a float Hugging Face directory.
fn float_copy(fixture: &str, dir: &Path) {
    let src = fixtures().join(fixture);
    let set = SafetensorsSet::open(&src).unwrap();
    let mut tensors: Vec<common::hf_dir::HfTensor> = Vec::new();
    for t in set.tensors() {
        if let Some(w) = bnb::describe(&set, &t.name).unwrap() {
            let blocks = bnb::blocks(&set, &w).unwrap();
            let mut values = vec![0.0f32; w.rows * w.cols];
            reference::dequantize_into(w.format(), &blocks, &mut values);
            tensors.push((t.name.clone(), vec![w.rows as u64, w.cols as u64], common::hf_dir::Dtype::F32, values));
        } else if t.dtype_name == "F32" && !t.name.contains(".weight.") {
            let (_, bytes) = set.get(&t.name).unwrap();
            let values = bytes.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
            tensors.push((t.name.clone(), t.shape.clone(), common::hf_dir::Dtype::F32, values));
        }
    }
    common::hf_dir::write_safetensors(&dir.join("model.safetensors"), &tensors.iter().collect::<Vec<_>>());
    let mut config: Value = serde_json::from_slice(&std::fs::read(src.join("config.json")).unwrap()).unwrap();
    config.as_object_mut().unwrap().remove("quantization_config");
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    std::fs::copy(src.join("tokenizer.json"), dir.join("tokenizer.json")).unwrap();
}

/// `write_bnb4` of bitsandbytes' dequantized weights gives back bitsandbytes' blocks exactly
/// (each block's absmax is one of its values, and every value is a codebook entry times it),
/// in a directory qgpu reads as it reads transformers' own. (scripts/check_bnb_export.py
/// loads such a directory in transformers too.)
#[test]
fn written_bitsandbytes_directory_round_trips() {
    for (fixture, kind) in [("llama-nf4", Bnb4Kind::Nf4), ("llama-fp4", Bnb4Kind::Fp4), ("bert-nf4", Bnb4Kind::Nf4)] {
        let tmp = TempDir::new("bnb-write");
        let (float_dir, out) = (tmp.0.join("float"), tmp.0.join("out"));
        std::fs::create_dir(&float_dir).unwrap();
        float_copy(fixture, &float_dir);
        let report = qgpu::convert::write_bnb4(&float_dir, kind, &out).unwrap();
        assert!(report.skipped_modules.is_empty(), "{fixture}: {:?}", report.skipped_modules);
        let theirs = SafetensorsSet::open(fixtures().join(fixture)).unwrap();
        let ours = SafetensorsSet::open(&out).unwrap();
        let mut quantized = 0;
        for t in theirs.tensors() {
            let Some(w) = bnb::describe(&theirs, &t.name).unwrap() else { continue };
            let mine = bnb::describe(&ours, &t.name).unwrap().unwrap_or_else(|| panic!("{fixture}: {} not quantized", t.name));
            assert_eq!((mine.format(), mine.rows, mine.cols), (w.format(), w.rows, w.cols));
            let (a, b) = (bnb::blocks(&ours, &mine).unwrap(), bnb::blocks(&theirs, &w).unwrap());
            if kind == Bnb4Kind::Nf4 {
                assert!(a == b, "{fixture}: {} blocks differ", t.name);
            } else {
                // FP4 has two codes for zero (+0 and -0): compare what they decode to.
                let values = |bytes: &[u8]| {
                    let mut v = vec![0.0f32; w.rows * w.cols];
                    reference::dequantize_into(w.format(), bytes, &mut v);
                    v
                };
                assert_eq!(values(&a), values(&b), "{fixture}: {} values differ", t.name);
            }
            quantized += 1;
        }
        assert!(quantized >= 7, "{fixture}: {quantized}");
        let config: Value = serde_json::from_slice(&std::fs::read(out.join("config.json")).unwrap()).unwrap();
        assert_eq!(config["quantization_config"]["bnb_4bit_quant_type"], kind.name());
        assert!(HfModel::open(&out).is_ok(), "{fixture}");
        // The directory exists now: writing again refuses rather than overwrite it.
        assert!(matches!(qgpu::convert::write_bnb4(&float_dir, kind, &out), Err(qgpu::convert::ConvertError::Io { .. })));
        // A quantized directory is not a source for it.
        let again = tmp.0.join("again");
        assert!(matches!(qgpu::convert::write_bnb4(&out, kind, &again), Err(qgpu::convert::ConvertError::BnbSource { .. })));
        assert!(!again.exists());
    }
}

/// A GGUF plan never puts a tensor in NF4 or FP4.
#[test]
fn gguf_plans_refuse_nf4() {
    let source = HfModel::open(fixtures().join("llama-nf4")).unwrap();
    for (format, mix) in [("NF4", ""), ("Q4_0", "blk.0.attn_q=FP4")] {
        let plan = qgpu::convert::QuantPlan::parse(format, mix).unwrap();
        let err = plan.decide(&source).unwrap_err();
        assert!(matches!(err, qgpu::convert::PlanError::NoGgufType { .. }), "{format} {mix}: {err:?}");
    }
}
