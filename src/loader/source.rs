//! One view over every model container qgpu reads: a GGUF file, or a Hugging Face directory of
//! safetensors. Models, `qgpu quantize` and `qgpu eval` take a `&dyn TensorSource`, so they do not
//! care where the weights came from.
//!
//! Conventions, whatever the container:
//! - tensor names and metadata keys follow GGUF/llama.cpp (`blk.3.attn_q.weight`,
//!   `bert.embedding_length`); a Hugging Face source maps its names on the way in;
//! - dims are in GGUF order, `dims[0]` varies fastest (a `[out, in]` PyTorch weight has
//!   `dims == [in, out]`);
//! - element types are ggml's (`F32`, `F16`, `BF16`, or a block format).

use std::borrow::Cow;

use half::{bf16, f16};

use super::{GgmlType, GgufError, GgufFile, Metadata};
use crate::quant::{reference, Format};

/// A tensor as a source describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceTensor {
    /// GGUF-style name, unique within the source.
    pub name: String,
    /// Dimensions in GGUF order (`dims[0]` fastest).
    pub dims: Vec<u64>,
    /// Stored element type.
    pub ggml_type: GgmlType,
}

impl SourceTensor {
    /// Number of values, or `None` on overflow.
    pub fn n_elements(&self) -> Option<u64> {
        self.dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d))
    }
}

impl From<&super::TensorInfo> for SourceTensor {
    fn from(t: &super::TensorInfo) -> Self {
        SourceTensor { name: t.name.clone(), dims: t.dims.clone(), ggml_type: t.ggml_type }
    }
}

/// Everything that can go wrong reading tensors from a [`TensorSource`].
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The GGUF container is malformed.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// The safetensors container is malformed.
    #[error(transparent)]
    Safetensors(#[from] super::safetensors::SafetensorsError),
    /// No tensor of that name in the source.
    #[error("tensor `{name}` is missing")]
    MissingTensor { name: String },
    /// The tensor's element type cannot be converted to f32 by qgpu.
    #[error("tensor `{name}` is {ggml_type}, which qgpu cannot convert to f32")]
    UnsupportedType { name: String, ggml_type: &'static str },
    /// The stored bytes do not match the tensor's dims and type.
    #[error("tensor `{name}`: {actual} bytes stored, {expected} expected for its dims and type")]
    SizeMismatch { name: String, expected: u64, actual: u64 },
    /// A quantized checkpoint's metadata is wrong or inconsistent: `key` names the quant-state
    /// field or companion tensor (`X.weight.absmax`, `X.weight.quant_state...shape`).
    #[error("tensor `{tensor}`: `{key}`: {reason}")]
    BadQuantization { tensor: String, key: String, reason: String },
    /// `config.json` asks for a quantization qgpu cannot run (`key` is the field, `value` its
    /// value).
    #[error("config.json: `{key}` = {value}: {reason}")]
    UnsupportedQuantization { key: String, value: String, reason: String },
    /// A file of a `gguf-split` model that does not belong where it is (its `split.*` keys, a
    /// tensor two files hold).
    #[error("split model file `{file}`: {reason}")]
    BadSplit { file: String, reason: String },
    /// A model directory that lacks a file or whose config cannot be used.
    #[error("model `{path}`: {reason}")]
    BadModel { path: String, reason: String },
}

/// Tensors and metadata of one model, wherever they are stored.
pub trait TensorSource {
    /// GGUF-style metadata (`general.architecture`, hyper-parameters, tokenizer).
    fn metadata(&self) -> &Metadata;
    /// Every tensor, in storage order.
    fn tensors(&self) -> Vec<SourceTensor>;
    /// The stored bytes of tensor `name`, in its own element type.
    fn tensor_bytes(&self, name: &str) -> Result<Cow<'_, [u8]>, LoadError>;

    /// Description of tensor `name`.
    fn tensor(&self, name: &str) -> Option<SourceTensor> {
        self.tensors().into_iter().find(|t| t.name == name)
    }

    /// Tensor `name` converted (or dequantized) to f32, in GGUF order.
    fn tensor_f32(&self, name: &str) -> Result<Vec<f32>, LoadError> {
        let info = self.tensor(name).ok_or_else(|| LoadError::MissingTensor { name: name.to_owned() })?;
        let bytes = self.tensor_bytes(name)?;
        to_f32(&info, &bytes)
    }
}

/// Converts stored bytes of `info`'s type to f32, checking their length first.
pub fn to_f32(info: &SourceTensor, bytes: &[u8]) -> Result<Vec<f32>, LoadError> {
    let n = info.n_elements().unwrap_or(u64::MAX);
    let expected = info.ggml_type.size_of(n).unwrap_or(u64::MAX);
    if bytes.len() as u64 != expected {
        return Err(LoadError::SizeMismatch { name: info.name.clone(), expected, actual: bytes.len() as u64 });
    }
    let n = n as usize;
    match info.ggml_type {
        GgmlType::BF16 => Ok(bytes.chunks_exact(2).map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect()),
        GgmlType::F16 => Ok(bytes.chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()).collect()),
        ty => {
            let format = Format::from_ggml_type(ty.id())
                .ok_or_else(|| LoadError::UnsupportedType { name: info.name.clone(), ggml_type: ty.name() })?;
            let mut out = vec![0.0f32; n];
            reference::dequantize_into(format, bytes, &mut out);
            Ok(out)
        }
    }
}

impl TensorSource for GgufFile {
    fn metadata(&self) -> &Metadata {
        GgufFile::metadata(self)
    }

    fn tensors(&self) -> Vec<SourceTensor> {
        GgufFile::tensors(self).iter().map(SourceTensor::from).collect()
    }

    fn tensor(&self, name: &str) -> Option<SourceTensor> {
        GgufFile::tensor(self, name).map(SourceTensor::from)
    }

    fn tensor_bytes(&self, name: &str) -> Result<Cow<'_, [u8]>, LoadError> {
        let info = GgufFile::tensor(self, name).ok_or_else(|| LoadError::MissingTensor { name: name.to_owned() })?;
        Ok(Cow::Borrowed(self.tensor_data(info)?))
    }
}
