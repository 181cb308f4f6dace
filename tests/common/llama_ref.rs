//! A plain CPU forward pass of a LLaMA-family GGUF model: the oracle the GPU decoder is tested
//! against. Written to be read, not to be fast: every weight is dequantized to f32 once, and
//! every step below is a loop over plain row-major `Vec<f32>`s.
//!
//! Conventions (see `platform-notes.md`, "GGUF llama files"):
//! - A GGUF tensor with dims `[K, N]` (fastest first) is N rows of K values; `y = W·x` means
//!   `y[n] = Σ_k W[n, k] · x[k]`.
//! - Q and K are stored permuted for llama.cpp's NORM rope, so RoPE rotates ADJACENT pairs
//!   `(x[2i], x[2i+1])` by `pos · base^(-2i/rope_dim)`.
//! - Without `output.weight` the head is tied to `token_embd.weight`.
//!
//! Arithmetic is f32 throughout (dot products keep 8 partial sums); f64 only for the RMSNorm
//! mean of squares and the RoPE angles.
#![allow(dead_code)]

use qgpu::loader::{GgmlType, GgufFile, OptionalKey};
use qgpu::quant::{reference::dequantize_into, Format};

/// Hyper-parameters read from the GGUF metadata (`{arch}.*` keys).
#[derive(Clone, Debug, PartialEq)]
pub struct RefConfig {
    /// `general.architecture`, the prefix of every other key (`llama` for SmolLM2).
    pub arch: String,
    /// Rows of `token_embd.weight`.
    pub vocab: usize,
    /// `{arch}.embedding_length`.
    pub dim: usize,
    /// `{arch}.block_count`.
    pub n_layers: usize,
    /// `{arch}.attention.head_count`.
    pub n_heads: usize,
    /// `{arch}.attention.head_count_kv` (default: `n_heads`).
    pub n_kv_heads: usize,
    /// `{arch}.attention.key_length` (default: `dim / n_heads`).
    pub head_dim: usize,
    /// `{arch}.feed_forward_length`.
    pub ffn: usize,
    /// `{arch}.attention.layer_norm_rms_epsilon`.
    pub eps: f32,
    /// `{arch}.rope.freq_base` (default 10000).
    pub rope_base: f32,
    /// `{arch}.rope.dimension_count` (default: `head_dim`); only the first `rope_dim` values
    /// of each head are rotated.
    pub rope_dim: usize,
    /// `{arch}.context_length` (default 0 = unknown); informational, not enforced.
    pub context: usize,
    /// Whether the head is `token_embd.weight` (no `output.weight` in the file).
    pub tied_head: bool,
}

/// A dequantized matrix: `rows` rows of `cols` values, row-major.
#[derive(Clone, Debug)]
pub struct Mat {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f32>,
}

impl Mat {
    pub fn row(&self, r: usize) -> &[f32] {
        &self.data[r * self.cols..(r + 1) * self.cols]
    }
}

/// A callback of [`RefLlama::forward_with`]: `(stage, layer, values)`.
pub type Observer<'a> = dyn FnMut(&str, Option<usize>, &[f32]) + 'a;

/// One transformer block's weights, dequantized.
#[derive(Clone, Debug)]
pub struct RefLayer {
    pub attn_norm: Vec<f32>,
    pub wq: Mat,
    pub wk: Mat,
    pub wv: Mat,
    pub wo: Mat,
    pub ffn_norm: Vec<f32>,
    pub gate: Mat,
    pub up: Mat,
    pub down: Mat,
}

/// The whole model, dequantized to f32.
#[derive(Clone, Debug)]
pub struct RefLlama {
    pub config: RefConfig,
    pub token_embd: Mat,
    pub layers: Vec<RefLayer>,
    pub output_norm: Vec<f32>,
    /// `None` when the head is tied to `token_embd`.
    pub output: Option<Mat>,
}

/// The qgpu format of a ggml type, for the types the reference dequantizer knows.
pub fn format_of(t: GgmlType) -> Option<Format> {
    Format::from_ggml_type(t.id())
}

/// Dequantizes tensor `name`, checking that its dims are `[cols, rows]` (or `[cols]` when
/// `rows` is `None`, for vectors).
fn load(file: &GgufFile, name: &str, cols: usize, rows: Option<usize>) -> Result<Mat, String> {
    let info = file.require_tensor(name).map_err(|e| e.to_string())?;
    let want: Vec<u64> = match rows {
        Some(r) => vec![cols as u64, r as u64],
        None => vec![cols as u64],
    };
    if info.dims != want {
        return Err(format!("tensor `{name}`: dims {:?}, expected {want:?}", info.dims));
    }
    let format = format_of(info.ggml_type)
        .ok_or_else(|| format!("tensor `{name}`: ggml type {} is not supported", info.ggml_type))?;
    let bytes = file.tensor_data(info).map_err(|e| e.to_string())?;
    let n = info.n_elements as usize;
    let mut data = vec![0.0f32; n];
    dequantize_into(format, bytes, &mut data);
    Ok(Mat { rows: rows.unwrap_or(1), cols, data })
}

impl RefConfig {
    /// Reads the hyper-parameters; `vocab` and `tied_head` come from the tensor infos.
    pub fn from_gguf(file: &GgufFile) -> Result<Self, String> {
        let e = |e: qgpu::loader::GgufError| e.to_string();
        let arch = file.get_str("general.architecture").map_err(e)?.to_owned();
        let key = |k: &str| format!("{arch}.{k}");
        let dim = file.get_usize(&key("embedding_length")).map_err(e)?;
        let n_heads = file.get_usize(&key("attention.head_count")).map_err(e)?;
        let n_kv_heads = file.get_usize(&key("attention.head_count_kv")).optional().map_err(e)?.unwrap_or(n_heads);
        let head_dim = file.get_usize(&key("attention.key_length")).optional().map_err(e)?.unwrap_or(dim / n_heads.max(1));
        let embd = file.require_tensor("token_embd.weight").map_err(e)?;
        let cfg = RefConfig {
            vocab: embd.dims.get(1).copied().unwrap_or(0) as usize,
            dim,
            n_layers: file.get_usize(&key("block_count")).map_err(e)?,
            n_heads,
            n_kv_heads,
            head_dim,
            ffn: file.get_usize(&key("feed_forward_length")).map_err(e)?,
            eps: file.get_f32(&key("attention.layer_norm_rms_epsilon")).map_err(e)?,
            rope_base: file.get_f32(&key("rope.freq_base")).optional().map_err(e)?.unwrap_or(10000.0),
            rope_dim: file.get_usize(&key("rope.dimension_count")).optional().map_err(e)?.unwrap_or(head_dim),
            context: file.get_usize(&key("context_length")).optional().map_err(e)?.unwrap_or(0),
            tied_head: file.tensor("output.weight").is_none(),
            arch,
        };
        if cfg.n_heads == 0 || cfg.n_kv_heads == 0 || !cfg.n_heads.is_multiple_of(cfg.n_kv_heads) {
            return Err(format!("{} heads cannot share {} kv heads", cfg.n_heads, cfg.n_kv_heads));
        }
        if !cfg.rope_dim.is_multiple_of(2) || cfg.rope_dim > cfg.head_dim {
            return Err(format!("rope dimension {} does not fit head dimension {}", cfg.rope_dim, cfg.head_dim));
        }
        Ok(cfg)
    }
}

impl RefLlama {
    /// Dequantizes every tensor of a llama GGUF file. Fails on missing keys or tensors, wrong
    /// shapes, unsupported types, and on features this reference does not implement
    /// (`rope_freqs.weight`, i.e. llama-3 rope scaling).
    pub fn from_gguf(file: &GgufFile) -> Result<Self, String> {
        let c = RefConfig::from_gguf(file)?;
        if file.tensor("rope_freqs.weight").is_some() {
            return Err("rope_freqs.weight (rope scaling) is not supported by the reference".into());
        }
        let (q_dim, kv_dim) = (c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim);
        let vec = |name: &str, n: usize| load(file, name, n, None).map(|m| m.data);
        let mut layers = Vec::with_capacity(c.n_layers);
        for i in 0..c.n_layers {
            let name = |t: &str| format!("blk.{i}.{t}.weight");
            layers.push(RefLayer {
                attn_norm: vec(&name("attn_norm"), c.dim)?,
                wq: load(file, &name("attn_q"), c.dim, Some(q_dim))?,
                wk: load(file, &name("attn_k"), c.dim, Some(kv_dim))?,
                wv: load(file, &name("attn_v"), c.dim, Some(kv_dim))?,
                wo: load(file, &name("attn_output"), q_dim, Some(c.dim))?,
                ffn_norm: vec(&name("ffn_norm"), c.dim)?,
                gate: load(file, &name("ffn_gate"), c.dim, Some(c.ffn))?,
                up: load(file, &name("ffn_up"), c.dim, Some(c.ffn))?,
                down: load(file, &name("ffn_down"), c.ffn, Some(c.dim))?,
            });
        }
        Ok(RefLlama {
            token_embd: load(file, "token_embd.weight", c.dim, Some(c.vocab))?,
            output_norm: vec("output_norm.weight", c.dim)?,
            output: if c.tied_head { None } else { Some(load(file, "output.weight", c.dim, Some(c.vocab))?) },
            layers,
            config: c,
        })
    }

    /// The head: `output.weight`, or `token_embd.weight` when tied.
    pub fn head(&self) -> &Mat {
        self.output.as_ref().unwrap_or(&self.token_embd)
    }

    /// Logits (`vocab` values) at every position of a fresh sequence, causal attention.
    pub fn forward(&self, tokens: &[u32]) -> Vec<Vec<f32>> {
        self.forward_with(tokens, &mut |_, _, _| {})
    }

    /// [`forward`](Self::forward), calling `observe(stage, layer, values)` with every
    /// intermediate, `values` being `tokens.len()` rows (row-major) of that stage's width:
    /// - `"embd"` (layer `None`): the embedding rows, width `dim`.
    /// - per layer `Some(l)`: `"attn_norm"` (dim), `"q"` (n_heads·head_dim, after RoPE),
    ///   `"k"` (n_kv_heads·head_dim, after RoPE), `"v"` (n_kv_heads·head_dim), `"attn"`
    ///   (n_heads·head_dim, softmax·V before the output projection), `"attn_residual"` (dim,
    ///   x + attn_output·attn), `"ffn_norm"` (dim), `"ffn_act"` (ffn, silu(gate)·up),
    ///   `"layer_out"` (dim, the residual stream leaving the layer).
    /// - `"output_norm"` (dim) and `"logits"` (vocab), layer `None`.
    pub fn forward_with(
        &self,
        tokens: &[u32],
        observe: &mut Observer<'_>,
    ) -> Vec<Vec<f32>> {
        let c = &self.config;
        let t_len = tokens.len();
        let (dim, hd) = (c.dim, c.head_dim);
        let group = c.n_heads / c.n_kv_heads;

        // Embedding lookup.
        let mut x = Vec::with_capacity(t_len * dim);
        for &tok in tokens {
            assert!((tok as usize) < c.vocab, "token {tok} out of vocabulary ({})", c.vocab);
            x.extend_from_slice(self.token_embd.row(tok as usize));
        }
        observe("embd", None, &x);

        for (l, layer) in self.layers.iter().enumerate() {
            let at = Some(l);
            // Attention block.
            let h = rms_norm_rows(&x, &layer.attn_norm, c.eps);
            observe("attn_norm", at, &h);
            let mut q = matmul(&h, t_len, &layer.wq);
            let mut k = matmul(&h, t_len, &layer.wk);
            let v = matmul(&h, t_len, &layer.wv);
            for pos in 0..t_len {
                for head in q[pos * c.n_heads * hd..(pos + 1) * c.n_heads * hd].chunks_exact_mut(hd) {
                    rope(head, pos, c.rope_dim, c.rope_base);
                }
                for head in k[pos * c.n_kv_heads * hd..(pos + 1) * c.n_kv_heads * hd].chunks_exact_mut(hd) {
                    rope(head, pos, c.rope_dim, c.rope_base);
                }
            }
            observe("q", at, &q);
            observe("k", at, &k);
            observe("v", at, &v);
            let attn = attention(&q, &k, &v, t_len, c.n_heads, c.n_kv_heads, hd, group);
            observe("attn", at, &attn);
            let o = matmul(&attn, t_len, &layer.wo);
            add_into(&mut x, &o);
            observe("attn_residual", at, &x);

            // Feed-forward block (SwiGLU).
            let h = rms_norm_rows(&x, &layer.ffn_norm, c.eps);
            observe("ffn_norm", at, &h);
            let gate = matmul(&h, t_len, &layer.gate);
            let up = matmul(&h, t_len, &layer.up);
            let act: Vec<f32> = gate.iter().zip(&up).map(|(&g, &u)| silu(g) * u).collect();
            observe("ffn_act", at, &act);
            let d = matmul(&act, t_len, &layer.down);
            add_into(&mut x, &d);
            observe("layer_out", at, &x);
        }

        let h = rms_norm_rows(&x, &self.output_norm, c.eps);
        observe("output_norm", None, &h);
        let logits = matmul(&h, t_len, self.head());
        observe("logits", None, &logits);
        logits.chunks_exact(c.vocab).map(<[f32]>::to_vec).collect()
    }
}

/// Dot product with 8 partial sums (so the compiler can vectorize it).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `y[t][n] = Σ_k W[n, k] · x[t][k]` for the `t_len` rows of `x` (`t_len × w.cols`,
/// row-major); the result is `t_len × w.rows`. Each weight row is read once for all tokens.
pub fn matmul(x: &[f32], t_len: usize, w: &Mat) -> Vec<f32> {
    let (n, k) = (w.rows, w.cols);
    assert_eq!(x.len(), t_len * k, "matmul: x must be {t_len} × {k}");
    let mut y = vec![0.0f32; t_len * n];
    for (j, wr) in w.data.chunks_exact(k).enumerate() {
        for (t, xr) in x.chunks_exact(k).enumerate() {
            y[t * n + j] = dot(wr, xr);
        }
    }
    y
}

/// RMSNorm of every `w.len()`-wide row of `x`: `x / sqrt(mean(x²) + eps) · w`.
pub fn rms_norm_rows(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
    let mut out = Vec::with_capacity(x.len());
    for row in x.chunks_exact(w.len()) {
        let mean_sq = row.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / row.len() as f64;
        let scale = (1.0 / (mean_sq + eps as f64).sqrt()) as f32;
        out.extend(row.iter().zip(w).map(|(&v, &g)| v * scale * g));
    }
    out
}

/// NORM (llama.cpp) rope on one head at position `pos`: rotates adjacent pairs
/// `(v[2i], v[2i+1])`, `i < rope_dim / 2`, by `pos · base^(-2i / rope_dim)`.
pub fn rope(head: &mut [f32], pos: usize, rope_dim: usize, base: f32) {
    for i in 0..rope_dim / 2 {
        let theta = pos as f64 * (base as f64).powf(-2.0 * i as f64 / rope_dim as f64);
        let (sin, cos) = (theta.sin() as f32, theta.cos() as f32);
        let (a, b) = (head[2 * i], head[2 * i + 1]);
        head[2 * i] = a * cos - b * sin;
        head[2 * i + 1] = a * sin + b * cos;
    }
}

/// Causal grouped-query attention. `q` is `t_len × (n_heads·hd)`, `k` and `v` are
/// `t_len × (n_kv_heads·hd)`; query head `h` reads kv head `h / group`. Scores are scaled by
/// `1/sqrt(hd)`; position `t` attends to `0..=t`. Returns `t_len × (n_heads·hd)`.
#[allow(clippy::too_many_arguments)]
pub fn attention(q: &[f32], k: &[f32], v: &[f32], t_len: usize, n_heads: usize, n_kv_heads: usize, hd: usize, group: usize) -> Vec<f32> {
    let (qw, kw) = (n_heads * hd, n_kv_heads * hd);
    let scale = 1.0 / (hd as f32).sqrt();
    let mut out = vec![0.0f32; t_len * qw];
    let mut scores = vec![0.0f32; t_len];
    for t in 0..t_len {
        for h in 0..n_heads {
            let kvh = h / group;
            let qh = &q[t * qw + h * hd..t * qw + (h + 1) * hd];
            for s in 0..=t {
                scores[s] = dot(qh, &k[s * kw + kvh * hd..s * kw + (kvh + 1) * hd]) * scale;
            }
            let max = scores[..=t].iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
            let mut sum = 0.0f32;
            for p in &mut scores[..=t] {
                *p = (*p - max).exp();
                sum += *p;
            }
            let oh = &mut out[t * qw + h * hd..t * qw + (h + 1) * hd];
            for s in 0..=t {
                let p = scores[s] / sum;
                let vh = &v[s * kw + kvh * hd..s * kw + (kvh + 1) * hd];
                for (o, &vv) in oh.iter_mut().zip(vh) {
                    *o += p * vv;
                }
            }
        }
    }
    out
}

pub fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

fn add_into(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}
