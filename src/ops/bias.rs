//! Biases of linear layers, added in place, optionally followed by the exact GELU.

use super::plan::{linear_grid, plan};
use super::GpuTensor;
use crate::gpu::{Context, Dispatch, Kernel};
use crate::tensor::ShapeError;
use crate::Error;

async fn plan_bias(ctx: &Context, kernel: Kernel, y: &GpuTensor, bias: &GpuTensor) -> Result<Dispatch, Error> {
    let op = kernel.entry();
    let cols = y.cols();
    if bias.rows() * bias.cols() != cols {
        return Err(ShapeError::Mismatch { op, what: "bias length", expected: cols, actual: bias.rows() * bias.cols() }.into());
    }
    let count = y.rows() * cols;
    plan(ctx, kernel, vec![], &[y.bind(), bias.bind()], &[count as u32, cols as u32], &[], linear_grid(ctx, op, count)?).await
}

/// Plans y[r] += bias for every row of `y` (a view of the rows in use).
pub async fn plan_add_bias(ctx: &Context, y: &GpuTensor, bias: &GpuTensor) -> Result<Dispatch, Error> {
    plan_bias(ctx, Kernel::AddBias, y, bias).await
}

/// Plans y[r] ← gelu(y[r] + bias) for every row of `y`, with the erf GELU (bias.wgsl:
/// Abramowitz & Stegun 7.1.26 for erfc, |error| ≤ |x| · 7.5e-8).
pub async fn plan_add_bias_gelu(ctx: &Context, y: &GpuTensor, bias: &GpuTensor) -> Result<Dispatch, Error> {
    plan_bias(ctx, Kernel::AddBiasGelu, y, bias).await
}
