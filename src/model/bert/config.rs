//! BERT hyper-parameters from GGUF-style metadata (`bert.*` keys), whatever the source.

use crate::loader::hf::{MAX_SEQUENCE_LENGTH_KEY, POOLING_MEAN};
use crate::loader::{OptionalKey, TensorSource};
use crate::model::limits::{self, MAX_CONTEXT, MAX_HEADS, MAX_LAYERS, MAX_VOCAB, MAX_WIDTH};
use crate::model::ModelError;
use crate::ops::ENCODER_MAX_HEAD_DIM;

#[derive(Clone, Debug, PartialEq)]
pub struct BertConfig {
    pub vocab: usize,
    pub dim: usize,
    pub layers: usize,
    pub ffn: usize,
    pub heads: usize,
    pub head_dim: usize,
    pub eps: f32,
    /// Rows of the position table: the longest sequence the model can take.
    pub context: usize,
    /// Rows of the token-type table.
    pub token_types: usize,
    /// Inputs are truncated to this many tokens (sentence-transformers' `max_seq_length`, else
    /// the context).
    pub max_sequence: usize,
}

impl BertConfig {
    pub fn from_source(source: &dyn TensorSource) -> Result<Self, ModelError> {
        let m = source.metadata();
        let architecture = m.get_str("general.architecture")?.to_string();
        if architecture != "bert" {
            return Err(ModelError::UnsupportedArchitecture { architecture, expected: "bert" });
        }
        if m.get_bool("bert.attention.causal").optional()?.unwrap_or(false) {
            return Err(ModelError::BadHyperParameters { reason: "bert.attention.causal is true; qgpu's BERT attends both ways".into() });
        }
        if let Some(pooling) = m.get_u32("bert.pooling_type").optional()? {
            if pooling != POOLING_MEAN {
                return Err(ModelError::BadHyperParameters { reason: format!("bert.pooling_type {pooling}; qgpu pools by mean ({POOLING_MEAN})") });
            }
        }
        // Every count is bounded before anything is sized by it (docs/security.md).
        let dim = limits::check("bert.embedding_length", m.get_usize("bert.embedding_length")?, MAX_WIDTH)?;
        let heads = limits::check("bert.attention.head_count", m.get_usize("bert.attention.head_count")?, MAX_HEADS)?;
        if heads == 0 || dim == 0 || !dim.is_multiple_of(heads) {
            return Err(ModelError::BadHyperParameters { reason: format!("{heads} heads for width {dim}") });
        }
        let head_dim = dim / heads;
        if !head_dim.is_multiple_of(4) || head_dim > ENCODER_MAX_HEAD_DIM {
            return Err(ModelError::BadHyperParameters {
                reason: format!("head dimension {head_dim}: qgpu's encoder attention takes multiples of 4 up to {ENCODER_MAX_HEAD_DIM}"),
            });
        }
        let context = limits::check("bert.context_length", m.get_usize("bert.context_length")?, MAX_CONTEXT)?;
        let eps = m.get_f32("bert.attention.layer_norm_epsilon").optional()?.unwrap_or(1e-12);
        if !(eps.is_finite() && eps >= 0.0) {
            return Err(ModelError::BadHyperParameters { reason: format!("layer norm epsilon {eps}") });
        }
        let table_rows = |name: &str| source.tensor(name).and_then(|t| t.dims.get(1).copied()).map(|n| n as usize);
        let vocab = table_rows("token_embd.weight").ok_or(ModelError::MissingTensor { name: "token_embd.weight".into() })?;
        let vocab = limits::check("token_embd.weight rows", vocab, MAX_VOCAB)?;
        let token_types = match m.get_usize("tokenizer.ggml.token_type_count").optional()? {
            Some(n) => n,
            None => table_rows("token_types.weight").unwrap_or(2),
        };
        let token_types = limits::check("tokenizer.ggml.token_type_count", token_types, MAX_VOCAB)?;
        let layers = limits::check("bert.block_count", m.get_usize("bert.block_count")?, MAX_LAYERS)?;
        // The last block must exist: a count from the header is checked against the tensors.
        let last = format!("blk.{}.", layers.saturating_sub(1));
        if layers == 0 || !source.tensors().iter().any(|t| t.name.starts_with(&last)) {
            return Err(ModelError::BadHyperParameters { reason: format!("bert.block_count {layers}, but the file has no tensor `{last}*`") });
        }
        let max_sequence = m.get_usize(MAX_SEQUENCE_LENGTH_KEY).optional()?.unwrap_or(context).min(context);
        if context == 0 || token_types == 0 || max_sequence == 0 {
            return Err(ModelError::BadHyperParameters { reason: format!("context {context}, {token_types} token types, max sequence {max_sequence}") });
        }
        Ok(Self {
            vocab,
            dim,
            layers,
            ffn: limits::check("bert.feed_forward_length", m.get_usize("bert.feed_forward_length")?, MAX_WIDTH)?,
            heads,
            head_dim,
            eps,
            context,
            token_types,
            max_sequence,
        })
    }
}
