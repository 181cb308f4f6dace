//! Moving a model's tensors to the GPU, still quantized: a GGUF file's as stored, a Hugging Face
//! directory's F32, F16 and BF16 as stored.

use std::borrow::Cow;

use super::LlamaConfig;
use crate::gpu::Context;
use crate::loader::{GgmlType, TensorSource};
use crate::model::ModelError;
use crate::ops::{GpuMatrix, GpuTensor};
use crate::quant::{reference, Format, QuantMatrixRef};
use crate::Error;

pub(super) struct LayerWeights {
    pub attn_norm: GpuTensor,
    pub q: GpuMatrix,
    pub k: GpuMatrix,
    pub v: GpuMatrix,
    /// Q, K and V biases (Qwen2), each present or not as the file has it.
    pub q_bias: Option<GpuTensor>,
    pub k_bias: Option<GpuTensor>,
    pub v_bias: Option<GpuTensor>,
    /// Per-head RMSNorm of Q and K before RoPE (Qwen3, Gemma 3), `head_dim` weights each.
    pub q_norm: Option<GpuTensor>,
    pub k_norm: Option<GpuTensor>,
    pub o: GpuMatrix,
    /// RMSNorm of the attention output before the residual add (Gemma 2/3).
    pub post_attn_norm: Option<GpuTensor>,
    pub ffn_norm: GpuTensor,
    pub gate: GpuMatrix,
    pub up: GpuMatrix,
    pub down: GpuMatrix,
    /// RMSNorm of the FFN output before the residual add (Gemma 2/3).
    pub post_ffn_norm: Option<GpuTensor>,
}

pub(super) struct Weights {
    pub embed: GpuMatrix,
    /// `None` when the head is tied to the embedding table.
    pub head: Option<GpuMatrix>,
    pub output_norm: GpuTensor,
    /// Per-pair RoPE frequency divisors (`rope_freqs`, Llama 3.x), as f32 on the host.
    pub rope_freqs: Option<Vec<f32>>,
    /// LongRoPE's divisors within and past the original context (Phi-3 128k).
    pub rope_factors_short: Option<Vec<f32>>,
    pub rope_factors_long: Option<Vec<f32>>,
    pub layers: Vec<LayerWeights>,
    pub bytes: u64,
}

/// The format of tensor `name`, or a typed error naming it when qgpu has no kernel for its type.
pub fn format_of(name: &str, ty: GgmlType) -> Result<Format, ModelError> {
    Format::from_ggml_type(ty.id())
        .ok_or_else(|| ModelError::UnsupportedTensorType { tensor: name.to_string(), ggml_type: ty.name().to_string() })
}

struct Loader<'a> {
    ctx: &'a Context,
    source: &'a dyn TensorSource,
    bytes: u64,
    done: usize,
    total: usize,
    progress: &'a mut dyn FnMut(usize, usize),
}

impl Loader<'_> {
    fn step(&mut self) {
        self.done += 1;
        (self.progress)(self.done, self.total);
    }

    /// Tensor `name`, checked against `dims`, with the format its bytes are uploaded in.
    fn tensor(&self, name: &str, dims: &[u64]) -> Result<(Format, Cow<'_, [u8]>), Error> {
        let info = self.source.tensor(name).ok_or_else(|| ModelError::MissingTensor { name: name.into() })?;
        if info.dims != dims {
            return Err(ModelError::TensorShape { name: name.into(), expected: dims.to_vec(), actual: info.dims.clone() }.into());
        }
        let bytes = self.source.tensor_bytes(name).map_err(ModelError::from)?;
        Ok((format_of(name, info.ggml_type)?, bytes))
    }

    /// A `[cols, rows]` GGUF matrix, uploaded in its own format.
    fn matrix(&mut self, name: &str, rows: usize, cols: usize) -> Result<GpuMatrix, Error> {
        let (format, data) = self.tensor(name, &[cols as u64, rows as u64])?;
        let matrix = GpuMatrix::upload(self.ctx, QuantMatrixRef::new(format, rows, cols, &data)?)?;
        self.bytes += matrix.gpu_bytes();
        self.step();
        Ok(matrix)
    }

    /// A `[cols, rows]` GGUF matrix that holds several matrices one after another by rows
    /// (a fused QKV or gate/up), uploaded as one matrix per part of `parts[i]` rows.
    fn split_matrix(&mut self, name: &str, parts: &[usize], cols: usize) -> Result<Vec<GpuMatrix>, Error> {
        let rows: usize = parts.iter().sum();
        let (format, data) = self.tensor(name, &[cols as u64, rows as u64])?;
        let row_bytes = format.row_bytes(cols).ok_or_else(|| ModelError::BadHyperParameters { reason: format!("{name}: rows of {cols} values overflow") })?;
        let mut out = Vec::with_capacity(parts.len());
        let mut start = 0;
        for &n in parts {
            let bytes = data.get(start * row_bytes..(start + n) * row_bytes).ok_or_else(|| ModelError::MissingTensor { name: name.into() })?;
            out.push(GpuMatrix::upload(self.ctx, QuantMatrixRef::new(format, n, cols, bytes)?)?);
            start += n;
        }
        drop(data);
        self.bytes += out.iter().map(|m| m.gpu_bytes()).sum::<u64>();
        self.step();
        Ok(out)
    }

    /// A vector of `len` values (norm weights, biases), as f32 on the host.
    fn values(&mut self, name: &str, len: usize) -> Result<Vec<f32>, Error> {
        let (format, data) = self.tensor(name, &[len as u64])?;
        let mut values = vec![0.0f32; len];
        reference::dequantize_into(format, &data, &mut values);
        self.step();
        Ok(values)
    }

    /// A vector of `len` values, uploaded as f32.
    fn vector(&mut self, name: &str, len: usize) -> Result<GpuTensor, Error> {
        let values = self.values(name, len)?;
        let tensor = GpuTensor::from_slice(self.ctx, 1, len, &values)?;
        self.bytes += tensor.bytes();
        Ok(tensor)
    }

    /// [`Loader::vector`] for a tensor the architecture may or may not have.
    fn optional_vector(&mut self, name: &str, len: usize) -> Result<Option<GpuTensor>, Error> {
        if self.source.tensor(name).is_none() {
            return Ok(None);
        }
        self.vector(name, len).map(Some)
    }
}

pub(super) fn load(ctx: &Context, source: &dyn TensorSource, c: &LlamaConfig, progress: &mut dyn FnMut(usize, usize)) -> Result<Weights, Error> {
    let tied = source.tensor("output.weight").is_none();
    // Progress counts the tensors the file has; the optional ones are counted as they come.
    let total = source.tensors().len();
    let mut l = Loader { ctx, source, bytes: 0, done: 0, total, progress };
    let embed = l.matrix("token_embd.weight", c.vocab, c.dim)?;
    let head = if tied { None } else { Some(l.matrix("output.weight", c.vocab, c.dim)?) };
    let output_norm = l.vector("output_norm.weight", c.dim)?;
    let mut factors = |name: &str| -> Result<Option<Vec<f32>>, Error> {
        if source.tensor(name).is_none() {
            return Ok(None);
        }
        l.values(name, c.rope_dims / 2).map(Some)
    };
    let (rope_freqs, rope_factors_short, rope_factors_long) =
        (factors("rope_freqs.weight")?, factors("rope_factors_short.weight")?, factors("rope_factors_long.weight")?);
    let (q_dim, kv_dim) = (c.q_dim(), c.kv_dim());
    let mut layers = Vec::with_capacity(c.layers);
    for i in 0..c.layers {
        let n = |t: &str| format!("blk.{i}.{t}.weight");
        let bias = |t: &str| format!("blk.{i}.{t}.bias");
        let attn_norm = l.vector(&n("attn_norm"), c.dim)?;
        let [q, k, v] = if c.arch.fused {
            let parts: [GpuMatrix; 3] = l.split_matrix(&n("attn_qkv"), &[q_dim, kv_dim, kv_dim], c.dim)?.try_into().map_err(|_| ModelError::MissingTensor { name: n("attn_qkv") })?;
            parts
        } else {
            [l.matrix(&n("attn_q"), q_dim, c.dim)?, l.matrix(&n("attn_k"), kv_dim, c.dim)?, l.matrix(&n("attn_v"), kv_dim, c.dim)?]
        };
        let (q_bias, k_bias, v_bias) = (l.optional_vector(&bias("attn_q"), q_dim)?, l.optional_vector(&bias("attn_k"), kv_dim)?, l.optional_vector(&bias("attn_v"), kv_dim)?);
        let (q_norm, k_norm) = (l.optional_vector(&n("attn_q_norm"), c.head_dim)?, l.optional_vector(&n("attn_k_norm"), c.head_dim)?);
        let o = l.matrix(&n("attn_output"), c.dim, q_dim)?;
        let post_attn_norm = l.optional_vector(&n("post_attention_norm"), c.dim)?;
        let ffn_norm = l.vector(&n("ffn_norm"), c.dim)?;
        let [gate, up] = if c.arch.fused {
            let parts: [GpuMatrix; 2] = l.split_matrix(&n("ffn_up"), &[c.ffn, c.ffn], c.dim)?.try_into().map_err(|_| ModelError::MissingTensor { name: n("ffn_up") })?;
            parts
        } else {
            [l.matrix(&n("ffn_gate"), c.ffn, c.dim)?, l.matrix(&n("ffn_up"), c.ffn, c.dim)?]
        };
        let down = l.matrix(&n("ffn_down"), c.dim, c.ffn)?;
        let post_ffn_norm = l.optional_vector(&n("post_ffw_norm"), c.dim)?;
        layers.push(LayerWeights { attn_norm, q, k, v, q_bias, k_bias, v_bias, q_norm, k_norm, o, post_attn_norm, ffn_norm, gate, up, down, post_ffn_norm });
    }
    // Tensors the decoder does not read (if any) leave the count short of the total.
    (l.progress)(total, total);
    let bytes = l.bytes;
    Ok(Weights { embed, head, output_norm, rope_freqs, rope_factors_short, rope_factors_long, layers, bytes })
}
