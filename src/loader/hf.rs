//! A Hugging Face model directory: BERT here, LLaMA in [`super::hf_llama`] (dispatched on
//! `config.json`'s `model_type`).
//!
//! A Hugging Face BERT directory (`config.json`, `model.safetensors` or shards,
//! `tokenizer.json`, optionally sentence-transformers' `sentence_bert_config.json` and
//! `1_Pooling/config.json`) seen as a [`TensorSource`] with llama.cpp's GGUF names and keys, so
//! that the model, `qgpu quantize` and a GGUF written from it all read the same thing.
//!
//! - Tensors: `embeddings.word_embeddings.weight` → `token_embd.weight`,
//!   `encoder.layer.3.attention.self.query.bias` → `blk.3.attn_q.bias`, ... (an optional `bert.`
//!   prefix is dropped; the pooler and integer buffers such as `position_ids` are left out).
//! - Metadata: `general.architecture = "bert"`, `bert.*` hyper-parameters from `config.json`,
//!   `bert.pooling_type = 1` (mean), `tokenizer.ggml.token_type_count`, and the whole
//!   `tokenizer.json` as the string `tokenizer.huggingface.json`. The sentence-transformers
//!   truncation length goes to `bert.max_sequence_length` (a qgpu key; llama.cpp has none).

use std::borrow::Cow;
use std::collections::HashMap;

use super::bnb::{self, Bnb4Weight};
use super::int4::{self, Int4Weight};
use super::quant_config::{self, Quantization};
use super::hf_decoder::{self, DecoderShape, Family};
use super::source::{to_f32, LoadError, SourceTensor, TensorSource};
use super::{GgmlType, Metadata, MetadataValue, SafetensorsSet};

/// Metadata key holding the whole `tokenizer.json`.
pub const TOKENIZER_JSON_KEY: &str = "tokenizer.huggingface.json";
/// Metadata key of the length sentence-transformers truncates inputs to.
pub const MAX_SEQUENCE_LENGTH_KEY: &str = "bert.max_sequence_length";
/// llama.cpp's `bert.pooling_type` for mean pooling.
pub const POOLING_MEAN: u32 = 1;

/// The text files of a model directory, however they were obtained (read from disk, or handed
/// over by a web page).
#[derive(Clone, Copy, Debug)]
pub struct HfFiles<'a> {
    /// `config.json`.
    pub config: &'a [u8],
    /// `tokenizer.json`.
    pub tokenizer: &'a [u8],
    /// `sentence_bert_config.json`, if any (its `max_seq_length` bounds the input length).
    pub sentence_config: Option<&'a [u8]>,
    /// `1_Pooling/config.json`, if any (qgpu pools by mean only).
    pub pooling_config: Option<&'a [u8]>,
    /// `tokenizer_config.json`, if any (LLaMA: special tokens, `add_bos_token`, chat template).
    pub tokenizer_config: Option<&'a [u8]>,
    /// `chat_template.jinja`, if any (LLaMA: the chat template when tokenizer_config.json has none).
    pub chat_template: Option<&'a [u8]>,
}

/// Which name mapping a directory's tensors go through.
#[derive(Clone, Copy, Debug)]
enum Layout {
    Bert,
    Decoder(DecoderShape),
}

/// One mapped tensor.
#[derive(Debug)]
struct Mapped {
    info: SourceTensor,
    /// Hugging Face name.
    hf: String,
    /// Rows reordered over this many heads on the way out (LLaMA q and k).
    permute_heads: Option<usize>,
    /// A Gemma norm weight `w` handed out as the f32 `1 + w`.
    plus_one: bool,
    /// A quantized weight assembled from its companion tensors on the way out.
    packed: Option<Packed>,
}

/// A weight stored as several tensors of a quantized checkpoint.
#[derive(Debug)]
enum Packed {
    Bnb4(Bnb4Weight),
    Int4(Int4Weight),
}

/// A Hugging Face BERT or LLaMA model as a [`TensorSource`].
#[derive(Debug)]
pub struct HfModel {
    path: String,
    weights: SafetensorsSet,
    metadata: Metadata,
    /// Every mapped tensor, in storage order.
    tensors: Vec<Mapped>,
    /// GGUF name → index into `tensors` (the first, for a name mapped twice): lookups are
    /// per tensor, so a scan would make conversion quadratic in the tensor count.
    by_name: HashMap<String, usize>,
}

impl HfModel {
    /// Opens the model directory `dir`.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open(dir: impl AsRef<std::path::Path>) -> Result<Self, LoadError> {
        let dir = dir.as_ref();
        let shown = dir.display().to_string();
        let read = |name: &str| -> Result<Option<Vec<u8>>, LoadError> {
            match std::fs::read(dir.join(name)) {
                Ok(bytes) => Ok(Some(bytes)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(bad(&shown, format!("cannot read {name}: {e}"))),
            }
        };
        let need = |name: &str| read(name)?.ok_or_else(|| bad(&shown, format!("no {name}")));
        let config = need("config.json")?;
        let tokenizer = need("tokenizer.json")?;
        let sentence_config = read("sentence_bert_config.json")?;
        let pooling_config = read("1_Pooling/config.json")?;
        let tokenizer_config = read("tokenizer_config.json")?;
        let chat_template = read("chat_template.jinja")?;
        let files = HfFiles {
            config: &config,
            tokenizer: &tokenizer,
            sentence_config: sentence_config.as_deref(),
            pooling_config: pooling_config.as_deref(),
            tokenizer_config: tokenizer_config.as_deref(),
            chat_template: chat_template.as_deref(),
        };
        // The config first: a directory of another architecture is named as such.
        let (metadata, layout, quantization) = describe(&shown, &files)?;
        if !dir.join("model.safetensors").exists() && !dir.join("model.safetensors.index.json").exists() {
            return Err(bad(&shown, "no model.safetensors (or model.safetensors.index.json)".into()));
        }
        Self::with_metadata(&shown, metadata, layout, quantization, SafetensorsSet::open(dir)?)
    }

    /// Builds the source from the directory's files; `path` names the model in errors.
    pub fn from_parts(path: &str, files: HfFiles<'_>, weights: SafetensorsSet) -> Result<Self, LoadError> {
        let (metadata, layout, quantization) = describe(path, &files)?;
        Self::with_metadata(path, metadata, layout, quantization, weights)
    }

    fn with_metadata(path: &str, metadata: Metadata, layout: Layout, quantization: Quantization, weights: SafetensorsSet) -> Result<Self, LoadError> {
        let mut tensors = Vec::new();
        for t in weights.tensors() {
            // A GPTQ/AWQ layer `X` has `X.qweight` and companions, no `X.weight`.
            let int4_prefix = match quantization {
                Quantization::Int4(_) => t.name.strip_suffix(".qweight"),
                _ => None,
            };
            let hf_name = int4_prefix.map_or_else(|| t.name.clone(), |p| format!("{p}.weight"));
            let (name, permute_heads) = match layout {
                Layout::Bert => (gguf_name(&hf_name), None),
                Layout::Decoder(shape) => {
                    let name = shape.family.gguf_name(&hf_name);
                    let permute = name.as_deref().and_then(|n| shape.permuted_heads(n));
                    (name, permute)
                }
            };
            let Some(name) = name else { continue };
            let packed = match (quantization, int4_prefix) {
                (Quantization::Bnb4, _) => bnb::describe(&weights, &t.name)?.map(Packed::Bnb4),
                (Quantization::Int4(config), Some(prefix)) => Some(Packed::Int4(int4::describe(&weights, prefix, config)?)),
                _ => None,
            };
            let plus_one = match layout {
                Layout::Decoder(shape) => packed.is_none() && shape.family.plus_one(&name),
                Layout::Bert => false,
            };
            let info = match &packed {
                Some(Packed::Bnb4(w)) => SourceTensor { name, dims: vec![w.cols as u64, w.rows as u64], ggml_type: w.ggml_type() },
                Some(Packed::Int4(w)) => SourceTensor { name, dims: vec![w.cols as u64, w.rows as u64], ggml_type: w.ggml_type() },
                None if plus_one => SourceTensor { name, dims: t.gguf_dims(), ggml_type: GgmlType::F32 },
                None => SourceTensor { name, dims: t.gguf_dims(), ggml_type: t.dtype },
            };
            if let Layout::Decoder(shape) = layout {
                // Only Qwen2's q/k/v biases have a place (llama's would need permuting too).
                if !shape.family.qkv_bias && info.name.ends_with(".bias") {
                    return Err(bad(path, format!("`{}`: {} q/k/v biases are not supported (Qwen2's are)", t.name, shape.family.model_type)));
                }
            }
            if let (Some(heads), Layout::Decoder(shape)) = (permute_heads, layout) {
                // Checked here so that reading the tensor later cannot fail on its shape, and a
                // config that does not match the weights is caught before any rows move.
                let rows = info.dims.get(1).copied().unwrap_or(0) as usize;
                if info.dims.len() != 2 || Some(rows) != heads.checked_mul(shape.head_dim) {
                    let want = format!("{heads} heads of {} rows", shape.head_dim);
                    return Err(bad(path, format!("`{}` has shape {:?}, config.json says {want}", t.name, t.shape)));
                }
            }
            tensors.push(Mapped { info, hf: t.name.clone(), permute_heads, plus_one, packed });
        }
        let mut by_name = HashMap::with_capacity(tensors.len());
        for (i, t) in tensors.iter().enumerate() {
            by_name.entry(t.info.name.clone()).or_insert(i);
        }
        Ok(Self { path: path.to_owned(), weights, metadata, tensors, by_name })
    }

    fn mapped(&self, name: &str) -> Option<&Mapped> {
        self.by_name.get(name).and_then(|&i| self.tensors.get(i))
    }
}

/// `config.json`'s `model_type` decides the metadata and the name mapping; its
/// `quantization_config`, how quantized weights are stored.
fn describe(path: &str, files: &HfFiles<'_>) -> Result<(Metadata, Layout, Quantization), LoadError> {
    let config = parse_json(path, "config.json", files.config)?;
    let quantization = quant_config::quantization(&config)?;
    match config.get("model_type").and_then(|v| v.as_str()).unwrap_or("") {
        "bert" => Ok((bert_metadata(path, &config, files)?, Layout::Bert, quantization)),
        model_type => match Family::find(model_type) {
            Some(family) => {
                let (metadata, shape) = hf_decoder::decoder_metadata(path, family, &config, files)?;
                Ok((metadata, Layout::Decoder(shape), quantization))
            }
            None => {
                let known: Vec<&str> = hf_decoder::FAMILIES.iter().map(|f| f.model_type).collect();
                Err(bad(path, format!("config.json: model_type `{model_type}` is not supported (bert, {})", known.join(", "))))
            }
        },
    }
}

impl TensorSource for HfModel {
    fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    fn tensors(&self) -> Vec<SourceTensor> {
        self.tensors.iter().map(|t| t.info.clone()).collect()
    }

    fn tensor(&self, name: &str) -> Option<SourceTensor> {
        self.mapped(name).map(|t| t.info.clone())
    }

    fn tensor_bytes(&self, name: &str) -> Result<Cow<'_, [u8]>, LoadError> {
        let missing = || LoadError::MissingTensor { name: name.to_owned() };
        let mapped = self.mapped(name).ok_or_else(missing)?;
        let (meta, stored) = self.weights.get(&mapped.hf).ok_or_else(missing)?;
        let bytes = match &mapped.packed {
            Some(Packed::Bnb4(w)) => Cow::Owned(bnb::blocks(&self.weights, w)?),
            Some(Packed::Int4(w)) => Cow::Owned(int4::blocks(&self.weights, w)?),
            None if mapped.plus_one => {
                let as_stored = SourceTensor { name: mapped.hf.clone(), dims: meta.gguf_dims(), ggml_type: meta.dtype };
                Cow::Owned(to_f32(&as_stored, stored)?.into_iter().flat_map(|w| (1.0 + w).to_le_bytes()).collect())
            }
            None => Cow::Borrowed(stored),
        };
        match mapped.permute_heads {
            None => Ok(bytes),
            Some(heads) => {
                let rows = mapped.info.dims[1] as usize;
                hf_decoder::permute_rows(&bytes, rows, heads)
                    .map(Cow::Owned)
                    .ok_or_else(|| bad(&self.path, format!("`{}`: {} bytes do not split into {rows} rows of {heads} heads", mapped.hf, bytes.len())))
            }
        }
    }
}

pub(crate) fn bad(path: &str, reason: String) -> LoadError {
    LoadError::BadModel { path: path.to_owned(), reason }
}

/// llama.cpp's GGUF name for a Hugging Face BERT tensor; `None` for tensors BERT embeddings do
/// not use (the pooler, `position_ids`, heads of other tasks).
pub fn gguf_name(hf: &str) -> Option<String> {
    let name = hf.strip_prefix("bert.").unwrap_or(hf);
    // Old checkpoints call LayerNorm parameters gamma and beta.
    let (stem, param) = name.rsplit_once('.')?;
    let param = match param {
        "weight" | "gamma" => "weight",
        "bias" | "beta" => "bias",
        _ => return None,
    };
    let mapped = match stem {
        "embeddings.word_embeddings" => "token_embd".to_owned(),
        "embeddings.token_type_embeddings" => "token_types".to_owned(),
        "embeddings.position_embeddings" => "position_embd".to_owned(),
        "embeddings.LayerNorm" => "token_embd_norm".to_owned(),
        _ => {
            let rest = stem.strip_prefix("encoder.layer.")?;
            let (layer, part) = rest.split_once('.')?;
            let layer: usize = layer.parse().ok()?;
            let part = match part {
                "attention.self.query" => "attn_q",
                "attention.self.key" => "attn_k",
                "attention.self.value" => "attn_v",
                "attention.output.dense" => "attn_output",
                "attention.output.LayerNorm" => "attn_output_norm",
                "intermediate.dense" => "ffn_up",
                "output.dense" => "ffn_down",
                "output.LayerNorm" => "layer_output_norm",
                _ => return None,
            };
            format!("blk.{layer}.{part}")
        }
    };
    Some(format!("{mapped}.{param}"))
}

fn parse_json(path: &str, what: &str, bytes: &[u8]) -> Result<serde_json::Value, LoadError> {
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| bad(path, format!("{what}: {e}")))?;
    if !value.is_object() {
        return Err(bad(path, format!("{what} is not a JSON object")));
    }
    Ok(value)
}

/// `config.json` (and the sentence-transformers files) as GGUF metadata.
fn bert_metadata(path: &str, config: &serde_json::Value, files: &HfFiles<'_>) -> Result<Metadata, LoadError> {
    let positive = |key: &str| -> Result<u32, LoadError> {
        config
            .get(key)
            .and_then(|v| v.as_u64())
            .filter(|&v| v > 0 && v <= u32::MAX as u64)
            .map(|v| v as u32)
            .ok_or_else(|| bad(path, format!("config.json: `{key}` must be a positive integer")))
    };
    let hidden = positive("hidden_size")?;
    let heads = positive("num_attention_heads")?;
    if hidden % heads != 0 {
        return Err(bad(path, format!("config.json: hidden_size {hidden} is not a multiple of num_attention_heads {heads}")));
    }
    let act = config.get("hidden_act").and_then(|v| v.as_str()).unwrap_or("gelu");
    if act != "gelu" {
        return Err(bad(path, format!("config.json: hidden_act `{act}` (qgpu runs the erf GELU, `gelu`)")));
    }
    let position = config.get("position_embedding_type").and_then(|v| v.as_str()).unwrap_or("absolute");
    if position != "absolute" {
        return Err(bad(path, format!("config.json: position_embedding_type `{position}` (qgpu runs `absolute`)")));
    }
    let eps = match config.get("layer_norm_eps") {
        None => 1e-12,
        Some(v) => v.as_f64().filter(|e| e.is_finite() && *e > 0.0).ok_or_else(|| bad(path, "config.json: `layer_norm_eps` must be a positive number".into()))?,
    };
    let context = positive("max_position_embeddings")?;
    let type_count = match config.get("type_vocab_size") {
        None => 2,
        Some(_) => positive("type_vocab_size")?,
    };

    let mut max_len = context;
    if let Some(bytes) = files.sentence_config {
        let st = parse_json(path, "sentence_bert_config.json", bytes)?;
        if let Some(v) = st.get("max_seq_length") {
            let len = v.as_u64().filter(|&n| n > 0).ok_or_else(|| bad(path, "sentence_bert_config.json: `max_seq_length` must be a positive integer".into()))?;
            max_len = max_len.min(len.min(u32::MAX as u64) as u32);
        }
    }
    if let Some(bytes) = files.pooling_config {
        let pooling = parse_json(path, "1_Pooling/config.json", bytes)?;
        let flag = |key: &str| pooling.get(key).and_then(|v| v.as_bool()).unwrap_or(false);
        let others = ["pooling_mode_cls_token", "pooling_mode_max_tokens", "pooling_mode_mean_sqrt_len_tokens"];
        if !flag("pooling_mode_mean_tokens") || others.iter().any(|k| flag(k)) {
            return Err(bad(path, "1_Pooling/config.json: qgpu pools by mean only (pooling_mode_mean_tokens alone)".into()));
        }
    }
    let tokenizer = std::str::from_utf8(files.tokenizer).map_err(|e| bad(path, format!("tokenizer.json is not UTF-8: {e}")))?;

    let mut m = Metadata::new();
    let mut put = |key: &str, value: MetadataValue| m.insert(key, value).map_err(LoadError::from);
    put("general.architecture", "bert".into())?;
    if let Some(name) = config.get("_name_or_path").and_then(|v| v.as_str()).filter(|s| !s.is_empty()) {
        put("general.name", name.into())?;
    }
    put("bert.context_length", context.into())?;
    put("bert.embedding_length", hidden.into())?;
    put("bert.feed_forward_length", positive("intermediate_size")?.into())?;
    put("bert.block_count", positive("num_hidden_layers")?.into())?;
    put("bert.attention.head_count", heads.into())?;
    put("bert.attention.layer_norm_epsilon", (eps as f32).into())?;
    put("bert.attention.causal", false.into())?;
    put("bert.pooling_type", POOLING_MEAN.into())?;
    put(MAX_SEQUENCE_LENGTH_KEY, max_len.into())?;
    put("tokenizer.ggml.token_type_count", type_count.into())?;
    put(TOKENIZER_JSON_KEY, tokenizer.into())?;
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loader::SafetensorsFile;

    #[test]
    fn maps_hf_names_to_gguf_names() {
        assert_eq!(gguf_name("embeddings.word_embeddings.weight").as_deref(), Some("token_embd.weight"));
        assert_eq!(gguf_name("bert.embeddings.LayerNorm.gamma").as_deref(), Some("token_embd_norm.weight"));
        assert_eq!(gguf_name("encoder.layer.5.attention.self.value.bias").as_deref(), Some("blk.5.attn_v.bias"));
        assert_eq!(gguf_name("encoder.layer.0.output.LayerNorm.beta").as_deref(), Some("blk.0.layer_output_norm.bias"));
        assert_eq!(gguf_name("encoder.layer.11.intermediate.dense.weight").as_deref(), Some("blk.11.ffn_up.weight"));
        assert_eq!(gguf_name("pooler.dense.weight"), None);
        assert_eq!(gguf_name("embeddings.position_ids"), None);
        assert_eq!(gguf_name("encoder.layer.x.output.dense.weight"), None);
    }

    fn weights() -> SafetensorsSet {
        let header = r#"{"embeddings.word_embeddings.weight":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"embeddings.position_ids":{"dtype":"I64","shape":[1,2],"data_offsets":[24,40]},"pooler.dense.bias":{"dtype":"F32","shape":[1],"data_offsets":[40,44]}}"#;
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend((0..11u32).flat_map(|i| (i as f32).to_le_bytes()));
        SafetensorsSet::from_files(vec![SafetensorsFile::from_bytes(bytes).unwrap()]).unwrap()
    }

    const CONFIG: &str = r#"{"model_type":"bert","hidden_size":8,"num_attention_heads":2,"intermediate_size":16,"num_hidden_layers":1,"max_position_embeddings":32,"layer_norm_eps":1e-12,"type_vocab_size":2,"hidden_act":"gelu"}"#;

    fn files<'a>(config: &'a str, sentence: Option<&'a str>, pooling: Option<&'a str>) -> HfFiles<'a> {
        HfFiles {
            config: config.as_bytes(),
            tokenizer: b"{}",
            sentence_config: sentence.map(str::as_bytes),
            pooling_config: pooling.map(str::as_bytes),
            tokenizer_config: None,
            chat_template: None,
        }
    }

    #[test]
    fn config_becomes_gguf_metadata_and_names_are_mapped() {
        let model = HfModel::from_parts("m", files(CONFIG, Some(r#"{"max_seq_length":16}"#), None), weights()).unwrap();
        let m = model.metadata();
        assert_eq!(m.get_str("general.architecture").unwrap(), "bert");
        assert_eq!(m.get_u32("bert.embedding_length").unwrap(), 8);
        assert_eq!(m.get_u32("bert.context_length").unwrap(), 32);
        assert_eq!(m.get_u32(MAX_SEQUENCE_LENGTH_KEY).unwrap(), 16);
        assert!(!m.get_bool("bert.attention.causal").unwrap());
        assert_eq!(m.get_f32("bert.attention.layer_norm_epsilon").unwrap(), 1e-12);
        assert_eq!(m.get_str(TOKENIZER_JSON_KEY).unwrap(), "{}");
        let names: Vec<String> = model.tensors().into_iter().map(|t| t.name).collect();
        assert_eq!(names, ["token_embd.weight"]);
        let t = model.tensor("token_embd.weight").unwrap();
        assert_eq!(t.dims, [3, 2]);
        assert_eq!(model.tensor_f32("token_embd.weight").unwrap(), [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        assert!(matches!(model.tensor_bytes("blk.0.attn_q.weight"), Err(LoadError::MissingTensor { .. })));
    }

    #[test]
    fn unusable_configs_are_typed_errors() {
        let err = |config: &str, pooling: Option<&str>| HfModel::from_parts("m", files(config, None, pooling), weights()).unwrap_err();
        for config in [
            "[]",
            "{not json",
            r#"{"model_type":"llama"}"#,
            &CONFIG.replace(r#""hidden_size":8"#, r#""hidden_size":7"#),
            &CONFIG.replace(r#""hidden_size":8"#, r#""hidden_size":-8"#),
            &CONFIG.replace(r#""gelu""#, r#""gelu_new""#),
            &CONFIG.replace(r#","num_hidden_layers":1"#, ""),
        ] {
            assert!(matches!(err(config, None), LoadError::BadModel { .. }), "{config}");
        }
        let cls = r#"{"pooling_mode_cls_token":true,"pooling_mode_mean_tokens":false}"#;
        assert!(matches!(err(CONFIG, Some(cls)), LoadError::BadModel { reason, .. } if reason.contains("mean")));
    }
}
