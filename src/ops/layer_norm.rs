//! LayerNorm with weight and bias, fused with the residual add that precedes it in BERT.

use super::plan::{plan, Workgroups};
use super::GpuTensor;
use crate::gpu::{Context, Dispatch, Kernel};
use crate::tensor::ShapeError;
use crate::Error;

/// Plans x[r] ← LayerNorm(x[r] + y[r] + y_bias) · weight + bias for every row of `x` (a view
/// of the rows in use); `y_bias` is the bias of the layer that produced `y` (zeros if none).
pub async fn plan_add_layer_norm(
    ctx: &Context,
    x: &GpuTensor,
    y: &GpuTensor,
    y_bias: &GpuTensor,
    weight: &GpuTensor,
    bias: &GpuTensor,
    eps: f32,
) -> Result<Dispatch, Error> {
    const OP: &str = "layer_norm";
    let (rows, dim) = (x.rows(), x.cols());
    if y.cols() != dim {
        return Err(ShapeError::Mismatch { op: OP, what: "y width", expected: dim, actual: y.cols() }.into());
    }
    if y.rows() < rows {
        return Err(ShapeError::TooLarge { op: OP, what: "rows", actual: rows, max: y.rows() }.into());
    }
    for (what, t) in [("y bias length", y_bias), ("weight length", weight), ("bias length", bias)] {
        if t.rows() * t.cols() != dim {
            return Err(ShapeError::Mismatch { op: OP, what, expected: dim, actual: t.rows() * t.cols() }.into());
        }
    }
    let params = [rows as u32, dim as u32, eps.to_bits()];
    let groups = ctx.workgroup_grid(OP, rows as u64)?;
    plan(ctx, Kernel::AddLayerNorm, vec![], &[x.bind(), y.bind(), y_bias.bind(), weight.bind(), bias.bind()], &params, &[], Workgroups::Direct(groups)).await
}
