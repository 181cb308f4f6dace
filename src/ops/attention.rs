//! Rotary embedding, the KV cache, and causal grouped-query attention.

use super::plan::{linear_grid, plan, Workgroups};
use super::{GpuTensor, StepParams};
use crate::gpu::{Context, Dispatch, Kernel};
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

/// Plans: rotate Q in place and K into the cache at positions pos0.., copy V into the cache.
#[allow(clippy::too_many_arguments)]
pub async fn plan_rope_store(
    ctx: &Context,
    dims: AttnDims,
    tokens: usize,
    q: &GpuTensor,
    k: &GpuTensor,
    v: &GpuTensor,
    k_cache: &GpuTensor,
    v_cache: &GpuTensor,
    rope: &RopeTable,
    step: &StepParams,
) -> Result<Dispatch, Error> {
    const OP: &str = "rope";
    dims.check()?;
    expect_cols(OP, "q width", q, dims.heads * dims.head_dim)?;
    for (what, t) in [("k width", k), ("v width", v), ("k cache width", k_cache), ("v cache width", v_cache)] {
        expect_cols(OP, what, t, dims.kv_heads * dims.head_dim)?;
    }
    if rope.rope_dims > dims.head_dim {
        return Err(ShapeError::TooLarge { op: OP, what: "rope dimensions", actual: rope.rope_dims, max: dims.head_dim }.into());
    }
    if tokens > q.rows().min(k.rows()).min(v.rows()) {
        return Err(ShapeError::TooLarge { op: OP, what: "tokens", actual: tokens, max: q.rows() }.into());
    }
    let halves = usize::from(rope.style == RopeStyle::Halves);
    let params = [dims.heads, dims.kv_heads, dims.head_dim, rope.rope_dims, tokens, halves].map(|v| v as u32);
    let count = tokens * (dims.heads + dims.kv_heads) * dims.head_dim / 2;
    plan(
        ctx,
        Kernel::RopeStore,
        vec![],
        &[&q.buffer, &k.buffer, &v.buffer, &k_cache.buffer, &v_cache.buffer, &rope.table.buffer],
        &params,
        &[&step.buffer],
        linear_grid(ctx, OP, count)?,
    )
    .await
}

/// Indirect arguments of the score pass, whose width grows with the sequence.
pub struct AttnArgs {
    buffer: wgpu::Buffer,
}

impl AttnArgs {
    pub fn new(ctx: &Context) -> Self {
        Self { buffer: ctx.indirect_buffer() }
    }
    /// Sizes the score pass for `tokens` queries starting at position `pos0`.
    pub fn write(&self, ctx: &Context, dims: AttnDims, pos0: usize, tokens: usize) {
        let keys = (pos0 + tokens).div_ceil(64) as u32;
        ctx.write_buffer(&self.buffer, 0, bytemuck::bytes_of(&[keys, (dims.heads * tokens) as u32, 1u32]));
    }
}

/// Plans softmax(Q·Kᵀ · scale, causal, windowed and soft-capped as `options` say) · V for
/// `tokens` queries into `out`.
/// `scores` holds `heads × tokens` rows of the cache's length.
#[allow(clippy::too_many_arguments)]
pub async fn plan_attention(
    ctx: &Context,
    dims: AttnDims,
    tokens: usize,
    q: &GpuTensor,
    k_cache: &GpuTensor,
    v_cache: &GpuTensor,
    scores: &GpuTensor,
    out: &GpuTensor,
    step: &StepParams,
    args: &AttnArgs,
    options: AttnOptions,
) -> Result<Vec<Dispatch>, Error> {
    const OP: &str = "attention";
    dims.check()?;
    let context = k_cache.rows();
    expect_cols(OP, "q width", q, dims.heads * dims.head_dim)?;
    expect_cols(OP, "out width", out, dims.heads * dims.head_dim)?;
    expect_cols(OP, "score row length", scores, context)?;
    if scores.rows() < dims.heads * tokens {
        return Err(ShapeError::TooLarge { op: OP, what: "score rows", actual: dims.heads * tokens, max: scores.rows() }.into());
    }
    for (what, t) in [("attention scores", scores), ("k cache", k_cache), ("v cache", v_cache)] {
        ctx.check_binding(what, t.bytes())?;
    }
    let window = u32::try_from(options.window.unwrap_or(0)).unwrap_or(u32::MAX);
    let softcap = options.softcap.unwrap_or(0.0);
    let params = [dims.heads as u32, dims.kv_heads as u32, dims.head_dim as u32, tokens as u32, context as u32, options.scale.to_bits(), window, softcap.to_bits()];
    let bind = |cache: &GpuTensor| [&q.buffer, &cache.buffer, &scores.buffer, &out.buffer].map(|b| b.clone());
    let mut dispatches = Vec::with_capacity(3);
    let k_bufs = bind(k_cache);
    let k_refs: Vec<&wgpu::Buffer> = k_bufs.iter().collect();
    dispatches.push(plan(ctx, Kernel::AttnScores, vec![], &k_refs, &params, &[&step.buffer], Workgroups::Indirect(&args.buffer)).await?);
    let rows = (dims.heads * tokens) as u32;
    dispatches.push(plan(ctx, Kernel::AttnSoftmax, vec![], &k_refs, &params, &[&step.buffer], Workgroups::Direct([rows, 1, 1])).await?);
    let v_bufs = bind(v_cache);
    let v_refs: Vec<&wgpu::Buffer> = v_bufs.iter().collect();
    let count = tokens * dims.heads * dims.head_dim;
    dispatches.push(plan(ctx, Kernel::AttnValues, vec![], &v_refs, &params, &[&step.buffer], linear_grid(ctx, OP, count)?).await?);
    Ok(dispatches)
}
