//! `qgpu quantize`: a model (GGUF, or f32/f16/bf16 safetensors) → a quantized GGUF, with a
//! progress bar and a size table by format.

use anyhow::{bail, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use qgpu::convert::{quantize_model, write_bnb4, ConvertOptions, Progress, QuantPlan, Report};
use qgpu::quant::bnb4::Bnb4Kind;
use qgpu::quant::Format;
use qgpu::gpu::ContextOptions;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct QuantizeArgs {
    /// The model to quantize: a GGUF file, or a Hugging Face directory (config.json, safetensors
    /// in f32/f16/bf16, single or sharded, tokenizer.json).
    #[arg(long)]
    model: PathBuf,
    /// The GGUF file to write (via a temporary file renamed at the end); with `--format NF4` or
    /// `FP4`, the bitsandbytes directory to create.
    #[arg(long)]
    out: PathBuf,
    /// A llama.cpp file-type preset, with its per-tensor rules (Q2_K, Q3_K_S, Q3_K_M, Q3_K_L,
    /// Q4_K_S, Q4_K_M, Q5_K_S, Q5_K_M, Q6_K, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_XS, IQ4_NL), or a
    /// format for every weight matrix that is not a preset name (Q4_K, Q5_K, Q3_K, MXFP4, F16, BF16, F32).
    /// For one type everywhere even where a preset has that name: --mix '*=Q4_0'.
    /// NF4 or FP4 write a bitsandbytes 4-bit Hugging Face directory (from one) that transformers
    /// and qgpu both load.
    #[arg(long, default_value = "Q4_K")]
    format: String,
    /// Per-tensor exceptions, PATTERN=FORMAT comma separated; the first match wins. PATTERN is a
    /// GGUF name with `*` wildcards, `.weight` optional, or `edges` (token_embd and output).
    /// Example: --mix edges=Q8_0,blk.*.ffn_down=Q6_K
    #[arg(long, default_value = "")]
    mix: String,
    /// Calibration text: run the model over it, record E[x²] of every linear layer's inputs,
    /// and choose Q4_0/Q4_1/IQ4_NL scales that minimise the importance-weighted error.
    #[arg(long)]
    calibrate: Option<PathBuf>,
    /// Calibration tokens at most (the text's first tokens).
    #[arg(long, default_value_t = 4096)]
    calibrate_tokens: usize,
    /// Quantization threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

/// Test hook for the crash-safety test: abort the process (no cleanup at all, as a crash or a
/// kill would) after this many tensors.
const ABORT_AFTER_ENV: &str = "QGPU_QUANTIZE_ABORT_AFTER";

pub fn quantize(args: QuantizeArgs, gpu: ContextOptions) -> Result<()> {
    if let Some(kind) = bnb_kind(&args.format) {
        return quantize_bnb(&args, kind);
    }
    // Before any work (calibration included): a directory or device as --out is a mistake.
    qgpu::convert::check_out(&args.out)?;
    let model = super::ModelSource::open(&args.model)?;
    let source = model.source();
    if same_file(&args.model, &args.out) {
        bail!("--out {} is the input model; choose another path", args.out.display());
    }
    let mut plan = QuantPlan::parse(&args.format, &args.mix)?;
    let importance = match &args.calibrate {
        Some(text) => {
            plan.calibrated = true;
            // Check the plan before spending minutes on calibration.
            plan.decide(source)?;
            Some(super::calibrate::collect(&model, text, args.calibrate_tokens, gpu)?)
        }
        None => None,
    };
    let note = args.calibrate.as_ref().map(|p| format!("calibration text {}", p.file_name().unwrap_or_default().to_string_lossy()));
    let options = ConvertOptions { importance: importance.as_ref(), threads: args.threads, note };
    let abort_after: Option<usize> = std::env::var(ABORT_AFTER_ENV).ok().and_then(|v| v.parse().ok());

    let bar = ProgressBar::new(0).with_style(ProgressStyle::with_template("quantizing {bar:30} {percent:>3}% {pos}/{len} tensors {msg}")?);
    let start = std::time::Instant::now();
    let mut progress = |p: &Progress<'_>| {
        bar.set_length(p.total as u64);
        bar.set_position(p.done as u64);
        bar.set_message(p.tensor.to_owned());
        if abort_after.is_some_and(|n| p.done >= n) {
            std::process::abort();
        }
        ControlFlow::Continue(())
    };
    let report = quantize_model(source, &plan, &options, &args.out, &mut progress)?;
    bar.finish_and_clear();
    print_report(&report, &args.out, start.elapsed().as_secs_f64());
    Ok(())
}

/// `--format NF4` / `FP4`: bitsandbytes' codebooks, written as a bitsandbytes directory.
fn bnb_kind(format: &str) -> Option<Bnb4Kind> {
    match format.trim().parse::<Format>() {
        Ok(Format::NF4) => Some(Bnb4Kind::Nf4),
        Ok(Format::FP4) => Some(Bnb4Kind::Fp4),
        _ => None,
    }
}

/// A Hugging Face directory → a bitsandbytes 4-bit directory at `--out`.
fn quantize_bnb(args: &QuantizeArgs, kind: Bnb4Kind) -> Result<()> {
    if !args.mix.trim().is_empty() || args.calibrate.is_some() {
        bail!("--format {} writes every linear layer in {}: --mix and --calibrate do not apply", args.format, args.format);
    }
    if !args.model.is_dir() {
        bail!("--format {} needs a Hugging Face directory with float weights as --model; {} is not a directory", args.format, args.model.display());
    }
    if args.out.exists() {
        bail!("--out {} exists; --format {} writes a new directory there", args.out.display(), args.format);
    }
    let start = std::time::Instant::now();
    let report = write_bnb4(&args.model, kind, &args.out)?;
    let (mut quantized, mut values, mut bytes) = (0usize, 0u64, 0u64);
    for t in report.tensors.iter().filter(|t| t.quantized) {
        quantized += 1;
        values += t.values;
        bytes += t.bytes;
    }
    let all: u64 = report.tensors.iter().map(|t| t.values).sum();
    eprintln!(
        "{}: {quantized} linear layers, {values} values in {:.2} MiB ({:.3} bits/w); {} other tensors kept as stored",
        args.format.trim().to_uppercase(),
        mib(bytes),
        bytes as f64 * 8.0 / values.max(1) as f64,
        report.tensors.len() - quantized
    );
    for m in &report.skipped_modules {
        eprintln!("kept in float (rows not whole 64-value blocks): {m}");
    }
    eprintln!("wrote {:.2} MiB ({:.3} bits per value over all {all}) in {:.1} s", mib(report.file_bytes), report.file_bytes as f64 * 8.0 / all.max(1) as f64, start.elapsed().as_secs_f64());
    println!("{}", args.out.display());
    Ok(())
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// The size table by format, then fallbacks; to stderr, the output path to stdout.
fn print_report(report: &Report, out: &Path, seconds: f64) {
    eprintln!("{:<8} {:>7} {:>13} {:>10} {:>8}", "format", "tensors", "values", "MiB", "bits/w");
    for (format, tensors, values, bytes) in report.by_format() {
        eprintln!("{:<8} {:>7} {:>13} {:>10.2} {:>8.3}", format.name(), tensors, values, mib(bytes), bytes as f64 * 8.0 / values as f64);
    }
    let (f32_bytes, f16_bytes) = report.float_bytes();
    let tensor_bytes: u64 = report.tensors.iter().map(|t| t.bytes).sum();
    eprintln!(
        "total    {:>7} {:>13} {:>10.2} {:>8.3}   ({:.1}% of f32 {:.2} MiB, {:.1}% of f16 {:.2} MiB)",
        report.tensors.len(),
        report.tensors.iter().map(|t| t.n_elements()).sum::<u64>(),
        mib(tensor_bytes),
        tensor_bytes as f64 * 8.0 / (f32_bytes / 4).max(1) as f64,
        100.0 * tensor_bytes as f64 / f32_bytes.max(1) as f64,
        mib(f32_bytes),
        100.0 * tensor_bytes as f64 / f16_bytes.max(1) as f64,
        mib(f16_bytes),
    );
    // Fallbacks grouped by (requested, written, row length), with an example name.
    let mut fallbacks: Vec<(String, usize, &str)> = Vec::new();
    for t in report.tensors.iter().filter(|t| t.fell_back()) {
        let key = format!("{} → {} (row length {})", t.requested.map_or("-", |f| f.name()), t.written, t.dims[0]);
        match fallbacks.iter_mut().find(|f| f.0 == key) {
            Some(f) => f.1 += 1,
            None => fallbacks.push((key, 1, &t.name)),
        }
    }
    for (key, count, example) in fallbacks {
        eprintln!("fallback: {key}: {count} tensors, e.g. {example}");
    }
    let calibrated = report.tensors.iter().filter(|t| t.calibrated).count();
    if calibrated > 0 {
        eprintln!("importance-weighted: {calibrated} tensors");
    }
    eprintln!("wrote {:.2} MiB in {seconds:.1} s", mib(report.file_bytes));
    println!("{}", out.display());
}
