//! `qgpu eval`: what quantization cost, measured against the full-precision model.
//!
//! - Language models ([`lm`]): perplexity of each model on a text, KL divergence of the
//!   candidate's next-token distribution from the reference's, and top-1 agreement. Both models
//!   run on the GPU and their logits are compared there (`ops::LogitMetrics`).
//! - Embedding models ([`embed`]): cosine similarity of each sentence's embedding against the
//!   reference model's.
//!
//! Sits above `model`: it runs models and knows nothing of files or the terminal.

pub mod embed;
pub mod lm;

pub use embed::{cosine, EmbeddingScore};
pub use lm::{compare_language_models, LmScore};

use crate::loader::TensorSource;
use std::collections::BTreeMap;

/// What a model's tensors cost, by element type.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ModelSize {
    /// Bytes of tensor data (metadata and padding excluded).
    pub bytes: u64,
    /// Number of values.
    pub elements: u64,
    /// Bytes per ggml type name (`"Q4_1"`, `"F32"`, ...).
    pub by_type: BTreeMap<&'static str, u64>,
}

impl ModelSize {
    /// Sums the tensors of `source`; a tensor whose size overflows is counted as `u64::MAX`.
    pub fn of(source: &dyn TensorSource) -> Self {
        let mut size = ModelSize::default();
        for t in source.tensors() {
            let n = t.n_elements().unwrap_or(u64::MAX);
            let bytes = t.ggml_type.size_of(n).unwrap_or(u64::MAX);
            size.bytes = size.bytes.saturating_add(bytes);
            size.elements = size.elements.saturating_add(n);
            *size.by_type.entry(t.ggml_type.name()).or_default() += bytes;
        }
        size
    }

    /// Storage bits per value, over every tensor.
    pub fn bits_per_weight(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.elements.max(1) as f64
    }

    /// Element types by share of the bytes, largest first: `"Q4_1 91% + Q8_0 9%"`.
    pub fn mix(&self) -> String {
        let mut types: Vec<(&str, u64)> = self.by_type.iter().map(|(k, v)| (*k, *v)).collect();
        types.sort_by_key(|t| std::cmp::Reverse(t.1));
        types
            .iter()
            .filter(|(_, b)| *b * 100 >= self.bytes.max(1))
            .map(|(t, b)| format!("{t} {:.0}%", *b as f64 * 100.0 / self.bytes.max(1) as f64))
            .collect::<Vec<_>>()
            .join(" + ")
    }
}
