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
    pub o: GpuMatrix,
    pub ffn_norm: GpuTensor,
    pub gate: GpuMatrix,
    pub up: GpuMatrix,
    pub down: GpuMatrix,
}

pub(super) struct Weights {
    pub embed: GpuMatrix,
    /// `None` when the head is tied to the embedding table.
    pub head: Option<GpuMatrix>,
    pub output_norm: GpuTensor,
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

    /// A vector of `len` values (norm weights), as f32.
    fn vector(&mut self, name: &str, len: usize) -> Result<GpuTensor, Error> {
        let (format, data) = self.tensor(name, &[len as u64])?;
        let mut values = vec![0.0f32; len];
        reference::dequantize_into(format, &data, &mut values);
        let tensor = GpuTensor::from_slice(self.ctx, 1, len, &values)?;
        self.bytes += tensor.bytes();
        self.step();
        Ok(tensor)
    }
}

pub(super) fn load(ctx: &Context, source: &dyn TensorSource, c: &LlamaConfig, progress: &mut dyn FnMut(usize, usize)) -> Result<Weights, Error> {
    let tied = source.tensor("output.weight").is_none();
    let total = 2 + usize::from(!tied) + 9 * c.layers;
    let mut l = Loader { ctx, source, bytes: 0, done: 0, total, progress };
    let embed = l.matrix("token_embd.weight", c.vocab, c.dim)?;
    let head = if tied { None } else { Some(l.matrix("output.weight", c.vocab, c.dim)?) };
    let output_norm = l.vector("output_norm.weight", c.dim)?;
    let mut layers = Vec::with_capacity(c.layers);
    for i in 0..c.layers {
        let n = |t: &str| format!("blk.{i}.{t}.weight");
        layers.push(LayerWeights {
            attn_norm: l.vector(&n("attn_norm"), c.dim)?,
            q: l.matrix(&n("attn_q"), c.dim, c.dim)?,
            k: l.matrix(&n("attn_k"), c.kv_dim(), c.dim)?,
            v: l.matrix(&n("attn_v"), c.kv_dim(), c.dim)?,
            o: l.matrix(&n("attn_output"), c.dim, c.dim)?,
            ffn_norm: l.vector(&n("ffn_norm"), c.dim)?,
            gate: l.matrix(&n("ffn_gate"), c.ffn, c.dim)?,
            up: l.matrix(&n("ffn_up"), c.ffn, c.dim)?,
            down: l.matrix(&n("ffn_down"), c.dim, c.ffn)?,
        });
    }
    let bytes = l.bytes;
    Ok(Weights { embed, head, output_norm, layers, bytes })
}
