//! Attention at depth: the flash-attention pass alone (split and combine) for `tokens` queries
//! on a cache that already holds `depth` positions, with the K/V bytes that pass must read.
//! This is what decode at depth costs on top of the weights; the model benchmark measures the
//! sum.

use super::timing::{Stopwatch, Timing};
use crate::gpu::{Context, Dispatch};
use crate::ops::{plan_attention, AttnArgs, AttnDims, AttnOptions, AttnWorkspace, GpuTensor, KvCache, KvType, StepParams};
use crate::quant::reference::TestRng;
use crate::Error;

/// Head layouts of real models.
pub const ATTN_SHAPES: [(&str, AttnDims); 3] = [
    ("smollm2-135m", AttnDims { heads: 9, kv_heads: 3, head_dim: 64 }),
    ("gemma3-270m", AttnDims { heads: 4, kv_heads: 1, head_dim: 256 }),
    ("llama3-8b", AttnDims { heads: 32, kv_heads: 8, head_dim: 128 }),
];

/// One measured attention call.
#[derive(Clone, Debug, PartialEq)]
pub struct AttnCase {
    pub shape: &'static str,
    pub dims: AttnDims,
    pub kv_type: KvType,
    /// Positions in the cache before the call's own.
    pub depth: usize,
    /// Queries of the call (1 for decode).
    pub tokens: usize,
    pub timing: Timing,
    /// K and V bytes of the positions the queries see: what an attention that reads each
    /// cached value once must move.
    pub kv_bytes: u64,
}

impl AttnCase {
    pub fn bytes_per_second(&self) -> f64 {
        self.kv_bytes as f64 / self.timing.median
    }
}

/// Upper bound on cache copies cycled per case.
const MAX_COPIES: usize = 64;

/// Times attention for `tokens` queries at positions `depth..depth + tokens`, over caches of
/// seeded random K and V cycled through about `rotation_bytes`, so they come from memory as a
/// model's 30 layers would.
#[allow(clippy::too_many_arguments)]
pub async fn time_attention(
    ctx: &Context,
    watch: &Stopwatch<'_>,
    (shape, dims): (&'static str, AttnDims),
    kv_type: KvType,
    depth: usize,
    tokens: usize,
    rotation_bytes: u64,
    (warmup, repeats): (usize, usize),
) -> Result<AttnCase, Error> {
    let context = depth + tokens;
    let mut rng = TestRng::new(7);
    // Distinct head rows, repeated over the cache: encoding millions of rows on the host
    // would cost more than the measurement.
    let distinct: Vec<u32> = (0..61 * dims.kv_heads)
        .flat_map(|_| {
            let row: Vec<f32> = (0..dims.head_dim).map(|_| rng.uniform()).collect();
            kv_type.encode(&row)
        })
        .collect();
    let row_words = kv_type.row_words(dims.head_dim);
    let words: Vec<u32> = distinct.chunks(row_words).cycle().take(context * dims.kv_heads).flatten().copied().collect();
    let one = KvCache::bytes_for(kv_type, context, dims.kv_heads, dims.head_dim);
    let copies = ((rotation_bytes / one.max(1)) as usize).clamp(1, MAX_COPIES);
    let mut caches = Vec::with_capacity(copies);
    for _ in 0..copies {
        let cache = KvCache::new(ctx, kv_type, context, dims.kv_heads, dims.head_dim)?;
        ctx.write_buffer(&cache.k, 0, bytemuck::cast_slice(&words));
        ctx.write_buffer(&cache.v, 0, bytemuck::cast_slice(&words));
        caches.push(cache);
    }
    let width = dims.heads * dims.head_dim;
    let q_values: Vec<f32> = (0..tokens * width).map(|_| rng.uniform()).collect();
    let q = GpuTensor::from_slice(ctx, tokens, width, &q_values)?;
    let out = GpuTensor::zeros(ctx, tokens, width)?;
    let work = AttnWorkspace::new(ctx, dims, context, tokens)?;
    let step = StepParams::new(ctx);
    step.write(ctx, depth as u32);
    let args = AttnArgs::new(ctx, context);
    args.write(ctx, dims, depth, tokens);
    let options = AttnOptions::causal(dims.head_dim);
    let mut plans: Vec<Vec<Dispatch>> = Vec::with_capacity(copies);
    for cache in &caches {
        plans.push(plan_attention(ctx, dims, tokens, &q, cache, &work, &out, &step, &args, options).await?);
    }
    let calls: Vec<Vec<&Dispatch>> = plans.iter().map(|p| p.iter().collect()).collect();
    let timing = watch.time(&calls, warmup, repeats).await?;
    Ok(AttnCase { shape, dims, kv_type, depth, tokens, timing, kv_bytes: one })
}
