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
    plan(ctx, kernel, vec![], &[a.bind(), b.bind()], &[count as u32], &[], linear_grid(ctx, kernel.entry(), count)?).await
}

/// Plans a += b over the first `count` values (residual connections).
pub async fn plan_add(ctx: &Context, a: &GpuTensor, b: &GpuTensor, count: usize) -> Result<Dispatch, Error> {
    plan_binary(ctx, Kernel::Add, a, b, count).await
}

/// Plans gate = silu(gate) · up over the first `count` values (SwiGLU).
pub async fn plan_silu_mul(ctx: &Context, gate: &GpuTensor, up: &GpuTensor, count: usize) -> Result<Dispatch, Error> {
    plan_binary(ctx, Kernel::SiluMul, gate, up, count).await
}

/// Plans gate = gelu_tanh(gate) · up over the first `count` values (GeGLU).
pub async fn plan_gelu_tanh_mul(ctx: &Context, gate: &GpuTensor, up: &GpuTensor, count: usize) -> Result<Dispatch, Error> {
    plan_binary(ctx, Kernel::GeluTanhMul, gate, up, count).await
}

async fn plan_unary(ctx: &Context, kernel: Kernel, a: &GpuTensor, count: usize, c: f32) -> Result<Dispatch, Error> {
    let max = a.rows() * a.cols();
    if count > max {
        return Err(ShapeError::TooLarge { op: kernel.entry(), what: "values", actual: count, max }.into());
    }
    plan(ctx, kernel, vec![], &[a.bind()], &[count as u32, c.to_bits()], &[], linear_grid(ctx, kernel.entry(), count)?).await
}

/// Plans a *= c over the first `count` values.
pub async fn plan_scale(ctx: &Context, a: &GpuTensor, count: usize, c: f32) -> Result<Dispatch, Error> {
    plan_unary(ctx, Kernel::Scale, a, count, c).await
}

/// Plans a = cap · tanh(a / cap) over the first `count` values (soft-capping, cap > 0).
pub async fn plan_softcap(ctx: &Context, a: &GpuTensor, count: usize, cap: f32) -> Result<Dispatch, Error> {
    plan_unary(ctx, Kernel::Softcap, a, count, cap).await
}
