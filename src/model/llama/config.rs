//! LLaMA hyper-parameters, read from GGUF-style metadata (`{arch}.*` keys, which a Hugging Face
//! source maps its config.json to); nothing is fixed for one model.

use crate::loader::{OptionalKey, TensorSource};
use crate::model::ModelError;

/// Architectures whose GGUF tensors and keys follow llama's layout.
pub const LLAMA_FAMILY: &[&str] = &["llama", "mistral", "granite"];

#[derive(Clone, Debug, PartialEq)]
pub struct LlamaConfig {
    pub architecture: String,
    pub vocab: usize,
    pub dim: usize,
    pub layers: usize,
    pub ffn: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub rope_dims: usize,
    pub rope_base: f32,
    pub eps: f32,
    /// The context length the model was trained for.
    pub trained_context: usize,
}

impl LlamaConfig {
    pub fn from_source(source: &dyn TensorSource) -> Result<Self, ModelError> {
        let file = source.metadata();
        let architecture = file.get_str("general.architecture")?.to_string();
        if !LLAMA_FAMILY.contains(&architecture.as_str()) {
            return Err(ModelError::UnsupportedArchitecture { architecture, expected: "llama" });
        }
        let key = |k: &str| format!("{architecture}.{k}");
        let dim = file.get_usize(&key("embedding_length"))?;
        let heads = file.get_usize(&key("attention.head_count"))?;
        let kv_heads = file.get_usize(&key("attention.head_count_kv")).optional()?.unwrap_or(heads);
        if heads == 0 || kv_heads == 0 || !heads.is_multiple_of(kv_heads) || !dim.is_multiple_of(heads) {
            return Err(ModelError::BadHyperParameters { reason: format!("{heads} heads, {kv_heads} KV heads, width {dim}") });
        }
        let head_dim = dim / heads;
        let rope_dims = file.get_usize(&key("rope.dimension_count")).optional()?.unwrap_or(head_dim);
        if rope_dims > head_dim || !rope_dims.is_multiple_of(2) {
            return Err(ModelError::BadHyperParameters { reason: format!("rope over {rope_dims} of {head_dim} head dimensions") });
        }
        let embed = source.tensor("token_embd.weight").ok_or(ModelError::MissingTensor { name: "token_embd.weight".into() })?;
        let vocab = embed.dims.get(1).copied().unwrap_or(0) as usize;
        Ok(Self {
            vocab,
            dim,
            layers: file.get_usize(&key("block_count"))?,
            ffn: file.get_usize(&key("feed_forward_length"))?,
            heads,
            kv_heads,
            head_dim,
            rope_dims,
            rope_base: file.get_f32(&key("rope.freq_base")).optional()?.unwrap_or(10_000.0),
            eps: file.get_f32(&key("attention.layer_norm_rms_epsilon")).optional()?.unwrap_or(1e-5),
            trained_context: file.get_usize(&key("context_length")).optional()?.unwrap_or(2048),
            architecture,
        })
    }

    pub fn kv_dim(&self) -> usize {
        self.kv_heads * self.head_dim
    }
}
