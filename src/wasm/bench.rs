//! `Qgpu.bench()` and `Qgpu.tune()` for the browser: the same suite as `qgpu bench`, the same
//! JSON (docs/bench.schema.json), and the tune table kept in `localStorage`.

use super::{get, get_number, js_err, to_js, BusyGuard, Qgpu};
use crate::bench::{self, report, Shape, SuiteOptions};
use crate::ops::TuneTable;
use crate::quant::Format;
use serde_json::json;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

/// The `localStorage` key of the tune table (versioned like the native file name).
const TUNE_STORAGE_KEY: &str = "qgpu.tune-v1";

fn storage() -> Option<web_sys::Storage> {
    web_sys::window()?.local_storage().ok().flatten()
}

/// The stored tune table; a corrupt or stale one is ignored with a warning.
pub(super) fn stored_tune_table() -> Option<TuneTable> {
    let text = storage()?.get_item(TUNE_STORAGE_KEY).ok().flatten()?;
    match TuneTable::from_json(&text) {
        Ok(table) => Some(table),
        Err(e) => {
            log::warn!("ignoring the tune table in localStorage[{TUNE_STORAGE_KEY}]: {e}");
            None
        }
    }
}

fn string_list(obj: &JsValue, key: &str) -> Result<Option<Vec<String>>, JsValue> {
    let Some(v) = get(obj, key) else { return Ok(None) };
    let array: js_sys::Array = v.dyn_into().map_err(|_| js_err(format!("option `{key}` must be an array")))?;
    array.iter().map(|s| s.as_string().or_else(|| s.as_f64().map(|n| n.to_string())).ok_or_else(|| js_err(format!("option `{key}`: strings expected")))).collect::<Result<Vec<_>, _>>().map(Some)
}

/// `{quick, formats: ["Q4_0", ...], shapes: ["576x576", ...], rows: [1, 64], repeats, warmup,
/// wallClock, rotationBytes, probeBytes}`; everything optional.
fn suite_options(obj: &JsValue) -> Result<SuiteOptions, JsValue> {
    let quick = get(obj, "quick").and_then(|v| v.as_bool()).unwrap_or(false);
    let mut o = if quick { SuiteOptions::quick() } else { SuiteOptions::full() };
    if let Some(formats) = string_list(obj, "formats")? {
        o.formats = formats.iter().map(|f| f.parse::<Format>()).collect::<Result<_, _>>().map_err(js_err)?;
    }
    if let Some(shapes) = string_list(obj, "shapes")? {
        o.shapes = shapes.iter().map(|s| s.parse::<Shape>()).collect::<Result<_, _>>().map_err(js_err)?;
    }
    if let Some(rows) = string_list(obj, "rows")? {
        o.rows = rows.iter().map(|r| r.parse::<usize>().ok().filter(|&r| r > 0)).collect::<Option<_>>().ok_or_else(|| js_err("option `rows`: positive integers expected"))?;
    }
    let count = |key| -> Result<Option<usize>, JsValue> { Ok(get_number(obj, key)?.map(|v| v.max(0.0) as usize)) };
    o.repeats = count("repeats")?.unwrap_or(o.repeats).max(1);
    o.warmup = count("warmup")?.unwrap_or(o.warmup);
    o.rotation_bytes = count("rotationBytes")?.map(|v| v as u64).unwrap_or(o.rotation_bytes);
    o.probe_bytes = count("probeBytes")?.map(|v| v as u64).unwrap_or(o.probe_bytes);
    o.wall_clock = get(obj, "wallClock").and_then(|v| v.as_bool()).unwrap_or(false);
    Ok(o)
}

fn progress_callback(f: Option<js_sys::Function>) -> impl FnMut(&str) {
    move |line: &str| {
        if let Some(f) = &f {
            let _ = f.call1(&JsValue::NULL, &JsValue::from_str(line));
        }
    }
}

#[wasm_bindgen]
impl Qgpu {
    /// Runs the benchmark suite; `onProgress(line)` hears each step. Resolves to
    /// `{report, table, svg}`: the JSON report (docs/bench.schema.json), the text table and the
    /// SVG chart of bandwidth fractions.
    pub fn bench(&self, options: JsValue, on_progress: Option<js_sys::Function>) -> js_sys::Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let _busy = BusyGuard::take(&inner, "benchmarking")?;
            let options = suite_options(&options)?;
            let tune = stored_tune_table();
            let result = bench::run_suite(&inner.ctx, &options, tune.as_ref(), &mut progress_callback(on_progress)).await.map_err(js_err)?;
            let title = format!("{}: fraction of copy bandwidth", report::adapter_label(&inner.ctx));
            let svg = bench::svg::chart(&result, &title).map_err(js_err)?;
            let out = json!({ "report": report::to_json(&inner.ctx, &result), "table": report::table(&inner.ctx, &result), "svg": svg });
            Ok(to_js(&out))
        })
    }

    /// Times every matvec variant on this device (rows ≤ 8 of `options`, default 1) and stores
    /// the fastest per shape bucket in `localStorage`, where `bench` and model loading find it.
    /// Resolves to `{entries, table}`.
    pub fn tune(&self, options: JsValue, on_progress: Option<js_sys::Function>) -> js_sys::Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let _busy = BusyGuard::take(&inner, "tuning")?;
            let rows_given = get(&options, "rows").is_some();
            let mut options = suite_options(&options)?;
            if !rows_given {
                options.rows = vec![1];
            }
            let (table, results) = bench::tune::tune(&inner.ctx, &options, &mut progress_callback(on_progress)).await.map_err(js_err)?;
            let mut merged = stored_tune_table().unwrap_or_default();
            let entries = table.len();
            merged.merge(table);
            let storage = storage().ok_or_else(|| js_err("localStorage is not available"))?;
            storage.set_item(TUNE_STORAGE_KEY, &merged.to_json().to_string()).map_err(|_| js_err("localStorage refused the tune table"))?;
            Ok(to_js(&json!({ "entries": entries, "table": bench::tune::results_table(&results) })))
        })
    }

    /// Forgets the stored tune table.
    #[wasm_bindgen(js_name = clearTuneCache)]
    pub fn clear_tune_cache(&self) {
        if let Some(s) = storage() {
            let _ = s.remove_item(TUNE_STORAGE_KEY);
        }
    }
}
