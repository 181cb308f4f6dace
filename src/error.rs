//! The crate's error: one variant per module error, so callers can match on what failed.

/// Any error qgpu returns.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The GPU, the driver or wgpu refused something.
    #[error(transparent)]
    Gpu(#[from] crate::gpu::GpuError),
    /// A host matrix or quantization request was malformed.
    #[error(transparent)]
    Quant(#[from] crate::quant::QuantError),
    /// Shapes that do not fit an operation.
    #[error(transparent)]
    Shape(#[from] crate::tensor::ShapeError),
    /// A malformed GGUF file.
    #[error(transparent)]
    Gguf(#[from] crate::loader::GgufError),
    /// A model qgpu cannot run, or a request it cannot serve.
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    /// The tokenizer metadata or chat template is unusable, or text could not be encoded.
    #[error(transparent)]
    Tokenizer(#[from] crate::model::tokenizer::TokenizerError),
    /// Sampling settings out of range, or logits that cannot be sampled (NaN).
    #[error(transparent)]
    Sampler(#[from] crate::model::sampler::SamplerError),
}
