//! IQ4_NL: 4-bit weights on a non-uniform grid (the NF4 idea, in ggml's block format).
//!
//! Each block of 32 values stores an f16 scale `d` and 32 nibbles; a nibble indexes the fixed
//! codebook [`IQ4_NL_VALUES`] and the value is `d · codebook[q]`. The codebook is denser near
//! zero, where most weights of a trained network lie, so at the same 4.5 bits a weight as Q4_0 it
//! loses less. Nibble order is Q4_0's: byte j holds value j (low) and value j + 16 (high).
//!
//! Quantization searches the scale: for each candidate inverse scale every value takes the
//! nearest codebook entry, the scale is then refit by least squares, and the candidate with the
//! smallest (importance-weighted) squared error wins. The weights let calibration
//! (`--calibrate`) spend accuracy where the inputs are large.

use half::f16;

use super::block::{BlockIQ4_NL, BlockIQ4_XS, QK, QK_K};
use super::weighted::{best_symmetric_scale, signed_max, usable};

/// ggml's `kvalues_iq4nl`: the 16 codebook entries, ascending.
pub const IQ4_NL_VALUES: [i8; 16] = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

/// Midpoints between neighbouring codebook entries: the decision boundaries of rounding.
const MIDPOINTS: [f32; 15] = {
    let mut m = [0.0f32; 15];
    let mut i = 0;
    while i < 15 {
        m[i] = (IQ4_NL_VALUES[i] as f32 + IQ4_NL_VALUES[i + 1] as f32) * 0.5;
        i += 1;
    }
    m
};

/// Candidate inverse scales tried on each side of the two natural ones (largest magnitude on
/// −127 or on +113), half a codebook unit apart.
const SEARCH_STEPS: i32 = 16;

/// Index of the codebook entry nearest to `x` (in codebook units); ties go to the lower entry.
pub fn nearest_index(x: f32) -> u8 {
    MIDPOINTS.partition_point(|&m| m < x) as u8
}

/// Dequantizes one block into `out` (32 values).
pub fn dequantize_iq4_nl(b: &BlockIQ4_NL, out: &mut [f32]) {
    let d = b.d.to_f32();
    for (j, &q) in b.qs.iter().enumerate() {
        out[j] = d * IQ4_NL_VALUES[(q & 0xF) as usize] as f32;
        out[j + QK / 2] = d * IQ4_NL_VALUES[(q >> 4) as usize] as f32;
    }
}

/// Quantizes 32 values minimising the plain squared error.
pub fn quantize_iq4_nl(x: &[f32]) -> BlockIQ4_NL {
    quantize_iq4_nl_weighted(x, &[1.0; QK])
}

/// Quantizes 32 values minimising Σ weights\[j\] · (x\[j\] − d · codebook\[q\[j\]\])².
/// Weights must be non-negative; all-zero weights fall back to uniform ones.
pub fn quantize_iq4_nl_weighted(x: &[f32], weights: &[f32]) -> BlockIQ4_NL {
    debug_assert_eq!((x.len(), weights.len()), (QK, QK));
    let uniform = [1.0f32; QK];
    let weights = usable(weights, &uniform);
    let max = signed_max(x);
    if max == 0.0 || !max.is_finite() {
        return BlockIQ4_NL { d: f16::ZERO, qs: [0x88; QK / 2] };
    }
    let (lowest, highest) = (IQ4_NL_VALUES[0] as f32, IQ4_NL_VALUES[15] as f32);
    // Map the largest magnitude onto either end of the codebook (a negative scale flips it).
    let level = |scaled: f32| IQ4_NL_VALUES[nearest_index(scaled) as usize] as f32;
    let best = best_symmetric_scale(x, weights, max, [lowest, highest], (SEARCH_STEPS, 0.5), -max / lowest, level);
    let d = f16::from_f32(best);
    // Round with the scale as stored, so the codes fit the f16 value the kernels will read.
    let inverse = if d.to_f32() != 0.0 { 1.0 / d.to_f32() } else { 0.0 };
    let mut qs = [0u8; QK / 2];
    for (j, q) in qs.iter_mut().enumerate() {
        *q = nearest_index(x[j] * inverse) | nearest_index(x[j + QK / 2] * inverse) << 4;
    }
    BlockIQ4_NL { d, qs }
}

/// IQ4_XS sub-block `ib`'s 6-bit scale, still offset by 32.
pub fn iq4_xs_scale(b: &BlockIQ4_XS, ib: usize) -> i32 {
    let low = (b.scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF;
    let high = ((b.scales_h >> (2 * ib)) & 3) as u8;
    (low | (high << 4)) as i32
}

/// `dequantize_row_iq4_xs` for one block (256 values): value = (d·(ls − 32))·codebook\[q\].
pub fn dequantize_iq4_xs(b: &BlockIQ4_XS, out: &mut [f32]) {
    let d = b.d.to_f32();
    for ib in 0..QK_K / QK {
        let dl = d * (iq4_xs_scale(b, ib) - 32) as f32;
        let (qs, y) = (&b.qs[16 * ib..16 * ib + 16], &mut out[QK * ib..QK * ib + QK]);
        for (j, &q) in qs.iter().enumerate() {
            y[j] = dl * IQ4_NL_VALUES[(q & 0xF) as usize] as f32;
            y[j + QK / 2] = dl * IQ4_NL_VALUES[(q >> 4) as usize] as f32;
        }
    }
}

/// Quantizes 256 values as IQ4_XS, as ggml's super-block path of `quantize_row_iq4_nl_impl`:
/// each sub-block's scale from the IQ4_NL search, those scales to 6 bits against the largest
/// (mapped to −32), then every value to its nearest codebook entry under its stored scale.
pub fn quantize_iq4_xs(x: &[f32]) -> BlockIQ4_XS {
    assert_eq!(x.len(), QK_K, "quantize_iq4_xs takes one block of {QK_K} values");
    let scales: [f32; QK_K / QK] = std::array::from_fn(|ib| quantize_iq4_nl(&x[QK * ib..QK * ib + QK]).d.to_f32());
    let max_scale = signed_max(&scales);
    let mut b = BlockIQ4_XS { d: f16::ZERO, scales_h: 0, scales_l: [0; 4], qs: [0x88; QK_K / 2] };
    if max_scale == 0.0 || !max_scale.is_finite() {
        // Every sub-block scale 0 − 32 = −32 with d = 0: all values decode to zero.
        return b;
    }
    b.d = f16::from_f32(-max_scale / 32.0);
    let d = b.d.to_f32();
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    for (ib, &s) in scales.iter().enumerate() {
        let l = ((s * id).round_ties_even() as i32).clamp(-32, 31);
        let dl = d * l as f32;
        let idl = if dl != 0.0 { 1.0 / dl } else { 0.0 };
        let (xs, qs) = (&x[QK * ib..QK * ib + QK], &mut b.qs[16 * ib..16 * ib + 16]);
        for (j, q) in qs.iter_mut().enumerate() {
            *q = nearest_index(xs[j] * idl) | nearest_index(xs[j + QK / 2] * idl) << 4;
        }
        let l = (l + 32) as u8;
        b.scales_l[ib / 2] |= (l & 0xF) << (4 * (ib % 2));
        b.scales_h |= ((l >> 4) as u16) << (2 * ib);
    }
    b
}
