//! `qgpu bench` and `qgpu tune`: the kernel suite against the adapter's own probes, reports as
//! a table, JSON and SVG, comparison of two reports, and the autotune cache; `qgpu bench
//! --model` measures a whole decoder as llama-bench does.

use anyhow::{bail, Context as _, Result};
use clap::Args;
use qgpu::bench::{self, model_report, report, ModelBenchOptions, ModelInfo, Shape, SuiteOptions};
use qgpu::gpu::{enumerate_adapters, Context, ContextOptions};
use qgpu::model::llama::{Llama, LlamaConfig, LlamaOptions};
use qgpu::ops::{KvType, LinearKernel, MatvecKernel, MatvecVariant};
use qgpu::quant::Format;
use std::path::{Path, PathBuf};

/// What to run; shared by `bench` and `tune`.
#[derive(Args)]
pub struct SuiteArgs {
    /// Adapter whose name contains this text (case-insensitive); default: the best one.
    #[arg(long)]
    adapter: Option<String>,
    /// Weight formats, comma separated (default: every format qgpu knows).
    #[arg(long, value_delimiter = ',')]
    formats: Option<Vec<String>>,
    /// Weight shapes NxK (outputs x inputs), comma separated (default: SmolLM2-135M and
    /// 7B-class decode shapes).
    #[arg(long, value_delimiter = ',')]
    shapes: Option<Vec<String>>,
    /// Activation rows per call, comma separated (default 1,64,512; 1-8 use matvec, more matmul).
    #[arg(long, value_delimiter = ',')]
    rows: Option<Vec<usize>>,
    /// Timed calls per case, after the warm-up calls.
    #[arg(long)]
    repeats: Option<usize>,
    /// Untimed calls per case before timing.
    #[arg(long)]
    warmup: Option<usize>,
    /// Time with the host clock even where the device has timestamp queries.
    #[arg(long)]
    wall_clock: bool,
    /// Two small SmolLM2 shapes, rows 1 and 64, 3 repeats: a smoke test (shapes, rows and
    /// formats given explicitly still apply).
    #[arg(long)]
    quick: bool,
}

/// `qgpu bench --model`: llama-bench's options.
#[derive(Args)]
pub struct ModelArgs {
    /// Benchmark this model (GGUF or Hugging Face LLaMA directory) end to end instead of the
    /// kernels: prompt processing and generation tokens/s, as llama.cpp's llama-bench.
    #[arg(long)]
    model: Option<PathBuf>,
    /// With --model: prompt lengths, one pp test each (default 512).
    #[arg(short = 'p', long, value_delimiter = ',')]
    prompt_tokens: Option<Vec<usize>>,
    /// With --model: generated lengths, one tg test each (default 128).
    #[arg(short = 'n', long, value_delimiter = ',')]
    gen_tokens: Option<Vec<usize>>,
    /// With --model: tokens already in the KV cache before each test (default 0).
    #[arg(short = 'd', long, value_delimiter = ',')]
    depth: Option<Vec<usize>>,
    /// With --model: timed runs of each test (default 5).
    #[arg(short = 'r', long)]
    repetitions: Option<usize>,
    /// With --model: how the KV cache stores each value: f32, f16 (default), q8_0 or q4_0.
    #[arg(long)]
    kv_type: Option<KvType>,
    /// With --model: positions the KV cache holds (default: the deepest depth plus the longest test).
    #[arg(long)]
    context: Option<usize>,
    /// With --model: no untimed run before each test.
    #[arg(long)]
    no_warmup: bool,
    /// With --model: keep Q, K, V and gate, up as separate matrices (to time what stacking
    /// them saves).
    #[arg(long)]
    no_fuse: bool,
    /// With --model: seed of the synthetic token ids.
    #[arg(long)]
    seed: Option<u64>,
}

impl ModelArgs {
    fn any_set(&self) -> bool {
        self.prompt_tokens.is_some()
            || self.gen_tokens.is_some()
            || self.depth.is_some()
            || self.repetitions.is_some()
            || self.kv_type.is_some()
            || self.context.is_some()
            || self.no_warmup
            || self.no_fuse
            || self.seed.is_some()
    }

    fn options(&self) -> ModelBenchOptions {
        let d = ModelBenchOptions::default();
        ModelBenchOptions {
            prompt_tokens: self.prompt_tokens.clone().unwrap_or(d.prompt_tokens),
            gen_tokens: self.gen_tokens.clone().unwrap_or(d.gen_tokens),
            depths: self.depth.clone().unwrap_or(d.depths),
            repetitions: self.repetitions.unwrap_or(d.repetitions),
            warmup: !self.no_warmup,
            seed: self.seed.unwrap_or(d.seed),
            ..d
        }
    }
}

#[derive(Args)]
pub struct BenchArgs {
    #[command(flatten)]
    suite: SuiteArgs,
    #[command(flatten)]
    model: ModelArgs,
    /// Force a kernel: matmul, lane, workgroup, subgroup, subgroup4 (four rows a subgroup), dot4 (Q8_0, Q4_0, Q4_1: int8 activations), or a variant such as lane/wg128.
    #[arg(long)]
    kernel: Option<String>,
    /// Ignore the tune cache: qgpu's default kernels.
    #[arg(long)]
    no_tune: bool,
    /// Write the report as JSON (schema: docs/bench.schema.json; with --model docs/bench-model.schema.json).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write an SVG chart of each case's fraction of the copy bandwidth (with --model: tokens/s against depth).
    #[arg(long)]
    svg: Option<PathBuf>,
    /// Compare two JSON reports case by case instead of running (A/B > 1: B is faster).
    #[arg(long, num_args = 2, value_names = ["A", "B"])]
    compare: Option<Vec<PathBuf>>,
}

#[derive(Args)]
pub struct TuneArgs {
    #[command(flatten)]
    suite: SuiteArgs,
    /// Where to store the table (default: <cache>/tune-v1.json).
    #[arg(long)]
    cache: Option<PathBuf>,
}

impl SuiteArgs {
    fn options(&self) -> Result<SuiteOptions> {
        let mut o = if self.quick { SuiteOptions::quick() } else { SuiteOptions::full() };
        if let Some(formats) = &self.formats {
            o.formats = formats.iter().map(|f| f.parse::<Format>()).collect::<Result<_, _>>()?;
        }
        if let Some(shapes) = &self.shapes {
            o.shapes = shapes.iter().map(|s| s.parse::<Shape>()).collect::<Result<_, _>>().map_err(anyhow::Error::msg)?;
        }
        if let Some(rows) = &self.rows {
            if rows.contains(&0) {
                bail!("--rows: 0 activation rows");
            }
            o.rows = rows.clone();
        }
        o.repeats = self.repeats.unwrap_or(o.repeats).max(1);
        o.warmup = self.warmup.unwrap_or(o.warmup);
        o.wall_clock = self.wall_clock;
        Ok(o)
    }

    fn context(&self, options: ContextOptions) -> Result<Context> {
        let Some(wanted) = &self.adapter else {
            return Ok(pollster::block_on(Context::new(options))?);
        };
        let adapters = pollster::block_on(enumerate_adapters(options.backend));
        let names: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
        let adapter = adapters
            .into_iter()
            .find(|a| a.get_info().name.to_lowercase().contains(&wanted.to_lowercase()))
            .with_context(|| format!("no adapter matches `{wanted}`; found: {}", names.join(", ")))?;
        Ok(pollster::block_on(Context::from_adapter(adapter, &options))?)
    }
}

fn parse_kernel(name: &str) -> Result<LinearKernel> {
    if name == "matmul" {
        return Ok(LinearKernel::Matmul);
    }
    if let Some(v) = MatvecVariant::from_name(name) {
        return Ok(LinearKernel::MatvecVariant(v));
    }
    MatvecKernel::ALL
        .into_iter()
        .find(|k| k.name() == name)
        .map(LinearKernel::Matvec)
        .with_context(|| format!("unknown kernel `{name}` (matmul, lane, workgroup, subgroup, subgroup4, dot4 (Q8_0, Q4_0, Q4_1 only), or e.g. lane/wg128)"))
}

fn read_json(path: &PathBuf) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

pub fn bench(args: BenchArgs, ctx_options: ContextOptions) -> Result<()> {
    if let Some(paths) = &args.compare {
        print!("{}", bench::compare_table(&read_json(&paths[0])?, &read_json(&paths[1])?)?);
        return Ok(());
    }
    if let Some(path) = &args.model.model {
        return bench_model(&args, path, ctx_options);
    }
    if args.model.any_set() {
        bail!("-p, -n, -d, -r, --kv-type, --context, --no-warmup and --seed need --model");
    }
    let mut options = args.suite.options()?;
    options.kernel = args.kernel.as_deref().map(parse_kernel).transpose()?;
    let ctx = args.suite.context(ctx_options)?;
    let tune = if args.no_tune { None } else { bench::tune::load_cache() };
    let result = pollster::block_on(bench::run_suite(&ctx, &options, tune.as_ref(), &mut |line| eprintln!("{line}")))?;
    print!("{}", report::table(&ctx, &result));
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report::to_json(&ctx, &result))?;
        std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(path) = &args.svg {
        let title = format!("{}: fraction of copy bandwidth", report::adapter_label(&ctx));
        let svg = bench::svg::chart(&result, &title).map_err(anyhow::Error::msg)?;
        std::fs::write(path, svg).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn write(path: &Path, text: String) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

fn bench_model(args: &BenchArgs, path: &Path, ctx_options: ContextOptions) -> Result<()> {
    let s = &args.suite;
    if s.formats.is_some() || s.shapes.is_some() || s.rows.is_some() || s.repeats.is_some() || s.warmup.is_some() || s.wall_clock || s.quick || args.kernel.is_some() {
        bail!("--formats, --shapes, --rows, --repeats, --warmup, --wall-clock, --quick and --kernel are for the kernel suite, not --model");
    }
    let m = &args.model;
    let options = m.options();
    let file = super::ModelSource::open(path)?;
    let config = LlamaConfig::from_source(file.source())?;
    let context = m.context.unwrap_or_else(|| options.required_context());
    // Before uploading anything: the model caps the context at the trained one.
    options.check(context.min(config.trained_context), config.trained_context)?;
    let ctx = s.context(ctx_options)?;
    let tune = if args.no_tune { None } else { bench::tune::load_cache() };
    let tuned = tune.is_some();
    let kv_type = m.kv_type.unwrap_or_default();
    eprintln!("loading {} (context {context}, KV cache {kv_type})", path.display());
    let llama_options = LlamaOptions { context, kv_type, tune: tune.map(std::sync::Arc::new), fuse_projections: !m.no_fuse, ..Default::default() };
    let mut model = pollster::block_on(Llama::load(&ctx, file.source(), llama_options, &mut |_, _| {}))?;
    let info = ModelInfo::from_source(file.source());
    let result = pollster::block_on(bench::run_model_bench(&ctx, &mut model, info, &options, tuned, &mut |line| eprintln!("{line}")))?;
    print!("{}", model_report::model_table(&ctx, &result));
    if let Some(out) = &args.json {
        write(out, serde_json::to_string_pretty(&model_report::model_json(&ctx, &result))? + "\n")?;
    }
    if let Some(out) = &args.svg {
        let title = format!("{} on {}", result.model.name, report::adapter_label(&ctx));
        write(out, model_report::model_chart(&result, &title).map_err(anyhow::Error::msg)?)?;
    }
    Ok(())
}

pub fn tune(args: TuneArgs, ctx_options: ContextOptions) -> Result<()> {
    let mut options = args.suite.options()?;
    if args.suite.rows.is_none() {
        options.rows = vec![1];
    }
    let ctx = args.suite.context(ctx_options)?;
    let (table, results) = pollster::block_on(bench::tune::tune(&ctx, &options, &mut |line| eprintln!("{line}")))?;
    print!("{}", bench::tune::results_table(&results));
    let path = args.cache.clone().unwrap_or_else(bench::tune::cache_path);
    let entries = table.len();
    bench::tune::save_cache_to(&path, table).with_context(|| format!("writing {}", path.display()))?;
    println!("{entries} entries written to {}", path.display());
    Ok(())
}
