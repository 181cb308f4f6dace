//! `config.json`'s `quantization_config`: which kind of quantized checkpoint a Hugging Face
//! directory holds ([`super::bnb`] for bitsandbytes, [`super::int4`] for GPTQ and AWQ).

use serde_json::Value;

use super::int4::{self, Int4Config};
use super::source::LoadError;

/// What `config.json`'s `quantization_config` says the checkpoint holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Quantization {
    /// No `quantization_config`: plain float weights.
    None,
    /// bitsandbytes 4-bit (NF4 or FP4, per tensor).
    Bnb4,
    /// GPTQ or AWQ 4-bit integers.
    Int4(Int4Config),
}

/// Reads `quantization_config`; a method or variant qgpu cannot run is an error naming its key.
pub(crate) fn quantization(config: &Value) -> Result<Quantization, LoadError> {
    let Some(q) = config.get("quantization_config") else { return Ok(Quantization::None) };
    let unsupported = |key: &str, value: &Value, why: &str| LoadError::UnsupportedQuantization {
        key: format!("quantization_config.{key}"),
        value: value.to_string(),
        reason: why.to_owned(),
    };
    let method = q.get("quant_method").unwrap_or(&Value::Null);
    match method.as_str() {
        Some("bitsandbytes") => {
            let flag = |key: &str| q.get(key).and_then(Value::as_bool).unwrap_or(false);
            if flag("load_in_8bit") {
                return Err(unsupported("load_in_8bit", &Value::Bool(true), "8-bit bitsandbytes (LLM.int8) is not supported; 4-bit NF4 and FP4 are"));
            }
            if !flag("load_in_4bit") {
                return Err(unsupported("load_in_4bit", q.get("load_in_4bit").unwrap_or(&Value::Null), "a bitsandbytes checkpoint must be 4-bit"));
            }
            Ok(Quantization::Bnb4)
        }
        Some(m @ ("gptq" | "awq")) => Ok(Quantization::Int4(int4::config(q, m)?)),
        _ => Err(unsupported("quant_method", method, "qgpu reads bitsandbytes 4-bit, GPTQ and AWQ checkpoints")),
    }
}

