//! The KV cache in its element type ([`KvType`]), and the op that stores K and V into it.

use super::plan::{linear_grid, plan};
use super::{AttnDims, GpuTensor, StepParams};
use crate::gpu::{Constant, Context, Dispatch, Kernel};
use crate::quant::kv::KvType;
use crate::tensor::ShapeError;
use crate::Error;

/// One layer's K and V caches: `rows` slots of `kv_heads` head rows each. Position p lives in
/// slot p % rows, so a sliding-window layer keeps a ring of the positions it can still see.
pub struct KvCache {
    pub(crate) k: wgpu::Buffer,
    pub(crate) v: wgpu::Buffer,
    rows: usize,
    kv_heads: usize,
    head_dim: usize,
    ty: KvType,
}

impl KvCache {
    /// Bytes of one of the two buffers (K or V) of `rows` slots.
    pub fn buffer_bytes(ty: KvType, rows: usize, kv_heads: usize, head_dim: usize) -> u64 {
        rows as u64 * kv_heads as u64 * ty.row_words(head_dim) as u64 * 4
    }

    /// Bytes of K and V together.
    pub fn bytes_for(ty: KvType, rows: usize, kv_heads: usize, head_dim: usize) -> u64 {
        2 * Self::buffer_bytes(ty, rows, kv_heads, head_dim)
    }

    /// A zeroed cache; fails with a typed error if a head does not fit the type or a buffer
    /// does not fit one binding.
    pub fn new(ctx: &Context, ty: KvType, rows: usize, kv_heads: usize, head_dim: usize) -> Result<Self, Error> {
        check_head_dim(ty, head_dim)?;
        if rows == 0 || kv_heads == 0 {
            return Err(ShapeError::TooLarge { op: "kv cache", what: "slots", actual: 0, max: 0 }.into());
        }
        let bytes = Self::buffer_bytes(ty, rows, kv_heads, head_dim);
        ctx.check_binding("kv cache", bytes)?;
        Ok(Self { k: ctx.zeroed_buffer("k cache", bytes)?, v: ctx.zeroed_buffer("v cache", bytes)?, rows, kv_heads, head_dim, ty })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn kv_type(&self) -> KvType {
        self.ty
    }
    pub fn bytes(&self) -> u64 {
        Self::bytes_for(self.ty, self.rows, self.kv_heads, self.head_dim)
    }
    /// Words of one (slot, KV head) row.
    pub fn row_words(&self) -> usize {
        self.ty.row_words(self.head_dim)
    }

    /// The raw words of the K (or V) cache, `[slot][kv_head][row_words]` (tests).
    pub async fn read_words(&self, ctx: &Context, v: bool) -> Result<Vec<u32>, Error> {
        let buffer = if v { &self.v } else { &self.k };
        let bytes = ctx.read_bytes("kv cache", buffer, 0, Self::buffer_bytes(self.ty, self.rows, self.kv_heads, self.head_dim)).await?;
        Ok(bytemuck::cast_slice(&bytes).to_vec())
    }

    pub(crate) fn constants(&self) -> Vec<Constant> {
        vec![Constant { name: "KV_TYPE", value: self.ty.shader_code() }]
    }

    pub(crate) fn check_dims(&self, op: &'static str, dims: AttnDims) -> Result<(), ShapeError> {
        for (what, expected, actual) in [("kv heads", dims.kv_heads, self.kv_heads), ("head_dim", dims.head_dim, self.head_dim)] {
            if expected != actual {
                return Err(ShapeError::Mismatch { op, what, expected, actual });
            }
        }
        Ok(())
    }
}

/// Heads the attention kernel takes: at most 256 values (8 lanes × 32), a multiple of 8 (the
/// lanes) and of what the KV type packs into a word.
pub(crate) fn check_head_dim(ty: KvType, head_dim: usize) -> Result<(), ShapeError> {
    const OP: &str = "attention";
    if head_dim > 256 {
        return Err(ShapeError::TooLarge { op: OP, what: "head_dim", actual: head_dim, max: 256 });
    }
    let multiple = ty.head_dim_multiple().max(8);
    if head_dim == 0 || !head_dim.is_multiple_of(multiple) {
        return Err(ShapeError::NotMultiple { op: OP, what: "head_dim", actual: head_dim, multiple });
    }
    Ok(())
}

/// Plans: store `tokens` rows of K (already rotated) and V at positions pos0.. into `cache`.
pub async fn plan_kv_store(ctx: &Context, dims: AttnDims, tokens: usize, k: &GpuTensor, v: &GpuTensor, cache: &KvCache, step: &StepParams) -> Result<Dispatch, Error> {
    plan_kv_store_rows(ctx, dims, 0, tokens, k, v, cache, step).await
}

/// [`plan_kv_store`] from rows `row0..row0 + tokens` of K and V (one sequence of a batch).
#[allow(clippy::too_many_arguments)]
pub async fn plan_kv_store_rows(ctx: &Context, dims: AttnDims, row0: usize, tokens: usize, k: &GpuTensor, v: &GpuTensor, cache: &KvCache, step: &StepParams) -> Result<Dispatch, Error> {
    const OP: &str = "kv store";
    cache.check_dims(OP, dims)?;
    let width = dims.kv_heads * dims.head_dim;
    for (what, t) in [("k width", k), ("v width", v)] {
        if t.cols() != width {
            return Err(ShapeError::Mismatch { op: OP, what, expected: width, actual: t.cols() }.into());
        }
        if row0 + tokens > t.rows() {
            return Err(ShapeError::TooLarge { op: OP, what: "rows", actual: row0 + tokens, max: t.rows() }.into());
        }
    }
    if tokens > cache.rows {
        return Err(ShapeError::TooLarge { op: OP, what: "tokens", actual: tokens, max: cache.rows }.into());
    }
    let params = [dims.kv_heads, dims.head_dim, tokens, cache.rows, cache.row_words(), row0].map(|v| v as u32);
    let count = tokens * 2 * dims.kv_heads * dims.head_dim.div_ceil(64);
    plan(ctx, Kernel::KvStore, cache.constants(), &[k.bind(), v.bind(), (&cache.k).into(), (&cache.v).into()], &params, &[&step.buffer], linear_grid(ctx, OP, count)?).await
}
