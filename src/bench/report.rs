//! The report of a suite run: JSON (schema: docs/bench.schema.json) and the terminal table.

use super::suite::{Case, SuiteResult};
use super::timing::Timing;
use crate::gpu::Context;
use serde_json::{json, Value};

/// Version of the JSON document; `qgpu bench --compare` refuses other versions.
pub const REPORT_VERSION: u64 = 1;
/// The git commit this qgpu was built from (`-dirty` with uncommitted changes).
pub const GIT_COMMIT: &str = env!("QGPU_GIT_COMMIT");

fn timing_json(t: &Timing) -> Value {
    json!({ "median_s": t.median, "min_s": t.min, "runs": t.runs })
}

/// The adapter as the report names it: identity, driver, the features qgpu uses, its limits.
pub fn adapter_json(ctx: &Context) -> Value {
    let (info, caps, limits) = (ctx.adapter_info(), ctx.capabilities(), ctx.limits());
    let mut features = Vec::new();
    for (present, name) in [(caps.shader_f16, "shader-f16"), (caps.subgroups, "subgroups"), (caps.timestamps, "timestamp-query")] {
        if present {
            features.push(name);
        }
    }
    json!({
        "name": info.name,
        "vendor": info.vendor,
        "device": info.device,
        "device_type": format!("{:?}", info.device_type),
        "backend": format!("{:?}", info.backend),
        "driver": info.driver,
        "driver_info": info.driver_info,
        "features": features,
        "subgroup_sizes": [caps.subgroup_min_size, caps.subgroup_max_size],
        "limits": {
            "max_storage_buffer_binding_size": ctx.max_binding_size(),
            "max_buffer_size": limits.max_buffer_size,
            "max_storage_buffers_per_shader_stage": limits.max_storage_buffers_per_shader_stage,
            "max_compute_invocations_per_workgroup": limits.max_compute_invocations_per_workgroup,
            "max_compute_workgroup_storage_size": limits.max_compute_workgroup_storage_size,
            "max_compute_workgroups_per_dimension": limits.max_compute_workgroups_per_dimension,
        },
    })
}

fn case_json(c: &Case, r: &SuiteResult) -> Value {
    json!({
        "format": c.format.name(),
        "bits_per_weight": c.format.bits_per_weight(),
        "op": c.op(),
        "variant": c.kernel.name(),
        "n": c.n,
        "k": c.k,
        "rows": c.rows,
        "time": timing_json(&c.timing),
        "bytes": c.bytes,
        "flops": c.flops(),
        "gb_per_s": c.bytes_per_second() / 1e9,
        "gflop_per_s": c.flops_per_second() / 1e9,
        "bandwidth_fraction": c.bytes_per_second() / r.copy.rate(),
        "fma_fraction": c.flops_per_second() / r.fma.rate(),
        "weight_error": c.weight_error,
    })
}

/// The whole report as JSON.
pub fn to_json(ctx: &Context, r: &SuiteResult) -> Value {
    let o = &r.options;
    json!({
        "schema_version": REPORT_VERSION,
        "qgpu": { "version": env!("CARGO_PKG_VERSION"), "git_commit": GIT_COMMIT, "target": std::env::consts::ARCH },
        "adapter": adapter_json(ctx),
        "clock": r.clock.name(),
        "settings": {
            "quick": o.quick, "warmup": o.warmup, "repeats": o.repeats, "rotation_bytes": o.rotation_bytes,
            "tuned": r.tuned,
            "forced_kernel": o.kernel.map(|k| k.name()),
        },
        "probes": {
            "copy": { "bytes": r.copy.work, "time": timing_json(&r.copy.timing), "gb_per_s": r.copy.rate() / 1e9 },
            "fma": { "flops": r.fma.work, "time": timing_json(&r.fma.timing), "gflop_per_s": r.fma.rate() / 1e9 },
        },
        "cases": r.cases.iter().map(|c| case_json(c, r)).collect::<Vec<_>>(),
        "skipped": r.skipped,
    })
}

/// The adapter's name, or what it is where the browser hides the name.
pub fn adapter_label(ctx: &Context) -> String {
    let info = ctx.adapter_info();
    if info.name.is_empty() {
        format!("{:?} adapter ({:?}, name hidden)", info.backend, info.device_type)
    } else {
        info.name.clone()
    }
}

/// The terminal table: one line per case, the fractions last.
pub fn table(ctx: &Context, r: &SuiteResult) -> String {
    let info = ctx.adapter_info();
    let mut out = String::new();
    out += &format!("adapter: {} ({:?}, {} {})\n", adapter_label(ctx), info.backend, info.driver, info.driver_info);
    out += &format!(
        "clock: {}; copy probe {:.2} GB/s (read + write), fma probe {:.1} GFLOP/s, best of {} runs each; cases: median of {} after {} warm-up\n",
        r.clock.name(),
        r.copy.rate() / 1e9,
        r.fma.rate() / 1e9,
        r.copy.timing.runs,
        r.options.repeats.max(1),
        r.options.warmup
    );
    out += &format!(
        "{:<6} {:>5} {:>12} {:>5} {:<20} {:>10} {:>10} {:>9} {:>10} {:>8} {:>8}\n",
        "format", "bits", "N x K", "rows", "variant", "ms", "min ms", "GB/s", "GFLOP/s", "of copy", "of fma"
    );
    for c in &r.cases {
        out += &format!(
            "{:<6} {:>5.2} {:>12} {:>5} {:<20} {:>10.3} {:>10.3} {:>9.3} {:>10.3} {:>7.1}% {:>7.1}%\n",
            c.format.name(),
            c.format.bits_per_weight(),
            format!("{}x{}", c.n, c.k),
            c.rows,
            c.kernel.name(),
            c.timing.median * 1e3,
            c.timing.min * 1e3,
            c.bytes_per_second() / 1e9,
            c.flops_per_second() / 1e9,
            100.0 * c.bytes_per_second() / r.copy.rate(),
            100.0 * c.flops_per_second() / r.fma.rate(),
        );
    }
    for s in &r.skipped {
        out += &format!("skipped: {s}\n");
    }
    out
}
