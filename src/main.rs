//! The `qgpu` command line: adapter information and kernel benchmarks.

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};
use qgpu::bench::{self, Shape};
use qgpu::gpu::{BackendChoice, Context, ContextOptions};
use qgpu::ops::{LinearKernel, MatvecKernel};
use qgpu::quant::Format;

#[derive(Parser)]
#[command(name = "qgpu", version, about = "Quantized (INT8/INT4) matrix kernels and models on any GPU")]
struct Cli {
    /// Graphics backend: auto, vulkan, metal, dx12, gl (default: $QGPU_BACKEND, else auto).
    #[arg(long, global = true)]
    backend: Option<String>,
    /// Prefer the low-power adapter (integrated GPU) over the high-performance one.
    #[arg(long, global = true)]
    low_power: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List every adapter: backend, driver, features, limits and the kernels qgpu picks on it.
    Info,
    /// Answer a prompt with a GGUF language model on the GPU, streaming the answer to stdout.
    Run(cli::run::RunArgs),
    /// Download a model into the cache and print its path: the default SmolLM2-135M-Instruct
    /// Q4_1, or `minilm` (all-MiniLM-L6-v2, for `embed`).
    Fetch {
        /// `smollm2` (default) or `minilm`.
        model: Option<String>,
    },
    /// Sentence embeddings from a BERT model: one JSON array (L2-normalized) per text on stdout.
    Embed(cli::embed::EmbedArgs),
    /// Measure what quantization cost: perplexity, KL divergence and top-1 agreement against a
    /// reference model, with each model's size.
    Eval(cli::eval::EvalArgs),
    /// Quantize a model's weight matrices into a new GGUF (Q8_0, Q4_0, Q4_1, Q4_K, Q6_K, IQ4_NL).
    Quantize(cli::quantize::QuantizeArgs),
    /// Time matvec/matmul for each weight format against the adapter's copy bandwidth.
    Bench {
        /// Weight formats, comma separated.
        #[arg(long, value_delimiter = ',', default_value = "F32,F16,Q8_0,Q4_0,Q4_1,Q4_K,Q6_K,IQ4_NL")]
        formats: Vec<String>,
        /// Weight shapes NxK (outputs x inputs), comma separated.
        #[arg(long, value_delimiter = ',', default_value = "4096x4096,576x1536")]
        shapes: Vec<String>,
        /// Activation rows per call, comma separated (1-8 use matvec, more use matmul).
        #[arg(long, value_delimiter = ',', default_value = "1")]
        rows: Vec<usize>,
        /// Force a kernel: lane, workgroup, subgroup (matvec variants) or matmul.
        #[arg(long)]
        kernel: Option<String>,
        /// Timed calls per case (after two warm-up calls).
        #[arg(long, default_value_t = 20)]
        repeats: usize,
        /// Fewer repeats and only the smallest shape, for a smoke test.
        #[arg(long)]
        quick: bool,
    },
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
    let options = ContextOptions { backend, power, ..Default::default() };
    match cli.command {
        Command::Info => cli::info::info(backend),
        Command::Fetch { model } => {
            let path = match model.as_deref() {
                None | Some("smollm2") => qgpu::fetch::default_model()?,
                Some("minilm") => qgpu::fetch::minilm()?,
                Some(other) => anyhow::bail!("unknown model `{other}` (smollm2, minilm)"),
            };
            println!("{}", path.display());
            Ok(())
        }
        Command::Embed(args) => cli::embed::embed(args, options),
        Command::Run(args) => cli::run::run(args, options),
        Command::Eval(args) => cli::eval::eval(args, options),
        Command::Quantize(args) => cli::quantize::quantize(args, options),
        Command::Bench { formats, shapes, rows, kernel, repeats, quick } => {
            let formats = formats.iter().map(|f| f.parse::<Format>()).collect::<Result<Vec<_>, _>>()?;
            let mut shapes = shapes.iter().map(|s| s.parse::<Shape>()).collect::<Result<Vec<_>, _>>().map_err(anyhow::Error::msg)?;
            let repeats = if quick { 3 } else { repeats };
            if quick {
                shapes.sort_by_key(|s| s.n * s.k);
                shapes.truncate(1);
            }
            let kernel = kernel.as_deref().map(parse_kernel).transpose()?;
            let ctx = pollster::block_on(Context::new(options))?;
            bench::run_suite(&ctx, &formats, &shapes, &rows, kernel, repeats)?;
            Ok(())
        }
    }
}

fn parse_kernel(name: &str) -> Result<LinearKernel> {
    Ok(match name {
        "matmul" => LinearKernel::Matmul,
        _ => LinearKernel::Matvec(
            MatvecKernel::ALL
                .into_iter()
                .find(|k| k.name() == name)
                .with_context(|| format!("unknown kernel `{name}` (lane, workgroup, subgroup, matmul)"))?,
        ),
    })
}

