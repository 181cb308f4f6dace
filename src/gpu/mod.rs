//! The GPU layer: adapter and device, buffers, shaders and pipelines. Knows only wgpu.

mod buffer;
mod context;
mod error;
mod pipeline;
mod timer;
pub mod shader;

pub use buffer::{Bind, Dispatch};
pub use context::{BackendChoice, Capabilities, Context, ContextOptions, DeviceLoss, ShaderChecks};
#[cfg(not(target_arch = "wasm32"))]
pub use context::enumerate_adapters;
pub use context::new_instance;
pub use error::GpuError;
pub use pipeline::{Constant, Pipeline, PipelineKey};
pub use timer::GpuTimer;
pub use shader::{Binding, Kernel, ShaderModuleId};
