//! The benchmark suite: every format × shape × rows case, timed against the probes.

use super::probes::{copy_bandwidth, fma_throughput, Ceiling};
use super::timing::{Clock, Stopwatch, Timing};
use super::Shape;
use crate::gpu::{Context, Dispatch};
use crate::ops::{plan_linear, GpuMatrix, GpuTensor, LinearKernel, LinearPlan, TuneTable};
use crate::quant::reference::{self, TestRng};
use crate::quant::Format;
use crate::Error;

/// The decode shapes (N × K) of real models: SmolLM2-135M, then a 7B-class model.
pub const MODEL_SHAPES: [Shape; 7] = [
    Shape { n: 576, k: 576 },
    Shape { n: 576, k: 1536 },
    Shape { n: 1536, k: 576 },
    Shape { n: 49152, k: 576 },
    Shape { n: 4096, k: 4096 },
    Shape { n: 4096, k: 14336 },
    Shape { n: 14336, k: 4096 },
];
/// Activation rows: decode, then prefill of 64 and 512 tokens.
pub const MODEL_ROWS: [usize; 3] = [1, 64, 512];

/// What to run.
#[derive(Clone, Debug)]
pub struct SuiteOptions {
    pub formats: Vec<Format>,
    pub shapes: Vec<Shape>,
    pub rows: Vec<usize>,
    /// Force one kernel; `None`: the tune table's choice, else qgpu's default.
    pub kernel: Option<LinearKernel>,
    pub warmup: usize,
    pub repeats: usize,
    /// Distinct weight copies cycled per case add up to about this many bytes, so weights come
    /// from memory rather than the last-level cache.
    pub rotation_bytes: u64,
    /// Size of each copy-probe buffer.
    pub probe_bytes: u64,
    /// Time with the host clock even where timestamps exist.
    pub wall_clock: bool,
    pub quick: bool,
}

impl SuiteOptions {
    /// The whole suite: every format, every model shape, decode and prefill.
    pub fn full() -> Self {
        SuiteOptions {
            formats: Format::ALL.to_vec(),
            shapes: MODEL_SHAPES.to_vec(),
            rows: MODEL_ROWS.to_vec(),
            kernel: None,
            warmup: 2,
            repeats: 10,
            rotation_bytes: 256 << 20,
            probe_bytes: 256 << 20,
            wall_clock: false,
            quick: false,
        }
    }

    /// SmolLM2's two smallest shapes, decode and a 64-row prefill, few repeats: well under a
    /// minute on a CPU adapter.
    pub fn quick() -> Self {
        SuiteOptions {
            shapes: MODEL_SHAPES[..2].to_vec(),
            rows: vec![1, 64],
            warmup: 1,
            repeats: 3,
            rotation_bytes: 64 << 20,
            probe_bytes: 64 << 20,
            quick: true,
            ..Self::full()
        }
    }
}

/// Upper bound on weight copies per case (tiny matrices would otherwise need thousands).
const MAX_COPIES: usize = 1024;

/// One measured linear layer y = x · Wᵀ.
#[derive(Clone, Debug, PartialEq)]
pub struct Case {
    pub format: Format,
    pub kernel: LinearKernel,
    pub rows: usize,
    pub n: usize,
    pub k: usize,
    pub timing: Timing,
    /// Bytes one call must move at least: quants and scales, activations read, outputs written.
    pub bytes: u64,
    /// Relative RMS error of the stored weights against the values they were made from.
    pub weight_error: f64,
}

impl Case {
    pub fn op(&self) -> &'static str {
        match self.kernel {
            LinearKernel::Matmul => "matmul",
            _ => "matvec",
        }
    }
    pub fn flops(&self) -> u64 {
        2 * (self.rows * self.n * self.k) as u64
    }
    pub fn bytes_per_second(&self) -> f64 {
        self.bytes as f64 / self.timing.median
    }
    pub fn flops_per_second(&self) -> f64 {
        self.flops() as f64 / self.timing.median
    }
}

/// A whole run: the probes, then the cases.
#[derive(Clone, Debug)]
pub struct SuiteResult {
    pub clock: Clock,
    pub copy: Ceiling,
    pub fma: Ceiling,
    pub cases: Vec<Case>,
    /// Cases not run, with the reason (K-quants need K a multiple of 256, say).
    pub skipped: Vec<String>,
    pub options: SuiteOptions,
    pub tuned: bool,
}

/// The buffers of one case: `copies` identical weight matrices to rotate through, x and y.
pub struct Prepared {
    pub format: Format,
    pub shape: Shape,
    pub rows: usize,
    matrices: Vec<GpuMatrix>,
    x: GpuTensor,
    y: GpuTensor,
    weight_error: f64,
}

impl Prepared {
    /// Quantizes seeded random weights (real scales) and uploads enough copies to fill
    /// `rotation_bytes`.
    pub fn new(ctx: &Context, format: Format, rows: usize, shape: Shape, rotation_bytes: u64) -> Result<Self, Error> {
        let Shape { n, k } = shape;
        let mut rng = TestRng::new(1);
        let values: Vec<f32> = (0..n * k).map(|_| 0.5 * rng.uniform()).collect();
        let host = reference::quantize(format, n, k, &values)?;
        let weight_error = relative_rms_error(&values, &reference::dequantize(host.as_ref()));
        drop(values);
        let first = GpuMatrix::upload(ctx, host.as_ref())?;
        let copies = ((rotation_bytes / first.gpu_bytes().max(1)) as usize).clamp(1, MAX_COPIES);
        let mut matrices = vec![first];
        for _ in 1..copies {
            matrices.push(GpuMatrix::upload(ctx, host.as_ref())?);
        }
        let x_values: Vec<f32> = (0..rows * k).map(|_| rng.uniform()).collect();
        let x = GpuTensor::from_slice(ctx, rows, k, &x_values)?;
        let y = GpuTensor::zeros(ctx, rows, n)?;
        Ok(Self { format, shape, rows, matrices, x, y, weight_error })
    }

    /// Times `kernel` (`None`: qgpu's default) on these buffers.
    pub async fn measure(&self, ctx: &Context, watch: &Stopwatch<'_>, kernel: Option<LinearKernel>, warmup: usize, repeats: usize) -> Result<Case, Error> {
        let mut plans: Vec<LinearPlan> = Vec::with_capacity(self.matrices.len());
        for w in &self.matrices {
            plans.push(plan_linear(ctx, w, &self.x, &self.y, kernel).await?);
        }
        let calls: Vec<Vec<&Dispatch>> = plans.iter().map(|p| p.dispatches.iter().collect()).collect();
        let timing = watch.time(&calls, warmup, repeats).await?;
        Ok(Case {
            format: self.format,
            kernel: plans[0].kernel,
            rows: self.rows,
            n: self.shape.n,
            k: self.shape.k,
            timing,
            bytes: self.matrices[0].gpu_bytes() + self.x.bytes() + self.y.bytes(),
            weight_error: self.weight_error,
        })
    }
}

/// Times one case with the suite's kernel choice: forced, tuned, or the default.
pub async fn time_linear(ctx: &Context, watch: &Stopwatch<'_>, format: Format, m: usize, shape: Shape, options: &SuiteOptions, tune: Option<&TuneTable>) -> Result<Case, Error> {
    let prepared = Prepared::new(ctx, format, m, shape, options.rotation_bytes)?;
    let kernel = options.kernel.or_else(|| tune.and_then(|t| t.choose(ctx, format, m, shape.n, shape.k)));
    prepared.measure(ctx, watch, kernel, options.warmup, options.repeats).await
}

fn relative_rms_error(want: &[f32], got: &[f32]) -> f64 {
    let (mut err, mut norm) = (0.0f64, 0.0f64);
    for (w, g) in want.iter().zip(got) {
        err += (*w as f64 - *g as f64).powi(2);
        norm += (*w as f64).powi(2);
    }
    (err / norm.max(f64::MIN_POSITIVE)).sqrt()
}

/// Measures the probes, then every case; `progress` hears one line per step.
pub async fn run_suite(ctx: &Context, options: &SuiteOptions, tune: Option<&TuneTable>, progress: &mut dyn FnMut(&str)) -> Result<SuiteResult, Error> {
    let watch = Stopwatch::new(ctx, options.wall_clock);
    let probe_repeats = options.repeats.max(5);
    let copy = copy_bandwidth(ctx, &watch, options.probe_bytes, probe_repeats).await?;
    progress(&format!("copy probe: {:.2} GB/s", copy.rate() / 1e9));
    let fma = fma_throughput(ctx, &watch, probe_repeats).await?;
    progress(&format!("fma probe: {:.2} GFLOP/s", fma.rate() / 1e9));
    let mut cases = Vec::new();
    let mut skipped = Vec::new();
    let mut copy = copy;
    for &shape in &options.shapes {
        for &m in &options.rows {
            for &format in &options.formats {
                // K-quant rows are whole 256-value super-blocks: skip shapes they cannot store.
                if !shape.k.is_multiple_of(format.k_multiple()) {
                    skipped.push(format!("{} {shape}: K is not a multiple of {}", format.name(), format.k_multiple()));
                    continue;
                }
                // A forced kernel for some formats only (dot4) skips the others.
                let forced = match options.kernel {
                    Some(LinearKernel::Matvec(k)) => Some(k),
                    Some(LinearKernel::MatvecVariant(v)) => Some(v.kernel),
                    _ => None,
                };
                if let Some(k) = forced.filter(|k| !k.handles(format)) {
                    skipped.push(format!("{} {shape}: kernel {} does not take {} weights", format.name(), k.name(), format.name()));
                    continue;
                }
                let case = time_linear(ctx, &watch, format, m, shape, options, tune).await?;
                progress(&format!("{} {shape} rows {m}: {:.3} ms", format.name(), case.timing.median * 1e3));
                cases.push(case);
            }
        }
    }
    // Measured again at the end: on a busy machine the better of the two is the ceiling.
    let again = copy_bandwidth(ctx, &watch, options.probe_bytes, probe_repeats).await?;
    if again.rate() > copy.rate() {
        copy = again;
    }
    Ok(SuiteResult { clock: watch.clock(), copy, fma, cases, skipped, options: options.clone(), tuned: tune.is_some_and(|t| !t.is_empty()) })
}
