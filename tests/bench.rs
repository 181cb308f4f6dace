//! `qgpu bench` and `qgpu tune`: the JSON report validates against docs/bench.schema.json and
//! its fractions are plausible; `--compare` computes the right ratios; a corrupt tune cache is
//! ignored and a valid one decides the kernel.

mod common;

use common::json_schema::validate;
use qgpu::bench::compare;
use qgpu::bench::tune::{load_cache_from, save_cache_to};
use qgpu::ops::tune::{AdapterKey, ShapeBucket, TuneKey, TunedKernel, TunedOp};
use qgpu::ops::{plan_linear, GpuMatrix, GpuTensor, LinearKernel, MatvecKernel, MatvecVariant, TuneTable};
use qgpu::quant::{reference, Format};
use serde_json::{json, Value};
use std::process::Command;

fn schema() -> Value {
    serde_json::from_str(include_str!("../docs/bench.schema.json")).unwrap()
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("qgpu-bench-test-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn bench_json_validates_and_fractions_are_plausible() {
    if common::context().is_none() {
        return;
    }
    let dir = temp_dir("json");
    let (json_path, svg_path) = (dir.join("report.json"), dir.join("chart.svg"));
    // Tiny shapes: one matvec (1 row) and one matmul (129 rows: above the 128 that CPU adapters
    // may still run as matvec passes) per format; K = 256 fits every format.
    let out = Command::new(env!("CARGO_BIN_EXE_qgpu"))
        .args(["bench", "--quick", "--no-tune", "--shapes", "96x256,33x512", "--rows", "1,129", "--formats", "F32,Q8_0,Q4_0,Q4_K", "--json"])
        .arg(&json_path)
        .arg("--svg")
        .arg(&svg_path)
        .output()
        .unwrap();
    assert!(out.status.success(), "qgpu bench failed: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("of copy") && stdout.contains("Q4_K"), "table: {stdout}");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    let errors = validate(&schema(), &doc);
    assert!(errors.is_empty(), "report does not validate: {errors:#?}");
    let cases = doc["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 2 * 2 * 4, "every shape × rows × format ran");
    for c in cases {
        for field in ["bandwidth_fraction", "fma_fraction"] {
            let f = c[field].as_f64().unwrap();
            assert!(f > 0.0 && f <= 1.5, "{field} {f} outside (0, 1.5] in {c}");
        }
        let expected_op = if c["rows"] == 1 { "matvec" } else { "matmul" };
        assert_eq!(c["op"], expected_op);
    }
    let svg = std::fs::read_to_string(&svg_path).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("Q4_K") && svg.contains("<rect"), "chart: {}", &svg[..svg.len().min(200)]);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn schema_validator_rejects_wrong_documents() {
    // A minimal valid document, then one defect at a time.
    let timing = json!({"median_s": 0.002, "min_s": 0.001, "runs": 3});
    let case = json!({"format": "Q4_0", "bits_per_weight": 4.5, "op": "matvec", "variant": "matvec/subgroup", "n": 64, "k": 256, "rows": 1,
        "time": timing, "bytes": 10240, "flops": 32768, "gb_per_s": 5.12, "gflop_per_s": 16.4, "bandwidth_fraction": 0.5, "fma_fraction": 0.01, "weight_error": 0.1});
    let good = json!({
        "schema_version": 1,
        "qgpu": {"version": "0.1.0", "git_commit": "abc", "target": "x86_64"},
        "adapter": {"name": "gpu", "vendor": 4318, "device": 1, "device_type": "DiscreteGpu", "backend": "Vulkan", "driver": "d", "driver_info": "i",
            "features": ["timestamp-query"], "subgroup_sizes": [32, 32],
            "limits": {"max_storage_buffer_binding_size": 1, "max_buffer_size": 1, "max_storage_buffers_per_shader_stage": 8,
                "max_compute_invocations_per_workgroup": 256, "max_compute_workgroup_storage_size": 16384, "max_compute_workgroups_per_dimension": 65535}},
        "clock": "timestamp",
        "settings": {"quick": true, "warmup": 1, "repeats": 3, "rotation_bytes": 0, "tuned": false, "forced_kernel": null},
        "probes": {"copy": {"bytes": 100, "time": timing, "gb_per_s": 1.0}, "fma": {"flops": 100, "time": timing, "gflop_per_s": 1.0}},
        "cases": [case],
        "skipped": [],
    });
    let schema = schema();
    assert_eq!(validate(&schema, &good), Vec::<String>::new());
    type Spoil = fn(&mut Value);
    let defects: [(&str, Spoil); 8] = [
        ("missing clock", |d| drop(d.as_object_mut().unwrap().remove("clock"))),
        ("unknown clock", |d| d["clock"] = json!("sundial")),
        ("fraction above 1.5", |d| d["cases"][0]["bandwidth_fraction"] = json!(2.0)),
        ("zero fraction", |d| d["cases"][0]["fma_fraction"] = json!(0.0)),
        ("string for a number", |d| d["cases"][0]["n"] = json!("64")),
        ("other version", |d| d["schema_version"] = json!(2)),
        ("extra property", |d| d["adapter"]["colour"] = json!("green")),
        ("unknown op", |d| d["cases"][0]["op"] = json!("conv")),
    ];
    for (what, spoil) in defects {
        let mut bad = good.clone();
        spoil(&mut bad);
        assert!(!validate(&schema, &bad).is_empty(), "validator accepted a document with {what}");
    }
}

/// A hand-made report with the given (format, n, k, rows, median seconds, bandwidth fraction).
fn report(adapter: &str, cases: &[(&str, u64, u64, u64, f64, f64)]) -> Value {
    let cases: Vec<Value> = cases
        .iter()
        .map(|&(format, n, k, rows, t, frac)| {
            json!({"format": format, "op": if rows <= 8 { "matvec" } else { "matmul" }, "n": n, "k": k, "rows": rows,
                "time": {"median_s": t, "min_s": t, "runs": 1}, "bandwidth_fraction": frac})
        })
        .collect();
    json!({"schema_version": 1, "adapter": {"name": adapter, "backend": "Vulkan"}, "qgpu": {"git_commit": "0123456789abcdef"}, "cases": cases})
}

#[test]
fn compare_computes_case_ratios() {
    let a = report("A-gpu", &[("Q4_0", 4096, 4096, 1, 0.004, 0.40), ("Q8_0", 4096, 4096, 1, 0.006, 0.50), ("F32", 576, 576, 64, 0.001, 0.1), ("Q4_1", 576, 576, 1, 0.5, 0.2)]);
    let b = report("B-gpu", &[("Q8_0", 4096, 4096, 1, 0.002, 0.75), ("Q4_0", 4096, 4096, 1, 0.001, 0.80), ("F32", 576, 576, 64, 0.004, 0.025), ("Q4_K", 576, 576, 1, 1.0, 0.5)]);
    let c = compare(&a, &b).unwrap();
    let got: Vec<(&str, f64, f64, f64)> = c.rows.iter().map(|r| (r.case.as_str(), r.speedup, r.a_bandwidth_fraction, r.b_bandwidth_fraction)).collect();
    let want = [
        ("Q4_0 matvec 4096x4096 rows 1", 4.0, 0.40, 0.80),
        ("Q8_0 matvec 4096x4096 rows 1", 3.0, 0.50, 0.75),
        ("F32 matmul 576x576 rows 64", 0.25, 0.1, 0.025),
    ];
    assert_eq!(got.len(), want.len(), "{got:?}");
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g.0, w.0);
        assert!((g.1 - w.1).abs() < 1e-12 && (g.2 - w.2).abs() < 1e-12 && (g.3 - w.3).abs() < 1e-12, "{g:?} != {w:?}");
    }
    assert_eq!(c.only_a, vec!["Q4_1 matvec 576x576 rows 1".to_string()]);
    assert_eq!(c.only_b, vec!["Q4_K matvec 576x576 rows 1".to_string()]);
    // (4 · 3 · 0.25)^(1/3) = 3^(1/3)
    assert!((c.geometric_mean_speedup().unwrap() - 3f64.powf(1.0 / 3.0)).abs() < 1e-12);
    let table = c.table();
    assert!(table.contains("4.00x") && table.contains("0.25x") && table.contains("A-gpu"), "{table}");

    let mut wrong = b.clone();
    wrong["schema_version"] = json!(7);
    assert!(matches!(compare(&a, &wrong), Err(qgpu::bench::CompareError::Version { which: "B", found: Some(7), .. })));
    let mut zero = b.clone();
    zero["cases"][1]["time"]["median_s"] = json!(0.0);
    assert!(matches!(compare(&a, &zero), Err(qgpu::bench::CompareError::Field { which: "B", index: 1, .. })));
}

#[test]
fn corrupt_tune_cache_is_ignored_and_a_valid_one_decides() {
    let dir = temp_dir("tune");
    let path = dir.join("tune-v1.json");
    let stale_or_corrupt = [
        "{ not json",
        r#"{"version": 0, "entries": []}"#,
        r#"{"version": 1, "entries": [{"adapter": "x", "vendor": 1, "driver": "d", "backend": "Vulkan", "op": "matvec", "format": "Q4_0", "rows": 1, "n": 64, "k": 256, "variant": "warp/wg64"}]}"#,
        r#"{"version": 1, "entries": [{"adapter": "x", "vendor": 1, "driver": "d", "backend": "Vulkan", "op": "matvec", "format": "Q9_9", "rows": 1, "n": 64, "k": 256, "variant": "lane/wg64"}]}"#,
        r#"{"version": 1, "entries": [{"adapter": "x", "vendor": 1, "driver": "d", "backend": "Vulkan", "op": "matvec", "format": "Q4_0", "rows": 1, "n": 64, "k": 256, "variant": "workgroup/wg128"}]}"#,
    ];
    for text in stale_or_corrupt {
        std::fs::write(&path, text).unwrap();
        assert_eq!(load_cache_from(&path), None, "accepted {text}");
    }
    assert_eq!(load_cache_from(&dir.join("missing.json")), None);

    let Some(ctx) = common::context() else { return };
    let (format, rows, n, k) = (Format::Q4_0, 2, 67, 256);
    // A variant qgpu would not pick by default, so the test can tell the table decided.
    let default = qgpu::ops::default_kernel(&ctx, rows, format);
    let chosen = MatvecVariant::candidates(&ctx, format)
        .into_iter()
        .find(|v| LinearKernel::MatvecVariant(*v) != default && LinearKernel::Matvec(v.kernel) != default)
        .expect("more than one candidate");
    let mut table = TuneTable::default();
    table.insert(TuneKey { adapter: AdapterKey::of(&ctx), op: TunedOp::Matvec, format, bucket: ShapeBucket::of(rows, n, k) }, TunedKernel::Matvec(chosen));
    // A corrupt file is replaced, not merged with.
    std::fs::write(&path, "{ not json").unwrap();
    save_cache_to(&path, table.clone()).unwrap();
    let loaded = load_cache_from(&path).expect("a valid table loads");
    assert_eq!(loaded, table);

    let mut rng = reference::TestRng::new(5);
    let values: Vec<f32> = (0..n * k).map(|_| rng.uniform()).collect();
    let w = GpuMatrix::upload(&ctx, reference::quantize(format, n, k, &values).unwrap().as_ref()).unwrap();
    let x = GpuTensor::zeros(&ctx, rows, k).unwrap();
    let y = GpuTensor::zeros(&ctx, rows, n).unwrap();
    let tuned = loaded.choose(&ctx, format, rows, n, k);
    assert_eq!(tuned, Some(LinearKernel::MatvecVariant(chosen)));
    let plan = pollster::block_on(plan_linear(&ctx, &w, &x, &y, tuned)).unwrap();
    assert_eq!(plan.kernel, LinearKernel::MatvecVariant(chosen));
    // Other buckets, and other adapters, fall back to the default.
    assert_eq!(loaded.choose(&ctx, format, rows, 4096, k), None);
    assert_eq!(loaded.choose(&ctx, Format::Q8_0, rows, n, k), None);
    assert!(!chosen.kernel.uses_subgroups() || ctx.capabilities().subgroups);
    std::fs::remove_dir_all(dir).ok();
}

/// The integer-dot variant is offered for Q8_0, Q4_0 and Q4_1 only, only where the language
/// feature exists, never as a default, and a stored table naming it for another format is
/// rejected.
#[test]
fn integer_dot_variant_takes_three_formats_and_is_never_a_default() {
    let Some(ctx) = common::context() else { return };
    let dot4 = |format| MatvecVariant::candidates(&ctx, format).into_iter().filter(|v| v.kernel == MatvecKernel::IntegerDot).count();
    assert_eq!(dot4(Format::Q4_K), 0);
    assert_eq!(dot4(Format::Q5_0), 0);
    assert_eq!(dot4(Format::F32), 0);
    for format in [Format::Q8_0, Format::Q4_0, Format::Q4_1] {
        assert_eq!(dot4(format) > 0, ctx.capabilities().integer_dot, "{format}");
        for rows in 1..=qgpu::ops::MATVEC_MAX_ROWS {
            assert_ne!(qgpu::ops::default_kernel(&ctx, rows, format), LinearKernel::Matvec(MatvecKernel::IntegerDot));
        }
    }
    let entry = |format: &str| {
        json!({ "version": qgpu::ops::tune::TUNE_VERSION, "entries": [{
            "adapter": "a", "vendor": 0, "driver": "d", "backend": "Vulkan", "op": "matvec",
            "format": format, "rows": 1, "n": 64, "k": 64, "variant": "dot4/wg64" }] })
        .to_string()
    };
    assert!(TuneTable::from_json(&entry("Q8_0")).is_ok());
    assert!(TuneTable::from_json(&entry("Q4_1")).is_ok());
    assert!(TuneTable::from_json(&entry("Q4_K")).is_err());
    // Planning it on other weights is a typed error, not a wrong result.
    let (n, k) = (3, 256);
    let w = GpuMatrix::upload(&ctx, reference::quantize(Format::Q4_K, n, k, &vec![0.5; n * k]).unwrap().as_ref()).unwrap();
    let x = GpuTensor::zeros(&ctx, 1, k).unwrap();
    let y = GpuTensor::zeros(&ctx, 1, n).unwrap();
    assert!(pollster::block_on(plan_linear(&ctx, &w, &x, &y, Some(LinearKernel::Matvec(MatvecKernel::IntegerDot)))).is_err());
}

/// Short batches (9-64 rows) are tuned between matvec passes and the matmul: a stored choice
/// overrides the default for its bucket, and a choice that cannot serve a batch is rejected.
#[test]
fn batch_entries_choose_between_passes_and_matmul() {
    let Some(ctx) = common::context() else { return };
    let (format, rows, n, k) = (Format::Q4_1, 16, 67, 256);
    let candidates = qgpu::bench::tune::candidates(&ctx, TunedOp::Batch, format, k);
    assert!(candidates.contains(&TunedKernel::Matmul) && candidates.len() > 1, "{candidates:?}");
    assert!(!qgpu::bench::tune::candidates(&ctx, TunedOp::Matvec, format, k).contains(&TunedKernel::Matmul));
    // Rows of 40 F32 values take only the 8-weight step.
    let steps = |k| qgpu::bench::tune::candidates(&ctx, TunedOp::Matvec, Format::F32, k).iter().filter(|t| matches!(t, TunedKernel::Matvec(v) if v.step > 8)).count();
    assert!(steps(64) > 0 && steps(40) == 0);
    // Whichever of the two the device does by default, store the other.
    let chosen = match qgpu::ops::default_kernel(&ctx, rows, format) {
        LinearKernel::Matmul => *candidates.iter().find(|t| **t != TunedKernel::Matmul).unwrap(),
        _ => TunedKernel::Matmul,
    };
    let mut table = TuneTable::default();
    table.insert(TuneKey { adapter: AdapterKey::of(&ctx), op: TunedOp::Batch, format, bucket: ShapeBucket::of(rows, n, k) }, chosen);
    let table = TuneTable::from_json(&table.to_json().to_string()).unwrap();
    for m in [9, 16] {
        assert_eq!(table.choose(&ctx, format, m, n, k), Some(chosen.linear()), "{m} rows");
    }
    assert_eq!(table.choose(&ctx, format, 17, n, k), None, "another bucket");
    assert_eq!(table.choose(&ctx, format, 65, n, k), None, "beyond 64 rows nothing is tuned");
    // The choice plans and computes what the oracle does.
    let mut rng = reference::TestRng::new(8);
    let w = reference::quantize(format, n, k, &rng.vec(n * k)).unwrap();
    let x = rng.vec(rows * k);
    let want = reference::matmul(&x, rows, w.as_ref());
    let gw = GpuMatrix::upload(&ctx, w.as_ref()).unwrap();
    let gx = GpuTensor::from_slice(&ctx, rows, k, &x).unwrap();
    let gy = GpuTensor::zeros(&ctx, rows, n).unwrap();
    pollster::block_on(qgpu::ops::linear(&ctx, &gw, &gx, &gy, table.choose(&ctx, format, rows, n, k))).unwrap();
    let (rel, first) = common::compare(&pollster::block_on(gy.read(&ctx)).unwrap(), &want, 1e-3);
    assert!(rel <= 1e-5 && first.is_none(), "{chosen:?}: relative error {rel}");

    let entry = |op: &str, variant: &str| {
        json!({ "version": qgpu::ops::tune::TUNE_VERSION, "entries": [{
            "adapter": "a", "vendor": 0, "driver": "d", "backend": "Vulkan", "op": op,
            "format": "Q8_0", "rows": 16, "n": 64, "k": 64, "variant": variant }] })
        .to_string()
    };
    assert!(TuneTable::from_json(&entry("batch", "matmul")).is_ok());
    assert!(TuneTable::from_json(&entry("batch", "lane/wg64")).is_ok());
    assert!(TuneTable::from_json(&entry("batch", "dot4/wg64")).is_err(), "the integer-dot kernel takes one pass");
    assert!(TuneTable::from_json(&entry("matvec", "matmul")).is_err(), "decode entries are matvec variants");
    assert!(TuneTable::from_json(&entry("prefill", "matmul")).is_err());
}
