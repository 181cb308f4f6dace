//! Calibrated quantization: the importance-weighted searches, the LLaMA observed forward that
//! feeds them, and (ignored by default, needs SmolLM2) the measured gain over round-to-nearest.

mod common;

use std::collections::HashMap;

use common::tiny_gguf::{tiny_llama_gguf, TinySpec};
use qgpu::convert::{no_progress, quantize_model, ConvertOptions, Importance, QuantPlan};
use qgpu::loader::{GgufFile, TensorSource};
use qgpu::model::llama::{Llama, LlamaOptions, Logits};
use qgpu::model::observe::SquaredInputMeans;
use qgpu::quant::reference::{dequantize, quantize, TestRng};
use qgpu::quant::weighted::{has_weighted_search, quantize_weighted};
use qgpu::quant::{Format, QuantError};

/// Σ_j imp_j (w − q)² over a matrix, relative to Σ_j imp_j w².
fn weighted_error(format: Format, rows: usize, cols: usize, w: &[f32], imp: &[f32], calibrated: Option<&[f32]>) -> (f64, f64) {
    let q = match calibrated {
        Some(c) => quantize_weighted(format, rows, cols, w, c).unwrap(),
        None => quantize(format, rows, cols, w).unwrap(),
    };
    let y = dequantize(q.as_ref());
    let mut err = 0.0;
    let mut norm = 0.0;
    for (i, (a, b)) in w.iter().zip(&y).enumerate() {
        let imp = imp[i % cols] as f64;
        err += imp * ((a - b) as f64).powi(2);
        norm += imp * (*a as f64).powi(2);
    }
    (err, norm)
}

#[test]
fn weighted_search_beats_round_to_nearest_where_it_matters() {
    let (rows, cols) = (16, 512);
    let mut rng = TestRng::new(21);
    let w = rng.vec(rows * cols);
    // Heavy-tailed importance, as activations give (a few channels carry most of the energy).
    let imp: Vec<f32> = (0..cols).map(|_| (4.0 * rng.uniform()).exp()).collect();
    for format in [Format::Q4_0, Format::Q4_1, Format::IQ4_NL, Format::Q4_K, Format::Q6_K] {
        assert!(has_weighted_search(format));
        let (rtn, _) = weighted_error(format, rows, cols, &w, &imp, None);
        let (searched, _) = weighted_error(format, rows, cols, &w, &imp, Some(&vec![1.0; cols]));
        let (weighted, _) = weighted_error(format, rows, cols, &w, &imp, Some(&imp));
        eprintln!("{format}: importance-weighted error: reference {rtn:.4}, plain search {searched:.4}, weighted {weighted:.4}");
        assert!(weighted < 0.9 * rtn, "{format}: weighted {weighted} vs reference {rtn}");
        assert!(weighted < searched, "{format}: weighted {weighted} vs plain search {searched}");
    }
}

#[test]
fn weighted_quantization_rejects_what_it_cannot_do() {
    let w = vec![0.5f32; 64];
    assert_eq!(quantize_weighted(Format::Q8_0, 2, 32, &w, &[1.0; 32]).unwrap_err(), QuantError::NoWeightedSearch { format: Format::Q8_0 });
    assert_eq!(quantize_weighted(Format::Q4_0, 2, 32, &w, &[1.0; 31]).unwrap_err(), QuantError::ImportanceLength { cols: 32, actual: 31 });
    assert_eq!(quantize_weighted(Format::Q4_1, 2, 32, &w[..63], &[1.0; 32]).unwrap_err(), QuantError::ValueCount { rows: 2, cols: 32, actual: 63 });
    // Zero importance (a channel calibration never saw) falls back to uniform weights.
    let zeros = quantize_weighted(Format::IQ4_NL, 2, 32, &w, &[0.0; 32]).unwrap();
    let ones = quantize_weighted(Format::IQ4_NL, 2, 32, &w, &[1.0; 32]).unwrap();
    assert_eq!(zeros.data(), ones.data());
}

#[test]
fn observed_forward_reports_every_linear_input() {
    let Some(ctx) = common::context() else { return };
    let spec = TinySpec { tied_head: true, ..TinySpec::odd() };
    let file = GgufFile::from_bytes(tiny_llama_gguf(&spec, 9)).unwrap();
    let mut model = pollster::block_on(Llama::load(&ctx, &file, LlamaOptions { context: 64, chunk: 16, ..Default::default() }, &mut |_, _| {})).unwrap();
    let tokens: Vec<u32> = (0..37).map(|i| (i * 7 % 263) as u32).collect();
    let mut observer = SquaredInputMeans::new();
    pollster::block_on(model.forward_observed(&ctx, &tokens, &mut observer)).unwrap();
    let means = observer.means();
    let mut expected: HashMap<String, usize> = HashMap::new();
    for i in 0..spec.n_layers {
        for (name, cols) in [("attn_q", spec.dim), ("attn_k", spec.dim), ("attn_v", spec.dim), ("attn_output", spec.dim), ("ffn_gate", spec.dim), ("ffn_up", spec.dim), ("ffn_down", spec.ffn)] {
            expected.insert(format!("blk.{i}.{name}.weight"), cols);
        }
    }
    expected.insert("token_embd.weight".into(), spec.dim); // the tied head
    assert_eq!(means.len(), expected.len(), "{:?}", means.keys().collect::<Vec<_>>());
    for (name, cols) in expected {
        let m = &means[&name];
        assert_eq!(m.len(), cols, "{name}");
        assert_eq!(observer.rows(&name), tokens.len(), "{name}");
        assert!(m.iter().all(|v| v.is_finite() && *v >= 0.0) && m.iter().any(|v| *v > 0.0), "{name}");
    }
    // The RMS-normed inputs have mean square ≈ norm weight² (1 ± 0.1), averaged over channels.
    let q = &means["blk.0.attn_q.weight"];
    let avg = q.iter().sum::<f32>() / q.len() as f32;
    assert!((0.8..1.25).contains(&avg), "mean square of normed input {avg}");
    // And the observed pass leaves the model usable: the next forward continues the sequence.
    assert_eq!(model.position(), tokens.len());
    model.reset();
    let logits = pollster::block_on(model.forward(&ctx, &tokens[..3], Logits::Last)).unwrap();
    assert_eq!(logits.len(), spec.vocab);
}

/// KL(p‖q) per position, averaged, and top-1 agreement between two logit sets.
fn kl_top1(p: &[f32], q: &[f32], vocab: usize) -> (f64, f64) {
    let softmax = |x: &[f32]| {
        let m = x.iter().fold(f32::MIN, |a, &b| a.max(b));
        let e: Vec<f64> = x.iter().map(|v| ((v - m) as f64).exp()).collect();
        let s: f64 = e.iter().sum();
        e.into_iter().map(|v| v / s).collect::<Vec<_>>()
    };
    let argmax = |x: &[f32]| x.iter().enumerate().fold((0, f32::MIN), |a, (i, &v)| if v > a.1 { (i, v) } else { a }).0;
    let (mut kl, mut agree, n) = (0.0, 0.0, p.len() / vocab);
    for (a, b) in p.chunks_exact(vocab).zip(q.chunks_exact(vocab)) {
        let (pa, pb) = (softmax(a), softmax(b));
        kl += pa.iter().zip(&pb).map(|(x, y)| if *x > 0.0 { x * (x / y.max(1e-30)).ln() } else { 0.0 }).sum::<f64>();
        agree += f64::from(u8::from(argmax(a) == argmax(b)));
    }
    (kl / n as f64, agree / n as f64)
}

/// SmolLM2, calibrated on README.md, evaluated on ARCHITECTURE.md: weight-space error weighted
/// by the measured importance, and logits KL/top-1 against the original model. Minutes on
/// lavapipe: `cargo test --release --test calibration -- --ignored --nocapture`.
#[test]
#[ignore]
fn calibration_gain_on_smollm2() {
    let Some(ctx) = common::context() else { return };
    let path = common::model_path();
    let Ok(file) = GgufFile::open(&path) else { return };
    let tokenizer = qgpu::model::tokenizer::Tokenizer::from_gguf(file.metadata()).unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    let calib = tokenizer.encode_raw(&std::fs::read_to_string(format!("{root}/README.md")).unwrap()).unwrap();
    let eval = tokenizer.encode_raw(&std::fs::read_to_string(format!("{root}/ARCHITECTURE.md")).unwrap()).unwrap();
    let (calib, eval) = (&calib[..calib.len().min(1024)], &eval[..eval.len().min(384)]);
    let options = LlamaOptions { context: 512, chunk: 128, ..Default::default() };
    let mut model = pollster::block_on(Llama::load(&ctx, &file, options.clone(), &mut |_, _| {})).unwrap();
    let mut observer = SquaredInputMeans::new();
    for window in calib.chunks(512) {
        model.reset();
        pollster::block_on(model.forward_observed(&ctx, window, &mut observer)).unwrap();
    }
    model.reset();
    let reference = pollster::block_on(model.forward(&ctx, eval, Logits::All)).unwrap();
    drop(model);
    let importance = Importance::new(observer.means(), calib.len());
    let vocab = reference.len() / eval.len();
    let dir = std::env::temp_dir().join(format!("qgpu-calibration-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Not Q4_1: the source is Q4_1, which round-to-nearest reproduces exactly already.
    for format in [Format::Q4_0, Format::IQ4_NL] {
        // Weight space, over every calibrated matrix.
        let (mut rtn, mut cal, mut norm) = (0.0, 0.0, 0.0);
        for t in file.tensors().iter().filter(|t| importance.get(&t.name).is_some() && t.dims.len() == 2) {
            let w = TensorSource::tensor_f32(&file, &t.name).unwrap();
            let (cols, rows) = (t.dims[0] as usize, t.dims[1] as usize);
            let imp = importance.get(&t.name).unwrap();
            let (e, n) = weighted_error(format, rows, cols, &w, imp, None);
            rtn += e;
            norm += n;
            cal += weighted_error(format, rows, cols, &w, imp, Some(imp)).0;
        }
        // Logits.
        let mut kl = Vec::new();
        for calibrated in [false, true] {
            let out = dir.join(format!("{format}-{calibrated}.gguf"));
            let mut plan = QuantPlan::parse(format.name(), "edges=Q8_0").unwrap();
            // The format itself everywhere else, not llama.cpp's preset of that name (whose
            // rules change with calibration), so that both runs differ only in the search.
            plan.preset = None;
            plan.calibrated = calibrated;
            let opts = ConvertOptions { importance: Some(&importance), threads: 0, note: None };
            quantize_model(&file, &plan, &opts, &out, &mut no_progress).unwrap();
            let qfile = GgufFile::open(&out).unwrap();
            let mut q = pollster::block_on(Llama::load(&ctx, &qfile, options.clone(), &mut |_, _| {})).unwrap();
            let logits = pollster::block_on(q.forward(&ctx, eval, Logits::All)).unwrap();
            kl.push(kl_top1(&reference, &logits, vocab));
        }
        eprintln!(
            "{format}: weighted rel. error RTN {:.5} → calibrated {:.5} ({:.1}% lower); KL vs original RTN {:.5} → calibrated {:.5}; top-1 {:.3} → {:.3}",
            (rtn / norm).sqrt(),
            (cal / norm).sqrt(),
            100.0 * (1.0 - (cal / rtn).sqrt()),
            kl[0].0,
            kl[1].0,
            kl[0].1,
            kl[1].1
        );
        assert!(cal < rtn, "{format}: calibrated weight error {cal} ≥ RTN {rtn}");
        assert!(kl[1].0 < kl[0].0, "{format}: calibrated KL {} ≥ RTN KL {}", kl[1].0, kl[0].0);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
