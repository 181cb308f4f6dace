//! What quantization costs on a real embedding model, end to end through the binary:
//! `qgpu quantize` all-MiniLM-L6-v2 (f32 safetensors) to Q8_0, round-to-nearest Q4_0 and
//! calibrated Q4_0, then `qgpu eval` against the f32 model on the 23 built-in sentences (the
//! fixture's three and twenty more). Checks the bars: INT8 per 32 keeps a mean cosine of
//! at least 0.9995, and calibration beats round-to-nearest at the same size.

mod common;

use std::path::Path;
use std::process::Command;

fn qgpu() -> Command {
    Command::new(env!("CARGO_BIN_EXE_qgpu"))
}

fn quantize(model: &Path, out: &Path, format: &str, calibrate: Option<&Path>) {
    let mut cmd = qgpu();
    cmd.args(["quantize", "--model"]).arg(model).arg("--out").arg(out).args(["--format", format]);
    // One type for every matrix: `--format Q4_0` alone is llama.cpp's Q4_0 preset, whose
    // untied-embedding rule puts token_embd in Q6_K.
    cmd.arg("--mix").arg(format!("*={format}"));
    if let Some(text) = calibrate {
        cmd.arg("--calibrate").arg(text);
    }
    let result = cmd.output().unwrap();
    assert!(result.status.success(), "quantize {format}: {}", String::from_utf8_lossy(&result.stderr));
}

#[test]
fn quantized_minilm_against_f32() {
    let Some(model) = common::require_minilm() else { return };
    let dir = std::env::temp_dir().join(format!("qgpu-eval-embed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Calibrate on text the evaluation does not use.
    let calibration = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/eval/lm-text.txt");
    let (q8, q4, q4_cal) = (dir.join("q8_0.gguf"), dir.join("q4_0.gguf"), dir.join("q4_0-cal.gguf"));
    quantize(&model, &q8, "Q8_0", None);
    quantize(&model, &q4, "Q4_0", None);
    quantize(&model, &q4_cal, "Q4_0", Some(&calibration));

    let json = dir.join("eval.json");
    let out = qgpu()
        .args(["eval", "--reference"])
        .arg(&model)
        .args(["--model"])
        .arg(&q8)
        .arg("--model")
        .arg(&q4)
        .arg("--model")
        .arg(&q4_cal)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    assert!(out.status.success(), "eval: {}", String::from_utf8_lossy(&out.stderr));
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(doc["kind"], "embedding");
    assert_eq!(doc["sentences"].as_array().unwrap().len(), 23);
    let mean = |i: usize| doc["models"][i]["cosine_mean"].as_f64().unwrap();
    let worst = |i: usize| doc["models"][i]["cosine_worst"].as_f64().unwrap();
    let size = |i: usize| doc["models"][i]["size_bytes"].as_u64().unwrap();
    assert!(mean(0) >= 0.9995, "Q8_0 mean cosine {}", mean(0));
    assert!(mean(1) > 0.9 && mean(1) < mean(0), "Q4_0 mean cosine {} (Q8_0 {})", mean(1), mean(0));
    assert!(mean(2) > mean(1) && worst(2) > worst(1), "calibrated Q4_0 {}/{} vs round-to-nearest {}/{}", mean(2), worst(2), mean(1), worst(1));
    assert_eq!(size(1), size(2), "calibration changes scales, not the size");
    assert!(size(1) * 6 < doc["reference"]["size_bytes"].as_u64().unwrap(), "Q4_0 is under 1/6 of f32");
}
