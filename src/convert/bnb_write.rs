//! `qgpu quantize --format NF4|FP4`: a Hugging Face directory → a bitsandbytes 4-bit
//! directory, laid out as transformers' `save_pretrained` writes one, so that transformers
//! with bitsandbytes loads it as well as qgpu does ([`crate::loader::bnb`]).
//!
//! - Quantized: every 2-D `.weight` of a linear layer (not the embeddings, not `lm_head`, as
//!   transformers), whose rows are whole 64-value blocks; a linear layer whose rows are not is
//!   kept in float and listed in `llm_int8_skip_modules`, so transformers keeps it so too.
//! - Each becomes `X.weight` (packed nibbles, uint8 `[n / 2, 1]`), `X.weight.absmax` (f32 per
//!   64 values), `X.weight.quant_map` (the codebook) and
//!   `X.weight.quant_state.bitsandbytes__nf4` (its JSON), quantized by
//!   [`crate::quant::bnb4::quantize_bnb4`] (bitsandbytes' rounding). No double quantization.
//! - Everything else is copied with its dtype, and the directory's other files are copied;
//!   `config.json` gets a `quantization_config`.
//!
//! The directory is created (it must not exist) and removed again if writing fails.

use std::io::{BufWriter, Write};
use std::path::Path;

use serde_json::{json, Value};

use super::ConvertError;
use crate::loader::safetensors::SafetensorsTensor;
use crate::loader::{to_f32, HfModel, LoadError, SafetensorsSet, SourceTensor, TensorSource};
use crate::quant::bnb4::{quantize_bnb4, Bnb4Kind, BNB_BLOCK};

/// Files of a model directory copied as they are (config.json is rewritten; weights re-encoded).
const COPIED: &[&str] = &[
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "generation_config.json",
    "vocab.txt",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    "modules.json",
    "1_Pooling/config.json",
];

/// What one tensor became.
#[derive(Clone, Debug, PartialEq)]
pub struct BnbTensorReport {
    /// Hugging Face name.
    pub name: String,
    /// Values in the tensor.
    pub values: u64,
    /// Quantized to 4 bits (else copied in its dtype).
    pub quantized: bool,
    /// Bytes written for it, companions included.
    pub bytes: u64,
}

/// The result of writing a bitsandbytes directory.
#[derive(Clone, Debug, PartialEq)]
pub struct BnbReport {
    pub tensors: Vec<BnbTensorReport>,
    /// Linear layers kept in float because their rows are not whole 64-value blocks.
    pub skipped_modules: Vec<String>,
    /// Size of `model.safetensors`.
    pub file_bytes: u64,
}

/// One output tensor: name, safetensors dtype, shape, and how to produce its bytes.
struct Planned<'a> {
    name: String,
    dtype: &'static str,
    shape: Vec<u64>,
    len: u64,
    bytes: Bytes<'a>,
}

enum Bytes<'a> {
    Stored(&'a [u8]),
    Owned(Vec<u8>),
    /// The packed nibbles of weight `source`, quantized as they are written; the same
    /// quantization's f32 absmax values are kept for the `Absmax` part that follows.
    Nibbles { source: &'a SafetensorsTensor, data: &'a [u8], kind: Bnb4Kind },
    /// The absmax of the weight written just before.
    Absmax,
}

/// Whether a Hugging Face tensor is a linear layer's weight that transformers' bitsandbytes
/// integration replaces (every `nn.Linear` but `lm_head`; embeddings are `nn.Embedding`).
fn is_linear_weight(t: &SafetensorsTensor) -> bool {
    t.shape.len() == 2 && t.name.ends_with(".weight") && !t.name.contains("embed") && !t.name.starts_with("lm_head")
}

/// Writes `dir`'s model as a bitsandbytes `kind` directory at `out`.
pub fn write_bnb4(dir: &Path, kind: Bnb4Kind, out: &Path) -> Result<BnbReport, ConvertError> {
    // Opening it as a model checks the config, the tokenizer and every tensor first.
    let model = HfModel::open(dir)?;
    let config_path = dir.join("config.json");
    let config_bytes = std::fs::read(&config_path).map_err(|e| io(&config_path, e))?;
    let mut config: Value = serde_json::from_slice(&config_bytes).map_err(|e| bad(dir, format!("config.json: {e}")))?;
    if config.get("quantization_config").is_some() {
        return Err(ConvertError::BnbSource { path: dir.to_owned(), reason: "it is quantized already; `--format NF4`/`FP4` needs float weights (re-quantize it to a GGUF format instead)".into() });
    }
    if model.tensors().iter().any(|t| !matches!(t.ggml_type.name(), "F32" | "F16" | "BF16")) {
        return Err(ConvertError::BnbSource { path: dir.to_owned(), reason: "its weights are not all F32, F16 or BF16".into() });
    }
    let weights = SafetensorsSet::open(dir).map_err(LoadError::from)?;
    let mut planned = Vec::new();
    let mut reports = Vec::new();
    let mut skipped = Vec::new();
    for t in weights.tensors() {
        let (_, data) = weights.get(&t.name).expect("listed tensor");
        let values = t.shape.iter().product::<u64>();
        let cols = t.shape.last().copied().unwrap_or(0);
        if !is_linear_weight(t) || cols == 0 || cols % BNB_BLOCK as u64 != 0 {
            if is_linear_weight(t) {
                skipped.push(t.name.trim_end_matches(".weight").to_owned());
            }
            planned.push(Planned { name: t.name.clone(), dtype: t.dtype_name, shape: t.shape.clone(), len: data.len() as u64, bytes: Bytes::Stored(data) });
            reports.push(BnbTensorReport { name: t.name.clone(), values, quantized: false, bytes: data.len() as u64 });
            continue;
        }
        let rows = t.shape[0];
        let state = json!({
            "quant_type": kind.name(),
            "blocksize": BNB_BLOCK,
            "dtype": match t.dtype.name() { "F16" => "float16", "BF16" => "bfloat16", _ => "float32" },
            "shape": [rows, cols],
        })
        .to_string()
        .into_bytes();
        let map: Vec<u8> = kind.codebook().iter().flat_map(|v| v.to_le_bytes()).collect();
        let blocks = values / BNB_BLOCK as u64;
        let w = &t.name;
        let parts = [
            Planned { name: w.clone(), dtype: "U8", shape: vec![values / 2, 1], len: values / 2, bytes: Bytes::Nibbles { source: t, data, kind } },
            Planned { name: format!("{w}.absmax"), dtype: "F32", shape: vec![blocks], len: 4 * blocks, bytes: Bytes::Absmax },
            Planned { name: format!("{w}.quant_map"), dtype: "F32", shape: vec![16], len: 64, bytes: Bytes::Owned(map) },
            Planned {
                name: format!("{w}.quant_state.bitsandbytes__{}", kind.name()),
                dtype: "U8",
                shape: vec![state.len() as u64],
                len: state.len() as u64,
                bytes: Bytes::Owned(state),
            },
        ];
        reports.push(BnbTensorReport { name: w.clone(), values, quantized: true, bytes: parts.iter().map(|p| p.len).sum() });
        planned.extend(parts);
    }

    let mut skip_modules = vec!["lm_head".to_owned()];
    skip_modules.extend(skipped.iter().cloned());
    config["quantization_config"] = json!({
        "quant_method": "bitsandbytes",
        "load_in_4bit": true,
        "load_in_8bit": false,
        "bnb_4bit_quant_type": kind.name(),
        "bnb_4bit_use_double_quant": false,
        "bnb_4bit_compute_dtype": "float32",
        "bnb_4bit_quant_storage": "uint8",
        "llm_int8_skip_modules": skip_modules,
        "llm_int8_threshold": 6.0,
        "llm_int8_has_fp16_weight": false,
        "llm_int8_enable_fp32_cpu_offload": false,
    });

    std::fs::create_dir(out).map_err(|e| io(out, e))?;
    let written = write_dir(dir, out, &config, &planned);
    match written {
        Ok(file_bytes) => Ok(BnbReport { tensors: reports, skipped_modules: skipped, file_bytes }),
        Err(e) => {
            // The directory is ours (create_dir succeeded): leave nothing half-written.
            let _ = std::fs::remove_dir_all(out);
            Err(e)
        }
    }
}

fn write_dir(dir: &Path, out: &Path, config: &Value, planned: &[Planned<'_>]) -> Result<u64, ConvertError> {
    let text = serde_json::to_string_pretty(config).expect("JSON value");
    std::fs::write(out.join("config.json"), text).map_err(|e| io(&out.join("config.json"), e))?;
    for name in COPIED {
        let from = dir.join(name);
        if from.is_file() {
            let to = out.join(name);
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
            }
            std::fs::copy(&from, &to).map_err(|e| io(&to, e))?;
        }
    }
    write_safetensors(&out.join("model.safetensors"), planned)
}

/// Header first (every length is known in advance), then each tensor's bytes in order.
fn write_safetensors(path: &Path, planned: &[Planned<'_>]) -> Result<u64, ConvertError> {
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), json!({"format": "pt"}));
    let mut offset = 0u64;
    for p in planned {
        header.insert(p.name.clone(), json!({"dtype": p.dtype, "shape": p.shape, "data_offsets": [offset, offset + p.len]}));
        offset += p.len;
    }
    let mut json = Value::Object(header).to_string().into_bytes();
    // Pad the header with spaces so the data starts 8-byte aligned, as safetensors does.
    while !(json.len() + 8).is_multiple_of(8) {
        json.push(b' ');
    }
    let file = std::fs::File::create(path).map_err(|e| io(path, e))?;
    let mut w = BufWriter::new(file);
    let put = |w: &mut BufWriter<std::fs::File>, bytes: &[u8]| w.write_all(bytes).map_err(|e| io(path, e));
    put(&mut w, &(json.len() as u64).to_le_bytes())?;
    put(&mut w, &json)?;
    let mut absmax: Vec<u8> = Vec::new();
    for p in planned {
        match &p.bytes {
            Bytes::Stored(b) => put(&mut w, b)?,
            Bytes::Owned(b) => put(&mut w, b)?,
            Bytes::Nibbles { source, data, kind } => {
                let info = SourceTensor { name: source.name.clone(), dims: source.gguf_dims(), ggml_type: source.dtype };
                let values = to_f32(&info, data)?;
                let mut nibbles = Vec::with_capacity(values.len() / 2);
                absmax.clear();
                for block in values.chunks_exact(BNB_BLOCK) {
                    let b = quantize_bnb4(*kind, block);
                    nibbles.extend_from_slice(&b.qs);
                    absmax.extend_from_slice(&b.absmax.to_le_bytes());
                }
                put(&mut w, &nibbles)?;
            }
            Bytes::Absmax => put(&mut w, &absmax)?,
        }
    }
    let mut file = w.into_inner().map_err(|e| io(path, e.into_error()))?;
    file.flush().map_err(|e| io(path, e))?;
    file.sync_all().map_err(|e| io(path, e))?;
    Ok(8 + json.len() as u64 + offset)
}

fn io(path: &Path, source: std::io::Error) -> ConvertError {
    ConvertError::Io { path: path.to_owned(), source }
}

fn bad(dir: &Path, reason: String) -> ConvertError {
    ConvertError::BnbSource { path: dir.to_owned(), reason }
}
