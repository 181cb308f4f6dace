//! `qgpu eval` for language models: the GPU comparison against the same metrics computed in f64
//! from logits read back, on tiny synthetic models with odd sizes, over several windows and
//! chunks.

mod common;

use common::tiny_gguf::{tiny_llama_gguf, TinySpec};
use qgpu::eval::compare_language_models;
use qgpu::loader::GgufFile;
use qgpu::model::llama::{Llama, LlamaOptions, Logits};
use qgpu::quant::Format;

fn load(ctx: &qgpu::gpu::Context, spec: &TinySpec, options: &LlamaOptions) -> Llama {
    let file = GgufFile::from_bytes(tiny_llama_gguf(spec, 11)).unwrap();
    pollster::block_on(Llama::load(ctx, &file, options.clone(), &mut |_, _| {})).unwrap()
}

fn log_softmax(x: &[f32]) -> Vec<f64> {
    let m = x.iter().fold(f64::MIN, |m, &v| m.max(v as f64));
    let z = m + x.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln();
    x.iter().map(|&v| v as f64 - z).collect()
}

fn argmax(x: &[f32]) -> usize {
    x.iter().enumerate().fold(0, |b, (i, &v)| if v > x[b] { i } else { b })
}

#[test]
fn lm_scores_match_metrics_from_read_back_logits() {
    let Some(ctx) = common::context() else { return };
    let (window, chunk) = (10, 4);
    let options = LlamaOptions { context: window, chunk, ..Default::default() };
    let reference_spec = TinySpec { weight_format: Format::F32, embed_format: Format::F32, ..TinySpec::odd() };
    let candidate_spec = TinySpec::odd(); // Q4_0 blocks, Q8_0 embedding: the same weights, quantized
    let mut reference = load(&ctx, &reference_spec, &options);
    let mut candidate = load(&ctx, &candidate_spec, &options);
    let mut same = load(&ctx, &reference_spec, &options);
    let vocab = reference_spec.vocab;
    let tokens: Vec<u32> = (0..23u32).map(|i| (i * 71 + 3) % vocab as u32).collect();

    let scores = pollster::block_on(compare_language_models(&ctx, &mut reference, &mut [&mut candidate, &mut same], &tokens, window, &mut |_, _| {})).unwrap();

    // The oracle: every window from an empty cache, logits read back, metrics in f64.
    let (mut kl, mut nll_r, mut nll_c, mut agree, mut predicted) = (0.0f64, 0.0f64, 0.0f64, 0usize, 0usize);
    for (w, win) in tokens.chunks(window).enumerate() {
        reference.reset();
        candidate.reset();
        let r = pollster::block_on(reference.forward(&ctx, win, Logits::All)).unwrap();
        let c = pollster::block_on(candidate.forward(&ctx, win, Logits::All)).unwrap();
        for p in 0..win.len() {
            let (rr, cc) = (&r[p * vocab..(p + 1) * vocab], &c[p * vocab..(p + 1) * vocab]);
            let (lr, lc) = (log_softmax(rr), log_softmax(cc));
            kl += lr.iter().zip(&lc).map(|(a, b)| a.exp() * (a - b)).sum::<f64>();
            agree += (argmax(rr) == argmax(cc)) as usize;
            if let Some(&next) = tokens.get(w * window + p + 1) {
                nll_r -= lr[next as usize];
                nll_c -= lc[next as usize];
                predicted += 1;
            }
        }
    }
    let n = tokens.len() as f64;
    let s = &scores[0];
    assert_eq!((s.positions, s.predicted), (tokens.len(), tokens.len() - 1));
    let close = |got: f64, want: f64, what: &str| assert!((got - want).abs() <= 1e-3 * (1.0 + want.abs()), "{what}: {got} vs {want}");
    close(s.kl_mean, kl / n, "mean KL");
    close(s.perplexity_reference, (nll_r / predicted as f64).exp(), "reference perplexity");
    close(s.perplexity, (nll_c / predicted as f64).exp(), "candidate perplexity");
    close(s.top1_agreement, agree as f64 / n, "top-1 agreement");
    assert!(s.kl_mean > 0.0 && s.kl_max >= s.kl_p99 && s.kl_p99 >= 0.0, "{s:?}");
    assert!(s.tokens_per_second > 0.0 && s.reference_tokens_per_second > 0.0, "{s:?}");

    // A model against itself: nothing lost.
    let s = &scores[1];
    assert_eq!((s.kl_max, s.top1_agreement), (0.0, 1.0), "{s:?}");
    assert_eq!(s.perplexity, s.perplexity_reference);
}
