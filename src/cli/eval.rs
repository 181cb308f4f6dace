//! `qgpu eval`: what quantization cost. Scores each `--model` against a `--reference` (the
//! full-precision or original model) on a text, prints a table and optionally writes JSON.

use anyhow::{bail, Context as _, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use super::ModelSource;
use qgpu::eval::{compare_language_models, EmbeddingScore, LmScore, ModelSize};
use qgpu::model::bert::{BertOptions, Embedder};
use qgpu::gpu::{Context, ContextOptions};
use qgpu::model::llama::{ArchSpec, Llama, LlamaConfig, LlamaOptions};
use qgpu::ops::KvType;
use qgpu::model::tokenizer::Tokenizer;
use serde_json::json;
use std::path::{Path, PathBuf};

/// The built-in evaluation texts, used when `--text` is not given: running prose for language
/// models, and for embedding models the three fixture sentences plus twenty more, one per line.
const LM_TEXT: &str = include_str!("../../data/eval/lm-text.txt");
const SENTENCES: &str = include_str!("../../data/eval/sentences.txt");

#[derive(Args)]
pub struct EvalArgs {
    /// The model the others are measured against: a GGUF or a Hugging Face directory (LLaMA or
    /// BERT); default: the default language model.
    #[arg(long)]
    reference: Option<PathBuf>,
    /// A model to score (repeatable).
    #[arg(long = "model", required = true)]
    models: Vec<PathBuf>,
    /// The text to evaluate on (embedding models: one sentence per line); default: a built-in
    /// passage of about 600 tokens, or 23 built-in sentences.
    #[arg(long)]
    text: Option<PathBuf>,
    /// Tokens of the text to use (at most).
    #[arg(long, default_value_t = 512)]
    tokens: usize,
    /// Positions per window (at most the shortest context a model was trained for); each
    /// window starts from an empty KV cache.
    #[arg(long, default_value_t = 256)]
    window: usize,
    /// KV cache types of the scored models (language models), comma separated: f32, f16, q8_0,
    /// q4_0; each model is scored once per type. The reference always keeps an f32 cache, so
    /// `--reference M --model M --kv-type f16,q8_0,q4_0` prices the cache types alone.
    #[arg(long, value_delimiter = ',', default_value = "f32")]
    kv_type: Vec<KvType>,
    /// Score the language models with the default kernels, not the ones `qgpu tune` stored.
    /// By default they run what `qgpu run` runs, the tuned kernels included (the integer-dot
    /// one rounds activations to int8), so the table prices those too; the reference always
    /// runs the default, exact kernels.
    #[arg(long)]
    no_tune: bool,
    /// Also write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

pub fn eval(args: EvalArgs, options: ContextOptions) -> Result<()> {
    let reference = match &args.reference {
        Some(p) => p.clone(),
        None => qgpu::fetch::default_model()?,
    };
    let model = super::ModelSource::open(&reference)?;
    let ctx = pollster::block_on(Context::new(options))?;
    match model.architecture() {
        a if ArchSpec::find(a).is_some() => eval_language_models(&ctx, &reference, &model, &args),
        "bert" => eval_embeddings(&ctx, &reference, &model, &args),
        a => bail!("qgpu evaluates `llama` language models and `bert` embedding models; the reference is `{a}`"),
    }
}

fn eval_embeddings(ctx: &Context, reference_path: &Path, reference: &ModelSource, args: &EvalArgs) -> Result<()> {
    let text = match &args.text {
        Some(p) => std::fs::read_to_string(p).with_context(|| format!("cannot read `{}`", p.display()))?,
        None => SENTENCES.to_owned(),
    };
    let sentences: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    if sentences.is_empty() {
        bail!("the evaluation text has no sentences (one per line)");
    }
    // Embeddings and the seconds the embedding took (after load, which builds the pipelines).
    let embed = |model: &ModelSource| -> Result<(Vec<Vec<f32>>, f64)> {
        let mut embedder = pollster::block_on(Embedder::load(ctx, model.source(), BertOptions::default()))?;
        let start = std::time::Instant::now();
        let out = pollster::block_on(embedder.embed(ctx, &sentences))?;
        Ok((out, start.elapsed().as_secs_f64()))
    };
    let (want, ref_seconds) = embed(reference)?;
    let ref_size = ModelSize::of(reference.source());
    let mut rows = Vec::new();
    for path in &args.models {
        let model = super::ModelSource::open(path)?;
        let (got, seconds) = embed(&model).with_context(|| format!("cannot run `{}`", path.display()))?;
        let (have, expected) = (got.first().map_or(0, Vec::len), want.first().map_or(0, Vec::len));
        if have != expected {
            bail!("`{}` embeds into {have} dimensions, the reference into {expected}", path.display());
        }
        rows.push((path.clone(), ModelSize::of(model.source()), EmbeddingScore::new(&want, &got), seconds));
    }

    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    println!("{} sentences", sentences.len());
    println!("{:<40} {:>9} {:>6} {:>9} {:>11} {:>11}  types", "model", "size MiB", "bits", "embed s", "cos mean", "cos worst");
    println!("{:<40} {:>9.2} {:>6.2} {:>9.2} {:>11} {:>11}  {} (reference)", name(reference_path), mib(ref_size.bytes), ref_size.bits_per_weight(), ref_seconds, "-", "-", ref_size.mix());
    for (path, size, s, seconds) in &rows {
        println!("{:<40} {:>9.2} {:>6.2} {:>9.2} {:>11.6} {:>11.6}  {}", name(path), mib(size.bytes), size.bits_per_weight(), seconds, s.mean, s.worst, size.mix());
    }
    if let Some(path) = &args.json {
        let size_json = |p: &Path, size: &ModelSize| json!({ "path": p.display().to_string(), "size_bytes": size.bytes, "bits_per_weight": size.bits_per_weight(), "bytes_by_type": size.by_type });
        let mut reference_json = size_json(reference_path, &ref_size);
        reference_json["embed_seconds"] = json!(ref_seconds);
        let doc = json!({
            "qgpu_version": env!("CARGO_PKG_VERSION"),
            "kind": "embedding",
            "adapter": ctx.adapter_info().name,
            "sentences": sentences,
            "reference": reference_json,
            "models": rows.iter().map(|(p, size, s, seconds)| {
                let mut v = size_json(p, size);
                v["embed_seconds"] = json!(seconds);
                v["cosine_mean"] = json!(s.mean);
                v["cosine_worst"] = json!(s.worst);
                v["cosine_worst_sentence"] = json!(s.worst_index);
                v["cosines"] = json!(s.cosines);
                v
            }).collect::<Vec<_>>(),
        });
        std::fs::write(path, serde_json::to_string_pretty(&doc)? + "\n").with_context(|| format!("cannot write `{}`", path.display()))?;
    }
    Ok(())
}

fn eval_language_models(ctx: &Context, reference_path: &Path, reference_model: &ModelSource, args: &EvalArgs) -> Result<()> {
    let text = match &args.text {
        Some(p) => std::fs::read_to_string(p).with_context(|| format!("cannot read `{}`", p.display()))?,
        None => LM_TEXT.to_owned(),
    };
    let tokenizer = Tokenizer::from_gguf(reference_model.source().metadata())?;
    let mut tokens = tokenizer.encode(&text)?;
    tokens.truncate(args.tokens);
    if tokens.len() < 2 {
        bail!("the evaluation text gives {} tokens; at least 2 are needed", tokens.len());
    }
    let files: Vec<ModelSource> = args.models.iter().map(|p| ModelSource::open(p)).collect::<Result<_>>()?;
    // Windows no longer than any model was trained for (every window must fit every KV cache).
    let mut trained = usize::MAX;
    for (model, path) in std::iter::once((reference_model, reference_path)).chain(files.iter().zip(args.models.iter().map(PathBuf::as_path))) {
        let config = LlamaConfig::from_source(model.source()).with_context(|| format!("cannot load `{}`", path.display()))?;
        trained = trained.min(config.trained_context);
    }
    let window = args.window.min(trained).clamp(1, tokens.len());
    let options = LlamaOptions { context: window, chunk: window.min(128), ..Default::default() };
    let tune = if args.no_tune { None } else { qgpu::bench::tune::load_cache().map(std::sync::Arc::new) };
    if tune.is_some() {
        eprintln!("scoring with the kernels `qgpu tune` stored ({}); --no-tune for the defaults", qgpu::bench::tune::cache_path().display());
    }
    let load = |model: &ModelSource, kv_type: KvType, tune: Option<std::sync::Arc<qgpu::ops::tune::TuneTable>>| {
        pollster::block_on(Llama::load(ctx, model.source(), LlamaOptions { kv_type, tune, ..options.clone() }, &mut |_, _| {}))
    };
    let mut reference = load(reference_model, KvType::F32, None)?;
    // Every (model, KV type) pair is scored; `scored[i]` says which.
    let mut models = Vec::with_capacity(files.len() * args.kv_type.len());
    let mut scored = Vec::with_capacity(models.capacity());
    for (i, (file, path)) in files.iter().zip(&args.models).enumerate() {
        for &kv_type in &args.kv_type {
            let model = load(file, kv_type, tune.clone()).with_context(|| format!("cannot load `{}` with a {kv_type} KV cache", path.display()))?;
            if model.config().vocab != reference.config().vocab {
                bail!("`{}` has a vocabulary of {}, the reference {}", path.display(), model.config().vocab, reference.config().vocab);
            }
            models.push(model);
            scored.push(Scored { path: path.as_path(), file: i, kv_type });
        }
    }

    let bar = ProgressBar::new(tokens.len() as u64).with_style(ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} tokens, {elapsed}").expect("valid template"));
    bar.set_message(format!("{} model(s) vs reference", models.len()));
    let mut refs: Vec<&mut Llama> = models.iter_mut().collect();
    let started = std::time::Instant::now();
    let scores = pollster::block_on(compare_language_models(ctx, &mut reference, &mut refs, &tokens, window, &mut |done, _| bar.set_position(done as u64)))?;
    bar.finish_and_clear();
    eprintln!("evaluated {} tokens with {} model(s) in {:.1} s", tokens.len(), models.len() + 1, started.elapsed().as_secs_f64());

    let ref_size = ModelSize::of(reference_model.source());
    print_lm_table(reference_path, &ref_size, &scored, &files, &scores);
    if let Some(path) = &args.json {
        let row = |path: &Path, size: &ModelSize, s: Option<&LmScore>| {
            let mut v = json!({
                "path": path.display().to_string(),
                "size_bytes": size.bytes,
                "bits_per_weight": size.bits_per_weight(),
                "bytes_by_type": size.by_type,
            });
            if let Some(s) = s {
                v["perplexity"] = json!(s.perplexity);
                v["kl_mean"] = json!(s.kl_mean);
                v["kl_p99"] = json!(s.kl_p99);
                v["kl_max"] = json!(s.kl_max);
                v["top1_agreement"] = json!(s.top1_agreement);
                v["tokens_per_second"] = json!(s.tokens_per_second);
            }
            v
        };
        let mut reference = row(reference_path, &ref_size, None);
        reference["kv_type"] = json!(KvType::F32.name());
        reference["perplexity"] = json!(scores.first().map(|s| s.perplexity_reference));
        reference["tokens_per_second"] = json!(scores.first().map(|s| s.reference_tokens_per_second));
        let doc = json!({
            "qgpu_version": env!("CARGO_PKG_VERSION"),
            "kind": "language_model",
            "adapter": ctx.adapter_info().name,
            "text": args.text.as_ref().map_or("built-in".to_owned(), |p| p.display().to_string()),
            "tokens": tokens.len(),
            "window": window,
            "reference": reference,
            "models": scored.iter().zip(&scores).map(|(m, s)| {
                let mut v = row(m.path, &ModelSize::of(files[m.file].source()), Some(s));
                v["kv_type"] = json!(m.kv_type.name());
                v
            }).collect::<Vec<_>>(),
        });
        std::fs::write(path, serde_json::to_string_pretty(&doc)? + "\n").with_context(|| format!("cannot write `{}`", path.display()))?;
    }
    Ok(())
}

fn name(path: &Path) -> String {
    path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
}

/// One scored (model, KV cache type) pair of `qgpu eval`.
struct Scored<'a> {
    path: &'a Path,
    /// Index into the opened model files.
    file: usize,
    kv_type: KvType,
}

fn print_lm_table(reference: &Path, ref_size: &ModelSize, scored: &[Scored], files: &[ModelSource], scores: &[LmScore]) {
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    println!("{:<40} {:>5} {:>9} {:>6} {:>7} {:>10} {:>9} {:>9} {:>9} {:>7}  types", "model", "KV", "size MiB", "bits", "tok/s", "perplexity", "KL mean", "KL p99", "KL max", "top-1");
    if let Some(s) = scores.first() {
        println!(
            "{:<40} {:>5} {:>9.1} {:>6.2} {:>7.1} {:>10.3} {:>9} {:>9} {:>9} {:>7}  {} (reference)",
            name(reference),
            KvType::F32.name(),
            mib(ref_size.bytes),
            ref_size.bits_per_weight(),
            s.reference_tokens_per_second,
            s.perplexity_reference,
            "-",
            "-",
            "-",
            "-",
            ref_size.mix()
        );
    }
    for (m, s) in scored.iter().zip(scores) {
        let size = ModelSize::of(files[m.file].source());
        println!(
            "{:<40} {:>5} {:>9.1} {:>6.2} {:>7.1} {:>10.3} {:>9.5} {:>9.5} {:>9.4} {:>6.1}%  {}",
            name(m.path),
            m.kv_type.name(),
            mib(size.bytes),
            size.bits_per_weight(),
            s.tokens_per_second,
            s.perplexity,
            s.kl_mean,
            s.kl_p99,
            s.kl_max,
            s.top1_agreement * 100.0,
            size.mix()
        );
    }
}
