//! The other K-quants' CPU reference: ggml's Q2_K, Q3_K and Q5_K super-blocks of 256 values.
//!
//! **Dequantization is bit-exact with ggml** (`dequantize_row_q2_K`, `_q3_K`, `_q5_K`): the same
//! f32 operations in the same order; `tests/format_oracle.rs` checks it against gguf-py.
//!
//! **Quantization is a plain round-to-nearest after ggml's scale searches**, written so the
//! kernel tests have blocks to run on; it is not tuned (no importance weights, Q2_K's search
//! minimises the squared rather than the absolute error) and not bit-identical with ggml.

use super::block::{BlockQ2_K, BlockQ3_K, BlockQ5_K, QK_K};
use super::kquants::{get_scale_min_k4, levels_under, make_qkx2_quants, make_qx_quants, nearest_int, pack_scale_min_k4, GROUP_MAX_EPS};
use half::f16;

/// `dequantize_row_q5_K` for one block: value = (d·sc)·(q + 16·h) − (dmin·m).
pub fn dequantize_q5_k(b: &BlockQ5_K, y: &mut [f32]) {
    let (d, min) = (b.d.to_f32(), b.dmin.to_f32());
    for c in 0..QK_K / 64 {
        let ql = &b.qs[32 * c..32 * c + 32];
        let (u1, u2) = (1u8 << (2 * c), 2u8 << (2 * c));
        let (sc, m) = get_scale_min_k4(2 * c, &b.scales);
        let (d1, m1) = (d * sc as f32, min * m as f32);
        let (sc, m) = get_scale_min_k4(2 * c + 1, &b.scales);
        let (d2, m2) = (d * sc as f32, min * m as f32);
        for l in 0..32 {
            let h1 = if b.qh[l] & u1 != 0 { 16 } else { 0 };
            let h2 = if b.qh[l] & u2 != 0 { 16 } else { 0 };
            y[64 * c + l] = d1 * ((ql[l] & 0xF) + h1) as f32 - m1;
            y[64 * c + 32 + l] = d2 * ((ql[l] >> 4) + h2) as f32 - m2;
        }
    }
}

/// Q3_K's 6-bit scale of sub-block `is` (0..16), still offset by 32.
pub fn q3_k_scale(scales: &[u8; 12], is: usize) -> i32 {
    let low = if is < 8 { scales[is] & 0xF } else { scales[is - 8] >> 4 };
    let high = (scales[8 + is % 4] >> (2 * (is / 4))) & 3;
    (low | (high << 4)) as i32
}

/// `dequantize_row_q3_K` for one block: value = (d·(sc − 32))·(q − 4·!h).
pub fn dequantize_q3_k(b: &BlockQ3_K, y: &mut [f32]) {
    let d_all = b.d.to_f32();
    for (v, y) in y.iter_mut().enumerate().take(QK_K) {
        let (n, j, l) = (v / 128, (v % 128) / 32, v % 32);
        let dl = d_all * (q3_k_scale(&b.scales, 8 * n + 2 * j + l / 16) - 32) as f32;
        let q = ((b.qs[32 * n + l] >> (2 * j)) & 3) as i32;
        let h = if b.hmask[l] & (1 << (4 * n + j)) != 0 { 0 } else { 4 };
        *y = dl * (q - h) as f32;
    }
}

/// `dequantize_row_q2_K` for one block: value = (d·sc)·q − (dmin·m).
pub fn dequantize_q2_k(b: &BlockQ2_K, y: &mut [f32]) {
    let (d, min) = (b.d.to_f32(), b.dmin.to_f32());
    for (v, y) in y.iter_mut().enumerate().take(QK_K) {
        let (n, j, l) = (v / 128, (v % 128) / 32, v % 32);
        let sc = b.scales[8 * n + 2 * j + l / 16];
        let (dl, ml) = (d * (sc & 0xF) as f32, min * (sc >> 4) as f32);
        *y = dl * ((b.qs[32 * n + l] >> (2 * j)) & 3) as f32 - ml;
    }
}

/// Packs 256 2-bit levels as Q2_K and Q3_K store them: value 128n + 32j + l at bits 2j of
/// byte 32n + l.
fn pack_2bit(levels: &[u8; QK_K]) -> [u8; QK_K / 4] {
    std::array::from_fn(|i| {
        let (n, l) = (i / 32, i % 32);
        (0..4).fold(0u8, |acc, j| acc | (levels[128 * n + 32 * j + l] & 3) << (2 * j))
    })
}

/// One Q5_K block, as `quantize_row_q5_K_ref`: per 32-value sub-block a scale and min from
/// `make_qkx2_quants` with 32 levels, quantized to 6 bits, then every value re-quantized.
pub fn quantize_q5_k(x: &[f32]) -> BlockQ5_K {
    assert_eq!(x.len(), QK_K, "quantize_q5_k takes one block of {QK_K} values");
    let mut levels = [0u8; QK_K];
    let (mut scales, mut mins) = ([0.0f32; 8], [0.0f32; 8]);
    for j in 0..8 {
        let xs = &x[32 * j..32 * j + 32];
        let av_x = (xs.iter().fold(0.0f32, |s, v| s + v * v) / 32.0).sqrt();
        let weights: [f32; 32] = std::array::from_fn(|i| av_x + xs[i].abs());
        (scales[j], mins[j]) = make_qkx2_quants(31, xs, &weights, &mut levels[32 * j..32 * j + 32], -0.5, 0.1, 15);
    }
    let max_scale = scales.iter().fold(0.0f32, |a, &s| a.max(s));
    let max_min = mins.iter().fold(0.0f32, |a, &m| a.max(m));
    let inv_scale = if max_scale > 0.0 { 63.0 / max_scale } else { 0.0 };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let six_bits = |v: f32| nearest_int(v).clamp(0, 63) as u8;
    let ls: [u8; 8] = std::array::from_fn(|j| six_bits(inv_scale * scales[j]));
    let lm: [u8; 8] = std::array::from_fn(|j| six_bits(inv_min * mins[j]));
    let mut b = BlockQ5_K {
        d: f16::from_f32(max_scale / 63.0),
        dmin: f16::from_f32(max_min / 63.0),
        scales: pack_scale_min_k4(&ls, &lm),
        qh: [0; QK_K / 8],
        qs: [0; QK_K / 2],
    };
    levels_under(b.d, b.dmin, &b.scales, x, 31, &mut levels);
    for c in 0..QK_K / 64 {
        for l in 0..32 {
            let (l1, l2) = (levels[64 * c + l], levels[64 * c + 32 + l]);
            b.qs[32 * c + l] = (l1 & 0xF) | ((l2 & 0xF) << 4);
            b.qh[l] |= (l1 >> 4) << (2 * c) | (l2 >> 4) << (2 * c + 1);
        }
    }
    b
}

/// One Q3_K block, as `quantize_row_q3_K_ref` but with `make_qx_quants` for the sub-block
/// scales: levels −4..3 per 16 values, scales to 6 bits against the largest (mapped to −32).
pub fn quantize_q3_k(x: &[f32]) -> BlockQ3_K {
    assert_eq!(x.len(), QK_K, "quantize_q3_k takes one block of {QK_K} values");
    let mut levels = [0u8; QK_K];
    let mut scales = [0.0f32; 16];
    let (mut max_scale, mut amax) = (0.0f32, 0.0f32);
    for j in 0..16 {
        scales[j] = make_qx_quants(4, &x[16 * j..16 * j + 16], None, &mut levels[16 * j..16 * j + 16]);
        if scales[j].abs() > amax {
            amax = scales[j].abs();
            max_scale = scales[j];
        }
    }
    let mut b = BlockQ3_K { hmask: [0; QK_K / 8], qs: [0; QK_K / 4], scales: [0; 12], d: f16::ZERO };
    if amax < GROUP_MAX_EPS {
        // All levels 0 − 4 = −4 with d = 0: every value decodes to zero.
        return b;
    }
    let iscale = -32.0 / max_scale;
    for (j, &s) in scales.iter().enumerate() {
        let l = (nearest_int(iscale * s).clamp(-32, 31) + 32) as u8;
        if j < 8 {
            b.scales[j] = l & 0xF;
        } else {
            b.scales[j - 8] |= (l & 0xF) << 4;
        }
        b.scales[8 + j % 4] |= (l >> 4) << (2 * (j / 4));
    }
    b.d = f16::from_f32(1.0 / iscale);
    for j in 0..16 {
        let d = b.d.to_f32() * (q3_k_scale(&b.scales, j) - 32) as f32;
        if d == 0.0 {
            continue;
        }
        for i in 16 * j..16 * j + 16 {
            levels[i] = (nearest_int(x[i] / d).clamp(-4, 3) + 4) as u8;
        }
    }
    for (v, l) in levels.iter_mut().enumerate() {
        if *l > 3 {
            b.hmask[v % 32] |= 1 << (v / 32);
            *l -= 4;
        }
    }
    b.qs = pack_2bit(&levels);
    b
}

/// One Q2_K block, as `quantize_row_q2_K_ref`: per 16 values a scale and min from
/// `make_qkx2_quants` with 4 levels (weights |x|), both quantized to 4 bits.
pub fn quantize_q2_k(x: &[f32]) -> BlockQ2_K {
    assert_eq!(x.len(), QK_K, "quantize_q2_k takes one block of {QK_K} values");
    let mut levels = [0u8; QK_K];
    let (mut scales, mut mins) = ([0.0f32; 16], [0.0f32; 16]);
    for j in 0..16 {
        let xs = &x[16 * j..16 * j + 16];
        let weights: [f32; 16] = std::array::from_fn(|i| xs[i].abs());
        (scales[j], mins[j]) = make_qkx2_quants(3, xs, &weights, &mut levels[16 * j..16 * j + 16], -0.5, 0.1, 15);
    }
    let max_scale = scales.iter().fold(0.0f32, |a, &s| a.max(s));
    let max_min = mins.iter().fold(0.0f32, |a, &m| a.max(m));
    let mut b = BlockQ2_K { scales: [0; 16], qs: [0; QK_K / 4], d: f16::ZERO, dmin: f16::ZERO };
    if max_scale > 0.0 {
        let iscale = 15.0 / max_scale;
        for (q, &s) in b.scales.iter_mut().zip(&scales) {
            *q = nearest_int(iscale * s).clamp(0, 15) as u8;
        }
        b.d = f16::from_f32(max_scale / 15.0);
    }
    if max_min > 0.0 {
        let iscale = 15.0 / max_min;
        for (q, &m) in b.scales.iter_mut().zip(&mins) {
            *q |= (nearest_int(iscale * m).clamp(0, 15) as u8) << 4;
        }
        b.dmin = f16::from_f32(max_min / 15.0);
    }
    for j in 0..16 {
        let d = b.d.to_f32() * (b.scales[j] & 0xF) as f32;
        if d == 0.0 {
            continue;
        }
        let dm = b.dmin.to_f32() * (b.scales[j] >> 4) as f32;
        for i in 16 * j..16 * j + 16 {
            levels[i] = nearest_int((x[i] + dm) / d).clamp(0, 3) as u8;
        }
    }
    b.qs = pack_2bit(&levels);
    b
}
