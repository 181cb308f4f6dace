//! Calibration for `qgpu quantize --calibrate`: run the source model over a text and record the
//! mean square of every linear layer's input channels.

use anyhow::{bail, Context as _, Result};
use indicatif::{ProgressBar, ProgressStyle};
use qgpu::convert::Importance;
use qgpu::gpu::{Context, ContextOptions};
use qgpu::loader::GgufFile;
use qgpu::model::llama::{Llama, LlamaOptions};
use qgpu::model::observe::SquaredInputMeans;
use qgpu::model::tokenizer::Tokenizer;
use std::path::Path;

/// Tokens per forward window; the KV cache restarts at each window.
const WINDOW: usize = 512;

/// E[x²] per input channel of every linear layer of `file`'s model over the first `max_tokens`
/// tokens of the text at `text`.
pub fn collect(file: &GgufFile, text: &Path, max_tokens: usize, gpu: ContextOptions) -> Result<Importance> {
    let arch = file.metadata().get_str("general.architecture").unwrap_or("?");
    if arch != "llama" {
        bail!("--calibrate runs the model over the text; qgpu can run `llama` models, this one is `{arch}`");
    }
    let text = std::fs::read_to_string(text).with_context(|| format!("reading {}", text.display()))?;
    let tokenizer = Tokenizer::from_gguf(file.metadata())?;
    let mut tokens = tokenizer.encode_raw(&text)?;
    tokens.truncate(max_tokens);
    if tokens.is_empty() {
        bail!("the calibration text gives no tokens");
    }
    let ctx = pollster::block_on(Context::new(gpu))?;
    let mut model = pollster::block_on(Llama::load(&ctx, file, LlamaOptions { context: WINDOW, chunk: 128 }, &mut |_, _| {}))?;
    let bar = ProgressBar::new(tokens.len() as u64)
        .with_style(ProgressStyle::with_template("calibrating {bar:30} {pos}/{len} tokens")?);
    let mut observer = SquaredInputMeans::new();
    for window in tokens.chunks(WINDOW) {
        model.reset();
        pollster::block_on(model.forward_observed(&ctx, window, &mut observer))?;
        bar.inc(window.len() as u64);
    }
    bar.finish_and_clear();
    Ok(Importance::new(observer.means(), tokens.len()))
}
