//! Element types of the KV cache and their CPU reference (what `shaders/kv_store.wgsl` stores
//! and `shaders/flash_attention.wgsl` reads back).
//!
//! The cache is an `array<u32>` of head rows: one (position, KV head) is `row_words(head_dim)`
//! words. F32 is one word a value; F16 two values a word, low half first (`pack2x16float`, so
//! no shader-f16 is needed). Q8_0 and Q4_0 round each run of 32 values of a head row (the last
//! run of an 80-wide head holds 16) as it is stored, ggml's rule: the quants first (Q8_0 four
//! signed bytes a word, Q4_0 eight nibbles a word, both in value order), then the runs' f16
//! scales, two a word.

use std::fmt;
use std::str::FromStr;

use super::reference::{q4_0_scale, q8_0_scale};

/// How the KV cache stores each value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum KvType {
    F32,
    #[default]
    F16,
    Q8_0,
    Q4_0,
}

/// Values a scale covers in the quantized KV types.
pub const KV_BLOCK: usize = 32;

impl KvType {
    pub const ALL: [KvType; 4] = [KvType::F32, KvType::F16, KvType::Q8_0, KvType::Q4_0];

    pub fn name(self) -> &'static str {
        match self {
            KvType::F32 => "f32",
            KvType::F16 => "f16",
            KvType::Q8_0 => "q8_0",
            KvType::Q4_0 => "q4_0",
        }
    }

    /// The `KV_TYPE` override constant of the shaders.
    pub fn shader_code(self) -> u32 {
        match self {
            KvType::F32 => 0,
            KvType::F16 => 1,
            KvType::Q8_0 => 2,
            KvType::Q4_0 => 3,
        }
    }

    /// What a head's width must be a multiple of: whole words of quants.
    pub fn head_dim_multiple(self) -> usize {
        match self {
            KvType::F32 | KvType::F16 => 2,
            KvType::Q8_0 | KvType::Q4_0 => 8,
        }
    }

    /// Words of one head row of `head_dim` values.
    pub fn row_words(self, head_dim: usize) -> usize {
        let scales = head_dim.div_ceil(KV_BLOCK).div_ceil(2);
        match self {
            KvType::F32 => head_dim,
            KvType::F16 => head_dim.div_ceil(2),
            KvType::Q8_0 => head_dim.div_ceil(4) + scales,
            KvType::Q4_0 => head_dim.div_ceil(8) + scales,
        }
    }

    /// Encodes one head row as the GPU stores it.
    pub fn encode(self, x: &[f32]) -> Vec<u32> {
        let n = x.len();
        let mut w = vec![0u32; self.row_words(n)];
        match self {
            KvType::F32 => w.iter_mut().zip(x).for_each(|(w, v)| *w = v.to_bits()),
            KvType::F16 => {
                for (i, v) in x.iter().enumerate() {
                    w[i / 2] |= (half::f16::from_f32(*v).to_bits() as u32) << (16 * (i % 2));
                }
            }
            KvType::Q8_0 | KvType::Q4_0 => {
                let quant_words = if self == KvType::Q8_0 { n.div_ceil(4) } else { n.div_ceil(8) };
                for (b, block) in x.chunks(KV_BLOCK).enumerate() {
                    let (d, quants) = if self == KvType::Q8_0 { quantize_q8(block) } else { quantize_q4(block) };
                    for (j, q) in quants.into_iter().enumerate() {
                        let i = b * KV_BLOCK + j;
                        if self == KvType::Q8_0 {
                            w[i / 4] |= q << (8 * (i % 4));
                        } else {
                            w[i / 8] |= q << (4 * (i % 8));
                        }
                    }
                    w[quant_words + b / 2] |= (half::f16::from_f32(d).to_bits() as u32) << (16 * (b % 2));
                }
            }
        }
        w
    }

    /// Decodes one head row of `head_dim` values.
    pub fn decode(self, w: &[u32], head_dim: usize) -> Vec<f32> {
        let f16 = |w: u32, i: usize| half::f16::from_bits((w >> (16 * (i % 2))) as u16).to_f32();
        let quant_words = match self {
            KvType::Q8_0 => head_dim.div_ceil(4),
            _ => head_dim.div_ceil(8),
        };
        let scale = |i: usize| {
            let b = i / KV_BLOCK;
            f16(w[quant_words + b / 2], b)
        };
        (0..head_dim)
            .map(|i| match self {
                KvType::F32 => f32::from_bits(w[i]),
                KvType::F16 => f16(w[i / 2], i),
                KvType::Q8_0 => ((w[i / 4] >> (8 * (i % 4))) as u8 as i8) as f32 * scale(i),
                KvType::Q4_0 => (((w[i / 8] >> (4 * (i % 8))) & 15) as i32 - 8) as f32 * scale(i),
            })
            .collect()
    }

    /// What storing `x` and reading it back gives.
    pub fn round_trip(self, x: &[f32]) -> Vec<f32> {
        self.decode(&self.encode(x), x.len())
    }
}

/// Half away from zero in f32 as the shader computes it (`sign(v) * floor(|v| + 0.5)`), which
/// is ggml's `roundf` except for values within an f32 ulp below a half.
fn round_away(v: f32) -> f32 {
    v.signum() * (v.abs() + 0.5).floor()
}

/// ggml's `quantize_row_q8_0_ref`: d = max|x| / 127, q = round(x / d); q as its byte.
fn quantize_q8(x: &[f32]) -> (f32, Vec<u32>) {
    let (d, id) = q8_0_scale(x);
    (d, x.iter().map(|v| round_away(v * id) as i8 as u8 as u32).collect())
}

/// ggml's `quantize_row_q4_0_ref`: d = (the value of largest magnitude) / -8, q = min(15,
/// trunc(x / d + 8.5)), stored as q and read as q - 8.
fn quantize_q4(x: &[f32]) -> (f32, Vec<u32>) {
    let (d, id) = q4_0_scale(x);
    (d, x.iter().map(|v| ((v * id + 8.5).floor() as u32).min(15)).collect())
}

impl fmt::Display for KvType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A KV type name that is none of `f32`, `f16`, `q8_0`, `q4_0`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown KV cache type `{0}` (expected one of f32, f16, q8_0, q4_0)")]
pub struct UnknownKvType(pub String);

impl FromStr for KvType {
    type Err = UnknownKvType;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        KvType::ALL.into_iter().find(|t| t.name().eq_ignore_ascii_case(s)).ok_or_else(|| UnknownKvType(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_within_their_step() {
        for ty in KvType::ALL {
            for n in [8usize, 64, 80, 96, 256] {
                let x: Vec<f32> = (0..n).map(|i| ((i * 37 % 101) as f32 - 50.0) / 17.0).collect();
                assert_eq!(ty.encode(&x).len(), ty.row_words(n));
                let y = ty.round_trip(&x);
                for (b, (xs, ys)) in x.chunks(KV_BLOCK).zip(y.chunks(KV_BLOCK)).enumerate() {
                    let amax = xs.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                    let tol = match ty {
                        KvType::F32 => 0.0,
                        KvType::F16 => amax / 1024.0,
                        KvType::Q8_0 => amax / 127.0 * 0.6,
                        KvType::Q4_0 => amax / 8.0 * 1.01,
                    };
                    for (a, c) in xs.iter().zip(ys) {
                        assert!((a - c).abs() <= tol, "{ty} n={n} block {b}: {a} -> {c}");
                    }
                }
            }
        }
        assert_eq!("Q8_0".parse::<KvType>(), Ok(KvType::Q8_0));
        assert!("q5_0".parse::<KvType>().is_err());
    }
}
