//! `qgpu serve`: load a language model with one KV-cache slot per parallel sequence (or a BERT
//! encoder) and serve the OpenAI API over HTTP (src/serve).

use anyhow::Result;
use clap::Args;
use qgpu::gpu::{Context, ContextOptions};
use qgpu::model::bert::{BertOptions, Embedder};
use qgpu::model::llama::{Llama, LlamaOptions};
use qgpu::model::tokenizer::Tokenizer;
use qgpu::ops::KvType;
use qgpu::serve::log::LogFormat;
use qgpu::serve::{Model, ServeOptions};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args)]
pub struct ServeArgs {
    /// A GGUF model or a Hugging Face directory: a language model (chat and text completions)
    /// or a BERT encoder (embeddings); without it, the default language model.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Address to listen on: loopback unless you mean to expose the server.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port (0: any free one; the address is printed).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Sequences decoded together, each with its own KV cache of --context positions.
    #[arg(long, default_value_t = 4)]
    parallel: usize,
    /// Positions of each sequence's KV cache (prompt and answer), capped at the trained context.
    #[arg(long, default_value_t = LlamaOptions::default().context)]
    context: usize,
    /// How the KV cache stores each value: f32, f16, q8_0 or q4_0.
    #[arg(long, default_value_t = KvType::default())]
    kv_type: KvType,
    /// Require `Authorization: Bearer KEY` on every route but /health.
    #[arg(long, env = "QGPU_API_KEY")]
    api_key: Option<String>,
    /// Requests waiting for a slot at most; past it, 503 with Retry-After.
    #[arg(long, default_value_t = 64)]
    queue: usize,
    /// Prompt tokens prefilled between two decode steps while other sequences stream.
    #[arg(long, default_value_t = 32)]
    prefill_step: usize,
    /// Largest `max_tokens` a request may ask for (default: the context).
    #[arg(long)]
    max_tokens: Option<usize>,
    /// Largest request body, in bytes.
    #[arg(long, default_value_t = 4 << 20)]
    body_limit: usize,
    /// One line per request on stderr: text or json.
    #[arg(long, default_value = "text")]
    log_format: LogFormat,
    /// Seconds running streams may go on after SIGINT/SIGTERM before they are cancelled.
    #[arg(long, default_value_t = 10.0)]
    grace: f64,
}

pub fn serve(args: ServeArgs, options: ContextOptions) -> Result<()> {
    let path = match args.model {
        Some(p) => p,
        None => qgpu::fetch::default_model()?,
    };
    anyhow::ensure!(args.parallel >= 1, "--parallel must be at least 1");
    let ctx = pollster::block_on(Context::new(options))?;
    let file = super::ModelSource::open(&path)?;
    let model_id = path.file_stem().map_or_else(|| "model".to_owned(), |s| s.to_string_lossy().into_owned());
    let model = if file.architecture() == "bert" {
        let embedder = pollster::block_on(Embedder::load(&ctx, file.source(), BertOptions::default()))?;
        eprintln!("qgpu serve: {model_id}, an encoder: /v1/embeddings, GPU memory: weights {:.1} MiB", embedder.model.memory().weights as f64 / 1048576.0);
        Model::Encoder(embedder)
    } else {
        let tokenizer = Tokenizer::from_gguf(file.source().metadata())?;
        let load = LlamaOptions { context: args.context, kv_type: args.kv_type, slots: args.parallel, tune: qgpu::bench::tune::load_cache().map(std::sync::Arc::new), ..Default::default() };
        let model = pollster::block_on(Llama::load(&ctx, file.source(), load, &mut |_, _| {}))?;
        anyhow::ensure!(model.slots() == args.parallel, "--parallel {} is more than one pass holds ({} rows)", args.parallel, model.slots());
        let m = model.memory();
        eprintln!(
            "qgpu serve: {model_id}, {} slots of {} positions ({}), GPU memory: weights {:.1} MiB, KV cache {:.1} MiB",
            model.slots(),
            model.context(),
            args.kv_type,
            m.weights as f64 / 1048576.0,
            m.kv_cache as f64 / 1048576.0
        );
        Model::Decoder(model, tokenizer)
    };
    let serve = ServeOptions {
        host: args.host,
        port: args.port,
        api_key: args.api_key.filter(|k| !k.is_empty()),
        model_id,
        queue: args.queue,
        prefill_step: args.prefill_step,
        max_tokens: args.max_tokens,
        body_bytes: args.body_limit,
        log: args.log_format,
        grace: Duration::from_secs_f64(args.grace.max(0.0)),
    };
    qgpu::serve::serve(std::sync::Arc::new(ctx), model, serve, |addr| eprintln!("qgpu serve: listening on http://{addr}"))?;
    Ok(())
}
