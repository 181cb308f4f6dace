//! `qgpu tune`: times every matvec variant the device can run on each format and shape (and
//! for 9-64 rows the matmul too), and records the fastest per bucketed shape in a
//! [`TuneTable`]. Natively the table lives in
//! `<cache>/tune-v1.json`; the browser keeps it in `localStorage` (see `wasm.rs`).

use super::suite::{Prepared, SuiteOptions};
use super::timing::{Stopwatch, Timing};
use super::Shape;
use crate::gpu::Context;
use crate::ops::tune::{AdapterKey, ShapeBucket, TuneKey, TunedKernel, TunedOp};
use crate::ops::{MatvecVariant, TuneTable};
use crate::quant::Format;
use crate::Error;

/// One tuned case: every candidate's median time, and the winner.
#[derive(Clone, Debug)]
pub struct TuneResult {
    pub format: Format,
    pub shape: Shape,
    pub rows: usize,
    /// Each candidate's median time; `timings` holds the same runs' medians and minima.
    pub times: Vec<(TunedKernel, f64)>,
    pub timings: Vec<Timing>,
    pub best: TunedKernel,
    /// What qgpu would run untuned, and its time.
    pub default_seconds: f64,
    pub default_timing: Timing,
}

/// The kernels `qgpu tune` tries for `op` on `format` weights with rows of `k` values.
pub fn candidates(ctx: &Context, op: TunedOp, format: Format, k: usize) -> Vec<TunedKernel> {
    let mut all: Vec<TunedKernel> = MatvecVariant::candidates(ctx, format).into_iter().filter(|v| v.handles(format, k)).map(TunedKernel::Matvec).collect();
    if op == TunedOp::Batch {
        all.push(TunedKernel::Matmul);
    }
    all.retain(|t| t.fits(op, format));
    all
}

/// Tunes every format × shape × rows of `options` with 1-64 rows: decode (1-8 rows) among the
/// matvec variants, short batches (9-64) among matvec passes and the matmul. More rows always
/// take the matmul, and are skipped.
pub async fn tune(ctx: &Context, options: &SuiteOptions, progress: &mut dyn FnMut(&str)) -> Result<(TuneTable, Vec<TuneResult>), Error> {
    let watch = Stopwatch::new(ctx, options.wall_clock);
    let adapter = AdapterKey::of(ctx);
    let mut table = TuneTable::default();
    let mut results = Vec::new();
    for &shape in &options.shapes {
        for &rows in &options.rows {
            let Some(op) = TunedOp::for_rows(rows) else { continue };
            for &format in &options.formats {
                if !shape.k.is_multiple_of(format.k_multiple()) {
                    continue;
                }
                let candidates = candidates(ctx, op, format, shape.k);
                let prepared = Prepared::new(ctx, format, rows, shape, options.rotation_bytes)?;
                let default_timing = prepared.measure(ctx, &watch, None, options.warmup, options.repeats).await?.timing;
                let default_seconds = default_timing.median;
                let mut times = Vec::with_capacity(candidates.len());
                let mut timings = Vec::with_capacity(candidates.len());
                for &t in &candidates {
                    let case = prepared.measure(ctx, &watch, Some(t.linear()), options.warmup, options.repeats).await?;
                    times.push((t, case.timing.median));
                    timings.push(case.timing);
                }
                let Some(&(best, best_seconds)) = times.iter().min_by(|a, b| a.1.total_cmp(&b.1)) else { continue };
                progress(&format!("{} {shape} rows {rows}: {} {:.3} ms (default {:.3} ms)", format.name(), best.name(), best_seconds * 1e3, default_seconds * 1e3));
                table.insert(TuneKey { adapter: adapter.clone(), op, format, bucket: ShapeBucket::of(rows, shape.n, shape.k) }, best);
                results.push(TuneResult { format, shape, rows, times, timings, best, default_seconds, default_timing });
            }
        }
    }
    Ok((table, results))
}

/// A table of the results: every candidate's median and minimum time, and its median
/// relative to the winner's.
pub fn results_table(results: &[TuneResult]) -> String {
    let mut out = String::new();
    for r in results {
        out += &format!(
            "{} {} rows {}: best {} ({:.3} ms; default {:.3} ms, min {:.3} ms)\n",
            r.format.name(), r.shape, r.rows, r.best.name(), best_time(r) * 1e3, r.default_seconds * 1e3, r.default_timing.min * 1e3
        );
        for ((v, t), timing) in r.times.iter().zip(&r.timings) {
            out += &format!("    {:<18} {:>9.3} ms (min {:>9.3} ms) {:>6.2}x\n", v.name(), t * 1e3, timing.min * 1e3, t / best_time(r));
        }
    }
    out
}

fn best_time(r: &TuneResult) -> f64 {
    r.times.iter().map(|t| t.1).fold(f64::INFINITY, f64::min)
}

#[cfg(not(target_arch = "wasm32"))]
pub use native::*;

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use crate::ops::TuneTable;
    use std::path::{Path, PathBuf};

    /// `<cache>/tune-v1.json` (`$QGPU_CACHE_DIR`, else `$XDG_CACHE_HOME/qgpu`, else `~/.cache/qgpu`).
    pub fn cache_path() -> PathBuf {
        crate::fetch::cache_dir().join(format!("tune-v{}.json", crate::ops::tune::TUNE_VERSION))
    }

    /// The table at `path`. A missing file is no table; an unreadable, corrupt or stale one is
    /// ignored with a warning, so the runtime falls back to its defaults.
    pub fn load_cache_from(path: &Path) -> Option<TuneTable> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                log::warn!("ignoring tune cache {}: {e}", path.display());
                return None;
            }
        };
        match TuneTable::from_json(&text) {
            Ok(table) => Some(table),
            Err(e) => {
                log::warn!("ignoring tune cache {}: {e}", path.display());
                None
            }
        }
    }

    /// The table in the default cache file, if there is a valid one.
    pub fn load_cache() -> Option<TuneTable> {
        load_cache_from(&cache_path())
    }

    /// Adds `table` to the valid entries already at `path` and writes the result atomically.
    pub fn save_cache_to(path: &Path, table: TuneTable) -> std::io::Result<()> {
        let mut merged = load_cache_from(path).unwrap_or_default();
        merged.merge(table);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_string_pretty(&merged.to_json()).unwrap_or_default())?;
        std::fs::rename(&tmp, path)
    }
}
