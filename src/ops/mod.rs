//! Operations on GPU tensors: validate shapes, pick a pipeline, bind, dispatch.

pub mod copy;
pub mod linear;
mod tensor;

pub use copy::CopyProbe;
pub use linear::{default_kernel, linear, plan_linear, GpuMatrix, LinearKernel, LinearPlan, MatvecKernel, MATVEC_MAX_ROWS};
pub use tensor::GpuTensor;
