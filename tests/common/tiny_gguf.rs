//! Tiny synthetic llama GGUF files with random weights, for decoder tests that need no download.
//!
//! The layout is the one llama.cpp writes (`llama.*` keys, `blk.{i}.*` tensors, dims fastest
//! first), so the same loader reads these and real models. The weights are random, so there is
//! no Q/K rope permutation to speak of: a reader applies the NORM (adjacent pairs) rope as for
//! any GGUF llama file.
#![allow(dead_code)]

use qgpu::quant::reference::TestRng;
use qgpu::loader::{GgmlType, GgufWriter, MetadataArray};
use qgpu::quant::{reference::quantize, Format};

/// Shape and storage of a synthetic model.
#[derive(Clone, Debug, PartialEq)]
pub struct TinySpec {
    pub vocab: usize,
    /// Embedding width; head dimension is `dim / n_heads`.
    pub dim: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    /// Must divide `n_heads`.
    pub n_kv_heads: usize,
    pub ffn: usize,
    /// Format of every block matrix (q, k, v, o, gate, up, down) and of `output.weight` when
    /// the head is not tied, unless overridden below.
    pub weight_format: Format,
    /// Format of every `ffn_down` (default: `weight_format`).
    pub down_format: Option<Format>,
    /// Format of `output.weight` when the head is not tied (default: `weight_format`).
    pub head_format: Option<Format>,
    /// Format of `token_embd.weight` (also the head when tied).
    pub embed_format: Format,
    /// No `output.weight`: the head is `token_embd.weight`.
    pub tied_head: bool,
    pub rope_base: f32,
    pub eps: f32,
    pub context: usize,
}

impl TinySpec {
    /// Odd sizes that still suit every format: vocab 263 (prime), dim 96 = 3 heads of 32 sharing
    /// 1 kv head, ffn 160, 2 layers. Every matrix row length (96 or 160) is a multiple of 32.
    /// Q4_0 blocks, Q8_0 embedding, separate head.
    pub fn odd() -> Self {
        TinySpec {
            vocab: 263,
            dim: 96,
            n_layers: 2,
            n_heads: 3,
            n_kv_heads: 1,
            ffn: 160,
            weight_format: Format::Q4_0,
            down_format: None,
            head_format: None,
            embed_format: Format::Q8_0,
            tied_head: false,
            rope_base: 10000.0,
            eps: 1e-5,
            context: 64,
        }
    }

    /// The smallest llama whose every matrix row is whole K-quant super-blocks (256 values),
    /// stored like a llama.cpp Q4_K_M file: Q4_K embedding and block matrices, Q6_K `ffn_down`
    /// and head. dim 256 = 2 heads of 128 sharing 1 kv head, ffn 512, 2 layers, vocab 263.
    pub fn q4_k_m() -> Self {
        TinySpec {
            vocab: 263,
            dim: 256,
            n_layers: 2,
            n_heads: 2,
            n_kv_heads: 1,
            ffn: 512,
            weight_format: Format::Q4_K,
            down_format: Some(Format::Q6_K),
            head_format: Some(Format::Q6_K),
            embed_format: Format::Q4_K,
            tied_head: false,
            rope_base: 10000.0,
            eps: 1e-5,
            context: 64,
        }
    }

    pub fn head_dim(&self) -> usize {
        self.dim / self.n_heads
    }
}

fn ggml_type(f: Format) -> GgmlType {
    GgmlType::from_element_id(f.ggml_type()).expect("every qgpu format is a ggml type")
}

/// A synthetic llama GGUF: embedding uniform in ±1, block matrices uniform in ±1/sqrt(K) (so
/// the residual stream stays O(1)), the untied head uniform in ±1/sqrt(dim)·4 (logits of a
/// few units, so argmax is well separated), norms 1 ± 0.1 in F32. Deterministic in `seed`.
///
/// Panics if a matrix row length is not a multiple of its format's `k_multiple()` or the head
/// counts do not fit.
pub fn tiny_llama_gguf(spec: &TinySpec, seed: u64) -> Vec<u8> {
    let s = spec;
    assert!(s.n_heads > 0 && s.dim.is_multiple_of(s.n_heads), "dim {} is not a multiple of {} heads", s.dim, s.n_heads);
    assert!(s.n_kv_heads > 0 && s.n_heads.is_multiple_of(s.n_kv_heads), "{} heads cannot share {} kv heads", s.n_heads, s.n_kv_heads);
    assert!(s.head_dim().is_multiple_of(2), "head dimension {} must be even for rope", s.head_dim());
    let hd = s.head_dim();
    let kv_dim = s.n_kv_heads * hd;
    let mut rng = TestRng::new(seed);

    let mut w = GgufWriter::new();
    let mut meta = |k: &str, v: qgpu::loader::MetadataValue| {
        w.add_metadata(k, v).unwrap();
    };
    meta("general.architecture", "llama".into());
    meta("general.name", "qgpu tiny llama".into());
    meta("llama.context_length", (s.context as u32).into());
    meta("llama.embedding_length", (s.dim as u32).into());
    meta("llama.block_count", (s.n_layers as u32).into());
    meta("llama.feed_forward_length", (s.ffn as u32).into());
    meta("llama.attention.head_count", (s.n_heads as u32).into());
    meta("llama.attention.head_count_kv", (s.n_kv_heads as u32).into());
    meta("llama.attention.layer_norm_rms_epsilon", s.eps.into());
    meta("llama.rope.freq_base", s.rope_base.into());
    meta("llama.rope.dimension_count", (hd as u32).into());
    meta("llama.vocab_size", (s.vocab as u32).into());
    meta("tokenizer.ggml.model", "gpt2".into());
    meta("tokenizer.ggml.tokens", (0..s.vocab).map(|i| format!("t{i}")).collect::<Vec<String>>().into());
    meta("tokenizer.ggml.token_type", vec![1i32; s.vocab].into());
    meta("tokenizer.ggml.merges", MetadataArray::String(Vec::new()).into());
    meta("tokenizer.ggml.bos_token_id", 1u32.into());
    meta("tokenizer.ggml.eos_token_id", 2u32.into());
    meta("tokenizer.ggml.add_bos_token", false.into());

    // Tensors, in the order llama.cpp writes them. `rows × cols` is GGUF dims [cols, rows].
    let mut matrix = |w: &mut GgufWriter<'static>, name: String, format: Format, rows: usize, cols: usize, scale: f32| {
        let values: Vec<f32> = (0..rows * cols).map(|_| rng.uniform() * scale).collect();
        let q = quantize(format, rows, cols, &values).unwrap_or_else(|e| panic!("{name}: {e}"));
        w.add_tensor(name, &[cols as u64, rows as u64], ggml_type(format), q.data().to_vec()).unwrap();
    };
    let norm = |w: &mut GgufWriter<'static>, name: String, rng_seed: u64| {
        let mut r = TestRng::new(rng_seed);
        let values: Vec<u8> = (0..s.dim).flat_map(|_| (1.0 + 0.1 * r.uniform()).to_le_bytes()).collect();
        w.add_tensor(name, &[s.dim as u64], GgmlType::F32, values).unwrap();
    };
    let inv_sqrt = |k: usize| 1.0 / (k as f32).sqrt();
    let norm_seed = |i: u64| seed ^ (0xA5A5_0000 + i);

    matrix(&mut w, "token_embd.weight".into(), s.embed_format, s.vocab, s.dim, 1.0);
    for i in 0..s.n_layers {
        let b = |t: &str| format!("blk.{i}.{t}.weight");
        norm(&mut w, b("attn_norm"), norm_seed(2 * i as u64));
        matrix(&mut w, b("attn_q"), s.weight_format, s.dim, s.dim, inv_sqrt(s.dim));
        matrix(&mut w, b("attn_k"), s.weight_format, kv_dim, s.dim, inv_sqrt(s.dim));
        matrix(&mut w, b("attn_v"), s.weight_format, kv_dim, s.dim, inv_sqrt(s.dim));
        matrix(&mut w, b("attn_output"), s.weight_format, s.dim, s.dim, inv_sqrt(s.dim));
        norm(&mut w, b("ffn_norm"), norm_seed(2 * i as u64 + 1));
        matrix(&mut w, b("ffn_gate"), s.weight_format, s.ffn, s.dim, inv_sqrt(s.dim));
        matrix(&mut w, b("ffn_up"), s.weight_format, s.ffn, s.dim, inv_sqrt(s.dim));
        matrix(&mut w, b("ffn_down"), s.down_format.unwrap_or(s.weight_format), s.dim, s.ffn, inv_sqrt(s.ffn));
    }
    norm(&mut w, "output_norm.weight".into(), norm_seed(u32::MAX as u64));
    if !s.tied_head {
        matrix(&mut w, "output.weight".into(), s.head_format.unwrap_or(s.weight_format), s.vocab, s.dim, 4.0 * inv_sqrt(s.dim));
    }
    w.to_bytes()
}

/// `gguf` rewritten with the metadata in `set` replaced (or added) and the tensors in `retype`
/// stored as another type (zero bytes of the right size); everything else copied as is.
pub fn rewrite_gguf(gguf: &[u8], set: &[(&str, qgpu::loader::MetadataValue)], retype: &[(&str, GgmlType)]) -> Vec<u8> {
    let file = qgpu::loader::GgufFile::from_bytes(gguf.to_vec()).unwrap();
    let mut w = GgufWriter::new();
    for (key, value) in file.metadata().iter() {
        let value = set.iter().find(|(k, _)| *k == key).map_or(value, |(_, v)| v);
        w.add_metadata(key, value.clone()).unwrap();
    }
    for (key, value) in set {
        if !file.metadata().contains_key(key) {
            w.add_metadata(*key, value.clone()).unwrap();
        }
    }
    for t in file.tensors() {
        match retype.iter().find(|(n, _)| *n == t.name) {
            Some(&(_, ty)) => {
                let len = ty.size_of(t.n_elements).unwrap() as usize;
                w.add_tensor(t.name.clone(), &t.dims, ty, vec![0u8; len]).unwrap();
            }
            None => {
                w.add_tensor(t.name.clone(), &t.dims, t.ggml_type, file.tensor_data(t).unwrap().to_vec()).unwrap();
            }
        };
    }
    w.to_bytes()
}
