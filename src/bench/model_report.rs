//! The report of `qgpu bench --model`: JSON (schema: docs/bench-model.schema.json, the same
//! `qgpu` and `adapter` objects as the kernel report), the llama-bench style table, the SVG
//! chart (tokens/s against depth) and the comparison of two such reports.

use super::compare::CompareError;
use super::model::{ModelBench, TestKind, TestResult};
use super::report::{adapter_json, adapter_label, GIT_COMMIT, REPORT_VERSION};
use crate::gpu::Context;
use plotters::prelude::*;
use serde_json::{json, Value};

/// The `kind` that tells a model report from a kernel report.
pub const MODEL_REPORT_KIND: &str = "model";

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1048576.0
}

fn test_json(t: &TestResult, r: &ModelBench) -> Value {
    let (mean, stddev) = t.mean_stddev();
    json!({
        "test": t.name(),
        "kind": t.kind.prefix(),
        "tokens": t.tokens,
        "depth": t.depth,
        "seconds": t.seconds,
        "tokens_per_s": { "mean": mean, "stddev": stddev, "samples": t.tokens_per_second() },
        "memory": {
            "weights": r.memory.weights,
            "kv_cache": r.memory.kv_cache,
            "kv_used": t.kv_used_bytes,
            "activations": r.memory.activations,
        },
        "bytes_per_token": t.bytes_per_token,
        "copy_fraction": t.copy_fraction(&r.copy),
    })
}

/// The whole report as JSON.
pub fn model_json(ctx: &Context, r: &ModelBench) -> Value {
    let o = &r.options;
    json!({
        "schema_version": REPORT_VERSION,
        "kind": MODEL_REPORT_KIND,
        "qgpu": { "version": env!("CARGO_PKG_VERSION"), "git_commit": GIT_COMMIT, "target": std::env::consts::ARCH },
        "adapter": adapter_json(ctx),
        "clock": "wall-clock",
        "model": {
            "name": r.model.name,
            "architecture": r.model.architecture,
            "parameters": r.model.parameters,
            "size_bytes": r.model.size_bytes,
            "main_type": r.model.main_type,
            "decode_weight_bytes": r.decode_weight_bytes,
        },
        "settings": {
            "prompt_tokens": o.prompt_tokens,
            "gen_tokens": o.gen_tokens,
            "depths": o.sorted_depths(),
            "repetitions": o.repetitions,
            "warmup": o.warmup,
            "seed": o.seed,
            "context": r.context,
            "kv_type": r.kv_type.to_string(),
            "tuned": r.tuned,
            "tokens": "synthetic: seeded random ids from the vocabulary",
        },
        "probes": {
            "copy": { "bytes": r.copy.work, "time": { "median_s": r.copy.timing.median, "min_s": r.copy.timing.min, "runs": r.copy.timing.runs }, "gb_per_s": r.copy.rate() / 1e9 },
        },
        "tests": r.tests.iter().map(|t| test_json(t, r)).collect::<Vec<_>>(),
    })
}

/// The llama-bench style table, with memory and the fraction of copy bandwidth decode reaches.
pub fn model_table(ctx: &Context, r: &ModelBench) -> String {
    let info = ctx.adapter_info();
    let m = &r.memory;
    let mut out = format!(
        "adapter: {} ({:?}, {} {}); copy probe {:.2} GB/s (read + write, best of {})\n",
        adapter_label(ctx),
        info.backend,
        info.driver,
        info.driver_info,
        r.copy.rate() / 1e9,
        r.copy.timing.runs
    );
    out += &format!(
        "GPU memory: weights {:.1} MiB, KV cache {:.1} MiB ({} positions, {}), activations {:.1} MiB; {} repetitions{}, synthetic token ids\n",
        mib(m.weights),
        mib(m.kv_cache),
        r.context,
        r.kv_type,
        mib(m.activations),
        r.options.repetitions,
        if r.options.warmup { " after a warm-up" } else { "" }
    );
    let backend = format!("{:?}", info.backend);
    out += &format!(
        "| {:<24} | {:>10} | {:>8} | {:<8} | {:>4} | {:>15} | {:>18} | {:>10} | {:>7} |\n",
        "model", "size", "params", "backend", "kv", "test", "t/s", "KV used", "of copy"
    );
    // Markdown alignment row: `:` on the right of the numeric columns.
    for (width, numeric) in [(24, false), (10, true), (8, true), (8, false), (4, true), (15, true), (18, true), (10, true), (7, true)] {
        out += &if numeric { format!("| {}: ", "-".repeat(width - 1)) } else { format!("| {} ", "-".repeat(width)) };
    }
    out += "|\n";
    for t in &r.tests {
        let (mean, sd) = t.mean_stddev();
        let fraction = t.copy_fraction(&r.copy).map_or("-".to_owned(), |f| format!("{:.1}%", 100.0 * f));
        out += &format!(
            "| {:<24} | {:>6.2} MiB | {:>8} | {:<8} | {:>4} | {:>15} | {:>18} | {:>6.2} MiB | {:>7} |\n",
            r.model.name,
            mib(r.model.size_bytes),
            super::model::params_label(r.model.parameters),
            backend,
            r.kv_type.to_string(),
            t.name(),
            format!("{mean:.2} ± {sd:.2}"),
            mib(t.kv_used_bytes),
            fraction
        );
    }
    out
}

const COLOURS: [RGBColor; 4] = [RGBColor(31, 119, 180), RGBColor(255, 127, 14), RGBColor(44, 160, 44), RGBColor(214, 39, 40)];

/// Tokens/s against depth: pp tests on the left, tg on the right, one line per length, with
/// ± one standard deviation as error bars. Text is left to the SVG viewer.
pub fn model_chart(r: &ModelBench, title: &str) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1000, 420)).into_drawing_area();
        let err = |e: DrawingAreaErrorKind<_>| e.to_string();
        root.fill(&WHITE).map_err(err)?;
        let root = root.titled(title, ("sans-serif", 18)).map_err(err)?;
        let halves = root.split_evenly((1, 2));
        let max_depth = r.tests.iter().map(|t| t.depth).max().unwrap_or(0).max(1) as f64;
        for (area, kind) in halves.iter().zip([TestKind::Prompt, TestKind::Generation]) {
            let tests: Vec<&TestResult> = r.tests.iter().filter(|t| t.kind == kind).collect();
            let top = tests.iter().map(|t| t.mean_stddev()).map(|(m, s)| m + s).fold(0.0f64, f64::max).max(1e-3) * 1.15;
            let mut chart = ChartBuilder::on(area)
                .caption(format!("{} tokens/s", kind.prefix()), ("sans-serif", 15))
                .margin(12)
                .x_label_area_size(36)
                .y_label_area_size(56)
                .build_cartesian_2d(-max_depth * 0.05..max_depth * 1.05, 0f64..top)
                .map_err(err)?;
            chart.configure_mesh().x_desc("depth (tokens in the KV cache)").y_desc("tokens/s").draw().map_err(err)?;
            let mut lengths: Vec<usize> = tests.iter().map(|t| t.tokens).collect();
            lengths.sort_unstable();
            lengths.dedup();
            for (li, &len) in lengths.iter().enumerate() {
                let colour = COLOURS[li % COLOURS.len()];
                let points: Vec<(f64, f64, f64)> =
                    tests.iter().filter(|t| t.tokens == len).map(|t| (t.depth as f64, t.mean_stddev().0, t.mean_stddev().1)).collect();
                // Lines and error bars as paths: plotters' line-series and error-bar features
                // are not built.
                let line = PathElement::new(points.iter().map(|p| (p.0, p.1)).collect::<Vec<_>>(), colour.stroke_width(2));
                chart
                    .draw_series(std::iter::once(line))
                    .map_err(err)?
                    .label(format!("{}{len}", kind.prefix()))
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], colour.stroke_width(2)));
                let cap = max_depth * 0.01;
                let bars = points.iter().flat_map(|&(x, m, s)| {
                    let (lo, hi) = ((m - s).max(0.0), m + s);
                    [vec![(x, lo), (x, hi)], vec![(x - cap, lo), (x + cap, lo)], vec![(x - cap, hi), (x + cap, hi)]]
                });
                chart.draw_series(bars.map(|p| PathElement::new(p, colour.stroke_width(1)))).map_err(err)?;
                chart.draw_series(points.iter().map(|&(x, m, _)| Circle::new((x, m), 3, colour.filled()))).map_err(err)?;
            }
            if !lengths.is_empty() {
                chart.configure_series_labels().position(SeriesLabelPosition::UpperRight).background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(err)?;
            }
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// Whether a parsed report is a model report (else a kernel report).
pub fn is_model_report(report: &Value) -> bool {
    report.get("kind").and_then(Value::as_str) == Some(MODEL_REPORT_KIND)
}

/// One test present in both model reports.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelCompareRow {
    /// `pp512 @ d2048`.
    pub test: String,
    pub a_tokens_per_s: f64,
    pub b_tokens_per_s: f64,
    /// B's mean tokens/s over A's: above 1, B is faster (as the kernel comparison's A/B).
    pub speedup: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ModelComparison {
    pub a_label: String,
    pub b_label: String,
    pub rows: Vec<ModelCompareRow>,
    pub only_a: Vec<String>,
    pub only_b: Vec<String>,
}

fn model_entries(which: &'static str, report: &Value) -> Result<Vec<(String, f64)>, CompareError> {
    let version = report.get("schema_version").and_then(Value::as_u64);
    if version != Some(REPORT_VERSION) {
        return Err(CompareError::Version { which, found: version, expected: REPORT_VERSION });
    }
    let tests = report.get("tests").and_then(Value::as_array).ok_or(CompareError::Field { which, index: 0, field: "tests" })?;
    tests
        .iter()
        .enumerate()
        .map(|(index, t)| {
            let bad = |field| CompareError::Field { which, index, field };
            let name = t.get("test").and_then(Value::as_str).ok_or(bad("test"))?;
            let tps = t.pointer("/tokens_per_s/mean").and_then(Value::as_f64).filter(|v| *v > 0.0 && v.is_finite()).ok_or(bad("tokens_per_s.mean"))?;
            Ok((name.to_owned(), tps))
        })
        .collect()
}

fn model_label(report: &Value) -> String {
    let s = |p: &str| report.pointer(p).and_then(Value::as_str).unwrap_or("?");
    let commit = s("/qgpu/git_commit");
    format!("{} on {} ({}, qgpu {}, kv {})", s("/model/name"), s("/adapter/name"), s("/adapter/backend"), &commit[..commit.len().min(12)], s("/settings/kv_type"))
}

/// Two model reports test by test (matched on the test name).
pub fn compare_models(a: &Value, b: &Value) -> Result<ModelComparison, CompareError> {
    let (ea, eb) = (model_entries("A", a)?, model_entries("B", b)?);
    let mut rows = Vec::new();
    let mut only_a = Vec::new();
    for (name, a_tps) in &ea {
        match eb.iter().find(|(n, _)| n == name) {
            Some((_, b_tps)) => rows.push(ModelCompareRow { test: name.clone(), a_tokens_per_s: *a_tps, b_tokens_per_s: *b_tps, speedup: b_tps / a_tps }),
            None => only_a.push(name.clone()),
        }
    }
    let only_b = eb.iter().filter(|(n, _)| !ea.iter().any(|(m, _)| m == n)).map(|(n, _)| n.clone()).collect();
    Ok(ModelComparison { a_label: model_label(a), b_label: model_label(b), rows, only_a, only_b })
}

impl ModelComparison {
    pub fn geometric_mean_speedup(&self) -> Option<f64> {
        (!self.rows.is_empty()).then(|| (self.rows.iter().map(|r| r.speedup.ln()).sum::<f64>() / self.rows.len() as f64).exp())
    }

    pub fn table(&self) -> String {
        let mut out = format!("A: {}\nB: {}\n", self.a_label, self.b_label);
        out += &format!("{:<18} {:>12} {:>12} {:>8}\n", "test", "A t/s", "B t/s", "B/A");
        for r in &self.rows {
            out += &format!("{:<18} {:>12.2} {:>12.2} {:>7.2}x\n", r.test, r.a_tokens_per_s, r.b_tokens_per_s, r.speedup);
        }
        if let Some(mean) = self.geometric_mean_speedup() {
            out += &format!("geometric mean B/A over {} tests: {mean:.3}x\n", self.rows.len());
        }
        for t in &self.only_a {
            out += &format!("only in A: {t}\n");
        }
        for t in &self.only_b {
            out += &format!("only in B: {t}\n");
        }
        out
    }
}

/// The table of either kind of comparison; a kernel report against a model report is an error.
pub fn compare_table(a: &Value, b: &Value) -> Result<String, CompareError> {
    let kind = |r: &Value| if is_model_report(r) { "model" } else { "kernel" };
    match (is_model_report(a), is_model_report(b)) {
        (true, true) => Ok(compare_models(a, b)?.table()),
        (false, false) => Ok(super::compare(a, b)?.table()),
        _ => Err(CompareError::Kinds { a: kind(a), b: kind(b) }),
    }
}
