//! Calibration for `qgpu quantize --calibrate`: run the source model over a text and record the
//! mean square of every linear layer's input channels.

use super::ModelSource;
use anyhow::{bail, Context as _, Result};
use indicatif::{ProgressBar, ProgressStyle};
use qgpu::convert::{no_progress, quantize_model, ConvertOptions, Importance, QuantPlan};
use qgpu::gpu::{Context, ContextOptions};
use qgpu::loader::GgufFile;
use qgpu::model::bert::{BertOptions, Embedder};
use qgpu::model::llama::{Llama, LlamaOptions};
use qgpu::model::observe::SquaredInputMeans;
use qgpu::model::tokenizer::Tokenizer;
use qgpu::quant::Format;
use std::path::{Path, PathBuf};

/// Tokens per forward window; the KV cache restarts at each window.
const WINDOW: usize = 512;

/// Sentences per forward pass of an embedding model.
const SENTENCE_BATCH: usize = 16;

/// E[x²] per input channel of every linear layer of the model over the first `max_tokens`
/// tokens of the text at `text` (for an embedding model: its non-empty lines, as sentences).
/// A Hugging Face LLaMA directory is first written as an F16 GGUF in `scratch` (the decoder
/// loads GGUF files), removed afterwards.
pub fn collect(model: &ModelSource, text: &Path, max_tokens: usize, gpu: ContextOptions, scratch: &Path) -> Result<Importance> {
    let text = std::fs::read_to_string(text).with_context(|| format!("reading {}", text.display()))?;
    match (model, model.architecture()) {
        (ModelSource::Gguf(file), "llama") => collect_llama(file, &text, max_tokens, gpu),
        (ModelSource::Hf(hf), "llama") => {
            let staged = Staged(scratch.join(format!(".qgpu-calibration-{}.gguf", std::process::id())));
            eprintln!("writing an F16 copy to run the model: {}", staged.0.display());
            quantize_model(hf, &QuantPlan::new(Format::F16), &ConvertOptions::default(), &staged.0, &mut no_progress)?;
            let file = GgufFile::open(&staged.0).with_context(|| format!("opening {}", staged.0.display()))?;
            collect_llama(&file, &text, max_tokens, gpu)
        }
        (_, "bert") => collect_bert(model, &text, max_tokens, gpu),
        (_, arch) => bail!("--calibrate runs the model over the text; qgpu runs `llama` and `bert` models, this one is `{arch}`"),
    }
}

/// A scratch file, removed when dropped.
struct Staged(PathBuf);

impl Drop for Staged {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn collect_llama(file: &GgufFile, text: &str, max_tokens: usize, gpu: ContextOptions) -> Result<Importance> {
    let tokenizer = Tokenizer::from_gguf(file.metadata())?;
    let mut tokens = tokenizer.encode_raw(text)?;
    tokens.truncate(max_tokens);
    if tokens.is_empty() {
        bail!("the calibration text gives no tokens");
    }
    let ctx = pollster::block_on(Context::new(gpu))?;
    let mut model = pollster::block_on(Llama::load(&ctx, file, LlamaOptions { context: WINDOW, chunk: 128, ..Default::default() }, &mut |_, _| {}))?;
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
