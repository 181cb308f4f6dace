//! Attention at a depth of 3,000+ tokens against transformers' f32 run of the same GGUF
//! (scripts/make_long_context_reference.py made tests/fixtures/long_context_*.json): the
//! prompt's token ids, and the top-10 log-probabilities and argmax at the last position and
//! at the checkpoints before it (127, 511, 512, 639, 640, 1024, 2048), with the F32 and the F16
//! KV cache. SmolLM2 reads its whole cache; Gemma 3's window layers (512) read a ring cache of
//! 639 slots that has wrapped four times by the last position.

mod common;

use qgpu::loader::GgufFile;
use qgpu::model::llama::{Llama, LlamaOptions, Logits};
use qgpu::model::tokenizer::Tokenizer;
use qgpu::ops::KvType;
use serde_json::Value;
use std::path::Path;
use std::time::Instant;

/// A checkpoint whose reference top-2 gap exceeds this must have the same argmax.
const NEAR_TIE: f64 = 0.05;

struct Reference {
    ids: Vec<u32>,
    /// (position, top-10 ids, their log-probabilities), in position order.
    checkpoints: Vec<(usize, Vec<u32>, Vec<f64>)>,
}

fn reference(name: &str) -> Reference {
    let path = format!("{}/tests/fixtures/long_context_{name}.json", env!("CARGO_MANIFEST_DIR"));
    let json: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let ids = |v: &Value| v.as_array().unwrap().iter().map(|t| t.as_u64().unwrap() as u32).collect::<Vec<u32>>();
    let checkpoints = json["positions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let logprobs = p["top10_logprobs"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
            (p["position"].as_u64().unwrap() as usize, ids(&p["top10_ids"]), logprobs)
        })
        .collect();
    Reference { ids: ids(&json["ids"]), checkpoints }
}

fn text() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/long_context.txt")).unwrap()
}

fn log_softmax(x: &[f32]) -> Vec<f64> {
    let max = x.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
    let z = max + x.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln();
    x.iter().map(|&v| v as f64 - z).collect()
}

fn argmax(x: &[f32]) -> u32 {
    x.iter().enumerate().fold(0, |b, (i, &v)| if v > x[b] { i } else { b }) as u32
}

/// Prefills the whole prompt, reading the logits at each checkpoint, and checks them.
#[allow(clippy::neg_cmp_op_on_partial_ord)]
fn check(path: &Path, name: &str, kv_type: KvType, tolerance: f64) {
    let Some(ctx) = common::context() else { return };
    let file = GgufFile::open(path).unwrap();
    let reference = reference(name);
    let tokenizer = Tokenizer::from_gguf(file.metadata()).unwrap();
    assert_eq!(tokenizer.encode(&text()).unwrap(), reference.ids, "{name}: token ids differ from transformers'");
    assert!(reference.ids.len() >= 3000 && reference.checkpoints.last().unwrap().0 == reference.ids.len() - 1);

    let options = LlamaOptions { context: reference.ids.len(), kv_type, ..Default::default() };
    let mut model = pollster::block_on(Llama::load(&ctx, &file, options, &mut |_, _| {})).unwrap();
    assert_eq!(model.context(), reference.ids.len());
    let started = Instant::now();
    let (mut start, mut worst, mut failures) = (0, 0.0f64, Vec::new());
    for (pos, top_ids, want) in &reference.checkpoints {
        // Segments end at the checkpoints; each is run in the model's chunks.
        let logits = pollster::block_on(model.forward(&ctx, &reference.ids[start..=*pos], Logits::Last)).unwrap();
        start = pos + 1;
        let got = log_softmax(&logits);
        let mut here = 0.0f64;
        for (&id, &w) in top_ids.iter().zip(want) {
            let diff = (got[id as usize] - w).abs();
            here = here.max(diff);
            // Negated so that a NaN fails too.
            if !(diff <= tolerance) {
                failures.push(format!("position {pos}: token {id} log-prob {} against {w}", got[id as usize]));
            }
        }
        if want[0] - want[1] > NEAR_TIE && argmax(&logits) != top_ids[0] {
            failures.push(format!("position {pos}: argmax {} against {} (reference gap {})", argmax(&logits), top_ids[0], want[0] - want[1]));
        }
        eprintln!("{name}, {kv_type} KV, position {pos}: worst top-10 log-prob difference {here:.4}");
        worst = worst.max(here);
    }
    let seconds = started.elapsed().as_secs_f64();
    let n = reference.ids.len();
    eprintln!("{name}, {kv_type} KV: {n} tokens prefilled in {seconds:.1} s ({:.2} tokens/s), worst {worst:.4} (bound {tolerance})", n as f64 / seconds);
    // Every checkpoint is printed before any failure, to show where the error starts.
    assert!(failures.is_empty(), "{name}, {kv_type} KV: {}", failures.join("; "));
}

fn smollm2() -> Option<std::path::PathBuf> {
    let path = common::model_path();
    if path.is_file() {
        return Some(path);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true and the model is missing at {}; run `qgpu fetch`", path.display());
    }
    eprintln!("skipping: no model at {}", path.display());
    None
}

#[test]
#[ignore = "hours on lavapipe (SmolLM2 f16: 4,879 s); cargo test --test long_context -- --ignored"]
fn smollm2_long_prompt_f32_kv() {
    let Some(path) = smollm2() else { return };
    check(&path, "smollm2", KvType::F32, 0.02);
}

#[test]
#[ignore = "hours on lavapipe (SmolLM2 f16: 4,879 s); cargo test --test long_context -- --ignored"]
fn smollm2_long_prompt_f16_kv() {
    let Some(path) = smollm2() else { return };
    check(&path, "smollm2", KvType::F16, 0.06);
}

#[test]
#[ignore = "hours on lavapipe (SmolLM2 f16: 4,879 s); cargo test --test long_context -- --ignored"]
fn gemma3_long_prompt_f32_kv() {
    let Some(path) = common::require_gemma3() else { return };
    check(&path, "gemma3", KvType::F32, 0.02);
}

#[test]
#[ignore = "hours on lavapipe (SmolLM2 f16: 4,879 s); cargo test --test long_context -- --ignored"]
fn gemma3_long_prompt_f16_kv() {
    let Some(path) = common::require_gemma3() else { return };
    check(&path, "gemma3", KvType::F16, 0.06);
}
