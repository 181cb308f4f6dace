//! Every decoder architecture against transformers: tiny random-weight models converted to GGUF
//! by llama.cpp's convert_hf_to_gguf, with transformers' f32 logits for a 40-token sequence
//! (longer than the sliding windows); both made by scripts/make_arch_fixtures.py, which nobody
//! here wrote the oracle of. F32: every position's top-10 log-probabilities within 1e-3 and the
//! same argmax, by prefill and by token-by-token decode. Q8_0 and Q4_0 copies: KL against the
//! reference small and printed.

mod common;

use qgpu::loader::{GgmlType, GgufFile, GgufWriter};
use qgpu::model::llama::{Llama, LlamaConfig, LlamaOptions, Logits};
use qgpu::ops::KvType;
use qgpu::quant::{reference, Format};
use serde_json::Value;

struct Fixture {
    file: GgufFile,
    tokens: Vec<u32>,
    logits: Vec<Vec<f32>>,
}

fn fixture(name: &str) -> Fixture {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/arch");
    let file = GgufFile::read(format!("{dir}/{name}.gguf")).unwrap();
    let json: Value = serde_json::from_str(&std::fs::read_to_string(format!("{dir}/{name}.json")).unwrap()).unwrap();
    assert_eq!(json["architecture"], name);
    let tokens = json["tokens"].as_array().unwrap().iter().map(|t| t.as_u64().unwrap() as u32).collect();
    let logits = json["logits"].as_array().unwrap().iter().map(|r| r.as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect()).collect();
    Fixture { file, tokens, logits }
}

fn log_softmax(row: &[f32]) -> Vec<f64> {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
    let sum: f64 = row.iter().map(|&v| (v as f64 - max).exp()).sum();
    row.iter().map(|&v| v as f64 - max - sum.ln()).collect()
}

fn argmax(row: &[f32]) -> usize {
    row.iter().enumerate().fold(0, |best, (i, &v)| if v > row[best] { i } else { best })
}

/// KL(reference ‖ model) of one position.
fn kl(want: &[f32], got: &[f32]) -> f64 {
    let (p, q) = (log_softmax(want), log_softmax(got));
    p.iter().zip(&q).map(|(lp, lq)| lp.exp() * (lp - lq)).sum()
}

/// Every position's top-10 reference log-probabilities within `tol`, and the same argmax.
fn assert_matches(what: &str, got: &[f32], want: &[f32], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: vocabulary");
    let (lg, lw) = (log_softmax(got), log_softmax(want));
    let mut order: Vec<usize> = (0..want.len()).collect();
    order.sort_by(|&a, &b| lw[b].total_cmp(&lw[a]));
    for &i in &order[..10] {
        assert!((lg[i] - lw[i]).abs() <= tol, "{what}: token {i} log-prob {} against transformers' {}", lg[i], lw[i]);
    }
    assert_eq!(argmax(got), argmax(want), "{what}: argmax");
}

/// A copy of `file` with every 2-D weight but the norms quantized to `format`.
fn quantized(file: &GgufFile, format: Format) -> GgufFile {
    let mut w = GgufWriter::new();
    for (k, v) in file.metadata().iter() {
        if k != "general.alignment" {
            w.add_metadata(k, v.clone()).unwrap();
        }
    }
    let mut owned = Vec::new();
    for t in file.tensors() {
        let bytes = file.tensor_data(t).unwrap();
        if t.dims.len() == 2 && t.ggml_type == GgmlType::F32 {
            let (cols, rows) = (t.dims[0] as usize, t.dims[1] as usize);
            let values: Vec<f32> = bytemuck::pod_collect_to_vec(bytes);
            let q = reference::quantize(format, rows, cols, &values).unwrap();
            owned.push((t.name.clone(), t.dims.clone(), GgmlType::from_element_id(format.ggml_type()).unwrap(), q.as_ref().data().to_vec()));
        } else {
            owned.push((t.name.clone(), t.dims.clone(), t.ggml_type, bytes.to_vec()));
        }
    }
    for (name, dims, ty, data) in owned {
        w.add_tensor(name, &dims, ty, data).unwrap();
    }
    GgufFile::from_bytes(w.to_bytes()).unwrap()
}

fn check(name: &str) {
    let Some(ctx) = common::context() else { return };
    let f = fixture(name);
    let config = LlamaConfig::from_source(&f.file).unwrap();
    assert_eq!(config.architecture, name);
    let n = f.tokens.len();
    // Chunks of 16 make the prefill cross chunk borders and the windows of 8. The f32 KV cache
    // checks the arithmetic; the rounded caches are priced after.
    let options = LlamaOptions { context: 64, chunk: 16, kv_type: KvType::F32, ..Default::default() };
    let mut model = pollster::block_on(Llama::load(&ctx, &f.file, options.clone(), &mut |_, _| {})).unwrap();
    let vocab = config.vocab;
    let all = pollster::block_on(model.forward(&ctx, &f.tokens, Logits::All)).unwrap();
    for pos in 0..n {
        assert_matches(&format!("{name} F32 prefill position {pos}"), &all[pos * vocab..(pos + 1) * vocab], &f.logits[pos], 1e-3);
    }
    model.reset();
    for pos in 0..n {
        let last = pollster::block_on(model.forward(&ctx, &f.tokens[pos..pos + 1], Logits::Last)).unwrap();
        assert_matches(&format!("{name} F32 decode position {pos}"), &last, &f.logits[pos], 1e-3);
    }

    // The KV cache types on the f32 weights: f16 moves the log-probabilities by its rounding
    // only; the 8- and 4-bit caches are priced by KL, as the weight formats below.
    let mut f16 = pollster::block_on(Llama::load(&ctx, &f.file, LlamaOptions { kv_type: KvType::F16, ..options.clone() }, &mut |_, _| {})).unwrap();
    let all = pollster::block_on(f16.forward(&ctx, &f.tokens, Logits::All)).unwrap();
    for pos in 0..n {
        assert_matches(&format!("{name} f16 KV prefill position {pos}"), &all[pos * vocab..(pos + 1) * vocab], &f.logits[pos], 1e-2);
    }
    for (kv_type, max_kl) in [(KvType::Q8_0, 1e-3), (KvType::Q4_0, 0.2)] {
        let mut model = pollster::block_on(Llama::load(&ctx, &f.file, LlamaOptions { kv_type, ..options.clone() }, &mut |_, _| {})).unwrap();
        let all = pollster::block_on(model.forward(&ctx, &f.tokens, Logits::All)).unwrap();
        let mean = (0..n).map(|p| kl(&f.logits[p], &all[p * vocab..(p + 1) * vocab])).sum::<f64>() / n as f64;
        println!("{name} {kv_type} KV cache: mean KL {mean:.2e}");
        assert!(mean <= max_kl, "{name} {kv_type} KV cache: mean KL {mean} above {max_kl}");
    }

    for (format, max_kl) in [(Format::Q8_0, 5e-3), (Format::Q4_0, 0.6)] {
        let file = quantized(&f.file, format);
        let mut model = pollster::block_on(Llama::load(&ctx, &file, options.clone(), &mut |_, _| {})).unwrap();
        let all = pollster::block_on(model.forward(&ctx, &f.tokens, Logits::All)).unwrap();
        let kls: Vec<f64> = (0..n).map(|p| kl(&f.logits[p], &all[p * vocab..(p + 1) * vocab])).collect();
        let mean = kls.iter().sum::<f64>() / n as f64;
        let top1 = (0..n).filter(|&p| argmax(&all[p * vocab..(p + 1) * vocab]) == argmax(&f.logits[p])).count();
        println!("{name} {format}: mean KL {mean:.2e}, max {:.2e}, top-1 {top1}/{n}", kls.iter().fold(0.0f64, |m, &v| m.max(v)));
        assert!(mean <= max_kl, "{name} {format}: mean KL {mean} above {max_kl}");
    }
}

#[test]
fn llama3_rope_freqs_matches_transformers() {
    check("llama");
}

#[test]
fn qwen2_biases_match_transformers() {
    check("qwen2");
}

#[test]
fn qwen3_qk_norm_matches_transformers() {
    check("qwen3");
}

#[test]
fn gemma2_softcap_and_windows_match_transformers() {
    check("gemma2");
}

#[test]
fn gemma3_windows_and_qk_norm_match_transformers() {
    check("gemma3");
}

#[test]
fn phi3_fused_tensors_match_transformers() {
    check("phi3");
}

#[test]
fn smollm3_nope_layers_match_transformers() {
    check("smollm3");
}

#[test]
fn unknown_architecture_lists_the_supported_ones() {
    let f = fixture("llama");
    let mut w = GgufWriter::new();
    for (k, v) in f.file.metadata().iter() {
        let k = k.replace("llama.", "mamba.");
        if k == "general.architecture" {
            w.add_metadata(k, "mamba").unwrap();
        } else if k != "general.alignment" {
            w.add_metadata(k, v.clone()).unwrap();
        }
    }
    let file = GgufFile::from_bytes(w.to_bytes()).unwrap();
    let err = LlamaConfig::from_source(&file).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, qgpu::model::ModelError::UnsupportedArchitecture { ref architecture, .. } if architecture == "mamba"), "{err:?}");
    for arch in ["llama", "qwen2", "qwen3", "gemma2", "gemma3", "phi3", "smollm3"] {
        assert!(text.contains(arch), "{text}");
    }
}
