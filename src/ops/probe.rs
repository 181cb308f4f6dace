//! The FMA-throughput probe: the arithmetic counterpart of the copy probe.

use crate::gpu::{Constant, Context, Dispatch, Kernel, PipelineKey};
use crate::Error;

const WORKGROUP: u32 = 256;
/// Loop trips of each invocation (`ITERATIONS` in fma.wgsl).
const ITERATIONS: u32 = 2048;
/// FLOPs of one loop trip: four vec4 FMAs of two FLOPs a lane (fma.wgsl).
const FMA_FLOPS_PER_ITERATION: u64 = 32;

/// A planned dispatch of `workgroups` workgroups of the FMA probe.
pub struct FmaProbe {
    pub dispatch: Dispatch,
    workgroups: u64,
    _sink: wgpu::Buffer,
}

impl FmaProbe {
    /// Plans `workgroups` workgroups (split over x and y as the adapter needs).
    pub async fn new(ctx: &Context, workgroups: u64) -> Result<Self, Error> {
        let grid = ctx.workgroup_grid("fma probe", workgroups)?;
        let launched = grid[0] as u64 * grid[1] as u64;
        let sink = ctx.zeroed_buffer("fma sink", launched * WORKGROUP as u64 * 16)?;
        let key = PipelineKey {
            kernel: Kernel::FmaProbe,
            constants: vec![Constant { name: "WORKGROUP", value: WORKGROUP }, Constant { name: "ITERATIONS", value: ITERATIONS }],
        };
        let pipeline = ctx.pipeline(&key).await?;
        let dispatch = ctx.dispatch(pipeline, &[(&sink).into()], grid);
        Ok(Self { dispatch, workgroups: launched, _sink: sink })
    }

    /// Floating-point operations of one run (an FMA counts as two).
    pub fn flops(&self) -> u64 {
        self.workgroups * WORKGROUP as u64 * ITERATIONS as u64 * FMA_FLOPS_PER_ITERATION
    }
}
