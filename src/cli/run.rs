//! `qgpu run`: stream an answer from a GGUF model. Only the answer goes to stdout; progress,
//! logs and `--stats` go to stderr.

use anyhow::Result;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use qgpu::gpu::{Context, ContextOptions};
use qgpu::model::generate::{GenerateOptions, Generator};
use qgpu::model::llama::{Llama, LlamaOptions};
use qgpu::model::sampler::SamplerConfig;
use qgpu::model::tokenizer::{SpecialText, Tokenizer};
use qgpu::ops::KvType;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args)]
pub struct RunArgs {
    /// A GGUF model or a Hugging Face LLaMA directory; without it, the default model is fetched
    /// into the cache on first use.
    #[arg(long)]
    model: Option<PathBuf>,
    /// The prompt.
    #[arg(long)]
    prompt: String,
    /// Wrap the prompt in the model's chat template as a user message.
    #[arg(long)]
    chat: bool,
    /// Turn control-token text in the prompt (`<|im_end|>`) into control tokens; without it
    /// the prompt is plain text and cannot forge chat roles.
    #[arg(long)]
    parse_special: bool,
    /// New tokens at most.
    #[arg(long, default_value_t = 128)]
    max_tokens: usize,
    // Sampling defaults come from `SamplerConfig::default()` (llama.cpp's), so the CLI, the
    // library and the browser API cannot drift apart.
    /// Sampling temperature; 0 is greedy (plain argmax, as llama.cpp's and transformers').
    #[arg(long, default_value_t = SamplerConfig::default().temperature)]
    temperature: f32,
    /// Keep the k most likely tokens (0: all).
    #[arg(long, default_value_t = SamplerConfig::default().top_k)]
    top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches p (1.0: off).
    #[arg(long, default_value_t = SamplerConfig::default().top_p)]
    top_p: f32,
    /// Drop tokens less likely than p times the most likely one (0.0: off).
    #[arg(long, default_value_t = SamplerConfig::default().min_p)]
    min_p: f32,
    /// Penalise tokens seen in the last --repeat-last-n (1.0: off).
    #[arg(long, default_value_t = SamplerConfig::default().repetition_penalty)]
    repeat_penalty: f32,
    /// How many recent tokens the repeat penalty looks at.
    #[arg(long, default_value_t = SamplerConfig::default().repetition_window)]
    repeat_last_n: usize,
    /// Random seed: fixed by default (unlike llama.cpp's random one), so the same seed, prompt
    /// and model give the same answer.
    #[arg(long, default_value_t = SamplerConfig::default().seed)]
    seed: u64,
    /// Stop before this string (repeatable).
    #[arg(long)]
    stop: Vec<String>,
    /// Positions the KV cache holds (capped at the trained context).
    #[arg(long, default_value_t = LlamaOptions::default().context)]
    context: usize,
    /// How the KV cache stores each value: f32, f16, q8_0 or q4_0.
    #[arg(long, default_value_t = KvType::default())]
    kv_type: KvType,
    /// Print load time, prefill and decode speed, GPU memory and dispatches per token to stderr.
    #[arg(long)]
    stats: bool,
    /// Keep Q, K, V and gate, up as separate matrices (one dispatch each) instead of stacking
    /// those that share a format at load.
    #[arg(long)]
    no_fuse: bool,
}

pub fn run(args: RunArgs, options: ContextOptions) -> Result<()> {
    let path = match args.model {
        Some(p) => p,
        None => qgpu::fetch::default_model()?,
    };
    let load_start = Instant::now();
    let ctx = pollster::block_on(Context::new(options))?;
    let file = super::ModelSource::open(&path)?;
    let tokenizer = Tokenizer::from_gguf(file.source().metadata())?;
    let bar = ProgressBar::new(0).with_style(ProgressStyle::with_template("loading {msg} {bar:30} {pos}/{len} tensors")?);
    bar.set_message(path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
    let model = pollster::block_on(Llama::load(&ctx, file.source(), LlamaOptions { context: args.context, kv_type: args.kv_type, fuse_projections: !args.no_fuse, tune: qgpu::bench::tune::load_cache().map(std::sync::Arc::new), ..Default::default() }, &mut |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    }))?;
    bar.finish_and_clear();
    let load_seconds = load_start.elapsed().as_secs_f64();

    let mut generator = Generator::new(model, tokenizer);
    let sampler = SamplerConfig {
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        min_p: args.min_p,
        repetition_penalty: args.repeat_penalty,
        repetition_window: args.repeat_last_n,
        seed: args.seed,
    };
    let special = if args.parse_special { SpecialText::Parse } else { SpecialText::Plain };
    let options = GenerateOptions { max_tokens: args.max_tokens, chat: args.chat, sampler, stop: args.stop, special, reuse_prefix: false };
    let mut stdout = std::io::stdout().lock();
    let (_, stats) = pollster::block_on(generator.generate(&ctx, &args.prompt, &options, &mut |piece| {
        // A closed pipe (`| head`) ends generation quietly instead of panicking.
        stdout.write_all(piece.as_bytes()).and_then(|_| stdout.flush()).is_ok()
    }))?;
    let _ = writeln!(stdout);

    if args.stats {
        let info = ctx.adapter_info();
        let m = stats.memory;
        eprintln!("adapter:  {} ({:?})", info.name, info.backend);
        eprintln!("load:     {load_seconds:.2} s");
        eprintln!("prefill:  {} tokens in {:.2} s = {:.1} tokens/s", stats.prompt_tokens, stats.prefill_seconds, stats.prefill_tokens_per_second());
        eprintln!(
            "decode:   {} tokens in {:.2} s = {:.2} tokens/s ({} generated, stop: {:?})",
            stats.decode_steps,
            stats.decode_seconds,
            stats.decode_tokens_per_second(),
            stats.generated_tokens,
            stats.stop
        );
        eprintln!(
            "GPU memory: weights {:.1} MiB, KV cache {:.1} MiB ({} positions, {}), activations {:.1} MiB",
            m.weights as f64 / 1048576.0,
            m.kv_cache as f64 / 1048576.0,
            generator.model.context(),
            args.kv_type,
            m.activations as f64 / 1048576.0
        );
        if let Some(n) = generator.model.dispatches_per_token() {
            eprintln!("dispatches: {n} per decoded token");
        }
    }
    Ok(())
}
