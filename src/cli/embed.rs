//! `qgpu embed`: sentence embeddings from a BERT model (a Hugging Face directory or a GGUF), one
//! JSON array of normalized values per text on stdout; `--stats` goes to stderr.

use anyhow::Result;
use clap::Args;
use qgpu::gpu::{Context, ContextOptions};
use qgpu::model::bert::{BertOptions, Embedder};
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args)]
pub struct EmbedArgs {
    /// A Hugging Face BERT directory or a GGUF file; without it, all-MiniLM-L6-v2 is fetched
    /// into the cache on first use.
    #[arg(long)]
    model: Option<PathBuf>,
    /// A text to embed (repeatable); embeddings are printed in the same order.
    #[arg(long = "text", required = true)]
    texts: Vec<String>,
    /// Print load time and speed to stderr.
    #[arg(long)]
    stats: bool,
}

pub fn embed(args: EmbedArgs, options: ContextOptions) -> Result<()> {
    let path = match args.model {
        Some(p) => p,
        None => qgpu::fetch::minilm()?,
    };
    let start = Instant::now();
    let model = super::ModelSource::open(&path)?;
    let ctx = pollster::block_on(Context::new(options))?;
    let mut embedder = pollster::block_on(Embedder::load(&ctx, model.source(), BertOptions::default()))?;
    let loaded = start.elapsed();
    let texts: Vec<&str> = args.texts.iter().map(String::as_str).collect();
    let start = Instant::now();
    let embeddings = pollster::block_on(embedder.embed(&ctx, &texts))?;
    let elapsed = start.elapsed();
    let mut out = std::io::stdout().lock();
    for e in &embeddings {
        serde_json::to_writer(&mut out, e)?;
        writeln!(out)?;
    }
    out.flush()?;
    if args.stats {
        let m = embedder.model.memory();
        eprintln!(
            "load: {:.2} s; {} texts in {:.1} ms ({:.1} sentences/s); GPU memory {:.1} MiB weights, {:.1} MiB activations",
            loaded.as_secs_f64(),
            texts.len(),
            elapsed.as_secs_f64() * 1e3,
            texts.len() as f64 / elapsed.as_secs_f64(),
            m.weights as f64 / (1 << 20) as f64,
            m.activations as f64 / (1 << 20) as f64,
        );
    }
    Ok(())
}
