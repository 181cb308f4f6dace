//! Position-by-position comparison of two models' logits on the GPU (`qgpu eval`): KL divergence,
//! each model's negative log-likelihood of the next token, and both top-1 tokens. Only five numbers
//! per position come back, not two rows of `vocab` logits.

use super::plan::{plan, Workgroups};
use super::{GpuIds, GpuTensor};
use crate::gpu::{Context, Dispatch, Kernel};
use crate::tensor::ShapeError;
use crate::Error;

/// Marks a position with no next token (its NLLs are 0 and must not be counted).
pub const NO_TARGET: u32 = u32::MAX;

/// One position's comparison; layout of `RowMetrics` in `shaders/logit_metrics.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct RowMetrics {
    /// KL(reference ‖ candidate) of the next-token distributions, in nats.
    pub kl: f32,
    /// −ln p_reference(next token).
    pub nll_reference: f32,
    /// −ln p_candidate(next token).
    pub nll_candidate: f32,
    /// The reference's most likely token (lowest id on ties).
    pub top1_reference: u32,
    /// The candidate's most likely token.
    pub top1_candidate: u32,
}

const _: () = assert!(std::mem::size_of::<RowMetrics>() == 20);

/// Buffers for comparing up to `capacity` positions at a time.
pub struct LogitMetrics {
    targets: GpuIds,
    out: wgpu::Buffer,
    capacity: usize,
}

impl LogitMetrics {
    pub fn new(ctx: &Context, capacity: usize) -> Result<Self, Error> {
        let out = ctx.zeroed_buffer("logit metrics", (capacity.max(1) * std::mem::size_of::<RowMetrics>()) as u64)?;
        Ok(Self { targets: GpuIds::new(ctx, capacity.max(1))?, out, capacity: capacity.max(1) })
    }

    /// Compares the first `targets.len()` rows of `reference` and `candidate` (both
    /// `rows × vocab` logits); `targets[r]` is the token that follows position `r`, or
    /// [`NO_TARGET`].
    pub async fn compare(&self, ctx: &Context, reference: &GpuTensor, candidate: &GpuTensor, targets: &[u32]) -> Result<Vec<RowMetrics>, Error> {
        let rows = targets.len();
        let vocab = reference.cols();
        if candidate.cols() != vocab {
            return Err(ShapeError::Mismatch { op: "logit_metrics", what: "vocabulary", expected: vocab, actual: candidate.cols() }.into());
        }
        let available = reference.rows().min(candidate.rows()).min(self.capacity);
        if rows == 0 || rows > available {
            return Err(ShapeError::TooLarge { op: "logit_metrics", what: "rows", actual: rows, max: available }.into());
        }
        self.targets.write(ctx, targets)?;
        let dispatch: Dispatch = plan(
            ctx,
            Kernel::LogitMetrics,
            vec![],
            &[reference.bind(), candidate.bind(), (&self.targets.buffer).into(), (&self.out).into()],
            &[rows as u32, vocab as u32],
            &[],
            Workgroups::Direct(ctx.workgroup_grid("logit metrics", rows as u64)?),
        )
        .await?;
        ctx.run(&[&dispatch]).await?;
        let bytes = ctx.read_bytes("logit metrics", &self.out, 0, (rows * std::mem::size_of::<RowMetrics>()) as u64).await?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }
}
