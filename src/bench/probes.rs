//! The adapter's own ceilings, measured in the same run as the kernels: copy bandwidth (copy
//! probe) and FMA throughput (FMA probe). Case figures are reported as fractions of these.

use super::timing::{Stopwatch, Timing};
use crate::gpu::Context;
use crate::ops::{CopyProbe, FmaProbe};
use crate::Error;

/// A ceiling: how much work one probe run does, how long it took, and the best rate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ceiling {
    /// Bytes moved (read + written) or FLOPs of one run.
    pub work: u64,
    pub timing: Timing,
}

impl Ceiling {
    /// Work per second at the fastest run: the best the adapter showed.
    pub fn rate(&self) -> f64 {
        self.work as f64 / self.timing.min
    }
}

/// Copy bandwidth (read + write) of a `bytes`-byte copy between two buffers.
pub async fn copy_bandwidth(ctx: &Context, watch: &Stopwatch<'_>, bytes: u64, repeats: usize) -> Result<Ceiling, Error> {
    let probe = CopyProbe::new(ctx, bytes).await?;
    let timing = watch.time(&[vec![&probe.dispatch]], 2, repeats).await?;
    Ok(Ceiling { work: probe.bytes_moved(), timing })
}

/// Shortest FMA-probe run that counts: long enough to hide launch overhead.
const FMA_MIN_SECONDS: f64 = 0.01;
const FMA_MAX_WORKGROUPS: u64 = 1 << 20;

/// FMA throughput in FLOP/s. The grid grows until one run takes at least 10 ms, so a fast GPU
/// is filled and a CPU adapter is not kept busy for long.
pub async fn fma_throughput(ctx: &Context, watch: &Stopwatch<'_>, repeats: usize) -> Result<Ceiling, Error> {
    let mut workgroups = 16u64;
    loop {
        let probe = FmaProbe::new(ctx, workgroups).await?;
        let timing = watch.time(&[vec![&probe.dispatch]], 1, 1).await?;
        if timing.min >= FMA_MIN_SECONDS || workgroups >= FMA_MAX_WORKGROUPS {
            let timing = watch.time(&[vec![&probe.dispatch]], 1, repeats).await?;
            return Ok(Ceiling { work: probe.flops(), timing });
        }
        // Aim a little past the target in one step when the first run was far too short.
        let factor = (FMA_MIN_SECONDS * 1.5 / timing.min.max(1e-6)).clamp(2.0, 64.0) as u64;
        workgroups = (workgroups * factor).min(FMA_MAX_WORKGROUPS);
    }
}
