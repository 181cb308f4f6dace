//! `qgpu bench --model`: end-to-end prompt processing (pp) and generation (tg) speed of a
//! loaded decoder, in the style of llama.cpp's `llama-bench`: synthetic token ids (seeded random
//! ids from the vocabulary, not text), `depth` tokens already in the KV cache before each
//! measurement, mean ± standard deviation of tokens/s over repetitions, the GPU memory held and
//! the fraction of the copy probe's bandwidth that decode reaches.

use super::probes::{copy_bandwidth, Ceiling};
use super::timing::Stopwatch;
use crate::gpu::Context;
use crate::loader::TensorSource;
use crate::model::llama::{cache_rows, Llama, LlamaConfig, Logits, MemoryUse};
use crate::model::ModelError;
use crate::ops::KvCache;
use crate::quant::reference::TestRng;
use crate::Error;
use web_time::Instant;

/// What to measure.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelBenchOptions {
    /// Prompt lengths, one pp test each.
    pub prompt_tokens: Vec<usize>,
    /// Generated lengths, one tg test each (single-token forward passes).
    pub gen_tokens: Vec<usize>,
    /// Tokens in the KV cache before each test; each depth is prefilled once, untimed.
    pub depths: Vec<usize>,
    pub repetitions: usize,
    /// One untimed run of each test first (as llama-bench: the whole prompt, one decode step).
    pub warmup: bool,
    /// Seed of the synthetic token ids.
    pub seed: u64,
    /// Size of each copy-probe buffer, and its timed runs.
    pub probe_bytes: u64,
    pub probe_repeats: usize,
}

impl Default for ModelBenchOptions {
    /// llama-bench's defaults: pp512, tg128, depth 0, 5 repetitions.
    fn default() -> Self {
        Self { prompt_tokens: vec![512], gen_tokens: vec![128], depths: vec![0], repetitions: 5, warmup: true, seed: 42, probe_bytes: 256 << 20, probe_repeats: 5 }
    }
}

/// Settings that cannot be measured.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ModelBenchError {
    #[error("repetitions must be at least 1")]
    NoRepetitions,
    #[error("{what} of 0 tokens: each test needs at least one")]
    ZeroTokens { what: &'static str },
    #[error("nothing to measure: no prompt and no generation lengths")]
    NothingToMeasure,
    #[error("depth {depth} + {tokens} tokens needs {needed} positions, but the context holds {context} (the model was trained on {trained})")]
    ContextTooSmall { depth: usize, tokens: usize, needed: usize, context: usize, trained: usize },
    #[error(transparent)]
    Run(#[from] Error),
}

impl From<ModelError> for ModelBenchError {
    fn from(e: ModelError) -> Self {
        ModelBenchError::Run(e.into())
    }
}

impl ModelBenchOptions {
    /// Depths sorted, without repeats (none: depth 0): the order they are measured in, each
    /// extending the last one's prefill.
    pub fn sorted_depths(&self) -> Vec<usize> {
        let mut d = if self.depths.is_empty() { vec![0] } else { self.depths.clone() };
        d.sort_unstable();
        d.dedup();
        d
    }

    /// Positions the longest test needs: the deepest depth plus the longest prompt or generation.
    pub fn required_context(&self) -> usize {
        let longest = self.prompt_tokens.iter().chain(&self.gen_tokens).copied().max().unwrap_or(0);
        self.depths.iter().copied().max().unwrap_or(0) + longest
    }

    /// Checks the settings, and that every test fits `context` positions (`trained` is named in
    /// the error, since the context is capped at it).
    pub fn check(&self, context: usize, trained: usize) -> Result<(), ModelBenchError> {
        if self.repetitions == 0 {
            return Err(ModelBenchError::NoRepetitions);
        }
        if self.prompt_tokens.contains(&0) {
            return Err(ModelBenchError::ZeroTokens { what: "a prompt" });
        }
        if self.gen_tokens.contains(&0) {
            return Err(ModelBenchError::ZeroTokens { what: "a generation" });
        }
        if self.prompt_tokens.is_empty() && self.gen_tokens.is_empty() {
            return Err(ModelBenchError::NothingToMeasure);
        }
        for depth in self.sorted_depths() {
            for &tokens in self.prompt_tokens.iter().chain(&self.gen_tokens) {
                if depth + tokens > context {
                    return Err(ModelBenchError::ContextTooSmall { depth, tokens, needed: depth + tokens, context, trained });
                }
            }
        }
        Ok(())
    }
}

/// What the table calls the model, from the file alone.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelInfo {
    /// `arch params type`, e.g. `llama 135M Q4_1` (llama-bench's model column).
    pub name: String,
    pub architecture: String,
    /// Values in all tensors.
    pub parameters: u64,
    /// Bytes of all tensors as stored in the file.
    pub size_bytes: u64,
    /// The element type holding the most bytes.
    pub main_type: String,
}

impl ModelInfo {
    pub fn from_source(source: &dyn TensorSource) -> Self {
        let architecture = source.metadata().get_str("general.architecture").unwrap_or("?").to_owned();
        let (mut parameters, mut size_bytes) = (0u64, 0u64);
        let mut by_type: Vec<(&'static str, u64)> = Vec::new();
        for t in source.tensors() {
            let n = t.n_elements().unwrap_or(0);
            let b = t.ggml_type.size_of(n).unwrap_or(0);
            parameters = parameters.saturating_add(n);
            size_bytes = size_bytes.saturating_add(b);
            match by_type.iter_mut().find(|(name, _)| *name == t.ggml_type.name()) {
                Some(entry) => entry.1 += b,
                None => by_type.push((t.ggml_type.name(), b)),
            }
        }
        let main_type = by_type.iter().max_by_key(|(_, b)| *b).map_or("?", |(name, _)| *name).to_owned();
        // The mix the file says it is, where it says: the type with the most bytes is often not
        // it (Gemma 3's Q8_0 embedding table outweighs its Q4_K layers).
        let name = format!("{architecture} {} {}", params_label(parameters), declared_mix(source).unwrap_or(&main_type));
        ModelInfo { name, architecture, parameters, size_bytes, main_type }
    }
}

/// The mix a file declares in `general.file_type` (`Q4_K_M`), as llama-bench names models. The
/// preset table lives in `convert`, which the browser build leaves out.
#[cfg(not(target_arch = "wasm32"))]
fn declared_mix(source: &dyn TensorSource) -> Option<&'static str> {
    use crate::convert::Preset;
    source.metadata().get_u32("general.file_type").ok().and_then(Preset::from_file_type).map(Preset::name)
}

#[cfg(target_arch = "wasm32")]
fn declared_mix(_: &dyn TensorSource) -> Option<&'static str> {
    None
}

/// 134515008 → `135M`, 6738415616 → `6.7B`.
pub fn params_label(n: u64) -> String {
    let n = n as f64;
    if n >= 1e9 {
        format!("{:.1}B", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.0}M", n / 1e6)
    } else {
        format!("{:.0}K", n / 1e3)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TestKind {
    /// Prompt processing: one forward pass over the prompt (chunked as generation does).
    Prompt,
    /// Generation: one single-token forward pass per token.
    Generation,
}

impl TestKind {
    pub fn prefix(self) -> &'static str {
        match self {
            TestKind::Prompt => "pp",
            TestKind::Generation => "tg",
        }
    }
}

/// One test at one depth.
#[derive(Clone, Debug, PartialEq)]
pub struct TestResult {
    pub kind: TestKind,
    pub tokens: usize,
    pub depth: usize,
    /// Seconds of each repetition.
    pub seconds: Vec<f64>,
    /// K and V bytes holding the depth and this test's tokens (the part of the cache in use).
    pub kv_used_bytes: u64,
    /// Generation only: weight bytes plus the K/V bytes attention reads, per decoded token,
    /// averaged over the test's positions.
    pub bytes_per_token: Option<u64>,
}

impl TestResult {
    /// llama-bench's name: `pp512`, `tg128 @ d2048`.
    pub fn name(&self) -> String {
        let base = format!("{}{}", self.kind.prefix(), self.tokens);
        if self.depth == 0 {
            base
        } else {
            format!("{base} @ d{}", self.depth)
        }
    }

    /// Tokens per second of each repetition.
    pub fn tokens_per_second(&self) -> Vec<f64> {
        self.seconds.iter().map(|s| self.tokens as f64 / s.max(1e-12)).collect()
    }

    /// Mean and sample standard deviation of tokens/s over the repetitions (as llama-bench).
    pub fn mean_stddev(&self) -> (f64, f64) {
        let v = self.tokens_per_second();
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n.max(1.0);
        let var = if v.len() > 1 { v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
        (mean, var.sqrt())
    }

    /// Generation only: bytes per token × mean tokens/s over `copy`'s bandwidth.
    pub fn copy_fraction(&self, copy: &Ceiling) -> Option<f64> {
        self.bytes_per_token.map(|b| b as f64 * self.mean_stddev().0 / copy.rate())
    }
}

/// A whole run.
#[derive(Clone, Debug)]
pub struct ModelBench {
    pub model: ModelInfo,
    pub options: ModelBenchOptions,
    /// Positions the KV cache holds, and its element type.
    pub context: usize,
    pub kv_type: crate::ops::KvType,
    /// Allocated GPU memory (the same at every depth: the cache is allocated for the context).
    pub memory: MemoryUse,
    pub decode_weight_bytes: u64,
    pub copy: Ceiling,
    pub tuned: bool,
    pub tests: Vec<TestResult>,
}

/// K and V bytes of one position in layer `i` (the cache stores K and V per head row).
fn kv_bytes_per_position(c: &LlamaConfig, model: &Llama) -> u64 {
    KvCache::bytes_for(model.options().kv_type, 1, c.kv_heads, c.head_dim)
}

/// K and V bytes held when the sequence has `len` positions: a ring layer holds at most its rows.
pub fn kv_used_bytes(model: &Llama, len: usize) -> u64 {
    let c = model.config();
    let per = kv_bytes_per_position(c, model);
    (0..c.layers).map(|i| len.min(cache_rows(c, model.options(), i)) as u64 * per).sum()
}

/// K and V bytes one token's attention reads at position `pos`: every earlier position and its
/// own, or a window's worth in a sliding-window layer.
pub fn kv_read_bytes(model: &Llama, pos: usize) -> u64 {
    let c = model.config();
    let per = kv_bytes_per_position(c, model);
    (0..c.layers).map(|i| (pos + 1).min(c.layer_window(i).unwrap_or(usize::MAX)) as u64 * per).sum()
}

/// Puts the sequence back at `depth` tokens of `prefix`: a rewind where the cache still holds
/// them, else a fresh prefill (sliding-window rings), untimed either way.
async fn restore(ctx: &Context, model: &mut Llama, prefix: &[u32], depth: usize) -> Result<(), Error> {
    match model.rewind(depth) {
        Ok(()) => Ok(()),
        Err(ModelError::CannotRewind { .. }) => {
            model.reset();
            if depth > 0 {
                model.forward(ctx, &prefix[..depth], Logits::Last).await?;
            }
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

fn random_ids(rng: &mut TestRng, vocab: usize, n: usize) -> Vec<u32> {
    (0..n).map(|_| (rng.next_u64() % vocab as u64) as u32).collect()
}

/// Runs every test of `options` at every depth on `model`. `progress` gets a line per step.
pub async fn run_model_bench(
    ctx: &Context,
    model: &mut Llama,
    info: ModelInfo,
    options: &ModelBenchOptions,
    tuned: bool,
    progress: &mut dyn FnMut(&str),
) -> Result<ModelBench, ModelBenchError> {
    options.check(model.context(), model.config().trained_context)?;
    progress("copy probe");
    let copy = copy_bandwidth(ctx, &Stopwatch::new(ctx, false), options.probe_bytes, options.probe_repeats.max(1)).await?;
    let vocab = model.config().vocab;
    let mut rng = TestRng::new(options.seed);
    let depths = options.sorted_depths();
    // One sequence for every depth: the next depth prefills only what the last one lacks.
    let prefix = random_ids(&mut rng, vocab, depths.last().copied().unwrap_or(0));
    let decode_weight_bytes = model.decode_weight_bytes();
    let mut tests = Vec::new();
    model.reset();
    let mut filled = 0;
    for &depth in &depths {
        restore(ctx, model, &prefix, filled).await?;
        if depth > filled {
            progress(&format!("prefilling depth {depth}"));
            model.forward(ctx, &prefix[filled..depth], Logits::Last).await?;
        }
        filled = depth;
        for &tokens in &options.prompt_tokens {
            let ids = random_ids(&mut rng, vocab, tokens);
            let mut seconds = Vec::with_capacity(options.repetitions);
            for rep in 0..options.repetitions + usize::from(options.warmup) {
                restore(ctx, model, &prefix, depth).await?;
                let start = Instant::now();
                model.forward(ctx, &ids, Logits::Last).await?;
                if rep > 0 || !options.warmup {
                    seconds.push(start.elapsed().as_secs_f64());
                }
            }
            let test = TestResult { kind: TestKind::Prompt, tokens, depth, seconds, kv_used_bytes: kv_used_bytes(model, depth + tokens), bytes_per_token: None };
            progress(&format!("{}: {:.2} tokens/s", test.name(), test.mean_stddev().0));
            tests.push(test);
        }
        for &tokens in &options.gen_tokens {
            let ids = random_ids(&mut rng, vocab, tokens);
            if options.warmup {
                restore(ctx, model, &prefix, depth).await?;
                model.forward(ctx, &ids[..1], Logits::Last).await?;
            }
            let mut seconds = Vec::with_capacity(options.repetitions);
            for _ in 0..options.repetitions {
                restore(ctx, model, &prefix, depth).await?;
                let start = Instant::now();
                for id in &ids {
                    model.forward(ctx, std::slice::from_ref(id), Logits::Last).await?;
                }
                seconds.push(start.elapsed().as_secs_f64());
            }
            let kv: u64 = (depth..depth + tokens).map(|pos| kv_read_bytes(model, pos)).sum();
            let bytes_per_token = Some(decode_weight_bytes + kv / tokens as u64);
            let test = TestResult { kind: TestKind::Generation, tokens, depth, seconds, kv_used_bytes: kv_used_bytes(model, depth + tokens), bytes_per_token };
            progress(&format!("{}: {:.2} tokens/s", test.name(), test.mean_stddev().0));
            tests.push(test);
        }
        restore(ctx, model, &prefix, depth).await?;
    }
    Ok(ModelBench {
        model: info,
        options: options.clone(),
        context: model.context(),
        kv_type: model.options().kv_type,
        memory: model.memory(),
        decode_weight_bytes,
        copy,
        tuned,
        tests,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(kind: TestKind, tokens: usize, depth: usize, seconds: &[f64]) -> TestResult {
        TestResult { kind, tokens, depth, seconds: seconds.to_vec(), kv_used_bytes: 1, bytes_per_token: None }
    }

    #[test]
    fn names_and_statistics_are_llama_bench_s() {
        let t = result(TestKind::Prompt, 512, 0, &[1.0, 2.0, 4.0]);
        assert_eq!(t.name(), "pp512");
        assert_eq!(result(TestKind::Generation, 128, 2048, &[1.0]).name(), "tg128 @ d2048");
        // 512, 256, 128 tokens/s: mean 298.67, sample standard deviation 195.48.
        let (mean, sd) = t.mean_stddev();
        assert!((mean - 896.0 / 3.0).abs() < 1e-9, "{mean}");
        let var = ((512.0 - mean).powi(2) + (256.0 - mean).powi(2) + (128.0 - mean).powi(2)) / 2.0;
        assert!((sd - f64::sqrt(var)).abs() < 1e-9, "{sd}");
        assert_eq!(result(TestKind::Generation, 4, 0, &[0.5]).mean_stddev(), (8.0, 0.0));
        assert_eq!(params_label(134_515_008), "135M");
        assert_eq!(params_label(6_738_415_616), "6.7B");
    }

    #[test]
    fn settings_are_checked() {
        let o = ModelBenchOptions { prompt_tokens: vec![64], gen_tokens: vec![16], depths: vec![512, 0, 512], ..Default::default() };
        assert_eq!(o.sorted_depths(), vec![0, 512]);
        assert_eq!(o.required_context(), 576);
        assert!(o.check(576, 8192).is_ok());
        assert!(matches!(o.check(575, 8192), Err(ModelBenchError::ContextTooSmall { depth: 512, tokens: 64, needed: 576, context: 575, trained: 8192 })));
        let bad = |f: fn(&mut ModelBenchOptions)| {
            let mut b = o.clone();
            f(&mut b);
            b.check(1 << 20, 1 << 20).unwrap_err()
        };
        assert!(matches!(bad(|b| b.repetitions = 0), ModelBenchError::NoRepetitions));
        assert!(matches!(bad(|b| b.prompt_tokens = vec![0]), ModelBenchError::ZeroTokens { what: "a prompt" }));
        assert!(matches!(bad(|b| b.gen_tokens = vec![4, 0]), ModelBenchError::ZeroTokens { what: "a generation" }));
        assert!(matches!(bad(|b| (b.prompt_tokens, b.gen_tokens) = (vec![], vec![])), ModelBenchError::NothingToMeasure));
        assert_eq!(ModelBenchOptions { depths: vec![], ..o }.sorted_depths(), vec![0]);
    }
}
