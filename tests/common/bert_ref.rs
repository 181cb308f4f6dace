//! A tiny synthetic BERT GGUF (llama.cpp's `bert` names and keys) and a CPU forward pass in f64
//! to test the GPU model against, with the f64 erf the GELU needs (std has none).
#![allow(dead_code)]

use qgpu::loader::{GgmlType, GgufFile, GgufWriter, TensorSource};
use qgpu::quant::reference::{quantize, TestRng};
use qgpu::quant::Format;

/// erf by its Maclaurin series (|x| ≤ 5, where the terms stay below 1e10, so ~1e-7 relative of
/// f64's 1e-16 is lost at worst) and ±1 beyond (|1 − erf(5)| < 2e-12).
pub fn erf(x: f64) -> f64 {
    if x.abs() > 5.0 {
        return x.signum();
    }
    let (mut term, mut sum, mut n) = (x, x, 0.0f64);
    while term.abs() > 1e-17 * sum.abs().max(1e-300) {
        n += 1.0;
        term *= -x * x / n;
        sum += term / (2.0 * n + 1.0);
    }
    sum * 2.0 / std::f64::consts::PI.sqrt()
}

/// Hugging Face's exact `gelu`.
pub fn gelu(x: f64) -> f64 {
    0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2))
}

/// In place: LayerNorm(x) · w + b.
pub fn layer_norm(x: &mut [f64], w: &[f32], b: &[f32], eps: f64) {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    let inv = 1.0 / (var + eps).sqrt();
    for (i, v) in x.iter_mut().enumerate() {
        *v = (*v - mean) * inv * w[i] as f64 + b[i] as f64;
    }
}

/// Shape and storage of a synthetic BERT.
#[derive(Clone, Debug)]
pub struct TinyBert {
    pub vocab: usize,
    pub dim: usize,
    pub heads: usize,
    pub ffn: usize,
    pub layers: usize,
    pub context: usize,
    pub types: usize,
    pub eps: f32,
    /// Format of every block matrix.
    pub weight_format: Format,
    /// Format of the word, position and token-type tables.
    pub embed_format: Format,
}

impl TinyBert {
    /// Odd sizes that suit every 32-block format: vocab 101 (prime), dim 96 = 3 heads of 32,
    /// ffn 160, 2 layers, 37 positions, 2 token types.
    pub fn odd(weight_format: Format, embed_format: Format) -> Self {
        TinyBert { vocab: 101, dim: 96, heads: 3, ffn: 160, layers: 2, context: 37, types: 2, eps: 1e-12, weight_format, embed_format }
    }

    /// The model as a GGUF: tables uniform in ±1, matrices in ±1/sqrt(K), biases in ±0.1, norm
    /// weights 1 ± 0.1 (F32). Deterministic in `seed`.
    pub fn gguf(&self, seed: u64) -> Vec<u8> {
        let s = self;
        let mut rng = TestRng::new(seed);
        let mut w = GgufWriter::new();
        let mut meta = |k: &str, v: qgpu::loader::MetadataValue| {
            w.add_metadata(k, v).unwrap();
        };
        meta("general.architecture", "bert".into());
        meta("bert.context_length", (s.context as u32).into());
        meta("bert.embedding_length", (s.dim as u32).into());
        meta("bert.feed_forward_length", (s.ffn as u32).into());
        meta("bert.block_count", (s.layers as u32).into());
        meta("bert.attention.head_count", (s.heads as u32).into());
        meta("bert.attention.layer_norm_epsilon", s.eps.into());
        meta("bert.attention.causal", false.into());
        meta("bert.pooling_type", 1u32.into());
        meta("tokenizer.ggml.token_type_count", (s.types as u32).into());
        let ty = |f: Format| GgmlType::from_element_id(f.ggml_type()).unwrap();
        let mut matrix = |w: &mut GgufWriter<'static>, name: String, format: Format, rows: usize, cols: usize, scale: f32| {
            let values: Vec<f32> = (0..rows * cols).map(|_| rng.uniform() * scale).collect();
            let q = quantize(format, rows, cols, &values).unwrap_or_else(|e| panic!("{name}: {e}"));
            w.add_tensor(name, &[cols as u64, rows as u64], ty(format), q.data().to_vec()).unwrap();
        };
        let mut vrng = TestRng::new(seed ^ 0x5EED);
        let mut vector = |w: &mut GgufWriter<'static>, name: String, len: usize, center: f32| {
            let values: Vec<u8> = (0..len).flat_map(|_| (center + 0.1 * vrng.uniform()).to_le_bytes()).collect();
            w.add_tensor(name, &[len as u64], GgmlType::F32, values).unwrap();
        };
        let inv_sqrt = |k: usize| 1.0 / (k as f32).sqrt();
        matrix(&mut w, "token_embd.weight".into(), s.embed_format, s.vocab, s.dim, 1.0);
        matrix(&mut w, "position_embd.weight".into(), s.embed_format, s.context, s.dim, 1.0);
        matrix(&mut w, "token_types.weight".into(), s.embed_format, s.types, s.dim, 1.0);
        vector(&mut w, "token_embd_norm.weight".into(), s.dim, 1.0);
        vector(&mut w, "token_embd_norm.bias".into(), s.dim, 0.0);
        for i in 0..s.layers {
            let n = |t: &str, p: &str| format!("blk.{i}.{t}.{p}");
            for part in ["attn_q", "attn_k", "attn_v", "attn_output"] {
                matrix(&mut w, n(part, "weight"), s.weight_format, s.dim, s.dim, inv_sqrt(s.dim));
                vector(&mut w, n(part, "bias"), s.dim, 0.0);
            }
            vector(&mut w, n("attn_output_norm", "weight"), s.dim, 1.0);
            vector(&mut w, n("attn_output_norm", "bias"), s.dim, 0.0);
            matrix(&mut w, n("ffn_up", "weight"), s.weight_format, s.ffn, s.dim, inv_sqrt(s.dim));
            vector(&mut w, n("ffn_up", "bias"), s.ffn, 0.0);
            matrix(&mut w, n("ffn_down", "weight"), s.weight_format, s.dim, s.ffn, inv_sqrt(s.ffn));
            vector(&mut w, n("ffn_down", "bias"), s.dim, 0.0);
            vector(&mut w, n("layer_output_norm", "weight"), s.dim, 1.0);
            vector(&mut w, n("layer_output_norm", "bias"), s.dim, 0.0);
        }
        w.to_bytes()
    }
}

/// y = x · Wᵀ + b for one row, W `[rows][cols]` (a GGUF `[cols, rows]` tensor).
fn linear(x: &[f64], w: &[f32], b: &[f32]) -> Vec<f64> {
    let cols = x.len();
    b.iter()
        .enumerate()
        .map(|(r, &bias)| bias as f64 + x.iter().zip(&w[r * cols..(r + 1) * cols]).map(|(a, &c)| a * c as f64).sum::<f64>())
        .collect()
}

/// The normalized mean-pooled embedding of one sentence, in f64, from the weights as the source
/// stores them (quantized weights dequantized exactly as the GPU sees them).
pub fn cpu_embed(source: &dyn TensorSource, ids: &[u32], types: &[u32]) -> Vec<f64> {
    let m = source.metadata();
    let dim = m.get_usize("bert.embedding_length").unwrap();
    let heads = m.get_usize("bert.attention.head_count").unwrap();
    let layers = m.get_usize("bert.block_count").unwrap();
    let eps = m.get_f32("bert.attention.layer_norm_epsilon").unwrap() as f64;
    let t = |name: &str| source.tensor_f32(name).unwrap();
    let (word, pos, typ) = (t("token_embd.weight"), t("position_embd.weight"), t("token_types.weight"));
    let mut h: Vec<Vec<f64>> = ids
        .iter()
        .zip(types)
        .enumerate()
        .map(|(p, (&id, &ty))| {
            let mut row: Vec<f64> = (0..dim)
                .map(|c| word[id as usize * dim + c] as f64 + pos[p * dim + c] as f64 + typ[ty as usize * dim + c] as f64)
                .collect();
            layer_norm(&mut row, &t("token_embd_norm.weight"), &t("token_embd_norm.bias"), eps);
            row
        })
        .collect();
    let hd = dim / heads;
    let n = ids.len();
    for i in 0..layers {
        let p = |part: &str, kind: &str| t(&format!("blk.{i}.{part}.{kind}"));
        let proj = |part: &str, x: &[Vec<f64>]| -> Vec<Vec<f64>> {
            let (w, b) = (p(part, "weight"), p(part, "bias"));
            x.iter().map(|r| linear(r, &w, &b)).collect()
        };
        let (q, k, v) = (proj("attn_q", &h), proj("attn_k", &h), proj("attn_v", &h));
        let mut attn = vec![vec![0.0f64; dim]; n];
        for a in 0..n {
            for head in 0..heads {
                let r = head * hd..(head + 1) * hd;
                let scores: Vec<f64> = (0..n)
                    .map(|j| q[a][r.clone()].iter().zip(&k[j][r.clone()]).map(|(x, y)| x * y).sum::<f64>() / (hd as f64).sqrt())
                    .collect();
                let max = scores.iter().cloned().fold(f64::MIN, f64::max);
                let e: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let sum: f64 = e.iter().sum();
                for d in r.clone() {
                    attn[a][d] = (0..n).map(|j| e[j] / sum * v[j][d]).sum();
                }
            }
        }
        let o = proj("attn_output", &attn);
        for (row, o) in h.iter_mut().zip(&o) {
            row.iter_mut().zip(o).for_each(|(x, y)| *x += y);
            layer_norm(row, &p("attn_output_norm", "weight"), &p("attn_output_norm", "bias"), eps);
        }
        let up: Vec<Vec<f64>> = proj("ffn_up", &h).into_iter().map(|r| r.into_iter().map(gelu).collect()).collect();
        let down = proj("ffn_down", &up);
        for (row, d) in h.iter_mut().zip(&down) {
            row.iter_mut().zip(d).for_each(|(x, y)| *x += y);
            layer_norm(row, &p("layer_output_norm", "weight"), &p("layer_output_norm", "bias"), eps);
        }
    }
    let mean: Vec<f64> = (0..dim).map(|c| h.iter().map(|r| r[c]).sum::<f64>() / n as f64).collect();
    let norm = mean.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
    mean.into_iter().map(|v| v / norm).collect()
}

/// Parses GGUF bytes.
pub fn open(bytes: Vec<u8>) -> GgufFile {
    GgufFile::from_bytes(bytes).unwrap()
}
