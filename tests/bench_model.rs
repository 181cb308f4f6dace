//! `qgpu bench --model`: the report of a tiny run on the default model validates against
//! docs/bench-model.schema.json and its numbers are positive and finite, the KV bytes grow with
//! the depth and the context, `--compare` works on two model reports, bad settings are typed
//! errors; `Llama::rewind` keeps the prefix exactly (full layers and sliding-window rings) and
//! refuses where a ring has lost it.

mod common;

use common::json_schema::validate;
use qgpu::bench::{compare_models, compare_table, run_model_bench, ModelBenchOptions, ModelInfo, TestKind};
use qgpu::loader::GgufFile;
use qgpu::model::llama::{Llama, LlamaOptions, Logits};
use qgpu::model::ModelError;
use serde_json::{json, Value};
use std::process::Command;

fn schema() -> Value {
    serde_json::from_str(include_str!("../docs/bench-model.schema.json")).unwrap()
}

fn qgpu() -> Command {
    Command::new(env!("CARGO_BIN_EXE_qgpu"))
}

/// The default model, or `None` (skip) locally; a panic under `CI=true`.
fn model_path() -> Option<std::path::PathBuf> {
    let path = common::model_path();
    if path.exists() {
        return Some(path);
    }
    assert!(std::env::var("CI").map_or(true, |v| v != "true"), "CI=true and no model at {}", path.display());
    eprintln!("skipping: no model at {}", path.display());
    None
}

fn run_bench(args: &[&str]) -> (String, String) {
    let out = qgpu().args(["bench"]).args(args).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
    assert!(out.status.success(), "qgpu bench {args:?} failed: {stderr}");
    (stdout, stderr)
}

fn read(path: &std::path::Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn test<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["tests"].as_array().unwrap().iter().find(|t| t["test"] == name).unwrap_or_else(|| panic!("no test {name} in {doc}"))
}

#[test]
fn model_report_validates_grows_with_depth_and_compares() {
    let Some(model) = model_path() else { return };
    if common::context().is_none() {
        return;
    }
    let dir = common::TempDir::new("model");
    let (a, b, svg) = (dir.0.join("a.json"), dir.0.join("b.json"), dir.0.join("a.svg"));
    let m = model.to_str().unwrap();
    let (table, _) = run_bench(&["--model", m, "-p", "8", "-n", "4", "-d", "0,16", "-r", "2", "--json", a.to_str().unwrap(), "--svg", svg.to_str().unwrap()]);
    for name in ["pp8", "tg4", "pp8 @ d16", "tg4 @ d16", "t/s", "of copy", "f16"] {
        assert!(table.contains(name), "table lacks {name}: {table}");
    }
    let doc = read(&a);
    let errors = validate(&schema(), &doc);
    assert!(errors.is_empty(), "report does not validate: {errors:#?}");
    let tests = doc["tests"].as_array().unwrap();
    assert_eq!(tests.len(), 4, "pp and tg at two depths");
    for t in tests {
        let samples = t["tokens_per_s"]["samples"].as_array().unwrap();
        assert_eq!(samples.len(), 2, "two repetitions: {t}");
        for v in samples.iter().chain([&t["tokens_per_s"]["mean"]]).chain(t["seconds"].as_array().unwrap()) {
            let v = v.as_f64().unwrap();
            assert!(v > 0.0 && v.is_finite(), "{v} in {t}");
        }
        assert_eq!(t["memory"]["weights"], doc["tests"][0]["memory"]["weights"], "the weights are the same at every depth");
        assert_eq!(t["copy_fraction"].is_null(), t["kind"] == "pp", "a copy fraction for tg only: {t}");
    }
    // Default context: the deepest depth plus the longest test.
    assert_eq!(doc["settings"]["context"], 16 + 8);
    for kind in ["pp8", "tg4"] {
        let (shallow, deep) = (test(&doc, kind), test(&doc, &format!("{kind} @ d16")));
        assert!(deep["memory"]["kv_used"].as_u64() > shallow["memory"]["kv_used"].as_u64(), "{kind}: KV in use grows with depth");
    }
    let (t0, t16) = (test(&doc, "tg4"), test(&doc, "tg4 @ d16"));
    assert!(t16["bytes_per_token"].as_u64() > t0["bytes_per_token"].as_u64(), "decode reads more K/V at depth");
    assert!(t0["bytes_per_token"].as_u64() > doc["model"]["decode_weight_bytes"].as_u64());
    let chart = std::fs::read_to_string(&svg).unwrap();
    assert!(chart.starts_with("<svg") && chart.contains("pp8") && chart.contains("tg4") && chart.contains("<polyline"), "chart: {}", &chart[..chart.len().min(300)]);

    // A larger context allocates a larger KV cache; nothing else changes.
    run_bench(&["--model", m, "-p", "8", "-n", "4", "-d", "0", "-r", "1", "--no-warmup", "--context", "96", "--json", b.to_str().unwrap()]);
    let other = read(&b);
    assert!(validate(&schema(), &other).is_empty());
    let (ma, mb) = (&test(&doc, "pp8")["memory"], &test(&other, "pp8")["memory"]);
    assert!(mb["kv_cache"].as_u64() > ma["kv_cache"].as_u64(), "{ma} {mb}");
    assert_eq!(mb["weights"], ma["weights"]);
    assert_eq!(mb["kv_used"], ma["kv_used"], "the same tokens occupy the same cache bytes");

    let (cmp, _) = run_bench(&["--compare", a.to_str().unwrap(), b.to_str().unwrap()]);
    assert!(cmp.contains("pp8") && cmp.contains("tg4") && cmp.contains("geometric mean B/A over 2 tests") && cmp.contains("only in A: pp8 @ d16"), "{cmp}");
    let c = compare_models(&doc, &other).unwrap();
    for r in &c.rows {
        assert!((r.speedup - r.b_tokens_per_s / r.a_tokens_per_s).abs() < 1e-12 && r.speedup > 0.0);
    }
    // A model report against a kernel report is refused.
    let kernel = json!({"schema_version": 1, "adapter": {"name": "x"}, "cases": []});
    assert!(matches!(compare_table(&doc, &kernel), Err(qgpu::bench::CompareError::Kinds { a: "model", b: "kernel" })));
}

#[test]
fn bad_settings_are_errors_not_panics() {
    let Some(model) = model_path() else { return };
    let m = model.to_str().unwrap();
    // SmolLM2 was trained on 8192 positions.
    let cases: [(&[&str], &str); 6] = [
        (&["-p", "0"], "0 tokens"),
        (&["-n", "0"], "0 tokens"),
        (&["-r", "0"], "repetitions"),
        (&["-d", "8190", "-p", "8"], "needs 8198 positions"),
        (&["-p", "8", "--context", "4"], "the context holds 4"),
        (&["--quick"], "kernel suite"),
    ];
    for (args, message) in cases {
        let out = qgpu().args(["bench", "--model", m]).args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(message) && !stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    let out = qgpu().args(["bench", "-p", "8"]).output().unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("need --model"));
}

fn ids(seed: u32, n: usize, vocab: usize) -> Vec<u32> {
    (0..n as u32).map(|i| (seed.wrapping_mul(2654435761).wrapping_add(i.wrapping_mul(40503))) % vocab as u32).collect()
}

/// After a rewind, the same tokens give bit-identical logits, so a depth is prefilled once.
#[test]
fn rewind_keeps_the_prefix_of_full_layers() {
    let Some(model) = model_path() else { return };
    let Some(ctx) = common::context() else { return };
    let file = GgufFile::open(&model).unwrap();
    let mut llama = pollster::block_on(Llama::load(&ctx, &file, LlamaOptions { context: 48, ..Default::default() }, &mut |_, _| {})).unwrap();
    let vocab = llama.config().vocab;
    let (prefix, a, b) = (ids(1, 16, vocab), ids(2, 8, vocab), ids(3, 8, vocab));
    let forward = |llama: &mut Llama, t: &[u32]| pollster::block_on(llama.forward(&ctx, t, Logits::Last)).unwrap();
    forward(&mut llama, &prefix);
    let first = forward(&mut llama, &a);
    llama.rewind(16).unwrap();
    forward(&mut llama, &b);
    llama.rewind(16).unwrap();
    assert_eq!(llama.position(), 16);
    assert_eq!(forward(&mut llama, &a), first);
    assert!(matches!(llama.rewind(40), Err(ModelError::CannotRewind { to: 40, position: 24, .. })));
}

/// A sliding-window ring (Gemma 2, window 8, chunks of 4: 11 slots) can rewind while the
/// window before the rewind point is intact, refuses once it was overwritten, and the benchmark
/// prefills again instead.
#[test]
fn rewind_respects_sliding_window_rings() {
    let Some(ctx) = common::context() else { return };
    let file = GgufFile::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/arch/gemma2.gguf")).unwrap();
    let options = LlamaOptions { context: 64, chunk: 4, ..Default::default() };
    let mut llama = pollster::block_on(Llama::load(&ctx, &file, options.clone(), &mut |_, _| {})).unwrap();
    let vocab = llama.config().vocab;
    let (prefix, a, b) = (ids(1, 16, vocab), ids(2, 4, vocab), ids(3, 4, vocab));
    let forward = |llama: &mut Llama, t: &[u32]| pollster::block_on(llama.forward(&ctx, t, Logits::Last)).unwrap();
    forward(&mut llama, &prefix);
    let first = forward(&mut llama, &a);
    // 4 tokens past position 16 overwrote slots of positions up to 19 - 11 = 8, before 16's window.
    llama.rewind(16).unwrap();
    let other = forward(&mut llama, &b);
    llama.rewind(16).unwrap();
    assert_eq!(forward(&mut llama, &a), first);
    // A fresh sequence agrees: the rewound cache held exactly the prefix.
    llama.reset();
    forward(&mut llama, &prefix);
    assert_eq!(forward(&mut llama, &b), other);
    forward(&mut llama, &a);
    // 24 positions written: position 23 took the slot of 12, inside 16's window (9..16).
    assert!(matches!(llama.rewind(16), Err(ModelError::CannotRewind { to: 16, position: 24, .. })));

    let options = ModelBenchOptions { prompt_tokens: vec![6], gen_tokens: vec![3], depths: vec![0, 12], repetitions: 2, probe_bytes: 1 << 20, probe_repeats: 2, ..Default::default() };
    let info = ModelInfo::from_source(&file);
    assert_eq!(info.architecture, "gemma2");
    let r = pollster::block_on(run_model_bench(&ctx, &mut llama, info, &options, false, &mut |_| {})).unwrap();
    assert_eq!(r.tests.iter().map(|t| (t.kind, t.tokens, t.depth)).collect::<Vec<_>>(), [(TestKind::Prompt, 6, 0), (TestKind::Generation, 3, 0), (TestKind::Prompt, 6, 12), (TestKind::Generation, 3, 12)]);
    for t in &r.tests {
        assert!(t.seconds.len() == 2 && t.mean_stddev().0.is_finite() && t.mean_stddev().0 > 0.0, "{t:?}");
    }
    assert_eq!(llama.position(), 12, "the bench leaves the deepest depth in the cache");
}

#[test]
fn compare_computes_test_ratios() {
    let report = |adapter: &str, tests: &[(&str, f64)]| {
        let tests: Vec<Value> = tests.iter().map(|&(name, tps)| json!({"test": name, "tokens_per_s": {"mean": tps}})).collect();
        json!({"schema_version": 1, "kind": "model", "adapter": {"name": adapter}, "model": {"name": "m"}, "qgpu": {"git_commit": "abc"}, "tests": tests})
    };
    let a = report("A", &[("pp512", 100.0), ("tg128", 10.0), ("pp512 @ d512", 80.0)]);
    let b = report("B", &[("tg128", 40.0), ("pp512", 50.0), ("tg128 @ d512", 5.0)]);
    let c = compare_models(&a, &b).unwrap();
    let got: Vec<(&str, f64)> = c.rows.iter().map(|r| (r.test.as_str(), r.speedup)).collect();
    assert_eq!(got, [("pp512", 0.5), ("tg128", 4.0)]);
    assert_eq!((c.only_a.clone(), c.only_b.clone()), (vec!["pp512 @ d512".to_owned()], vec!["tg128 @ d512".to_owned()]));
    assert!((c.geometric_mean_speedup().unwrap() - 2f64.sqrt()).abs() < 1e-12);
    let mut zero = b.clone();
    zero["tests"][0]["tokens_per_s"]["mean"] = json!(0.0);
    assert!(matches!(compare_models(&a, &zero), Err(qgpu::bench::CompareError::Field { which: "B", index: 0, .. })));
    let mut old = b;
    old["schema_version"] = json!(9);
    assert!(matches!(compare_models(&a, &old), Err(qgpu::bench::CompareError::Version { which: "B", found: Some(9), .. })));
}
