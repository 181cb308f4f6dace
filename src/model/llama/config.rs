//! Decoder hyper-parameters, read from GGUF-style metadata (`{arch}.*` keys, which a Hugging
//! Face source maps its config.json to); nothing is fixed for one model. What differs between
//! architectures beyond these numbers is in [`ArchSpec`].

use super::arch::{ArchSpec, QueryScale, WindowLayers};
use crate::loader::{Metadata, OptionalKey, SourceTensor, TensorSource};
use crate::model::limits::{self, MAX_CONTEXT, MAX_HEADS, MAX_LAYERS, MAX_VOCAB, MAX_WIDTH};
use crate::model::ModelError;

#[derive(Clone, Debug, PartialEq)]
pub struct LlamaConfig {
    pub architecture: String,
    pub arch: ArchSpec,
    pub vocab: usize,
    pub dim: usize,
    pub layers: usize,
    pub ffn: usize,
    pub heads: usize,
    pub kv_heads: usize,
    /// Width of one attention head; heads × head_dim need not be `dim` (Gemma 3 270M: 4 × 256
    /// against 640).
    pub head_dim: usize,
    pub rope_dims: usize,
    pub rope_base: f32,
    /// Positions are divided by this before rotation (`rope.scaling.type` linear).
    pub rope_linear_scale: f32,
    /// cos and sin are multiplied by this (`rope.scaling.attn_factor`, Phi-3's LongRoPE).
    pub rope_attn_factor: f32,
    /// Past this many positions, LongRoPE's long frequency factors apply instead of the short
    /// ones (`rope.scaling.original_context_length`, else the trained context).
    pub rope_original_context: usize,
    pub eps: f32,
    /// The context length the model was trained for.
    pub trained_context: usize,
    /// Keys a sliding-window layer attends to (its own position included), if any.
    pub window: Option<usize>,
    /// Which layers are window layers: the architecture's pattern, or the file's
    /// `attention.sliding_window_pattern`.
    pub window_layers: WindowLayers,
    /// RoPE base of the window layers when it is not `rope_base` (the architecture's, or the
    /// file's `rope.freq_base_swa`).
    pub window_rope_base: Option<f32>,
    /// Scores are soft-capped to ±cap by cap·tanh(s/cap) (Gemma 2).
    pub attn_softcap: Option<f32>,
    /// Logits are soft-capped the same way (Gemma 2).
    pub final_softcap: Option<f32>,
    pub attn_scale: f32,
}

impl LlamaConfig {
    /// The configuration of a whole model: its metadata, checked against its tensors.
    pub fn from_source(source: &dyn TensorSource) -> Result<Self, ModelError> {
        let mut config = Self::from_metadata(source.metadata())?;
        config.check_tensors(&source.tensors())?;
        Ok(config)
    }

    /// The configuration the metadata gives, before the tensors are known (a streamed or split
    /// file): `vocab` is 0 until [`LlamaConfig::check_tensors`].
    pub fn from_metadata(file: &Metadata) -> Result<Self, ModelError> {
        let architecture = file.get_str("general.architecture")?.to_string();
        let arch = *ArchSpec::find(&architecture)
            .ok_or_else(|| ModelError::UnsupportedArchitecture { architecture: architecture.clone(), expected: "a decoder" })?;
        let key = |k: &str| format!("{architecture}.{k}");
        // Every count is bounded before anything is sized by it (docs/security.md).
        let dim = limits::check("embedding_length", file.get_usize(&key("embedding_length"))?, MAX_WIDTH)?;
        let heads = limits::check("attention.head_count", file.get_usize(&key("attention.head_count"))?, MAX_HEADS)?;
        let kv_heads = file.get_usize(&key("attention.head_count_kv")).optional()?.unwrap_or(heads);
        if heads == 0 || kv_heads == 0 || !heads.is_multiple_of(kv_heads) {
            return Err(ModelError::BadHyperParameters { reason: format!("{heads} heads, {kv_heads} KV heads, width {dim}") });
        }
        let head_dim = match file.get_usize(&key("attention.key_length")).optional()? {
            Some(d) => d,
            None if dim.is_multiple_of(heads) => dim / heads,
            None => return Err(ModelError::BadHyperParameters { reason: format!("width {dim} is not a multiple of {heads} heads and no key_length is given") }),
        };
        let head_dim = limits::check("attention.key_length", head_dim, MAX_WIDTH)?;
        let value_dim = file.get_usize(&key("attention.value_length")).optional()?.unwrap_or(head_dim);
        if head_dim == 0 || value_dim != head_dim || !head_dim.is_multiple_of(2) {
            return Err(ModelError::BadHyperParameters { reason: format!("key length {head_dim}, value length {value_dim}: qgpu needs them equal and even") });
        }
        let rope_dims = file.get_usize(&key("rope.dimension_count")).optional()?.unwrap_or(head_dim);
        if rope_dims > head_dim || !rope_dims.is_multiple_of(2) {
            return Err(ModelError::BadHyperParameters { reason: format!("rope over {rope_dims} of {head_dim} head dimensions") });
        }
        let rope_linear_scale = match file.get_str(&key("rope.scaling.type")).optional()? {
            None | Some("none") => 1.0,
            Some("linear") => file.get_f32(&key("rope.scaling.factor")).optional()?.unwrap_or(1.0),
            Some(other) => return Err(ModelError::BadHyperParameters { reason: format!("RoPE scaling `{other}` (qgpu supports none, linear and frequency factors)") }),
        };
        if !(rope_linear_scale.is_finite() && rope_linear_scale > 0.0) {
            return Err(ModelError::BadHyperParameters { reason: format!("RoPE scaling factor {rope_linear_scale}") });
        }
        let rope_attn_factor = file.get_f32(&key("rope.scaling.attn_factor")).optional()?.unwrap_or(1.0);
        if !(rope_attn_factor.is_finite() && rope_attn_factor > 0.0) {
            return Err(ModelError::BadHyperParameters { reason: format!("RoPE attention factor {rope_attn_factor}") });
        }
        let trained_context = limits::check("context_length", file.get_usize(&key("context_length")).optional()?.unwrap_or(2048), MAX_CONTEXT)?;
        let layers = limits::check("block_count", file.get_usize(&key("block_count"))?, MAX_LAYERS)?;
        if layers == 0 {
            return Err(ModelError::BadHyperParameters { reason: "block_count 0".into() });
        }
        let ffn = limits::check("feed_forward_length", file.get_usize(&key("feed_forward_length"))?, MAX_WIDTH)?;
        let window = match file.get_usize(&key("attention.sliding_window")).optional()? {
            Some(w) => Some(limits::check("attention.sliding_window", w, MAX_CONTEXT)?).filter(|&w| w > 0),
            None => None,
        };
        let positive = |k: &str| -> Result<Option<f32>, ModelError> { Ok(file.get_f32(&key(k)).optional()?.filter(|v| *v > 0.0 && v.is_finite())) };
        let query_dim = match arch.query_scale {
            QueryScale::HeadDimUnlessLayers(n) if n == layers && dim.is_multiple_of(heads) => dim / heads,
            _ => head_dim,
        };
        Ok(Self {
            vocab: 0,
            dim,
            layers,
            ffn,
            heads,
            kv_heads,
            head_dim,
            rope_dims,
            rope_base: file.get_f32(&key("rope.freq_base")).optional()?.unwrap_or(10_000.0),
            rope_linear_scale,
            rope_attn_factor,
            rope_original_context: limits::check(
                "rope.scaling.original_context_length",
                file.get_usize(&key("rope.scaling.original_context_length")).optional()?.unwrap_or(trained_context),
                MAX_CONTEXT,
            )?,
            eps: file.get_f32(&key("attention.layer_norm_rms_epsilon")).optional()?.unwrap_or(1e-5),
            trained_context,
            window,
            window_layers: match file.get_usize(&key("attention.sliding_window_pattern")).optional()? {
                Some(n) => WindowLayers::AllButEvery(n),
                None => arch.window_layers,
            },
            window_rope_base: positive("rope.freq_base_swa")?.or(arch.window_rope_base),
            attn_softcap: positive("attn_logit_softcapping")?,
            final_softcap: positive("final_logit_softcapping")?,
            // A stated scale (Hugging Face's `query_pre_attn_scalar`, Granite's) wins.
            attn_scale: positive("attention.scale")?.unwrap_or(1.0 / (query_dim as f32).sqrt()),
            architecture,
            arch,
        })
    }

    /// Sets `vocab` from the embedding table and checks the metadata's block count against the
    /// tensors: the last block must exist.
    pub fn check_tensors(&mut self, tensors: &[SourceTensor]) -> Result<(), ModelError> {
        let embed = tensors.iter().find(|t| t.name == "token_embd.weight").ok_or(ModelError::MissingTensor { name: "token_embd.weight".into() })?;
        self.vocab = limits::check("token_embd.weight rows", embed.dims.get(1).copied().unwrap_or(0) as usize, MAX_VOCAB)?;
        let last = format!("blk.{}.", self.layers - 1);
        if !tensors.iter().any(|t| t.name.starts_with(&last)) {
            return Err(ModelError::BadHyperParameters { reason: format!("block_count {}, but the file has no tensor `{last}*`", self.layers) });
        }
        Ok(())
    }

    pub fn kv_dim(&self) -> usize {
        self.kv_heads * self.head_dim
    }
    /// Width of Q and of the attention output: heads × head_dim.
    pub fn q_dim(&self) -> usize {
        self.heads * self.head_dim
    }
    /// The window of layer `layer`, if it attends only within one.
    pub fn layer_window(&self, layer: usize) -> Option<usize> {
        self.window.filter(|_| self.window_layers.is_window_layer(layer))
    }
}
