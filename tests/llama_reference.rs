//! SmolLM2-135M-Instruct (Q4_1) on the GPU against transformers' f32 logits and greedy output
//! (tests/fixtures/smollm2_reference.json). Needs the real model: `scripts/fetch-model.sh`.

mod common;

use qgpu::loader::GgufFile;
use qgpu::model::llama::{Llama, LlamaOptions, Logits};
use qgpu::ops::KvType;
use std::path::PathBuf;

/// Largest allowed |logit − reference| over the reference's top 10 at every position.
const LOGIT_TOLERANCE: f32 = 0.02;
/// Positions whose reference top-2 gap exceeds this must have the same top-1.
const NEAR_TIE: f32 = 0.05;

pub struct Case {
    pub prompt: String,
    pub chat: bool,
    pub input_ids: Vec<u32>,
    pub top_ids: Vec<Vec<u32>>,
    pub top_logits: Vec<Vec<f32>>,
    pub greedy_ids: Vec<u32>,
}

fn cases() -> Vec<Case> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/smollm2_reference.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let ids = |v: &serde_json::Value| v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect::<Vec<u32>>();
    json["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            prompt: c["prompt"].as_str().unwrap().to_string(),
            chat: c["chat"].as_bool().unwrap(),
            input_ids: ids(&c["input_ids"]),
            top_ids: c["top10_per_position"].as_array().unwrap().iter().map(|p| ids(&p["ids"])).collect(),
            top_logits: c["top10_per_position"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["logits"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect())
                .collect(),
            greedy_ids: ids(&c["greedy_new_ids"]),
        })
        .collect()
}

fn model_path() -> Option<PathBuf> {
    let path = common::model_path();
    if path.exists() {
        return Some(path);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true and the model is missing at {}; run scripts/fetch-model.sh", path.display());
    }
    eprintln!("skipping: no model at {}", path.display());
    None
}

fn argmax(v: &[f32]) -> u32 {
    v.iter().enumerate().fold((0, f32::MIN), |best, (i, &x)| if x > best.1 { (i, x) } else { best }).0 as u32
}

#[test]
fn logits_and_greedy_continuations_match_transformers() {
    let Some(path) = model_path() else { return };
    let Some(ctx) = common::context() else { return };
    let file = GgufFile::open(&path).unwrap();
    // The f32 KV cache within the tolerance; the default f16 cache within its rounding, and its
    // greedy continuations (the decode path users run; the f32 cache's logits are checked
    // above, its continuations would repeat the same decode kernels).
    for (kv_type, tolerance, greedy) in [(KvType::F32, LOGIT_TOLERANCE, false), (KvType::F16, 3.0 * LOGIT_TOLERANCE, true)] {
        check_with(&ctx, &file, kv_type, tolerance, greedy);
    }
}

fn check_with(ctx: &qgpu::gpu::Context, file: &GgufFile, kv_type: KvType, tolerance: f32, greedy: bool) {
    let mut model = pollster::block_on(Llama::load(ctx, file, LlamaOptions { context: 256, kv_type, ..Default::default() }, &mut |_, _| {})).unwrap();
    let vocab = model.config().vocab;
    for case in cases() {
        model.reset();
        let logits = pollster::block_on(model.forward(ctx, &case.input_ids, Logits::All)).unwrap();
        let mut worst = 0.0f32;
        for (pos, (ids, want)) in case.top_ids.iter().zip(&case.top_logits).enumerate() {
            let row = &logits[pos * vocab..(pos + 1) * vocab];
            for (&id, &w) in ids.iter().zip(want) {
                let diff = (row[id as usize] - w).abs();
                worst = worst.max(diff);
                assert!(diff <= tolerance, "{kv_type} KV: {:?} position {pos} token {id}: {} vs {w}", case.prompt, row[id as usize]);
            }
            if want[0] - want[1] > NEAR_TIE {
                assert_eq!(argmax(row), ids[0], "{:?} position {pos}: top-1 differs", case.prompt);
            }
        }
        eprintln!("{kv_type} KV: {:?} (chat {}): worst top-10 logit difference {worst:.4}", case.prompt, case.chat);
        if !greedy {
            continue;
        }

        // Greedy continuation, token for token, through the decode path (matvec, KV cache).
        let mut last = &logits[(case.input_ids.len() - 1) * vocab..];
        let mut owned;
        let mut got = Vec::new();
        for (i, &want) in case.greedy_ids.iter().enumerate() {
            let next = argmax(last);
            if next != want {
                let mut sorted: Vec<f32> = last.to_vec();
                sorted.sort_by(|a, b| b.total_cmp(a));
                let gap = sorted[0] - sorted[1];
                assert!(gap <= NEAR_TIE, "{:?}: greedy token {i} is {next}, reference {want} (top-2 gap {gap})", case.prompt);
                eprintln!("{:?}: diverged at generated token {i} right after a near tie (gap {gap}); accepted", case.prompt);
                break;
            }
            got.push(next);
            owned = pollster::block_on(model.forward(ctx, &[next], Logits::Last)).unwrap();
            last = &owned;
        }
        eprintln!("{:?}: {} of {} greedy tokens identical", case.prompt, got.len(), case.greedy_ids.len());
    }
}
