//! Models built from ops and loaded by the loaders.

pub mod bert;
pub mod chat;
pub mod generate;
pub mod limits;
pub mod llama;
pub mod observe;
pub mod sampler;
pub mod tokenizer;

pub use observe::LinearInputObserver;

use crate::loader::{GgufError, LoadError};

/// A model file that qgpu cannot run, or a request the model cannot serve.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The file's metadata or tensor table is malformed.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// A tensor could not be read from its source (GGUF file or Hugging Face directory).
    #[error(transparent)]
    Load(#[from] LoadError),
    /// `general.architecture` is not one the model being loaded runs (`expected`: `a decoder`
    /// for the decoder, `bert` for the encoder); the message lists every supported one.
    #[error("architecture `{architecture}` is not what this model runs ({expected}); qgpu runs the decoders {} and the encoder bert", crate::model::llama::ArchSpec::names())]
    UnsupportedArchitecture { architecture: String, expected: &'static str },
    /// A streamed model's files were begun, fed or ended out of order.
    #[error("streamed model: {reason}")]
    BadStream { reason: String },
    /// Hyper-parameters that contradict each other.
    #[error("inconsistent hyper-parameters: {reason}")]
    BadHyperParameters { reason: String },
    /// A tensor the architecture needs is not in the file.
    #[error("tensor `{name}` is missing")]
    MissingTensor { name: String },
    /// A tensor's dimensions differ from what the hyper-parameters imply.
    #[error("tensor `{name}` has dims {actual:?}, expected {expected:?}")]
    TensorShape { name: String, expected: Vec<u64>, actual: Vec<u64> },
    /// A tensor in a format qgpu has no kernel for.
    #[error("tensor `{tensor}` is {ggml_type}, which qgpu cannot run (it runs {})", crate::quant::known_formats())]
    UnsupportedTensorType { tensor: String, ggml_type: String },
    /// A forward pass with no tokens.
    #[error("no input tokens")]
    EmptyInput,
    /// A token id at or beyond the vocabulary size.
    #[error("token id {id} is outside the vocabulary of {vocab}")]
    TokenOutOfRange { id: u32, vocab: usize },
    /// A token type id at or beyond the model's number of token types.
    #[error("token type {id} is outside the model's {types} token types")]
    TokenTypeOutOfRange { id: u32, types: usize },
    /// The sequence would outgrow the KV cache.
    #[error("the sequence needs {needed} positions but the KV cache holds {context}")]
    ContextFull { needed: usize, context: usize },
    /// A slot past the sequences the model was loaded with ([`llama::LlamaOptions::slots`]).
    #[error("slot {slot} does not exist: the model holds {slots} sequences")]
    NoSuchSlot { slot: usize, slots: usize },
    /// [`llama::Llama::decode_batch`] given the same slot twice.
    #[error("slot {slot} appears twice in one decode batch")]
    SlotRepeated { slot: usize },
    /// [`llama::Llama::rewind`] to a position the KV cache no longer holds intact.
    #[error("cannot rewind the sequence from position {position} to {to}: {reason}")]
    CannotRewind { to: usize, position: usize, reason: &'static str },
    /// A buffer that grows with the context (a layer's K or V cache, the RoPE table) would pass
    /// the adapter's binding limit at the requested context.
    #[error("a context of {context} positions needs a {what} of {needed} bytes, over this adapter's binding limit of {limit}; at most {fits} positions fit (a smaller --context or --kv-type)")]
    ContextTooLarge { context: usize, what: &'static str, needed: u64, limit: u64, fits: usize },
    /// The GPU ran out of memory allocating the model at the requested context.
    #[error("GPU memory ran out allocating {needed} bytes (weights {weights}, KV cache {kv_cache}) for a context of {context} positions; a smaller --context or --kv-type (or, serving, fewer --parallel slots) needs less")]
    OutOfMemory { context: usize, needed: u64, weights: u64, kv_cache: u64 },
    /// A count in the file is above qgpu's budget for it (docs/security.md).
    #[error(transparent)]
    Limit(#[from] limits::LimitError),
}
