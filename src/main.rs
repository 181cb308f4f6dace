//! The `qgpu` command line: adapter information and kernel benchmarks.

use anyhow::Result;
use clap::{Parser, Subcommand};
use qgpu::gpu::{BackendChoice, ContextOptions, ShaderChecks};

#[derive(Parser)]
#[command(name = "qgpu", version, about = "Quantized (INT8/INT4) matrix kernels and models on any GPU")]
struct Cli {
    /// Graphics backend: auto, vulkan, metal, dx12, gl (default: $QGPU_BACKEND, else auto).
    #[arg(long, global = true)]
    backend: Option<String>,
    /// Prefer the low-power adapter (integrated GPU) over the high-performance one.
    #[arg(long, global = true)]
    low_power: bool,
    /// Leave these device features off even where the adapter has them: subgroups, shader-f16
    /// (comma-separated). Natively, the kernels a browser without them gets, to compare the two
    /// on one adapter.
    #[arg(long, global = true, value_delimiter = ',')]
    without: Vec<String>,
    /// Keep wgpu's runtime bounds checks in every shader, also in the linear-layer kernels a
    /// release build otherwise runs without them (their bounds are checked on the host).
    #[arg(long, global = true)]
    checked_shaders: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List every adapter: backend, driver, features, limits and the kernels qgpu picks on it.
    Info,
    /// Describe a GGUF file or Hugging Face directory: architecture, parameters, tokenizer,
    /// tensor types and bits per weight, GPU memory at a context, and whether qgpu can run it
    /// on this adapter (no weights are uploaded).
    Inspect(cli::inspect::InspectArgs),
    /// Answer a prompt with a GGUF language model on the GPU, streaming the answer to stdout.
    Run(cli::run::RunArgs),
    /// Serve a language model over the OpenAI HTTP API (chat and text completions, streamed or
    /// not), decoding every client's sequence together.
    Serve(cli::serve::ServeArgs),
    /// Download a model into the cache and print its path: the default SmolLM2-135M-Instruct
    /// Q4_1, `minilm` (all-MiniLM-L6-v2, for `embed`) or `gemma3` (Gemma 3 270M Q4_K_M).
    Fetch {
        /// `smollm2` (default), `minilm` or `gemma3`.
        model: Option<String>,
    },
    /// Sentence embeddings from a BERT model: one JSON array (L2-normalized) per text on stdout.
    Embed(cli::embed::EmbedArgs),
    /// Measure what quantization cost: perplexity, KL divergence and top-1 agreement against a
    /// reference model, with each model's size.
    Eval(cli::eval::EvalArgs),
    /// Quantize a model's weight matrices into a new GGUF (Q8_0, Q4_0, Q4_1, Q4_K, Q6_K, IQ4_NL).
    Quantize(cli::quantize::QuantizeArgs),
    /// Time matvec/matmul for each weight format and shape against the adapter's copy bandwidth
    /// and FMA throughput; table, JSON, SVG, or a comparison of two JSON reports.
    Bench(Box<cli::bench::BenchArgs>),
    /// Measure every matvec variant on this adapter and cache the fastest per shape bucket.
    Tune(cli::bench::TuneArgs),
}

mod cli;

fn main() -> Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    let backend = match &cli.backend {
        Some(name) => name.parse::<BackendChoice>()?,
        None => BackendChoice::from_env()?,
    };
    let power = if cli.low_power { wgpu::PowerPreference::LowPower } else { wgpu::PowerPreference::HighPerformance };
    let mut without = wgpu::Features::empty();
    for name in &cli.without {
        without |= match name.as_str() {
            "subgroups" => wgpu::Features::SUBGROUP,
            "shader-f16" => wgpu::Features::SHADER_F16,
            other => anyhow::bail!("--without {other}: qgpu can leave off `subgroups` and `shader-f16`"),
        };
    }
    let shader_checks = if cli.checked_shaders { ShaderChecks::Checked } else { ShaderChecks::ByBuild };
    let options = ContextOptions { backend, power, without, shader_checks, ..Default::default() };
    match cli.command {
        Command::Info => cli::info::info(backend),
        Command::Fetch { model } => {
            let path = match model.as_deref() {
                None | Some("smollm2") => qgpu::fetch::default_model()?,
                Some("minilm") => qgpu::fetch::minilm()?,
                Some("gemma3") => qgpu::fetch::gemma3()?,
                Some(other) => anyhow::bail!("unknown model `{other}` (smollm2, minilm, gemma3)"),
            };
            println!("{}", path.display());
            Ok(())
        }
        Command::Embed(args) => cli::embed::embed(args, options),
        Command::Run(args) => cli::run::run(args, options),
        Command::Serve(args) => cli::serve::serve(args, options),
        Command::Inspect(args) => cli::inspect::inspect(args, options),
        Command::Eval(args) => cli::eval::eval(args, options),
        Command::Quantize(args) => cli::quantize::quantize(args, options),
        Command::Bench(args) => cli::bench::bench(*args, options),
        Command::Tune(args) => cli::bench::tune(args, options),
    }
}
