//! Shared test helpers: a GPU context that fails (not skips) under CI, and a seeded RNG.
#![allow(dead_code)]

use qgpu::gpu::{Context, ContextOptions};

/// A context on the default adapter. Without one, the test is skipped locally but fails when
/// `CI=true`, so a broken driver install cannot pass.
pub fn context_with(options: ContextOptions) -> Option<Context> {
    match pollster::block_on(Context::new(options)) {
        Ok(ctx) => Some(ctx),
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => panic!("CI=true and no GPU context: {e}"),
        Err(e) => {
            eprintln!("skipping GPU test: {e}");
            None
        }
    }
}

pub fn context() -> Option<Context> {
    context_with(ContextOptions::default())
}

/// Relative L2 error of `got` against `want`, and the first index whose error exceeds
/// `tol` times the RMS of `want`.
pub fn compare(got: &[f32], want: &[f64], tol: f64) -> (f64, Option<usize>) {
    assert_eq!(got.len(), want.len());
    let (mut err, mut norm) = (0.0f64, 0.0f64);
    for (g, w) in got.iter().zip(want) {
        err += (*g as f64 - w).powi(2);
        norm += w * w;
    }
    let rms = (norm / want.len() as f64).sqrt().max(1e-30);
    let first = got.iter().zip(want).position(|(g, w)| !((*g as f64 - w).abs() <= tol * rms));
    ((err / norm.max(1e-300)).sqrt(), first)
}

/// The default model's path: `$QGPU_MODEL`, else the cache that `scripts/fetch-model.sh` fills.
pub fn model_path() -> std::path::PathBuf {
    if let Ok(p) = std::env::var("QGPU_MODEL") {
        return p.into();
    }
    let cache = std::env::var("QGPU_CACHE_DIR").map(std::path::PathBuf::from).unwrap_or_else(|_| {
        std::env::var("XDG_CACHE_HOME")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|_| std::path::PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache"))
            .join("qgpu")
    });
    cache.join("models/SmolLM2-135M-Instruct.Q4_1.gguf")
}

pub mod llama_ref;
pub mod tiny_gguf;
pub mod json_schema;
