//! all-MiniLM-L6-v2 (f32 safetensors) on the GPU against sentence-transformers
//! (tests/fixtures/minilm_reference.json): the same token ids, and embeddings with cosine
//! ≥ 0.99999. Needs the model: `qgpu fetch minilm`.

mod common;

use qgpu::loader::HfModel;
use qgpu::model::bert::{BertOptions, Embedder};
use qgpu::model::LinearInputObserver;

/// Cosine similarity the f32 path must reach against sentence-transformers' f32 embeddings.
const MIN_COSINE: f64 = 0.99999;

fn load() -> Option<(qgpu::gpu::Context, Embedder)> {
    let dir = common::require_minilm()?;
    let ctx = common::context()?;
    let source = HfModel::open(&dir).unwrap();
    let embedder = pollster::block_on(Embedder::load(&ctx, &source, BertOptions::default())).unwrap();
    Some((ctx, embedder))
}

#[test]
fn minilm_matches_sentence_transformers() {
    let Some((ctx, mut embedder)) = load() else { return };
    let cases = common::minilm_cases();
    let texts: Vec<&str> = cases.iter().map(|c| c.0.as_str()).collect();
    let sentences = embedder.tokenize(&texts).unwrap();
    for ((text, ids, _), s) in cases.iter().zip(&sentences) {
        assert_eq!(&s.ids, ids, "token ids of {text:?}");
    }
    // All three in one packed batch, then each alone: the mask must keep sentences apart.
    let together = pollster::block_on(embedder.embed(&ctx, &texts)).unwrap();
    for ((text, _, want), got) in cases.iter().zip(&together) {
        let cos = common::cosine(got, want);
        eprintln!("{text:?}: cosine {cos:.9} (1 - cos = {:.2e})", 1.0 - cos);
        assert!(cos >= MIN_COSINE, "{text:?}: cosine {cos} < {MIN_COSINE}");
        let norm: f64 = got.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{text:?}: norm {norm}");
    }
    for ((text, _, _), batched) in cases.iter().zip(&together) {
        let alone = pollster::block_on(embedder.embed(&ctx, &[text.as_str()])).unwrap();
        let cos = common::cosine(&alone[0], batched);
        assert!(cos >= 0.999999, "{text:?}: alone vs batched cosine {cos}");
    }
}

/// Records what an observed forward pass hands out.
#[derive(Default)]
struct Recorder {
    seen: Vec<(String, usize, usize)>,
}

impl LinearInputObserver for Recorder {
    fn observe(&mut self, weight: &str, cols: usize, x: &[f32]) {
        assert!(x.iter().all(|v| v.is_finite()), "{weight}: non-finite input");
        self.seen.push((weight.to_string(), cols, x.len()));
    }
}

#[test]
fn observed_forward_sees_every_linear_input_and_changes_nothing() {
    let Some((ctx, mut embedder)) = load() else { return };
    let cases = common::minilm_cases();
    let texts: Vec<&str> = cases.iter().map(|c| c.0.as_str()).collect();
    let sentences = embedder.tokenize(&texts).unwrap();
    let tokens: usize = sentences.iter().map(|s| s.ids.len()).sum();
    let plain = pollster::block_on(embedder.model.forward(&ctx, &sentences)).unwrap();
    let mut recorder = Recorder::default();
    let observed = pollster::block_on(embedder.model.forward_observed(&ctx, &sentences, &mut recorder)).unwrap();
    assert_eq!(plain, observed);
    let c = embedder.model.config().clone();
    assert_eq!(recorder.seen.len(), c.layers * 6);
    for layer in 0..c.layers {
        for (part, cols) in [("attn_q", c.dim), ("attn_k", c.dim), ("attn_v", c.dim), ("attn_output", c.dim), ("ffn_up", c.dim), ("ffn_down", c.ffn)] {
            let name = format!("blk.{layer}.{part}.weight");
            let entry = recorder.seen.iter().find(|(n, _, _)| *n == name).unwrap_or_else(|| panic!("{name} not observed"));
            assert_eq!((entry.1, entry.2), (cols, tokens * cols), "{name}");
        }
    }
}
