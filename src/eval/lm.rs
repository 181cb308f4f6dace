//! Perplexity, KL divergence and top-1 agreement of language models against a reference.

use crate::gpu::Context;
use crate::model::llama::Llama;
use crate::ops::{LogitMetrics, RowMetrics, NO_TARGET};
use crate::Error;
use web_time::Instant;

/// One candidate's scores against the reference over the same tokens.
#[derive(Clone, Debug, PartialEq)]
pub struct LmScore {
    /// Positions compared (KL and top-1 cover all of them).
    pub positions: usize,
    /// Positions with a known next token (perplexity covers these).
    pub predicted: usize,
    /// exp(mean NLL) of the reference on the text.
    pub perplexity_reference: f64,
    /// exp(mean NLL) of the candidate on the text.
    pub perplexity: f64,
    /// Mean KL(reference ‖ candidate) per position, in nats.
    pub kl_mean: f64,
    /// 99th percentile of the per-position KL.
    pub kl_p99: f64,
    /// Largest per-position KL.
    pub kl_max: f64,
    /// Fraction of positions where both models' most likely token is the same.
    pub top1_agreement: f64,
    /// The candidate's forward passes over the text: tokens per second of wall-clock time
    /// (submit and wait natively; in the browser, where waiting is not possible, submit only),
    /// chunks of the evaluation's length, logits left on the GPU.
    pub tokens_per_second: f64,
    /// The same for the reference, measured in the same run.
    pub reference_tokens_per_second: f64,
}

impl LmScore {
    fn from_rows(rows: &[RowMetrics], has_target: &[bool], seconds: f64, reference_seconds: f64) -> Self {
        let positions = rows.len();
        let predicted = has_target.iter().filter(|&&t| t).count();
        let mean_nll = |pick: fn(&RowMetrics) -> f32| {
            let sum: f64 = rows.iter().zip(has_target).filter(|(_, &t)| t).map(|(r, _)| pick(r) as f64).sum();
            sum / predicted.max(1) as f64
        };
        let mut kls: Vec<f64> = rows.iter().map(|r| r.kl as f64).collect();
        kls.sort_by(f64::total_cmp);
        let p99 = kls.get(((positions as f64 * 0.99).ceil() as usize).saturating_sub(1)).copied().unwrap_or(0.0);
        Self {
            positions,
            predicted,
            perplexity_reference: mean_nll(|r| r.nll_reference).exp(),
            perplexity: mean_nll(|r| r.nll_candidate).exp(),
            kl_mean: kls.iter().sum::<f64>() / positions.max(1) as f64,
            kl_p99: p99,
            kl_max: kls.last().copied().unwrap_or(0.0),
            top1_agreement: rows.iter().filter(|r| r.top1_reference == r.top1_candidate).count() as f64 / positions.max(1) as f64,
            tokens_per_second: positions as f64 / seconds.max(1e-9),
            reference_tokens_per_second: positions as f64 / reference_seconds.max(1e-9),
        }
    }
}

/// Runs `tokens` through the reference and every candidate in windows of `window` positions
/// (each window starts from an empty KV cache) and scores each candidate against the reference.
///
/// All models must share the reference's vocabulary, hold `window` positions in their KV cache,
/// and use the same chunk length. The reference runs once per chunk; its logits stay on the GPU
/// while each candidate's are compared with them.
pub async fn compare_language_models(
    ctx: &Context,
    reference: &mut Llama,
    candidates: &mut [&mut Llama],
    tokens: &[u32],
    window: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<LmScore>, Error> {
    let chunk = candidates.iter().fold(reference.chunk(), |c, m| c.min(m.chunk()));
    let window = window.max(1);
    let metrics = LogitMetrics::new(ctx, chunk)?;
    let mut rows: Vec<Vec<RowMetrics>> = vec![Vec::with_capacity(tokens.len()); candidates.len()];
    let mut has_target = Vec::with_capacity(tokens.len());
    // Seconds spent in each model's forward passes (the reference's first).
    let mut seconds = vec![0.0f64; candidates.len() + 1];
    for (w, win) in tokens.chunks(window).enumerate() {
        reference.reset();
        for model in candidates.iter_mut() {
            model.reset();
        }
        for (c, part) in win.chunks(chunk).enumerate() {
            // The token after each position, across window boundaries too: the model predicts it
            // from the window's context either way.
            let start = w * window + c * chunk;
            let targets: Vec<u32> = (start..start + part.len()).map(|i| tokens.get(i + 1).copied().unwrap_or(NO_TARGET)).collect();
            has_target.extend(targets.iter().map(|&t| t != NO_TARGET));
            let timer = Instant::now();
            let ref_logits = reference.forward_logits_on_gpu(ctx, part).await?;
            // Submitting returns before the GPU is done; wait so the time is the work's.
            ctx.wait_idle()?;
            seconds[0] += timer.elapsed().as_secs_f64();
            for ((model, out), time) in candidates.iter_mut().zip(rows.iter_mut()).zip(&mut seconds[1..]) {
                let timer = Instant::now();
                let logits = model.forward_logits_on_gpu(ctx, part).await?;
                ctx.wait_idle()?;
                *time += timer.elapsed().as_secs_f64();
                out.extend(metrics.compare(ctx, ref_logits, logits, &targets).await?);
            }
            progress((start + part.len()).min(tokens.len()), tokens.len());
        }
    }
    Ok(rows.iter().zip(&seconds[1..]).map(|(r, &t)| LmScore::from_rows(r, &has_target, t, seconds[0])).collect())
}
