//! The K-quants' CPU reference: ggml's Q4_K and Q6_K super-blocks of 256 values.
//!
//! **Dequantization is bit-exact with ggml** (`dequantize_row_q4_K`, `dequantize_row_q6_K` and
//! `get_scale_min_k4` in ggml-quants.c): the same f32 operations in the same order.
//!
//! **Quantization is ggml-compatible but not guaranteed bit-identical.** The quantizers follow
//! ggml's reference quantizers (`quantize_row_q4_K_ref`, `quantize_row_q6_K_ref`) step by step,
//! including their iterative searches (`make_qkx2_quants` for Q4_K's per-sub-block scale and
//! min, `make_qx_quants` for Q6_K's per-sub-block scale), and produce valid blocks that any ggml
//! reader decodes to the same values as we do. The bytes may still differ from what ggml writes
//! for the same input: floating-point sums accumulate in a compiler-dependent order and C
//! compilers may contract multiply-adds, and a tie in a search can then go either way. Nothing
//! in qgpu depends on the bytes being identical; the kernels are tested against
//! [`dequantize_q4_k`] / [`dequantize_q6_k`] of whatever blocks they are given.

use super::block::{BlockQ4_K, BlockQ6_K, K_SCALE_SIZE, QK_K};
use half::f16;

/// Below this a group is treated as all zeros (`GROUP_MAX_EPS` in ggml).
pub(crate) const GROUP_MAX_EPS: f32 = 1e-15;

/// ggml's `nearest_int`: round half to even (it adds 1.5·2²³ and reads the mantissa).
pub(crate) fn nearest_int(v: f32) -> i32 {
    v.round_ties_even() as i32
}

/// Sub-block `j` (0..8) of a Q4_K block: its 6-bit scale and 6-bit min (`get_scale_min_k4`).
pub fn get_scale_min_k4(j: usize, q: &[u8; K_SCALE_SIZE]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

/// Every value's level under a block's packed 6-bit scales and mins, clamped to 0..=max:
/// ggml's final pass of Q4_K (max 15) and Q5_K (max 31). A sub-block whose scale decodes to 0
/// keeps the levels it had.
pub(super) fn levels_under(d: f16, dmin: f16, scales: &[u8; 12], x: &[f32], max: i32, levels: &mut [u8; QK_K]) {
    for j in 0..8 {
        let (sc, m) = get_scale_min_k4(j, scales);
        let d = d.to_f32() * sc as f32;
        if d == 0.0 {
            continue;
        }
        let dm = dmin.to_f32() * m as f32;
        for i in 32 * j..32 * j + 32 {
            levels[i] = nearest_int((x[i] + dm) / d).clamp(0, max) as u8;
        }
    }
}

/// Packs eight 6-bit scales and mins the way [`get_scale_min_k4`] unpacks them.
pub fn pack_scale_min_k4(scales: &[u8; 8], mins: &[u8; 8]) -> [u8; K_SCALE_SIZE] {
    let mut q = [0u8; K_SCALE_SIZE];
    for j in 0..8 {
        let (ls, lm) = (scales[j].min(63), mins[j].min(63));
        if j < 4 {
            q[j] |= ls;
            q[j + 4] |= lm;
        } else {
            q[j + 4] = (ls & 0xF) | ((lm & 0xF) << 4);
            q[j - 4] |= (ls >> 4) << 6;
            q[j] |= (lm >> 4) << 6;
        }
    }
    q
}

/// `dequantize_row_q4_K` for one block: value = (d·sc)·q − (dmin·m).
pub fn dequantize_q4_k(b: &BlockQ4_K, y: &mut [f32]) {
    let (d, min) = (b.d.to_f32(), b.dmin.to_f32());
    for c in 0..QK_K / 64 {
        let q = &b.qs[32 * c..32 * c + 32];
        let (sc, m) = get_scale_min_k4(2 * c, &b.scales);
        let (d1, m1) = (d * sc as f32, min * m as f32);
        let (sc, m) = get_scale_min_k4(2 * c + 1, &b.scales);
        let (d2, m2) = (d * sc as f32, min * m as f32);
        for l in 0..32 {
            y[64 * c + l] = d1 * (q[l] & 0xF) as f32 - m1;
            y[64 * c + 32 + l] = d2 * (q[l] >> 4) as f32 - m2;
        }
    }
}

/// `dequantize_row_q6_K` for one block: value = (d·scale)·(q − 32).
pub fn dequantize_q6_k(b: &BlockQ6_K, y: &mut [f32]) {
    let d = b.d.to_f32();
    for h in 0..QK_K / 128 {
        let (ql, qh, sc, y) = (&b.ql[64 * h..], &b.qh[32 * h..], &b.scales[8 * h..], &mut y[128 * h..]);
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i32 - 32;
            let q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
            y[l] = d * sc[is] as f32 * q1 as f32;
            y[l + 32] = d * sc[is + 2] as f32 * q2 as f32;
            y[l + 64] = d * sc[is + 4] as f32 * q3 as f32;
            y[l + 96] = d * sc[is + 6] as f32 * q4 as f32;
        }
    }
}

/// ggml's `make_qkx2_quants`: a scale and a min (returned as its negation, ≥ 0) for `x` with
/// levels 0..=nmax, minimising the weighted squared error over a small search of candidate
/// scales, each refined by weighted least squares. Writes the chosen levels into `l`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn make_qkx2_quants(nmax: i32, x: &[f32], weights: &[f32], l: &mut [u8], rmin: f32, rdelta: f32, nstep: i32) -> (f32, f32) {
    let n = x.len();
    let (mut min, mut max) = (x[0], x[0]);
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        min = min.min(x[i]);
        max = max.max(x[i]);
        let w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        l.iter_mut().for_each(|q| *q = 0);
        return (0.0, -min);
    }
    let mut iscale = nmax as f32 / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_mad = 0.0f32;
    for i in 0..n {
        l[i] = nearest_int(iscale * (x[i] - min)).clamp(0, nmax) as u8;
        let diff = scale * l[i] as f32 + min - x[i];
        best_mad += weights[i] * (diff * diff);
    }
    let mut laux = [0u8; 32];
    let laux = &mut laux[..n];
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nmax as f32) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0.0f32, 0.0f32, 0.0f32);
        for i in 0..n {
            let q = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
            laux[i] = q as u8;
            let (w, q) = (weights[i], q as f32);
            sum_l += w * q;
            sum_l2 += w * q * q;
            sum_xl += w * q * x[i];
        }
        let det = sum_w * sum_l2 - sum_l * sum_l;
        if det > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut mad = 0.0f32;
            for i in 0..n {
                let diff = this_scale * laux[i] as f32 + this_min - x[i];
                mad += weights[i] * (diff * diff);
            }
            if mad < best_mad {
                l.copy_from_slice(laux);
                best_mad = mad;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// ggml's `make_qx_quants` with `rmse_type` 1 (weights x², or `weights` when given): a signed
/// scale for `x` with levels −nmax..nmax−1, searching 18 candidate scales around nmax / max|x|
/// by weighted least squares. Writes the chosen levels, offset by nmax, into `l`.
pub(crate) fn make_qx_quants(nmax: i32, x: &[f32], weights: Option<&[f32]>, l: &mut [u8]) -> f32 {
    let (mut max, mut amax) = (0.0f32, 0.0f32);
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        l.iter_mut().for_each(|q| *q = 0);
        return 0.0;
    }
    let level = |iscale: f32, v: f32| nearest_int(iscale * v).clamp(-nmax, nmax - 1);
    let sums = |iscale: f32| {
        let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
        for (i, &v) in x.iter().enumerate() {
            let q = level(iscale, v) as f32;
            let w = weights.map_or(v * v, |w| w[i]);
            sumlx += w * v * q;
            suml2 += w * q * q;
        }
        (sumlx, suml2)
    };
    let mut iscale = -(nmax as f32) / max;
    for (q, &v) in l.iter_mut().zip(x) {
        *q = (level(iscale, v) + nmax) as u8;
    }
    let (sumlx, suml2) = sums(iscale);
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for is in (-9..=9).filter(|&is| is != 0) {
        iscale = -(nmax as f32 + 0.1 * is as f32) / max;
        let (sumlx, suml2) = sums(iscale);
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            for (q, &v) in l.iter_mut().zip(x) {
                *q = (level(iscale, v) + nmax) as u8;
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// One Q4_K block from 256 values, as `quantize_row_q4_K_ref`: per 32-value sub-block a scale
/// and a min from [`make_qkx2_quants`] (weights |x| + RMS of the sub-block), both quantized to 6
/// bits against the largest of them (`d`, `dmin`), then every value re-quantized against its
/// sub-block's stored scale and min.
pub fn quantize_q4_k(x: &[f32]) -> BlockQ4_K {
    assert_eq!(x.len(), QK_K, "quantize_q4_k takes one block of {QK_K} values");
    q4_k_block(x, None)
}

/// One Q4_K block minimising Σ importance·(x − q)² (the error a linear layer's output grows
/// with, `importance[j]` being E\[input_j²\] from calibration): the sub-block search weighs
/// by importance alone and searches finer, and each sub-block's 6-bit scale and min codes are
/// then tried one step either side of nearest, keeping the pair with the least weighted error.
pub fn quantize_q4_k_weighted(x: &[f32], importance: &[f32]) -> BlockQ4_K {
    assert_eq!(x.len(), QK_K, "quantize_q4_k_weighted takes one block of {QK_K} values");
    assert_eq!(importance.len(), QK_K, "quantize_q4_k_weighted takes one importance per value");
    q4_k_block(x, Some(importance))
}

/// Per-sub-block weights: `importance` where any of it is positive, else 1 (a channel that
/// calibration never saw is not worth less than the others).
fn sub_block_weights<const N: usize>(importance: &[f32]) -> [f32; N] {
    if importance.iter().any(|&w| w > 0.0) {
        std::array::from_fn(|i| importance[i].max(0.0))
    } else {
        [1.0; N]
    }
}

fn q4_k_block(x: &[f32], importance: Option<&[f32]>) -> BlockQ4_K {
    let mut levels = [0u8; QK_K];
    let mut weights = [[0.0f32; 32]; 8];
    let (mut scales, mut mins) = ([0.0f32; 8], [0.0f32; 8]);
    let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
    for j in 0..8 {
        let xs = &x[32 * j..32 * j + 32];
        let l = &mut levels[32 * j..32 * j + 32];
        (scales[j], mins[j]) = match importance {
            None => {
                let sum_x2: f32 = xs.iter().fold(0.0, |s, v| s + v * v);
                let av_x = (sum_x2 / 32.0).sqrt();
                weights[j] = std::array::from_fn(|i| av_x + xs[i].abs());
                make_qkx2_quants(15, xs, &weights[j], l, -1.0, 0.1, 20)
            }
            Some(imp) => {
                weights[j] = sub_block_weights(&imp[32 * j..32 * j + 32]);
                make_qkx2_quants(15, xs, &weights[j], l, -1.0, 0.05, 40)
            }
        };
        max_scale = max_scale.max(scales[j]);
        max_min = max_min.max(mins[j]);
    }
    let inv_scale = if max_scale > 0.0 { 63.0 / max_scale } else { 0.0 };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    // ggml stores these through uint8_t; a (never seen) negative scale saturates at 0 here.
    let six_bits = |v: f32| nearest_int(v).clamp(0, 63) as u8;
    let mut ls: [u8; 8] = std::array::from_fn(|j| six_bits(inv_scale * scales[j]));
    let mut lm: [u8; 8] = std::array::from_fn(|j| six_bits(inv_min * mins[j]));
    let (d, dmin) = (f16::from_f32(max_scale / 63.0), f16::from_f32(max_min / 63.0));
    if importance.is_some() {
        let (d, dmin) = (d.to_f32(), dmin.to_f32());
        for j in 0..8 {
            (ls[j], lm[j]) = best_scale_min_codes(&x[32 * j..32 * j + 32], &weights[j], (d, dmin), (ls[j], lm[j]));
        }
    }
    let mut b = BlockQ4_K { d, dmin, scales: pack_scale_min_k4(&ls, &lm), qs: [0; QK_K / 2] };
    levels_under(b.d, b.dmin, &b.scales, x, 15, &mut levels);
    for c in 0..QK_K / 64 {
        for l in 0..32 {
            b.qs[32 * c + l] = levels[64 * c + l] | (levels[64 * c + 32 + l] << 4);
        }
    }
    b
}

/// The 6-bit (scale, min) codes within one step of `nearest` whose decoded sub-block, each
/// value re-quantized to its nearest level, has the least weighted squared error.
fn best_scale_min_codes(x: &[f32], weights: &[f32], (d, dmin): (f32, f32), nearest: (u8, u8)) -> (u8, u8) {
    let error = |sc: u8, m: u8| -> f32 {
        let (scale, min) = (d * sc as f32, dmin * m as f32);
        x.iter()
            .zip(weights)
            .map(|(&v, &w)| {
                let q = if scale > 0.0 { nearest_int((v + min) / scale).clamp(0, 15) as f32 } else { 0.0 };
                w * (scale * q - min - v).powi(2)
            })
            .sum()
    };
    let mut best = (error(nearest.0, nearest.1), nearest);
    for sc in nearest.0.saturating_sub(1)..=(nearest.0 + 1).min(63) {
        for m in nearest.1.saturating_sub(1)..=(nearest.1 + 1).min(63) {
            let e = error(sc, m);
            if e < best.0 {
                best = (e, (sc, m));
            }
        }
    }
    best.1
}

/// One Q6_K block from 256 values, as `quantize_row_q6_K_ref`: per 16-value sub-block a scale
/// from [`make_qx_quants`], quantized to int8 against the super-block scale `d` (the scale of
/// largest magnitude maps to −128), then every value re-quantized to −32..31 against its
/// sub-block's stored scale.
pub fn quantize_q6_k(x: &[f32]) -> BlockQ6_K {
    assert_eq!(x.len(), QK_K, "quantize_q6_k takes one block of {QK_K} values");
    q6_k_block(x, None)
}

/// One Q6_K block whose sub-block scales minimise Σ importance·(x − q)² instead of ggml's
/// x²-weighted error (see [`quantize_q4_k_weighted`]).
pub fn quantize_q6_k_weighted(x: &[f32], importance: &[f32]) -> BlockQ6_K {
    assert_eq!(x.len(), QK_K, "quantize_q6_k_weighted takes one block of {QK_K} values");
    assert_eq!(importance.len(), QK_K, "quantize_q6_k_weighted takes one importance per value");
    q6_k_block(x, Some(importance))
}

fn q6_k_block(x: &[f32], importance: Option<&[f32]>) -> BlockQ6_K {
    let mut levels = [0u8; QK_K];
    let mut scales = [0.0f32; QK_K / 16];
    let (mut max_scale, mut max_abs_scale) = (0.0f32, 0.0f32);
    for ib in 0..QK_K / 16 {
        let weights = importance.map(|imp| sub_block_weights::<16>(&imp[16 * ib..16 * ib + 16]));
        let scale = make_qx_quants(32, &x[16 * ib..16 * ib + 16], weights.as_ref().map(|w| &w[..]), &mut levels[16 * ib..16 * ib + 16]);
        scales[ib] = scale;
        if scale.abs() > max_abs_scale {
            max_abs_scale = scale.abs();
            max_scale = scale;
        }
    }
    let mut b = BlockQ6_K { ql: [0; QK_K / 2], qh: [0; QK_K / 4], scales: [0; QK_K / 16], d: f16::ZERO };
    if max_abs_scale < GROUP_MAX_EPS {
        return b;
    }
    let iscale = -128.0 / max_scale;
    b.d = f16::from_f32(1.0 / iscale);
    for (s, &scale) in b.scales.iter_mut().zip(&scales) {
        *s = nearest_int(iscale * scale).clamp(-128, 127) as i8;
    }
    for j in 0..QK_K / 16 {
        let d = b.d.to_f32() * b.scales[j] as f32;
        if d == 0.0 {
            continue;
        }
        for i in 16 * j..16 * j + 16 {
            levels[i] = (nearest_int(x[i] / d).clamp(-32, 31) + 32) as u8;
        }
    }
    for h in 0..QK_K / 128 {
        let l6 = &levels[128 * h..128 * h + 128];
        for l in 0..32 {
            b.ql[64 * h + l] = (l6[l] & 0xF) | ((l6[l + 64] & 0xF) << 4);
            b.ql[64 * h + l + 32] = (l6[l + 32] & 0xF) | ((l6[l + 96] & 0xF) << 4);
            b.qh[32 * h + l] = (l6[l] >> 4) | ((l6[l + 32] >> 4) << 2) | ((l6[l + 64] >> 4) << 4) | ((l6[l + 96] >> 4) << 6);
        }
    }
    b
}
