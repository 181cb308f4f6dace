//! `qgpu quantize` end to end: a synthetic source → quantize → write → read back with
//! `GgufFile` → the bytes are the reference quantizer's, metadata survives, and the GPU product
//! with the read-back weights equals the CPU oracle. Crash safety: a cancel or a killed process
//! leaves nothing under the final name. Bad plans give exact typed errors.

mod common;

use std::borrow::Cow;
use std::ops::ControlFlow;

use common::tiny_gguf::{tiny_llama_gguf, TinySpec};
use half::{bf16, f16};
use qgpu::convert::{
    fallback, no_progress, quantize_model, ConvertError, ConvertOptions, DecisionKind, NamePattern, PlanError, Preset, QuantPlan,
    TensorRole,
};
use qgpu::loader::{GgmlType, GgufFile, LoadError, Metadata, MetadataValue, SourceTensor, TensorSource};
use qgpu::ops::{linear, GpuMatrix, GpuTensor};
use qgpu::quant::reference::{self, TestRng};
use qgpu::quant::{Format, QuantMatrixRef};

use common::TempDir;

/// An in-memory source holding what a safetensors checkpoint holds: F32, F16 and BF16 tensors
/// under GGUF names, with odd shapes (rows of 384 values: not a whole Q4_K super-block).
struct FloatSource {
    metadata: Metadata,
    tensors: Vec<(SourceTensor, Vec<u8>)>,
}

impl FloatSource {
    fn new(seed: u64) -> Self {
        let mut rng = TestRng::new(seed);
        let mut metadata = Metadata::new();
        metadata.insert("general.architecture", "llama".into()).unwrap();
        metadata.insert("general.file_type", MetadataValue::U32(0)).unwrap();
        let mut tensors = Vec::new();
        let mut add = |name: &str, dims: &[u64], ty: GgmlType, rng: &mut TestRng| {
            let n: u64 = dims.iter().product();
            let values = rng.vec(n as usize);
            let bytes: Vec<u8> = match ty {
                GgmlType::F16 => values.iter().flat_map(|v| f16::from_f32(*v).to_le_bytes()).collect(),
                GgmlType::BF16 => values.iter().flat_map(|v| bf16::from_f32(*v).to_le_bytes()).collect(),
                _ => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            };
            tensors.push((SourceTensor { name: name.into(), dims: dims.to_vec(), ggml_type: ty }, bytes));
        };
        add("token_embd.weight", &[256, 67], GgmlType::BF16, &mut rng);
        add("position_embd.weight", &[256, 16], GgmlType::F16, &mut rng);
        add("blk.0.attn_norm.weight", &[256], GgmlType::F16, &mut rng);
        add("blk.0.attn_q.weight", &[256, 17], GgmlType::F32, &mut rng);
        add("blk.0.attn_q.bias", &[17], GgmlType::BF16, &mut rng);
        add("blk.0.ffn_up.weight", &[384, 33], GgmlType::F16, &mut rng);
        add("blk.0.ffn_down.weight", &[512, 7], GgmlType::BF16, &mut rng);
        add("output.weight", &[256, 67], GgmlType::F32, &mut rng);
        FloatSource { metadata, tensors }
    }
}

impl TensorSource for FloatSource {
    fn metadata(&self) -> &Metadata {
        &self.metadata
    }
    fn tensors(&self) -> Vec<SourceTensor> {
        self.tensors.iter().map(|t| t.0.clone()).collect()
    }
    fn tensor_bytes(&self, name: &str) -> Result<Cow<'_, [u8]>, LoadError> {
        let t = self.tensors.iter().find(|t| t.0.name == name).ok_or_else(|| LoadError::MissingTensor { name: name.into() })?;
        Ok(Cow::Borrowed(&t.1))
    }
}

fn convert(source: &dyn TensorSource, plan: &QuantPlan, out: &std::path::Path) -> qgpu::convert::Report {
    quantize_model(source, plan, &ConvertOptions { threads: 2, ..Default::default() }, out, &mut no_progress).unwrap()
}

/// Every tensor of `out` is what the plan says, its bytes are the reference quantizer's on the
/// source's values, and quantized matrices multiply on the GPU as the oracle does.
fn check_written(source: &dyn TensorSource, plan: &QuantPlan, out: &std::path::Path) {
    let report = convert(source, plan, out);
    let decisions = plan.decide(source).unwrap();
    let file = GgufFile::open(out).unwrap();
    assert_eq!(file.metadata().get_str("general.architecture").unwrap(), "llama");
    assert!(file.metadata().get_str("qgpu.quantization").unwrap().contains(plan.name()));
    assert_eq!(report.file_bytes, std::fs::metadata(out).unwrap().len());
    let ctx = common::context();
    let mut rng = TestRng::new(77);
    for t in &report.tensors {
        let info = file.tensor(&t.name).unwrap();
        assert_eq!(info.ggml_type.id(), t.written.ggml_type(), "{}", t.name);
        assert_eq!(info.dims, t.dims);
        let data = file.tensor_data(info).unwrap();
        let values = source.tensor_f32(&t.name).unwrap();
        let cols = t.dims[0] as usize;
        let rows = values.len() / cols;
        if t.requested.is_none() {
            // Kept in float: norms and biases as F32, an F16 position table as F16.
            assert!(matches!(t.written, Format::F32 | Format::F16), "{}: {}", t.name, t.written);
            let back = qgpu::loader::source::to_f32(&TensorSource::tensor(&file, &t.name).unwrap(), data).unwrap();
            assert_eq!(back, values, "{}", t.name);
            continue;
        }
        let decision = decisions.iter().find(|d| d.tensor.name == t.name).unwrap();
        let DecisionKind::Quantize { requested, written, .. } = decision.kind else { panic!("{}: {:?}", t.name, decision.kind) };
        assert_eq!(t.requested, Some(requested));
        assert_eq!(t.written, written, "{}", t.name);
        if plan.preset.is_none() {
            assert_eq!(written, fallback(requested, cols), "{}", t.name);
        }
        let want = reference::quantize(t.written, rows, cols, &values).unwrap();
        assert!(data == want.data(), "{}: bytes differ from reference::quantize({})", t.name, t.written);
        let Some(ctx) = &ctx else { continue };
        let w = QuantMatrixRef::new(t.written, rows, cols, data).unwrap();
        let gw = GpuMatrix::upload(ctx, w).unwrap();
        for m in [1, 3, 11] {
            let x = rng.vec(m * cols);
            let gx = GpuTensor::from_slice(ctx, m, cols, &x).unwrap();
            let gy = GpuTensor::zeros(ctx, m, rows).unwrap();
            pollster::block_on(linear(ctx, &gw, &gx, &gy, None)).unwrap();
            let got = pollster::block_on(gy.read(ctx)).unwrap();
            let (rel, first) = common::compare(&got, &reference::matmul(&x, m, w), 1e-3);
            assert!(rel <= 1e-5 && first.is_none(), "{} {} M={m}: rel {rel:e}, first bad {first:?}", t.name, t.written);
        }
    }
}

#[test]
fn float_source_round_trips_in_every_format_and_a_mix() {
    let dir = TempDir::new("float");
    let source = FloatSource::new(3);
    // NF4 and FP4 have no GGUF type (a plan for one is refused: tests/bnb4.rs).
    for format in Format::ALL.into_iter().filter(|&f| f != Format::F32 && f.in_gguf()) {
        let plan = QuantPlan::new(format);
        check_written(&source, &plan, &dir.0.join(format!("{format}.gguf")));
    }
    let plan = QuantPlan::parse("Q4_K", "edges=Q8_0, blk.*.ffn_down=Q6_K, *up=IQ4_NL").unwrap();
    check_written(&source, &plan, &dir.0.join("mix.gguf"));
    let report = convert(&source, &plan, &dir.0.join("mix.gguf"));
    let written = |name: &str| report.tensors.iter().find(|t| t.name == name).unwrap().written;
    assert_eq!(
        [written("token_embd.weight"), written("output.weight"), written("blk.0.ffn_down.weight")],
        [Format::Q8_0, Format::Q8_0, Format::Q6_K]
    );
    assert_eq!((written("blk.0.attn_q.weight"), written("blk.0.ffn_up.weight")), (Format::Q4_K, Format::IQ4_NL));
    assert_eq!((written("blk.0.attn_norm.weight"), written("blk.0.attn_q.bias"), written("position_embd.weight")), (Format::F32, Format::F32, Format::F16));
    // Q4_K on rows of 384 falls back to IQ4_NL (same 4.5 bits), and says so.
    let report = convert(&source, &QuantPlan::new(Format::Q4_K), &dir.0.join("q4k.gguf"));
    let up = report.tensors.iter().find(|t| t.name == "blk.0.ffn_up.weight").unwrap();
    assert!(up.fell_back() && up.written == Format::IQ4_NL && up.requested == Some(Format::Q4_K));
    assert_eq!(report.tensors.iter().filter(|t| t.fell_back()).count(), 1);
    assert_eq!(dir.entries().iter().filter(|n| n.ends_with(".part")).count(), 0);
}

#[test]
fn gguf_source_round_trips_and_keeps_metadata() {
    let dir = TempDir::new("gguf");
    let spec = TinySpec { weight_format: Format::F32, embed_format: Format::F16, ..TinySpec::odd() };
    let source = GgufFile::from_bytes(tiny_llama_gguf(&spec, 5)).unwrap();
    for plan in [QuantPlan::new(Format::IQ4_NL), QuantPlan::parse("Q4_0", "token_embd=Q8_0,output=Q4_1").unwrap()] {
        let out = dir.0.join("tiny.gguf");
        check_written(&source, &plan, &out);
        let file = GgufFile::open(&out).unwrap();
        for (key, value) in source.metadata().iter().filter(|(k, _)| !k.starts_with("general.file_type")) {
            assert_eq!(file.metadata().get(key), Some(value), "{key}");
        }
        assert_eq!(file.metadata().get_u32("general.file_type").unwrap(), plan.file_type());
    }
}

#[test]
fn cancel_midway_leaves_no_file_and_keeps_the_old_one() {
    let dir = TempDir::new("cancel");
    let source = FloatSource::new(4);
    let out = dir.0.join("model.gguf");
    let mut calls = 0;
    let mut stop_at_3 = |p: &qgpu::convert::Progress<'_>| {
        calls += 1;
        if p.done == 3 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    };
    let err = quantize_model(&source, &QuantPlan::new(Format::Q4_0), &ConvertOptions::default(), &out, &mut stop_at_3).unwrap_err();
    assert!(matches!(err, ConvertError::Cancelled { done: 3, total: 8 }), "{err:?}");
    assert_eq!(calls, 3);
    assert!(dir.entries().is_empty(), "left behind: {:?}", dir.entries());
    // An existing file under the final name survives a failed conversion untouched.
    std::fs::write(&out, b"old model").unwrap();
    let mut stop = |_: &qgpu::convert::Progress<'_>| ControlFlow::Break(());
    quantize_model(&source, &QuantPlan::new(Format::Q8_0), &ConvertOptions::default(), &out, &mut stop).unwrap_err();
    assert_eq!(std::fs::read(&out).unwrap(), b"old model");
    assert_eq!(dir.entries(), ["model.gguf"]);
}

#[test]
fn killed_process_leaves_nothing_under_the_final_name() {
    let dir = TempDir::new("kill");
    let spec = TinySpec { weight_format: Format::F32, embed_format: Format::F32, ..TinySpec::odd() };
    let model = dir.0.join("tiny-f32.gguf");
    std::fs::write(&model, tiny_llama_gguf(&spec, 8)).unwrap();
    let out = dir.0.join("tiny-q4.gguf");
    let run = |abort: Option<&str>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_qgpu"));
        cmd.args(["quantize", "--format", "Q4_0", "--model"]).arg(&model).arg("--out").arg(&out);
        if let Some(n) = abort {
            cmd.env("QGPU_QUANTIZE_ABORT_AFTER", n);
        }
        cmd.output().unwrap()
    };
    let killed = run(Some("5"));
    assert!(!killed.status.success(), "the abort hook did not fire");
    assert!(!out.exists(), "a crash left a file under the final name");
    let done = run(None);
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert!(stderr.contains("Q4_0") && stderr.contains("% of f32"), "size table missing: {stderr}");
    assert!(GgufFile::open(&out).is_ok());
}

#[test]
fn bad_plans_give_typed_errors() {
    assert_eq!(QuantPlan::parse("Q3_X", "").unwrap_err(), PlanError::UnknownTarget { name: "Q3_X".into() });
    assert_eq!(QuantPlan::parse("Q4_K_X", "").unwrap_err(), PlanError::UnknownTarget { name: "Q4_K_X".into() });
    assert_eq!(QuantPlan::parse(" Q4_K_M ", "").unwrap().preset, Some(Preset::Q4_K_M));
    assert_eq!(QuantPlan::parse("q4_k", "").unwrap(), QuantPlan::new(Format::Q4_K));
    assert_eq!(QuantPlan::parse("Q4_K", "token_embd").unwrap_err(), PlanError::MixSyntax { item: "token_embd".into() });
    assert_eq!(QuantPlan::parse("Q4_K", "=Q8_0").unwrap_err(), PlanError::MixSyntax { item: "=Q8_0".into() });
    assert_eq!(QuantPlan::parse("Q4_K", "output=Q9").unwrap_err(), PlanError::UnknownFormat { name: "Q9".into() });
    let source = FloatSource::new(5);
    let tensors = source.tensors();
    // A rule that matches only a norm (never quantized) or nothing at all is a mistake.
    for pattern in ["blk.*.attn_norm", "blk.9.*"] {
        let plan = QuantPlan::parse("Q4_0", &format!("{pattern}=Q8_0")).unwrap();
        assert_eq!(plan.resolve(&tensors).unwrap_err(), PlanError::RuleMatchesNothing { pattern: pattern.into() });
    }
    let mut plan = QuantPlan::new(Format::Q8_0);
    plan.calibrated = true;
    assert_eq!(plan.resolve(&tensors).unwrap_err(), PlanError::CalibrationUnused);
    // The errors reach the caller of quantize_model, and nothing is written.
    let dir = TempDir::new("bad");
    let plan = QuantPlan::parse("Q4_0", "nothing=Q8_0").unwrap();
    let err = quantize_model(&source, &plan, &ConvertOptions::default(), &dir.0.join("x.gguf"), &mut no_progress).unwrap_err();
    assert!(matches!(err, ConvertError::Plan(PlanError::RuleMatchesNothing { .. })), "{err:?}");
    assert!(dir.entries().is_empty());
}

#[test]
fn name_patterns_match_gguf_names() {
    let p = |s: &str| NamePattern::parse(s).unwrap();
    assert!(p("token_embd").matches("token_embd.weight"));
    assert!(!p("token_embd").matches("token_embd_norm.weight"));
    assert!(p("blk.*.ffn_down").matches("blk.12.ffn_down.weight"));
    assert!(!p("blk.*.ffn_down").matches("blk.12.ffn_down_exps.weight"));
    assert!(p("*ffn*").matches("blk.0.ffn_up.weight"));
    assert!(p("blk.1*").matches("blk.10.attn_q.weight") && !p("blk.1.*").matches("blk.10.attn_q.weight"));
    assert!(p("edges").matches("output.weight") && p("edges").matches("token_embd.weight") && !p("edges").matches("output_norm.weight"));
    assert!(p("a*a").matches("aa.weight") && !p("a*a").matches("a.weight"));
    assert!(NamePattern::parse("").is_none() && NamePattern::parse("a b").is_none());
}

#[test]
fn fallbacks_follow_the_row_length() {
    assert_eq!(fallback(Format::Q4_K, 4096), Format::Q4_K);
    assert_eq!(fallback(Format::Q4_K, 384), Format::IQ4_NL);
    assert_eq!(fallback(Format::Q6_K, 384), Format::Q8_0);
    assert_eq!(fallback(Format::Q4_K, 200), Format::F16);
    assert_eq!(fallback(Format::Q4_0, 100), Format::F32);
    assert_eq!(fallback(Format::Q5_K, 384), Format::Q5_1);
    for format in [Format::Q3_K, Format::Q2_K, Format::IQ4_XS] {
        assert_eq!(fallback(format, 384), Format::IQ4_NL);
    }
    assert_eq!((fallback(Format::MXFP4, 200), fallback(Format::BF16, 100)), (Format::F16, Format::F32));
}

/// (role, llama.cpp's type, qgpu's type, tensors).
type TypeRow = (String, String, String, usize);

/// The preset's types for every tensor of a llama.cpp-made `path`, against the types llama.cpp
/// wrote there: (name, llama.cpp's, qgpu's) for each mismatch, and (role, llama.cpp's, qgpu's,
/// count) rows for the table in the README.
fn compare_with_llama_cpp(path: &std::path::Path, preset: &str) -> (Vec<String>, Vec<TypeRow>) {
    let file = GgufFile::open(path).unwrap();
    let plan = QuantPlan::parse(preset, "").unwrap();
    let mut mismatches = Vec::new();
    let mut table: Vec<TypeRow> = Vec::new();
    for d in plan.decide(&file).unwrap() {
        let theirs = d.tensor.ggml_type.name().to_owned();
        let ours = d.written().name().to_owned();
        if theirs != ours {
            mismatches.push(format!("{} {:?}: llama.cpp {theirs}, qgpu {ours}", d.tensor.name, d.tensor.dims));
        }
        let role = match TensorRole::parse(&d.tensor.name) {
            TensorRole::Other if d.tensor.dims.len() == 1 => "1-D (norms)".to_owned(),
            r => r.name().to_owned(),
        };
        match table.iter_mut().find(|r| r.0 == role && r.1 == theirs && r.2 == ours) {
            Some(r) => r.3 += 1,
            None => table.push((role, theirs, ours, 1)),
        }
    }
    (mismatches, table)
}

#[test]
fn q4_k_m_plan_matches_llama_cpp_on_gemma3() {
    let Some(path) = common::require_gemma3() else { return };
    let file = GgufFile::open(&path).unwrap();
    assert_eq!(file.metadata().get_u32("general.file_type").unwrap(), Preset::Q4_K_M.file_type());
    let (mismatches, table) = compare_with_llama_cpp(&path, "Q4_K_M");
    for (role, theirs, ours, n) in &table {
        eprintln!("{role:<12} llama.cpp {theirs:<5} qgpu {ours:<5} {n}");
    }
    assert!(mismatches.is_empty(), "{} tensors differ:\n{}", mismatches.len(), mismatches.join("\n"));
    // The rules were exercised: promotions (Q6_K, Q8_0 from Q6_K) and fallbacks (Q5_0) occur.
    for ty in ["Q4_K", "Q6_K", "Q5_0", "Q8_0"] {
        assert!(table.iter().any(|r| r.2 == ty), "no {ty} tensor");
    }
}

#[test]
fn q4_1_plan_matches_llama_cpp_on_smollm2() {
    let path = common::model_path();
    if !path.is_file() {
        assert!(std::env::var("CI").map_or(true, |v| v != "true"), "CI=true and no model at {}", path.display());
        eprintln!("skipping: no model at {}", path.display());
        return;
    }
    let (mismatches, table) = compare_with_llama_cpp(&path, "Q4_1");
    assert!(mismatches.is_empty(), "{} tensors differ:\n{}", mismatches.len(), mismatches.join("\n"));
    // The tied embedding: Q6_K by the output rule, Q8_0 by the fallback (576 is not 256k).
    assert!(table.iter().any(|r| r.0 == "token_embd" && r.2 == "Q8_0"));
}

/// A dense model's tensor list: `n_layers` blocks of width `width`, FFN `ffn`, untied output.
fn synthetic_model(n_layers: usize, width: u64, kv: u64, ffn: u64) -> Vec<SourceTensor> {
    let t = |name: String, dims: &[u64]| SourceTensor { name, dims: dims.to_vec(), ggml_type: GgmlType::F16 };
    let mut tensors = vec![t("token_embd.weight".into(), &[width, 1000])];
    for i in 0..n_layers {
        tensors.push(t(format!("blk.{i}.attn_norm.weight"), &[width]));
        tensors.push(t(format!("blk.{i}.attn_q.weight"), &[width, width]));
        tensors.push(t(format!("blk.{i}.attn_k.weight"), &[width, kv]));
        tensors.push(t(format!("blk.{i}.attn_v.weight"), &[width, kv]));
        tensors.push(t(format!("blk.{i}.attn_output.weight"), &[width, width]));
        tensors.push(t(format!("blk.{i}.ffn_gate.weight"), &[width, ffn]));
        tensors.push(t(format!("blk.{i}.ffn_up.weight"), &[width, ffn]));
        tensors.push(t(format!("blk.{i}.ffn_down.weight"), &[ffn, width]));
    }
    tensors.push(t("output_norm.weight".into(), &[width]));
    tensors.push(t("output.weight".into(), &[width, 1000]));
    tensors
}

fn written_types(plan: &QuantPlan, tensors: &[SourceTensor]) -> std::collections::HashMap<String, Format> {
    plan.resolve(tensors).unwrap().into_iter().map(|d| (d.tensor.name.clone(), d.written())).collect()
}

#[test]
fn presets_promote_by_layer_and_fall_back_by_row_length() {
    let tensors = synthetic_model(16, 512, 128, 1024);
    let q4km = written_types(&QuantPlan::parse("Q4_K_M", "").unwrap(), &tensors);
    let more = [0, 1, 4, 7, 10, 13, 14, 15]; // use_more_bits for 16 layers
    for i in 0..16 {
        let want = if more.contains(&i) { Format::Q6_K } else { Format::Q4_K };
        assert_eq!(q4km[&format!("blk.{i}.attn_v.weight")], want, "layer {i}");
        assert_eq!(q4km[&format!("blk.{i}.ffn_down.weight")], want, "layer {i}");
        for other in ["attn_q", "attn_k", "attn_output", "ffn_gate", "ffn_up"] {
            assert_eq!(q4km[&format!("blk.{i}.{other}.weight")], Format::Q4_K);
        }
        assert_eq!(q4km[&format!("blk.{i}.attn_norm.weight")], Format::F32);
    }
    assert_eq!((q4km["output.weight"], q4km["token_embd.weight"]), (Format::Q6_K, Format::Q4_K));
    let q3km = written_types(&QuantPlan::parse("Q3_K_M", "").unwrap(), &tensors);
    assert_eq!((q3km["blk.0.attn_v.weight"], q3km["blk.1.attn_v.weight"], q3km["blk.2.attn_v.weight"]), (Format::Q5_K, Format::Q5_K, Format::Q4_K));
    assert_eq!((q3km["blk.0.ffn_down.weight"], q3km["blk.1.ffn_down.weight"]), (Format::Q5_K, Format::Q4_K));
    assert_eq!((q3km["blk.5.attn_output.weight"], q3km["blk.5.attn_q.weight"]), (Format::Q4_K, Format::Q3_K));
    // Widths that are not a multiple of 256 (SmolLM2's 576) take llama.cpp's fallbacks.
    let odd = synthetic_model(16, 576, 192, 1536);
    let cases = [
        ("Q4_K_M", "blk.2.attn_q.weight", Format::Q5_0),
        ("Q4_K_M", "blk.0.attn_v.weight", Format::Q8_0),
        ("Q4_K_M", "blk.2.ffn_down.weight", Format::Q4_K),
        ("Q4_K_M", "output.weight", Format::Q8_0),
        ("Q5_K_S", "blk.2.attn_q.weight", Format::Q5_1),
        ("Q3_K_S", "blk.2.attn_q.weight", Format::Q4_0),
        ("Q2_K", "blk.2.attn_q.weight", Format::Q4_0),
        ("IQ4_XS", "blk.2.attn_q.weight", Format::IQ4_NL),
        ("Q6_K", "blk.2.attn_q.weight", Format::Q8_0),
        ("Q4_0", "output.weight", Format::Q8_0),
    ];
    for (preset, name, want) in cases {
        assert_eq!(written_types(&QuantPlan::parse(preset, "").unwrap(), &odd)[name], want, "{preset} {name}");
    }
    // A plain type keeps qgpu's own fallback (Q4_K → IQ4_NL at the same 4.5 bits).
    assert_eq!(written_types(&QuantPlan::parse("Q4_K", "").unwrap(), &odd)["blk.2.attn_q.weight"], Format::IQ4_NL);
}

#[test]
fn mix_rules_override_the_preset() {
    let tensors = synthetic_model(8, 512, 128, 1024);
    let plan = QuantPlan::parse("Q4_K_M", "output=Q8_0,blk.*.attn_v=Q4_K, blk.3.*=Q5_K").unwrap();
    let types = written_types(&plan, &tensors);
    assert_eq!(types["output.weight"], Format::Q8_0);
    assert_eq!(types["blk.0.attn_v.weight"], Format::Q4_K); // Q6_K by the preset
    assert_eq!(types["blk.0.ffn_down.weight"], Format::Q6_K); // untouched by the rules
    assert_eq!(types["blk.3.ffn_up.weight"], Format::Q5_K);
    // `*` makes a preset name mean one type everywhere.
    let types = written_types(&QuantPlan::parse("Q4_0", "*=Q4_0").unwrap(), &tensors);
    assert_eq!(types["output.weight"], Format::Q4_0);
    assert_eq!(QuantPlan::parse("Q4_K_M", "").unwrap().file_type(), 15);
    assert_eq!(QuantPlan::parse("Q4_0", "").unwrap().file_type(), 2);
}
