//! Shared test helpers: a GPU context that fails (not skips) under CI, and a seeded RNG.
#![allow(dead_code)]

use qgpu::gpu::{Context, ContextOptions};

/// A fresh directory under the system temp dir (named for the test binary, the process and
/// `name`), removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let binary = std::env::current_exe().ok().and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned())).unwrap_or_default();
        let dir = std::env::temp_dir().join(format!("qgpu-{binary}-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// The names in the directory, sorted.
    pub fn entries(&self) -> Vec<String> {
        let mut names: Vec<String> =
            std::fs::read_dir(&self.0).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

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
    // Negated on purpose: a NaN fails `<=`, so it counts as the first mismatch.
    #[allow(clippy::neg_cmp_op_on_partial_ord)]
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

pub mod bert_ref;
pub mod hf_dir;
pub mod llama_ref;
pub mod tiny_gguf;

/// The all-MiniLM-L6-v2 directory: `$QGPU_MINILM`, else where `qgpu fetch minilm` puts it.
pub fn minilm_dir() -> std::path::PathBuf {
    if let Ok(p) = std::env::var("QGPU_MINILM") {
        return p.into();
    }
    model_path().parent().map(|p| p.join("all-MiniLM-L6-v2")).unwrap_or_default()
}

/// The MiniLM directory if it has been fetched; `None` (skip) locally, a panic under `CI=true`.
pub fn require_minilm() -> Option<std::path::PathBuf> {
    let dir = minilm_dir();
    if dir.join("model.safetensors").exists() {
        return Some(dir);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true and MiniLM is missing at {}; run `qgpu fetch minilm`", dir.display());
    }
    eprintln!("skipping: no MiniLM at {}", dir.display());
    None
}

/// Cosine similarity in f64.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

/// The sentences of tests/fixtures/minilm_reference.json: text, token ids, embedding.
pub fn minilm_cases() -> Vec<(String, Vec<u32>, Vec<f32>)> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/minilm_reference.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let ids = c["input_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
            let emb = c["embedding"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
            (c["text"].as_str().unwrap().to_string(), ids, emb)
        })
        .collect()
}

pub mod json_schema;

/// Gemma 3 270M Q4_K_M if it has been fetched (`qgpu fetch gemma3`): `$QGPU_GEMMA3`, else the
/// cache beside the default model; `None` (skip) locally, a panic under `CI=true`.
pub fn require_gemma3() -> Option<std::path::PathBuf> {
    let path = match std::env::var("QGPU_GEMMA3") {
        Ok(p) => p.into(),
        Err(_) => model_path().parent().map(|p| p.join("gemma-3-270m-q4_k_m.gguf")).unwrap_or_default(),
    };
    if path.is_file() {
        return Some(path);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true and Gemma 3 is missing at {}; run `qgpu fetch gemma3`", path.display());
    }
    eprintln!("skipping: no Gemma 3 at {}", path.display());
    None
}
