//! qgpu: matrix products with INT8/INT4 weights on any GPU through wgpu, natively and in the
//! browser. Weights stay quantized in GPU memory and are dequantized inside the kernels.
//!
//! Layers, each depending only on those above it in this list:
//! - [`quant`]: block formats and the scalar CPU reference (the test oracle); no GPU.
//! - [`tensor`]: shapes and shape errors; no GPU.
//! - [`gpu`]: adapter, device, buffers, pipelines; only wgpu.
//! - [`ops`]: GPU operations built from the three above.
//! - `loader` (GGUF, safetensors) on `quant`; `convert` (`qgpu quantize`) on `loader` and `quant`.
//!
//! What qgpu does not do: training, autograd, or f16 accumulation (every sum is f32).

pub mod bench;
#[cfg(not(target_arch = "wasm32"))]
pub mod convert;
pub mod error;
pub mod eval;
#[cfg(not(target_arch = "wasm32"))]
pub mod fetch;
pub mod gpu;
pub mod loader;
pub mod model;
pub mod ops;
#[cfg(not(target_arch = "wasm32"))]
pub mod partial;
pub mod quant;
#[cfg(not(target_arch = "wasm32"))]
pub mod serve;
pub mod tensor;
#[cfg(target_arch = "wasm32")]
pub mod wasm;

pub use error::Error;
