//! Moving a model's tensors to the GPU, still quantized: a GGUF file's as stored, a Hugging Face
//! directory's F32, F16 and BF16 as stored.

use std::collections::HashMap;

use super::LlamaConfig;
use crate::gpu::Context;
use crate::loader::{GgmlType, SourceTensor, TensorSource};
use crate::model::limits::{self, MAX_VOCAB};
use crate::model::ModelError;
use crate::ops::{GpuMatrix, GpuTensor, MatrixUpload};
use crate::quant::{reference, Format};
use crate::Error;

pub(super) struct LayerWeights {
    pub attn_norm: GpuTensor,
    /// Q, K and V, each with the first output feature it computes in the Q|K|V block: three
    /// matrices, or fewer once stacked ([`stack_projections`]).
    pub qkv: Vec<(GpuMatrix, usize)>,
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
    /// Gate and up, likewise in the gate|up block.
    pub gate_up: Vec<(GpuMatrix, usize)>,
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

/// What the decoder makes of one tensor.
#[derive(Clone, Debug)]
enum Role {
    /// A `[cols, rows]` matrix uploaded in its own format, as one matrix per part of this many
    /// rows (one part, or a fused QKV or gate/up split by rows, so the decoder never sees the
    /// fusion).
    Matrices(Vec<usize>),
    /// A vector kept on the host as f32 (RoPE factors).
    HostValues,
    /// A vector uploaded as f32 (norms, biases).
    Vector,
}

/// A tensor the decoder reads: its role and its dims (`None` where the metadata does not say:
/// the vocabulary). Which ones a model may lack is [`WeightUpload::finish`]'s business.
#[derive(Clone, Debug)]
struct Slot {
    role: Role,
    dims: Vec<Option<u64>>,
}

/// Every tensor the decoder of `c` reads, by name.
fn plan(c: &LlamaConfig) -> HashMap<String, Slot> {
    let mut slots = HashMap::new();
    let mut add = |name: String, role: Role, dims: &[Option<u64>]| {
        slots.insert(name, Slot { role, dims: dims.to_vec() });
    };
    let d = |n: usize| Some(n as u64);
    let (dim, q_dim, kv_dim) = (c.dim, c.q_dim(), c.kv_dim());
    let matrix = |rows: usize| Role::Matrices(vec![rows]);
    add("token_embd.weight".into(), Role::Matrices(vec![]), &[d(dim), None]);
    add("output.weight".into(), Role::Matrices(vec![]), &[d(dim), None]);
    add("output_norm.weight".into(), Role::Vector, &[d(dim)]);
    for name in ["rope_freqs.weight", "rope_factors_short.weight", "rope_factors_long.weight"] {
        add(name.into(), Role::HostValues, &[d(c.rope_dims / 2)]);
    }
    for i in 0..c.layers {
        let n = |t: &str| format!("blk.{i}.{t}.weight");
        let bias = |t: &str| format!("blk.{i}.{t}.bias");
        add(n("attn_norm"), Role::Vector, &[d(dim)]);
        if c.arch.fused {
            add(n("attn_qkv"), Role::Matrices(vec![q_dim, kv_dim, kv_dim]), &[d(dim), d(q_dim + 2 * kv_dim)]);
            add(n("ffn_up"), Role::Matrices(vec![c.ffn, c.ffn]), &[d(dim), d(2 * c.ffn)]);
        } else {
            add(n("attn_q"), matrix(q_dim), &[d(dim), d(q_dim)]);
            add(n("attn_k"), matrix(kv_dim), &[d(dim), d(kv_dim)]);
            add(n("attn_v"), matrix(kv_dim), &[d(dim), d(kv_dim)]);
            add(n("ffn_gate"), matrix(c.ffn), &[d(dim), d(c.ffn)]);
            add(n("ffn_up"), matrix(c.ffn), &[d(dim), d(c.ffn)]);
        }
        add(bias("attn_q"), Role::Vector, &[d(q_dim)]);
        add(bias("attn_k"), Role::Vector, &[d(kv_dim)]);
        add(bias("attn_v"), Role::Vector, &[d(kv_dim)]);
        add(n("attn_q_norm"), Role::Vector, &[d(c.head_dim)]);
        add(n("attn_k_norm"), Role::Vector, &[d(c.head_dim)]);
        add(n("attn_output"), matrix(dim), &[d(q_dim), d(dim)]);
        add(n("post_attention_norm"), Role::Vector, &[d(dim)]);
        add(n("ffn_norm"), Role::Vector, &[d(dim)]);
        add(n("ffn_down"), matrix(dim), &[d(c.ffn), d(dim)]);
        add(n("post_ffw_norm"), Role::Vector, &[d(dim)]);
    }
    slots
}

/// A tensor whose bytes are arriving.
enum Pending {
    /// Its matrices, filled one after another.
    Matrices { parts: Vec<MatrixUpload>, at: usize },
    /// A vector's stored bytes, converted when complete.
    Bytes { format: Format, len: usize, host: bool, data: Vec<u8> },
}

/// A tensor on its way to the decoder.
enum Uploaded {
    Matrices(Vec<GpuMatrix>),
    HostValues(Vec<f32>),
    Vector(GpuTensor),
}

/// A decoder's weights uploaded as their bytes arrive, in whatever order the file holds them:
/// each matrix goes to the GPU a band of rows at a time ([`MatrixUpload`]), so the host holds
/// one band, never a whole tensor. [`load`] feeds it whole tensors from a source; a streamed
/// GGUF feeds it pieces.
pub(super) struct WeightUpload {
    slots: HashMap<String, Slot>,
    current: Option<(String, Pending)>,
    done: HashMap<String, Uploaded>,
    bytes: u64,
}

impl WeightUpload {
    pub fn new(c: &LlamaConfig) -> Self {
        Self { slots: plan(c), current: None, done: HashMap::new(), bytes: 0 }
    }

    /// Whether the decoder reads tensor `name` (others are skipped).
    pub fn wants(&self, name: &str) -> bool {
        self.slots.contains_key(name)
    }

    /// The next `bytes` of tensor `info`; `last` on its final piece. Pieces of one tensor come
    /// together, tensors in any order.
    pub fn tensor_bytes(&mut self, ctx: &Context, info: &SourceTensor, bytes: &[u8], last: bool) -> Result<(), Error> {
        if !self.wants(&info.name) {
            return Ok(());
        }
        let (name, mut pending) = match self.current.take() {
            Some((name, pending)) if name == info.name => (name, pending),
            Some((name, _)) => return Err(ModelError::MissingTensor { name }.into()),
            None => (info.name.clone(), self.begin(ctx, info)?),
        };
        match &mut pending {
            Pending::Matrices { parts, at } => {
                let mut bytes = bytes;
                while !bytes.is_empty() {
                    let part = parts.get_mut(*at).ok_or_else(|| ModelError::TensorShape { name: name.clone(), expected: vec![], actual: info.dims.clone() })?;
                    let n = part.remaining_bytes().min(bytes.len());
                    part.push(ctx, &bytes[..n])?;
                    bytes = &bytes[n..];
                    if part.remaining_bytes() == 0 {
                        *at += 1;
                    }
                }
            }
            Pending::Bytes { data, .. } => data.extend_from_slice(bytes),
        }
        if !last {
            self.current = Some((name, pending));
            return Ok(());
        }
        let uploaded = match pending {
            Pending::Matrices { parts, .. } => {
                let matrices = parts.into_iter().map(MatrixUpload::finish).collect::<Result<Vec<_>, _>>()?;
                self.bytes += matrices.iter().map(GpuMatrix::gpu_bytes).sum::<u64>();
                Uploaded::Matrices(matrices)
            }
            Pending::Bytes { format, len, host, data } => {
                let expected = format.row_bytes(len).unwrap_or(usize::MAX);
                if data.len() != expected {
                    return Err(ModelError::from(crate::loader::LoadError::SizeMismatch { name, expected: expected as u64, actual: data.len() as u64 }).into());
                }
                let mut values = vec![0.0f32; len];
                reference::dequantize_into(format, &data, &mut values);
                if host {
                    Uploaded::HostValues(values)
                } else {
                    let tensor = GpuTensor::from_slice(ctx, 1, len, &values)?;
                    self.bytes += tensor.bytes();
                    Uploaded::Vector(tensor)
                }
            }
        };
        self.done.insert(name, uploaded);
        Ok(())
    }

    /// Checks a tensor's dims and type against its slot and prepares its upload.
    fn begin(&self, ctx: &Context, info: &SourceTensor) -> Result<Pending, Error> {
        let slot = &self.slots[&info.name];
        let fits = slot.dims.len() == info.dims.len() && slot.dims.iter().zip(&info.dims).all(|(want, got)| want.is_none_or(|w| w == *got));
        if !fits {
            let expected = slot.dims.iter().zip(info.dims.iter().chain(std::iter::repeat(&0))).map(|(w, g)| w.unwrap_or(*g)).collect();
            return Err(ModelError::TensorShape { name: info.name.clone(), expected, actual: info.dims.clone() }.into());
        }
        let format = format_of(&info.name, info.ggml_type)?;
        Ok(match &slot.role {
            Role::Matrices(parts) => {
                let (cols, rows) = (info.dims[0] as usize, info.dims[1] as usize);
                // No parts: one matrix of the tensor's own rows (the vocabulary).
                let parts = if parts.is_empty() { vec![limits::check("vocabulary rows", rows, MAX_VOCAB).map_err(ModelError::from)?] } else { parts.clone() };
                Pending::Matrices { parts: parts.iter().map(|&n| MatrixUpload::new(ctx, format, n, cols)).collect::<Result<_, _>>()?, at: 0 }
            }
            Role::HostValues | Role::Vector => Pending::Bytes { format, len: info.dims[0] as usize, host: matches!(slot.role, Role::HostValues), data: Vec::new() },
        })
    }

    /// The decoder's weights, once every tensor has arrived; `c` is the configuration checked
    /// against all of the model's tensors.
    pub fn finish(self, c: &LlamaConfig) -> Result<Weights, Error> {
        if let Some((name, _)) = self.current {
            return Err(ModelError::MissingTensor { name }.into());
        }
        let mut parts = Parts::default();
        for (name, uploaded) in self.done {
            match uploaded {
                Uploaded::Matrices(m) => parts.matrices.insert(name, m).map(|_| ()),
                Uploaded::Vector(t) => parts.vectors.insert(name, t).map(|_| ()),
                Uploaded::HostValues(v) => parts.host.insert(name, v).map(|_| ()),
            };
        }
        let p = &mut parts;
        let mut vocab_matrix = |name: &str| -> Result<Option<GpuMatrix>, Error> {
            match p.matrices.remove(name).and_then(|mut m| m.pop()) {
                Some(m) if m.rows() != c.vocab => Err(ModelError::TensorShape { name: name.into(), expected: vec![c.dim as u64, c.vocab as u64], actual: vec![m.cols() as u64, m.rows() as u64] }.into()),
                m => Ok(m),
            }
        };
        let embed = vocab_matrix("token_embd.weight")?.ok_or_else(|| missing("token_embd.weight"))?;
        let head = vocab_matrix("output.weight")?;
        let output_norm = p.required("output_norm.weight".into())?;
        let mut layers = Vec::with_capacity(c.layers);
        for i in 0..c.layers {
            let n = |t: &str| format!("blk.{i}.{t}.weight");
            let bias = |t: &str| format!("blk.{i}.{t}.bias");
            let (q, k, v, gate, up) = if c.arch.fused {
                let [q, k, v] = p.matrices(&n("attn_qkv"))?;
                let [gate, up] = p.matrices(&n("ffn_up"))?;
                (q, k, v, gate, up)
            } else {
                let [q] = p.matrices(&n("attn_q"))?;
                let [k] = p.matrices(&n("attn_k"))?;
                let [v] = p.matrices(&n("attn_v"))?;
                let [gate] = p.matrices(&n("ffn_gate"))?;
                let [up] = p.matrices(&n("ffn_up"))?;
                (q, k, v, gate, up)
            };
            let [o] = p.matrices(&n("attn_output"))?;
            let [down] = p.matrices(&n("ffn_down"))?;
            let (nq, nk) = (q.rows(), k.rows());
            let ffn = gate.rows();
            layers.push(LayerWeights {
                attn_norm: p.required(n("attn_norm"))?,
                qkv: vec![(q, 0), (k, nq), (v, nq + nk)],
                q_bias: p.vectors.remove(&bias("attn_q")),
                k_bias: p.vectors.remove(&bias("attn_k")),
                v_bias: p.vectors.remove(&bias("attn_v")),
                q_norm: p.vectors.remove(&n("attn_q_norm")),
                k_norm: p.vectors.remove(&n("attn_k_norm")),
                o,
                post_attn_norm: p.vectors.remove(&n("post_attention_norm")),
                ffn_norm: p.required(n("ffn_norm"))?,
                gate_up: vec![(gate, 0), (up, ffn)],
                down,
                post_ffn_norm: p.vectors.remove(&n("post_ffw_norm")),
            });
        }
        Ok(Weights {
            embed,
            head,
            output_norm,
            rope_freqs: p.host.remove("rope_freqs.weight"),
            rope_factors_short: p.host.remove("rope_factors_short.weight"),
            rope_factors_long: p.host.remove("rope_factors_long.weight"),
            layers,
            bytes: self.bytes,
        })
    }
}

/// Stacks each run of neighbouring projections that share a format into one matrix
/// ([`GpuMatrix::stack_rows`]), keeping where each run's first output lands: Q|K|V as one
/// matrix when all three agree, Q|K and V apart when only V differs (as Q4_K_M files often
/// have it), and so on.
pub(super) fn stack_projections(ctx: &Context, projections: Vec<(GpuMatrix, usize)>) -> Result<Vec<(GpuMatrix, usize)>, Error> {
    let mut out = Vec::with_capacity(projections.len());
    let mut run: Vec<(GpuMatrix, usize)> = Vec::new();
    let flush = |run: &mut Vec<(GpuMatrix, usize)>, out: &mut Vec<(GpuMatrix, usize)>| -> Result<(), Error> {
        let Some(&(_, first)) = run.first() else { return Ok(()) };
        let matrices: Vec<GpuMatrix> = std::mem::take(run).into_iter().map(|(m, _)| m).collect();
        match GpuMatrix::stack_rows(ctx, matrices)? {
            Ok(stacked) => out.push((stacked, first)),
            Err(apart) => {
                let mut at = first;
                for m in apart {
                    let rows = m.rows();
                    out.push((m, at));
                    at += rows;
                }
            }
        }
        Ok(())
    };
    for (m, first) in projections {
        let joins = run.last().is_some_and(|(prev, prev_first): &(GpuMatrix, usize)| prev.format() == m.format() && prev.cols() == m.cols() && prev_first + prev.rows() == first);
        if !joins {
            flush(&mut run, &mut out)?;
        }
        run.push((m, first));
    }
    flush(&mut run, &mut out)?;
    Ok(out)
}

fn missing(name: &str) -> Error {
    ModelError::MissingTensor { name: name.into() }.into()
}

/// The uploaded tensors, taken out by name as [`Weights`] is assembled.
#[derive(Default)]
struct Parts {
    matrices: HashMap<String, Vec<GpuMatrix>>,
    vectors: HashMap<String, GpuTensor>,
    host: HashMap<String, Vec<f32>>,
}

impl Parts {
    fn required(&mut self, name: String) -> Result<GpuTensor, Error> {
        self.vectors.remove(&name).ok_or_else(|| missing(&name))
    }

    /// The `N` matrices tensor `name` was uploaded as.
    fn matrices<const N: usize>(&mut self, name: &str) -> Result<[GpuMatrix; N], Error> {
        self.matrices.remove(name).and_then(|m| m.try_into().ok()).ok_or_else(|| missing(name))
    }
}

/// Uploads the decoder's tensors from `source`, in the order the source stores them;
/// `progress(done, total)` counts the source's tensors.
pub(super) fn load(ctx: &Context, source: &dyn TensorSource, c: &LlamaConfig, progress: &mut dyn FnMut(usize, usize)) -> Result<Weights, Error> {
    let mut upload = WeightUpload::new(c);
    let tensors = source.tensors();
    for (i, t) in tensors.iter().enumerate() {
        if upload.wants(&t.name) {
            let bytes = source.tensor_bytes(&t.name).map_err(ModelError::from)?;
            upload.tensor_bytes(ctx, t, &bytes, true)?;
        }
        progress(i + 1, tensors.len());
    }
    upload.finish(c)
}
