//! Calibration for `qgpu quantize --calibrate`: run the source model over a text and record the
//! mean square of every linear layer's input channels.

use super::ModelSource;
use anyhow::{bail, Context as _, Result};
use indicatif::{ProgressBar, ProgressStyle};
use qgpu::convert::Importance;
use qgpu::gpu::{Context, ContextOptions};
use qgpu::loader::TensorSource;
use qgpu::model::bert::{BertOptions, Embedder};
use qgpu::model::llama::{ArchSpec, Llama, LlamaOptions};
use qgpu::model::observe::SquaredInputMeans;
use qgpu::model::tokenizer::Tokenizer;
use std::path::Path;

/// Tokens per forward window; the KV cache restarts at each window.
const WINDOW: usize = 512;

/// Sentences per forward pass of an embedding model.
const SENTENCE_BATCH: usize = 16;

/// E[x²] per input channel of every linear layer of the model over the first `max_tokens`
/// tokens of the text at `text` (for an embedding model: its non-empty lines, as sentences).
pub fn collect(model: &ModelSource, text: &Path, max_tokens: usize, gpu: ContextOptions) -> Result<Importance> {
    let text = std::fs::read_to_string(text).with_context(|| format!("reading {}", text.display()))?;
    match model.architecture() {
        a if ArchSpec::find(a).is_some() => collect_llama(model.source(), &text, max_tokens, gpu),
        "bert" => collect_bert(model, &text, max_tokens, gpu),
        arch => bail!("--calibrate runs the model over the text; qgpu runs `llama` and `bert` models, this one is `{arch}`"),
    }
}

fn collect_llama(source: &dyn TensorSource, text: &str, max_tokens: usize, gpu: ContextOptions) -> Result<Importance> {
    let tokenizer = Tokenizer::from_gguf(source.metadata())?;
    let mut tokens = tokenizer.encode_raw(text)?;
    tokens.truncate(max_tokens);
    if tokens.is_empty() {
        bail!("the calibration text gives no tokens");
    }
    let ctx = pollster::block_on(Context::new(gpu))?;
    let mut model = pollster::block_on(Llama::load(&ctx, source, LlamaOptions { context: WINDOW, chunk: 128, ..Default::default() }, &mut |_, _| {}))?;
    let bar = ProgressBar::new(tokens.len() as u64).with_style(ProgressStyle::with_template("calibrating {bar:30} {pos}/{len} tokens")?);
    let mut observer = SquaredInputMeans::new();
    // Models trained on fewer positions than a window get shorter windows.
    for window in tokens.chunks(model.context()) {
        model.reset();
        pollster::block_on(model.forward_observed(&ctx, window, &mut observer))?;
        bar.inc(window.len() as u64);
    }
    bar.finish_and_clear();
    Ok(Importance::new(observer.means(), tokens.len()))
}

fn collect_bert(model: &ModelSource, text: &str, max_tokens: usize, gpu: ContextOptions) -> Result<Importance> {
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    if lines.is_empty() {
        bail!("the calibration text has no non-empty lines (an embedding model is calibrated on sentences, one per line)");
    }
    let ctx = pollster::block_on(Context::new(gpu))?;
    let mut embedder = pollster::block_on(Embedder::load(&ctx, model.source(), BertOptions::default()))?;
    let mut sentences = embedder.tokenize(&lines)?;
    // Keep whole sentences up to the token budget.
    let mut budget = max_tokens;
    sentences.retain(|s| {
        let keep = s.ids.len() <= budget;
        budget = budget.saturating_sub(s.ids.len());
        keep
    });
    if sentences.is_empty() {
        bail!("no calibration sentence fits in {max_tokens} tokens");
    }
    let tokens: usize = sentences.iter().map(|s| s.ids.len()).sum();
    let bar = ProgressBar::new(sentences.len() as u64).with_style(ProgressStyle::with_template("calibrating {bar:30} {pos}/{len} sentences")?);
    let mut observer = SquaredInputMeans::new();
    for batch in sentences.chunks(SENTENCE_BATCH) {
        pollster::block_on(embedder.model.forward_observed(&ctx, batch, &mut observer))?;
        bar.inc(batch.len() as u64);
    }
    bar.finish_and_clear();
    Ok(Importance::new(observer.means(), tokens))
}
