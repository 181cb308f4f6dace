//! Kernel timing shared by `qgpu bench` and `benches/`: time per call, bytes moved, and the
//! fraction of the adapter's copy bandwidth measured by the copy probe in the same run.

use crate::gpu::{Context, Dispatch};
use crate::ops::{plan_linear, CopyProbe, GpuMatrix, GpuTensor, LinearKernel, LinearPlan};
use crate::quant::reference::{self, TestRng};
use crate::quant::Format;
use crate::Error;

/// Weights rotated through per case, so a matrix is not still in the last-level cache from the
/// previous call: this many bytes of distinct copies are kept.
const ROTATION_BYTES: u64 = 256 << 20;
const MAX_COPIES: usize = 8;

/// How a case was timed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clock {
    /// Host clock around submit-and-wait of each call.
    WallClock,
}

/// Median and minimum over the timed repeats, in seconds.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub median: f64,
    pub min: f64,
    pub clock: Clock,
}

/// Runs each dispatch list `warmup` times, then times `repeats` calls, cycling through the lists.
pub fn time_calls(ctx: &Context, calls: &[Vec<&Dispatch>], warmup: usize, repeats: usize) -> Result<Timing, Error> {
    for i in 0..warmup {
        pollster::block_on(ctx.run(&calls[i % calls.len()]))?;
        ctx.wait_idle()?;
    }
    let mut times = Vec::with_capacity(repeats);
    for i in 0..repeats.max(1) {
        let start = std::time::Instant::now();
        pollster::block_on(ctx.run(&calls[i % calls.len()]))?;
        ctx.wait_idle()?;
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(Timing { median: times[times.len() / 2], min: times[0], clock: Clock::WallClock })
}

/// The adapter's copy bandwidth in bytes per second (read + write), from the copy probe.
pub fn copy_bandwidth(ctx: &Context, bytes: u64, repeats: usize) -> Result<f64, Error> {
    let probe = pollster::block_on(CopyProbe::new(ctx, bytes))?;
    let timing = time_calls(ctx, &[vec![&probe.dispatch]], 2, repeats)?;
    Ok(probe.bytes_moved() as f64 / timing.min)
}

/// One measured linear layer.
#[derive(Clone, Debug)]
pub struct LinearCase {
    pub format: Format,
    pub kernel: LinearKernel,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub timing: Timing,
    /// Bytes one call must read and write: quants, scales, activations, outputs.
    pub bytes: u64,
    /// Relative RMS error of the stored weights against the f32 values they were made from:
    /// the accuracy this format costs at the weight level.
    pub weight_error: f64,
}

impl LinearCase {
    pub fn bandwidth(&self) -> f64 {
        self.bytes as f64 / self.timing.median
    }
    pub fn flops(&self) -> f64 {
        2.0 * (self.m * self.n * self.k) as f64 / self.timing.median
    }
}

/// Times y = x · Wᵀ for an `n × k` matrix of `format` and `m` activation rows.
pub fn time_linear(ctx: &Context, format: Format, m: usize, n: usize, k: usize, kernel: Option<LinearKernel>, repeats: usize) -> Result<LinearCase, Error> {
    // Random weights: quantizing 4096 × 14336 values takes a moment but gives real scales.
    let mut rng = TestRng::new(1);
    let values: Vec<f32> = (0..n * k).map(|_| 0.5 * rng.uniform()).collect();
    let host = reference::quantize(format, n, k, &values)?;
    let weight_error = relative_rms_error(&values, &reference::dequantize(host.as_ref()));
    drop(values);
    let first = GpuMatrix::upload(ctx, host.as_ref())?;
    let copies = ((ROTATION_BYTES / first.gpu_bytes().max(1)) as usize).clamp(1, MAX_COPIES);
    let mut matrices = vec![first];
    for _ in 1..copies {
        matrices.push(GpuMatrix::upload(ctx, host.as_ref())?);
    }
    let x = GpuTensor::from_slice(ctx, m, k, &vec![0.25f32; m * k])?;
    let y = GpuTensor::zeros(ctx, m, n)?;
    let plans: Vec<LinearPlan> = matrices
        .iter()
        .map(|w| pollster::block_on(plan_linear(ctx, w, &x, &y, kernel)))
        .collect::<Result<_, _>>()?;
    let calls: Vec<Vec<&Dispatch>> = plans.iter().map(|p| p.dispatches.iter().collect()).collect();
    let timing = time_calls(ctx, &calls, 2, repeats)?;
    Ok(LinearCase {
        format,
        kernel: plans[0].kernel,
        m,
        n,
        k,
        timing,
        bytes: matrices[0].gpu_bytes() + x.bytes() + y.bytes(),
        weight_error,
    })
}

fn relative_rms_error(want: &[f32], got: &[f32]) -> f64 {
    let (mut err, mut norm) = (0.0f64, 0.0f64);
    for (w, g) in want.iter().zip(got) {
        err += (*w as f64 - *g as f64).powi(2);
        norm += (*w as f64).powi(2);
    }
    (err / norm.max(f64::MIN_POSITIVE)).sqrt()
}

/// A decode or prefill shape: `n` outputs of `k` inputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    pub n: usize,
    pub k: usize,
}

impl std::str::FromStr for Shape {
    type Err = String;
    /// `NxK`, e.g. `4096x4096`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (n, k) = s.split_once(['x', 'X']).ok_or_else(|| format!("shape `{s}` is not NxK"))?;
        let parse = |v: &str| v.trim().parse::<usize>().map_err(|e| format!("shape `{s}`: {e}"));
        Ok(Shape { n: parse(n)?, k: parse(k)? })
    }
}

/// Runs every format × shape × rows case and prints a table with each case's share of the copy
/// bandwidth and its speed relative to the F32 kernel on the same shape.
pub fn run_suite(
    ctx: &Context,
    formats: &[Format],
    shapes: &[Shape],
    rows: &[usize],
    kernel: Option<LinearKernel>,
    repeats: usize,
) -> Result<Vec<LinearCase>, Error> {
    let copy = copy_bandwidth(ctx, 256 << 20, repeats.max(5))?;
    println!("adapter: {} ({:?}, {})", ctx.adapter_info().name, ctx.adapter_info().backend, ctx.adapter_info().driver_info);
    println!("copy bandwidth: {:.2} GB/s (read + write, copy probe, same run); clock: wall-clock", copy / 1e9);
    println!(
        "{:<6} {:>5} {:>12} {:>5} {:<18} {:>10} {:>10} {:>8} {:>9} {:>8} {:>10}",
        "format", "bits", "N x K", "rows", "kernel", "ms/call", "min ms", "GB/s", "of copy", "vs F32", "w. error"
    );
    let mut cases = Vec::new();
    for shape in shapes {
        for &m in rows {
            let mut f32_time = None;
            for &format in formats {
                // K-quant rows are whole 256-value super-blocks: skip shapes they cannot store.
                if !shape.k.is_multiple_of(format.k_multiple()) {
                    println!("{:<6} skipped: K = {} is not a multiple of {}", format.name(), shape.k, format.k_multiple());
                    continue;
                }
                let case = time_linear(ctx, format, m, shape.n, shape.k, kernel, repeats)?;
                if format == Format::F32 {
                    f32_time = Some(case.timing.median);
                }
                let vs_f32 = f32_time.map(|t| format!("{:.2}x", t / case.timing.median)).unwrap_or_else(|| "-".into());
                println!(
                    "{:<6} {:>5.1} {:>12} {:>5} {:<18} {:>10.3} {:>10.3} {:>8.2} {:>8.1}% {:>8} {:>10.2e}",
                    format.name(),
                    format.bits_per_weight(),
                    format!("{}x{}", shape.n, shape.k),
                    m,
                    kernel_name(case.kernel),
                    case.timing.median * 1e3,
                    case.timing.min * 1e3,
                    case.bandwidth() / 1e9,
                    100.0 * case.bandwidth() / copy,
                    vs_f32,
                    case.weight_error,
                );
                cases.push(case);
            }
        }
    }
    Ok(cases)
}

pub fn kernel_name(kernel: LinearKernel) -> String {
    match kernel {
        LinearKernel::Matvec(v) => format!("matvec/{}", v.name()),
        LinearKernel::Matmul => "matmul".into(),
    }
}
