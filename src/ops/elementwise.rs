//! Elementwise updates in place.

use super::plan::{linear_grid, plan};
use super::GpuTensor;
use crate::gpu::{Context, Dispatch, Kernel};
use crate::tensor::ShapeError;
use crate::Error;

async fn plan_binary(ctx: &Context, kernel: Kernel, a: &GpuTensor, b: &GpuTensor, count: usize) -> Result<Dispatch, Error> {
    let max = (a.rows() * a.cols()).min(b.rows() * b.cols());
    if count > max {
        return Err(ShapeError::TooLarge { op: kernel.entry(), what: "values", actual: count, max }.into());
    }
    plan(ctx, kernel, vec![], &[&a.buffer, &b.buffer], &[count as u32], &[], linear_grid(ctx, kernel.entry(), count)?).await
}

/// Plans a += b over the first `count` values (residual connections).
pub async fn plan_add(ctx: &Context, a: &GpuTensor, b: &GpuTensor, count: usize) -> Result<Dispatch, Error> {
    plan_binary(ctx, Kernel::Add, a, b, count).await
}

/// Plans gate = silu(gate) · up over the first `count` values (SwiGLU).
pub async fn plan_silu_mul(ctx: &Context, gate: &GpuTensor, up: &GpuTensor, count: usize) -> Result<Dispatch, Error> {
    plan_binary(ctx, Kernel::SiluMul, gate, up, count).await
}
