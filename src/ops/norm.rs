//! RMSNorm.

use super::plan::{plan, Workgroups};
use super::GpuTensor;
use crate::gpu::{Context, Dispatch, Kernel};
use crate::tensor::ShapeError;
use crate::Error;

/// Plans y[r] = rmsnorm(x[x_row + r]) · weight for r < rows.
pub async fn plan_rms_norm(ctx: &Context, x: &GpuTensor, x_row: usize, rows: usize, weight: &GpuTensor, y: &GpuTensor, eps: f32) -> Result<Dispatch, Error> {
    let dim = x.cols();
    if weight.rows() * weight.cols() != dim || y.cols() != dim {
        return Err(ShapeError::Mismatch { op: "rms_norm", what: "width", expected: dim, actual: weight.rows() * weight.cols() }.into());
    }
    if x_row + rows > x.rows() || rows > y.rows() {
        return Err(ShapeError::TooLarge { op: "rms_norm", what: "rows", actual: x_row + rows, max: x.rows().min(y.rows() + x_row) }.into());
    }
    let params = [rows as u32, dim as u32, eps.to_bits(), x_row as u32];
    plan(ctx, Kernel::RmsNorm, vec![], &[x.bind(), weight.bind(), y.bind()], &params, &[], Workgroups::Direct([rows as u32, 1, 1])).await
}
