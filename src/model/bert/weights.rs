//! Moving a BERT's tensors to the GPU: matrices in their own format (quantized or not), vectors
//! (biases, norms) as f32.

use super::BertConfig;
use crate::gpu::Context;
use crate::loader::{GgmlType, TensorSource};
use crate::model::ModelError;
use crate::ops::{GpuMatrix, GpuTensor};
use crate::quant::{Format, QuantMatrixRef};
use crate::Error;

pub(super) struct LayerWeights {
    pub q: GpuMatrix,
    pub q_bias: GpuTensor,
    pub k: GpuMatrix,
    pub k_bias: GpuTensor,
    pub v: GpuMatrix,
    pub v_bias: GpuTensor,
    pub o: GpuMatrix,
    pub o_bias: GpuTensor,
    pub attn_norm: GpuTensor,
    pub attn_norm_bias: GpuTensor,
    pub up: GpuMatrix,
    pub up_bias: GpuTensor,
    pub down: GpuMatrix,
    pub down_bias: GpuTensor,
    pub out_norm: GpuTensor,
    pub out_norm_bias: GpuTensor,
}

pub(super) struct Weights {
    pub word: GpuMatrix,
    pub position: GpuMatrix,
    pub token_types: GpuMatrix,
    pub embed_norm: GpuTensor,
    pub embed_norm_bias: GpuTensor,
    /// A zero bias for the embedding sum, which has none.
    pub zeros: GpuTensor,
    pub layers: Vec<LayerWeights>,
    pub bytes: u64,
}

struct Loader<'a> {
    ctx: &'a Context,
    source: &'a dyn TensorSource,
    bytes: u64,
}

impl Loader<'_> {
    fn dims(&self, name: &str, expected: &[u64]) -> Result<GgmlType, ModelError> {
        let info = self.source.tensor(name).ok_or_else(|| ModelError::MissingTensor { name: name.into() })?;
        if info.dims != expected {
            return Err(ModelError::TensorShape { name: name.into(), expected: expected.to_vec(), actual: info.dims });
        }
        Ok(info.ggml_type)
    }

    /// A `[cols, rows]` matrix, uploaded in its own format; types without a kernel that convert
    /// to f32 are uploaded as F32.
    fn matrix(&mut self, name: &str, rows: usize, cols: usize) -> Result<GpuMatrix, Error> {
        let ty = self.dims(name, &[cols as u64, rows as u64])?;
        let matrix = match Format::from_ggml_type(ty.id()) {
            Some(format) => {
                let bytes = self.source.tensor_bytes(name).map_err(ModelError::from)?;
                GpuMatrix::upload(self.ctx, QuantMatrixRef::new(format, rows, cols, &bytes)?)?
            }
            None => {
                let values = self.source.tensor_f32(name).map_err(ModelError::from)?;
                GpuMatrix::upload(self.ctx, QuantMatrixRef::new(Format::F32, rows, cols, bytemuck::cast_slice(&values))?)?
            }
        };
        self.bytes += matrix.gpu_bytes();
        Ok(matrix)
    }

    /// A vector of `len` values, as f32.
    fn vector(&mut self, name: &str, len: usize) -> Result<GpuTensor, Error> {
        self.dims(name, &[len as u64])?;
        let values = self.source.tensor_f32(name).map_err(ModelError::from)?;
        let tensor = GpuTensor::from_slice(self.ctx, 1, len, &values)?;
        self.bytes += tensor.bytes();
        Ok(tensor)
    }
}

pub(super) fn load(ctx: &Context, source: &dyn TensorSource, c: &BertConfig) -> Result<Weights, Error> {
    let mut l = Loader { ctx, source, bytes: 0 };
    let word = l.matrix("token_embd.weight", c.vocab, c.dim)?;
    let position = l.matrix("position_embd.weight", c.context, c.dim)?;
    let token_types = l.matrix("token_types.weight", c.token_types, c.dim)?;
    let embed_norm = l.vector("token_embd_norm.weight", c.dim)?;
    let embed_norm_bias = l.vector("token_embd_norm.bias", c.dim)?;
    let mut layers = Vec::with_capacity(c.layers);
    for i in 0..c.layers {
        let w = |t: &str| format!("blk.{i}.{t}.weight");
        let b = |t: &str| format!("blk.{i}.{t}.bias");
        layers.push(LayerWeights {
            q: l.matrix(&w("attn_q"), c.dim, c.dim)?,
            q_bias: l.vector(&b("attn_q"), c.dim)?,
            k: l.matrix(&w("attn_k"), c.dim, c.dim)?,
            k_bias: l.vector(&b("attn_k"), c.dim)?,
            v: l.matrix(&w("attn_v"), c.dim, c.dim)?,
            v_bias: l.vector(&b("attn_v"), c.dim)?,
            o: l.matrix(&w("attn_output"), c.dim, c.dim)?,
            o_bias: l.vector(&b("attn_output"), c.dim)?,
            attn_norm: l.vector(&w("attn_output_norm"), c.dim)?,
            attn_norm_bias: l.vector(&b("attn_output_norm"), c.dim)?,
            up: l.matrix(&w("ffn_up"), c.ffn, c.dim)?,
            up_bias: l.vector(&b("ffn_up"), c.ffn)?,
            down: l.matrix(&w("ffn_down"), c.dim, c.ffn)?,
            down_bias: l.vector(&b("ffn_down"), c.dim)?,
            out_norm: l.vector(&w("layer_output_norm"), c.dim)?,
            out_norm_bias: l.vector(&b("layer_output_norm"), c.dim)?,
        });
    }
    let zeros = GpuTensor::zeros(ctx, 1, c.dim)?;
    let bytes = l.bytes + zeros.bytes();
    Ok(Weights { word, position, token_types, embed_norm, embed_norm_bias, zeros, layers, bytes })
}
