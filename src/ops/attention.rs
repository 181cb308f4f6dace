//! Rotary embedding and causal grouped-query attention over the KV cache (flash attention:
//! split over the keys, online softmax, one combine pass; `shaders/flash_attention.wgsl`).

use super::plan::{linear_grid, plan, Workgroups};
use super::kv_cache::{check_head_dim, KvCache};
use super::{GpuTensor, StepParams};
use crate::gpu::{Constant, Context, Dispatch, Kernel};
use crate::tensor::ShapeError;
use crate::Error;

/// Head layout of an attention layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttnDims {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

impl AttnDims {
    fn check(&self) -> Result<(), ShapeError> {
        if self.kv_heads == 0 || !self.heads.is_multiple_of(self.kv_heads) {
            return Err(ShapeError::NotMultiple { op: "attention", what: "heads", actual: self.heads, multiple: self.kv_heads });
        }
        if !self.head_dim.is_multiple_of(2) {
            return Err(ShapeError::NotMultiple { op: "attention", what: "head_dim", actual: self.head_dim, multiple: 2 });
        }
        Ok(())
    }
}

fn expect_cols(op: &'static str, what: &'static str, t: &GpuTensor, cols: usize) -> Result<(), ShapeError> {
    if t.cols() != cols {
        return Err(ShapeError::Mismatch { op, what, expected: cols, actual: t.cols() });
    }
    Ok(())
}

/// Which dimensions of a head RoPE rotates together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeStyle {
    /// (x[2i], x[2i+1]).
    AdjacentPairs,
    /// (x[i], x[i + rope_dims/2]) ("NeoX").
    Halves,
}

/// How positions and frequencies are scaled before rotation.
#[derive(Clone, Debug, PartialEq)]
pub struct RopeScaling {
    /// Positions are divided by this (linear scaling; 1 for none).
    pub linear: f64,
    /// Frequency i is divided by `freq_factors[i]` (Llama 3.x's `rope_freqs`), if given.
    pub freq_factors: Option<Vec<f32>>,
    /// cos and sin are multiplied by this (LongRoPE's attention factor; 1 for none).
    pub attn_factor: f64,
}

impl Default for RopeScaling {
    fn default() -> Self {
        Self { linear: 1.0, freq_factors: None, attn_factor: 1.0 }
    }
}

/// cos and sin of every (position, rotated pair), computed in f64 on the host.
pub struct RopeTable {
    table: GpuTensor,
    rope_dims: usize,
    style: RopeStyle,
}

impl RopeTable {
    /// Angles (pos / linear) · base^(-2i / rope_dims) / factor_i for pos < context, i < rope_dims / 2.
    pub fn new(ctx: &Context, rope_dims: usize, context: usize, base: f32, style: RopeStyle, scaling: &RopeScaling) -> Result<Self, Error> {
        let half = rope_dims / 2;
        if let Some(f) = &scaling.freq_factors {
            if f.len() != half {
                return Err(ShapeError::Mismatch { op: "rope", what: "frequency factors", expected: half, actual: f.len() }.into());
            }
        }
        let mut data = Vec::with_capacity(context * rope_dims);
        for pos in 0..context {
            for i in 0..half {
                let factor = scaling.freq_factors.as_ref().map_or(1.0, |f| f[i] as f64);
                let angle = pos as f64 / scaling.linear * (base as f64).powf(-(2.0 * i as f64) / rope_dims as f64) / factor;
                data.push((angle.cos() * scaling.attn_factor) as f32);
                data.push((angle.sin() * scaling.attn_factor) as f32);
            }
        }
        Ok(Self { table: GpuTensor::from_slice(ctx, context, rope_dims, &data)?, rope_dims, style })
    }

    /// A table that rotates by nothing (cos 1, sin 0): layers without RoPE (SmolLM3's NoPE
    /// layers) still store K and V through the same kernel.
    pub fn identity(ctx: &Context, rope_dims: usize, context: usize) -> Result<Self, Error> {
        let data: Vec<f32> = (0..context * rope_dims / 2).flat_map(|_| [1.0, 0.0]).collect();
        Ok(Self { table: GpuTensor::from_slice(ctx, context, rope_dims, &data)?, rope_dims, style: RopeStyle::AdjacentPairs })
    }

    /// GPU bytes of the table.
    pub fn bytes(&self) -> u64 {
        self.table.bytes()
    }
}

/// What an attention layer does besides softmax(Q·Kᵀ·scale)·V.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttnOptions {
    /// Multiplies Q·Kᵀ (1/√head_dim in most models).
    pub scale: f32,
    /// A query sees only the last `window` positions (itself included).
    pub window: Option<usize>,
    /// Scores are soft-capped to ±cap.
    pub softcap: Option<f32>,
}

impl AttnOptions {
    /// Plain causal attention scaled by 1/√head_dim.
    pub fn causal(head_dim: usize) -> Self {
        Self { scale: 1.0 / (head_dim as f32).sqrt(), window: None, softcap: None }
    }
}

/// Plans: rotate Q and K in place at positions pos0.. ([`plan_kv_store`](super::plan_kv_store)
/// then stores K and V).
pub async fn plan_rope(ctx: &Context, dims: AttnDims, tokens: usize, q: &GpuTensor, k: &GpuTensor, rope: &RopeTable, step: &StepParams) -> Result<Dispatch, Error> {
    plan_rope_rows(ctx, dims, 0, tokens, q, k, rope, step).await
}

/// [`plan_rope`] on rows `row0..row0 + tokens` of Q and K (one sequence of a batch).
#[allow(clippy::too_many_arguments)]
pub async fn plan_rope_rows(ctx: &Context, dims: AttnDims, row0: usize, tokens: usize, q: &GpuTensor, k: &GpuTensor, rope: &RopeTable, step: &StepParams) -> Result<Dispatch, Error> {
    const OP: &str = "rope";
    dims.check()?;
    expect_cols(OP, "q width", q, dims.heads * dims.head_dim)?;
    expect_cols(OP, "k width", k, dims.kv_heads * dims.head_dim)?;
    if rope.rope_dims > dims.head_dim {
        return Err(ShapeError::TooLarge { op: OP, what: "rope dimensions", actual: rope.rope_dims, max: dims.head_dim }.into());
    }
    if row0 + tokens > q.rows().min(k.rows()) {
        return Err(ShapeError::TooLarge { op: OP, what: "rows", actual: row0 + tokens, max: q.rows().min(k.rows()) }.into());
    }
    let halves = usize::from(rope.style == RopeStyle::Halves);
    let params = [dims.heads, dims.kv_heads, dims.head_dim, rope.rope_dims, tokens, halves, row0].map(|v| v as u32);
    let count = tokens * (dims.heads + dims.kv_heads) * dims.head_dim / 2;
    plan(ctx, Kernel::Rope, vec![], &[q.bind(), k.bind(), rope.table.bind()], &params, &[&step.buffer], linear_grid(ctx, OP, count)?).await
}

/// Calls of at most this many tokens are decode: one row block per KV head, many splits.
pub const DECODE_TOKENS: usize = 8;
/// Most query rows one attention workgroup holds: the shader unrolls four (see its header for
/// why not more).
const MAX_BLOCK_ROWS: usize = 4;
/// Query rows (token × head of a GQA group) one attention workgroup holds (`ROWS` in the
/// shader): every row of a decode call up to 4, so no unrolled row is idle.
fn block_rows(dims: AttnDims, tokens: usize) -> usize {
    (tokens * (dims.heads / dims.kv_heads.max(1))).clamp(1, MAX_BLOCK_ROWS)
}

/// Keys one split of the attention covers, for `tokens` queries on a cache of `context`
/// positions: decode cuts the context into up to 32 splits for parallelism, prefill (whose row
/// blocks are parallel already) into up to 4. Either way the partial results are bounded by
/// a constant number of splits, not by the context.
pub fn split_keys(context: usize, tokens: usize) -> usize {
    if tokens <= DECODE_TOKENS {
        256.max(context.div_ceil(32))
    } else {
        1024.max(context.div_ceil(4))
    }
}

/// (rows, cols) of the two f32 partial-result buffers attention needs for calls of up to
/// `chunk` tokens on a cache of `context` positions: per split and query row, the unnormalized
/// output (`head_dim`) and the running max and sum (2).
pub fn attention_partials(dims: AttnDims, context: usize, chunk: usize) -> [(usize, usize); 2] {
    let rows = [chunk.min(DECODE_TOKENS), chunk].into_iter().map(|t| context.div_ceil(split_keys(context, t)) * t * dims.heads).max().unwrap_or(1);
    [(rows, dims.head_dim), (rows, 2)]
}

/// The splits' partial results, shared by every layer.
pub struct AttnWorkspace {
    acc: GpuTensor,
    ml: GpuTensor,
}

impl AttnWorkspace {
    pub fn new(ctx: &Context, dims: AttnDims, context: usize, chunk: usize) -> Result<Self, Error> {
        let [(ar, ac), (mr, mc)] = attention_partials(dims, context, chunk);
        let acc = GpuTensor::zeros(ctx, ar, ac)?;
        let ml = GpuTensor::zeros(ctx, mr, mc)?;
        ctx.check_binding("attention partials", acc.bytes())?;
        Ok(Self { acc, ml })
    }
    pub fn bytes(&self) -> u64 {
        self.acc.bytes() + self.ml.bytes()
    }
}

/// Indirect arguments of the attention pass, whose split count grows with the sequence.
pub struct AttnArgs {
    buffer: wgpu::Buffer,
    context: usize,
}

impl AttnArgs {
    /// For a cache of `context` positions.
    pub fn new(ctx: &Context, context: usize) -> Self {
        Self { buffer: ctx.indirect_buffer(), context }
    }
    /// Sizes the attention pass for `tokens` queries starting at position `pos0`.
    pub fn write(&self, ctx: &Context, dims: AttnDims, pos0: usize, tokens: usize) {
        let splits = (pos0 + tokens).div_ceil(split_keys(self.context, tokens)) as u32;
        let blocks = (tokens * (dims.heads / dims.kv_heads.max(1))).div_ceil(block_rows(dims, tokens)) as u32;
        ctx.write_buffer(&self.buffer, 0, bytemuck::bytes_of(&[splits, dims.kv_heads as u32, blocks]));
    }
}

/// Plans softmax(Q·Kᵀ · scale, causal, windowed and soft-capped as `options` say) · V for
/// `tokens` queries into `out`, reading `cache` in its element type.
#[allow(clippy::too_many_arguments)]
pub async fn plan_attention(
    ctx: &Context,
    dims: AttnDims,
    tokens: usize,
    q: &GpuTensor,
    cache: &KvCache,
    work: &AttnWorkspace,
    out: &GpuTensor,
    step: &StepParams,
    args: &AttnArgs,
    options: AttnOptions,
) -> Result<Vec<Dispatch>, Error> {
    plan_attention_rows(ctx, dims, 0, tokens, q, cache, work, out, step, args, options).await
}

/// [`plan_attention`] for the queries in rows `row0..row0 + tokens` of `q`, into the same rows
/// of `out` (one sequence of a batch, with its own cache).
#[allow(clippy::too_many_arguments)]
pub async fn plan_attention_rows(
    ctx: &Context,
    dims: AttnDims,
    row0: usize,
    tokens: usize,
    q: &GpuTensor,
    cache: &KvCache,
    work: &AttnWorkspace,
    out: &GpuTensor,
    step: &StepParams,
    args: &AttnArgs,
    options: AttnOptions,
) -> Result<Vec<Dispatch>, Error> {
    const OP: &str = "attention";
    dims.check()?;
    cache.check_dims(OP, dims)?;
    check_head_dim(cache.kv_type(), dims.head_dim)?;
    expect_cols(OP, "q width", q, dims.heads * dims.head_dim)?;
    expect_cols(OP, "out width", out, dims.heads * dims.head_dim)?;
    if tokens == 0 || row0 + tokens > q.rows().min(out.rows()) {
        return Err(ShapeError::TooLarge { op: OP, what: "rows", actual: row0 + tokens, max: q.rows().min(out.rows()) }.into());
    }
    let context = args.context;
    let split = split_keys(context, tokens);
    let partial_rows = context.div_ceil(split) * tokens * dims.heads;
    if partial_rows > work.ml.rows() || dims.head_dim != work.acc.cols() {
        return Err(ShapeError::TooLarge { op: OP, what: "partial rows", actual: partial_rows, max: work.ml.rows() }.into());
    }
    // The ring must hold every position a query of this call can see.
    let needed = options.window.map_or(context, |w| (w + tokens - 1).min(context));
    if cache.rows() < needed {
        return Err(ShapeError::TooLarge { op: OP, what: "positions seen", actual: needed, max: cache.rows() }.into());
    }
    let window = u32::try_from(options.window.unwrap_or(0)).unwrap_or(u32::MAX);
    let softcap = options.softcap.unwrap_or(0.0);
    let params = [
        dims.heads as u32,
        dims.kv_heads as u32,
        dims.head_dim as u32,
        tokens as u32,
        cache.rows() as u32,
        options.scale.to_bits(),
        window,
        softcap.to_bits(),
        split as u32,
        cache.row_words() as u32,
        row0 as u32,
    ];
    let mut constants = cache.constants();
    constants.push(Constant { name: "ROWS", value: block_rows(dims, tokens) as u32 });
    let split_pass = plan(
        ctx,
        Kernel::FlashSplit,
        constants,
        &[q.bind(), (&cache.k).into(), (&cache.v).into(), work.acc.bind(), work.ml.bind()],
        &params,
        &[&step.buffer],
        Workgroups::Indirect(&args.buffer),
    )
    .await?;
    let count = tokens * dims.heads * dims.head_dim;
    let combine = plan(ctx, Kernel::FlashCombine, vec![], &[work.acc.bind(), work.ml.bind(), out.bind()], &params, &[&step.buffer], linear_grid(ctx, OP, count)?).await?;
    Ok(vec![split_pass, combine])
}
