//! NF4 and FP4, bitsandbytes' 4-bit formats (QLoRA's NormalFloat and a 4-bit float), in the
//! layout Hugging Face `*-bnb-4bit` checkpoints store them.
//!
//! A block is 64 consecutive values of the flattened weight. Each value is a nibble that indexes a
//! 16-entry codebook of floats in [-1, 1], times the block's f32 `absmax`. Byte `i` of the
//! packed data holds value `2i` in its **high** nibble and value `2i + 1` in its low one
//! (bitsandbytes' order, unlike ggml's).
//!
//! qgpu keeps one block as [`BlockBnb4`]: the absmax, then the 32 packed bytes, 36 bytes for 64
//! values (4.5 bits a weight). A checkpoint with double quantization stores each absmax as an
//! 8-bit code instead (about 4.127 bits a weight); the loader expands those codes to f32 as
//! bitsandbytes does, so the values multiplied on the GPU are exactly bitsandbytes' own.

use super::block::BlockBnb4;

/// Values per block.
pub const BNB_BLOCK: usize = 64;

/// NF4's codebook: the 16 NormalFloat values of bitsandbytes (`get_4bit_type("nf4")`), as f32.
pub const NF4_VALUES: [f32; 16] = [
    -1.0,
    -0.696_192_8,
    -0.525_073_05,
    -0.394_917_5,
    -0.284_441_38,
    -0.184_773_43,
    -0.091_050_036,
    0.0,
    0.079_580_3,
    0.160_930_2,
    0.246_112_3,
    0.337_915_24,
    0.440_709_83,
    0.562_617,
    0.722_956_84,
    1.0,
];

/// FP4's codebook (bitsandbytes' `get_4bit_type("fp4")`): the E2M1-like values 0, 0.0625, 8,
/// 12, 4, 6, 2, 3 and their negatives (sign in bit 3), divided by 12 in f32.
pub const FP4_VALUES: [f32; 16] = {
    let raw = [0.0f32, 0.0625, 8.0, 12.0, 4.0, 6.0, 2.0, 3.0, -0.0, -0.0625, -8.0, -12.0, -4.0, -6.0, -2.0, -3.0];
    let mut v = [0.0f32; 16];
    let mut i = 0;
    while i < 16 {
        v[i] = raw[i] / 12.0;
        i += 1;
    }
    v
};

/// Which of the two codebooks a block indexes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Bnb4Kind {
    Nf4,
    Fp4,
}

impl Bnb4Kind {
    pub const fn codebook(self) -> &'static [f32; 16] {
        match self {
            Bnb4Kind::Nf4 => &NF4_VALUES,
            Bnb4Kind::Fp4 => &FP4_VALUES,
        }
    }

    /// bitsandbytes' name (`quant_type` in a checkpoint's quant state).
    pub const fn name(self) -> &'static str {
        match self {
            Bnb4Kind::Nf4 => "nf4",
            Bnb4Kind::Fp4 => "fp4",
        }
    }
}

/// Dequantizes one block into `out` (64 values): `codebook[q] · absmax`, as bitsandbytes.
pub fn dequantize_bnb4(kind: Bnb4Kind, b: &BlockBnb4, out: &mut [f32]) {
    let book = kind.codebook();
    for (i, &q) in b.qs.iter().enumerate() {
        out[2 * i] = book[(q >> 4) as usize] * b.absmax;
        out[2 * i + 1] = book[(q & 0xF) as usize] * b.absmax;
    }
}

/// Quantizes 64 values as bitsandbytes' reference does (`quantize_4bit`): absmax = max |x|
/// (at least 1e-38), each `x · (1 / absmax)` clamped to [-1, 1] goes to the nearest codebook
/// entry, a value exactly between two going to the lower one (its `bucketize` over the f32
/// midpoints of the sorted codebook).
pub fn quantize_bnb4(kind: Bnb4Kind, x: &[f32]) -> BlockBnb4 {
    debug_assert_eq!(x.len(), BNB_BLOCK);
    let book = kind.codebook();
    let mut order: [usize; 16] = std::array::from_fn(|i| i);
    order.sort_by(|&a, &b| book[a].total_cmp(&book[b]));
    let midpoints: [f32; 15] = std::array::from_fn(|i| (book[order[i]] + book[order[i + 1]]) / 2.0);
    let absmax = x.iter().fold(0.0f32, |a, v| a.max(v.abs()));
    let inverse = 1.0 / absmax.max(1e-38);
    let nearest = |v: f32| -> u8 { order[midpoints.partition_point(|&m| m < (v * inverse).clamp(-1.0, 1.0))] as u8 };
    let mut qs = [0u8; BNB_BLOCK / 2];
    for (i, q) in qs.iter_mut().enumerate() {
        *q = nearest(x[2 * i]) << 4 | nearest(x[2 * i + 1]);
    }
    BlockBnb4 { absmax, qs }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codebooks_are_bitsandbytes() {
        assert_eq!(NF4_VALUES[7], 0.0);
        assert_eq!(FP4_VALUES[3], 1.0);
        assert_eq!(FP4_VALUES[1], 0.0625 / 12.0);
        assert!(NF4_VALUES.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn round_trip_keeps_codebook_points() {
        for kind in [Bnb4Kind::Nf4, Bnb4Kind::Fp4] {
            let x: Vec<f32> = (0..BNB_BLOCK).map(|i| kind.codebook()[i % 16] * 2.5).collect();
            let mut out = [0.0f32; BNB_BLOCK];
            dequantize_bnb4(kind, &quantize_bnb4(kind, &x), &mut out);
            assert_eq!(out.to_vec(), x, "{kind:?}");
        }
    }
}
