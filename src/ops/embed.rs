//! Token embedding lookup from a quantized table.

use super::plan::{linear_grid, plan};
use super::{GpuIds, GpuMatrix, GpuTensor};
use crate::gpu::{Constant, Context, Dispatch, Kernel};
use crate::tensor::ShapeError;
use crate::Error;

/// Plans out[t] = table[ids[t]] for `tokens` ids, dequantizing on the fly.
pub async fn plan_embed(ctx: &Context, table: &GpuMatrix, ids: &GpuIds, out: &GpuTensor, tokens: usize) -> Result<Vec<Dispatch>, Error> {
    if out.cols() != table.cols() {
        return Err(ShapeError::Mismatch { op: "embed", what: "output width", expected: table.cols(), actual: out.cols() }.into());
    }
    if tokens > out.rows() {
        return Err(ShapeError::TooLarge { op: "embed", what: "tokens", actual: tokens, max: out.rows() }.into());
    }
    let format = Constant { name: "FORMAT", value: table.format().shader_code() };
    let mut dispatches = Vec::new();
    for chunk in table.chunks() {
        let params = [tokens as u32, table.cols() as u32, chunk.row_start as u32, chunk.rows as u32];
        let groups = linear_grid(ctx, "embed", tokens * table.cols() / 8)?;
        dispatches.push(plan(ctx, Kernel::Embed, vec![format], &[(&chunk.quants).into(), (&chunk.scales).into(), (&ids.buffer).into(), out.bind()], &params, &[], groups).await?);
    }
    Ok(dispatches)
}
