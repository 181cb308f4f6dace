//! Bidirectional (encoder) attention over a packed batch of sentences, and mean pooling.

use super::plan::{linear_grid, plan, Workgroups};
use super::GpuTensor;
use crate::gpu::{Context, Dispatch, Kernel};
use crate::tensor::{check_matrix, ShapeError};
use crate::Error;

/// `MAX_HEAD_VEC4` of encoder_attention.wgsl, in values.
pub const ENCODER_MAX_HEAD_DIM: usize = 128;

/// Half-open row ranges `[start, end)` on the GPU, one per token (the keys it may attend to) or
/// one per sentence (the rows it pools), written before each call.
pub struct GpuSpans {
    pub(crate) buffer: wgpu::Buffer,
    capacity: usize,
}

impl GpuSpans {
    pub fn new(ctx: &Context, capacity: usize) -> Result<Self, Error> {
        check_matrix("allocate", "spans", capacity, 2, None)?;
        Ok(Self { buffer: ctx.zeroed_buffer("spans", capacity as u64 * 8)?, capacity })
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Writes `spans`; each must be non-empty, since an empty softmax or mean is undefined.
    pub fn write(&self, ctx: &Context, spans: &[(u32, u32)]) -> Result<(), Error> {
        if spans.len() > self.capacity {
            return Err(ShapeError::TooLarge { op: "write", what: "spans", actual: spans.len(), max: self.capacity }.into());
        }
        if let Some(&(start, end)) = spans.iter().find(|(s, e)| s >= e) {
            return Err(ShapeError::Empty { op: "spans", tensor: "span", rows: start as usize, cols: end.saturating_sub(start) as usize }.into());
        }
        let flat: Vec<u32> = spans.iter().flat_map(|&(s, e)| [s, e]).collect();
        ctx.write_buffer(&self.buffer, 0, bytemuck::cast_slice(&flat));
        Ok(())
    }
}

/// Plans out = softmax(Q·Kᵀ · scale) · V per head, token t attending to rows
/// `key_spans[t]` of K and V, for the first `tokens` rows. Q, K, V and out are
/// `[tokens, heads · head_dim]`.
#[allow(clippy::too_many_arguments)]
pub async fn plan_encoder_attention(
    ctx: &Context,
    heads: usize,
    tokens: usize,
    q: &GpuTensor,
    k: &GpuTensor,
    v: &GpuTensor,
    key_spans: &GpuSpans,
    out: &GpuTensor,
) -> Result<Dispatch, Error> {
    const OP: &str = "encoder_attention";
    let width = q.cols();
    if heads == 0 || !width.is_multiple_of(heads) {
        return Err(ShapeError::NotMultiple { op: OP, what: "width", actual: width, multiple: heads.max(1) }.into());
    }
    let head_dim = width / heads;
    if !head_dim.is_multiple_of(4) {
        return Err(ShapeError::NotMultiple { op: OP, what: "head_dim", actual: head_dim, multiple: 4 }.into());
    }
    if head_dim > ENCODER_MAX_HEAD_DIM {
        return Err(ShapeError::TooLarge { op: OP, what: "head_dim", actual: head_dim, max: ENCODER_MAX_HEAD_DIM }.into());
    }
    for (what, t) in [("k width", k), ("v width", v), ("out width", out)] {
        if t.cols() != width {
            return Err(ShapeError::Mismatch { op: OP, what, expected: width, actual: t.cols() }.into());
        }
    }
    let max = q.rows().min(k.rows()).min(v.rows()).min(out.rows()).min(key_spans.capacity());
    if tokens == 0 || tokens > max {
        return Err(ShapeError::TooLarge { op: OP, what: "tokens", actual: tokens, max }.into());
    }
    let scale = 1.0 / (head_dim as f32).sqrt();
    let params = [tokens as u32, heads as u32, (head_dim / 4) as u32, scale.to_bits()];
    plan(
        ctx,
        Kernel::EncoderAttention,
        vec![],
        &[q.bind(), k.bind(), v.bind(), (&key_spans.buffer).into(), out.bind()],
        &params,
        &[],
        linear_grid(ctx, OP, tokens * heads)?,
    )
    .await
}

/// Plans pooled[s] = normalize(mean of rows `sentence_spans[s]` of x) for `sentences` sentences.
pub async fn plan_mean_pool_normalize(
    ctx: &Context,
    x: &GpuTensor,
    sentence_spans: &GpuSpans,
    sentences: usize,
    pooled: &GpuTensor,
) -> Result<Dispatch, Error> {
    const OP: &str = "mean_pool";
    if pooled.cols() != x.cols() {
        return Err(ShapeError::Mismatch { op: OP, what: "pooled width", expected: x.cols(), actual: pooled.cols() }.into());
    }
    let max = pooled.rows().min(sentence_spans.capacity());
    if sentences == 0 || sentences > max {
        return Err(ShapeError::TooLarge { op: OP, what: "sentences", actual: sentences, max }.into());
    }
    let limit = ctx.limits().max_compute_workgroups_per_dimension as usize;
    if sentences > limit {
        return Err(ShapeError::TooLarge { op: OP, what: "sentences", actual: sentences, max: limit }.into());
    }
    let params = [sentences as u32, x.cols() as u32];
    plan(ctx, Kernel::MeanPoolNormalize, vec![], &[x.bind(), (&sentence_spans.buffer).into(), pooled.bind()], &params, &[], Workgroups::Direct([sentences as u32, 1, 1])).await
}
