//! `qgpu bench` and `qgpu tune`: the kernel suite against the adapter's own probes, reports as
//! a table, JSON and SVG, comparison of two reports, and the autotune cache.

use anyhow::{bail, Context as _, Result};
use clap::Args;
use qgpu::bench::{self, report, Shape, SuiteOptions};
use qgpu::gpu::{enumerate_adapters, Context, ContextOptions};
use qgpu::ops::{LinearKernel, MatvecKernel, MatvecVariant};
use qgpu::quant::Format;
use std::path::PathBuf;

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

#[derive(Args)]
pub struct BenchArgs {
    #[command(flatten)]
    suite: SuiteArgs,
    /// Force a kernel: matmul, lane, workgroup, subgroup, dot4 (Q8_0: int8 activations), or a variant such as lane/wg128.
    #[arg(long)]
    kernel: Option<String>,
    /// Ignore the tune cache: qgpu's default kernels.
    #[arg(long)]
    no_tune: bool,
    /// Write the report as JSON (schema: docs/bench.schema.json).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write an SVG chart of each case's fraction of the copy bandwidth.
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
        .with_context(|| format!("unknown kernel `{name}` (matmul, lane, workgroup, subgroup, dot4 (Q8_0 only), or e.g. lane/wg128)"))
}

fn read_json(path: &PathBuf) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

pub fn bench(args: BenchArgs, ctx_options: ContextOptions) -> Result<()> {
    if let Some(paths) = &args.compare {
        let comparison = bench::compare(&read_json(&paths[0])?, &read_json(&paths[1])?)?;
        print!("{}", comparison.table());
        return Ok(());
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
