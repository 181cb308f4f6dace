//! Importance-weighted quantization: better than round-to-nearest when something is known about
//! the inputs a matrix will be multiplied by.
//!
//! A linear layer computes y = W·x. The error a quantized row adds to y is Σ_j (w_j − q_j)·x_j,
//! whose expected square (for uncorrelated inputs) is Σ_j E\[x_j²\]·(w_j − q_j)². So with
//! `importance[j] = E[x_j²]` of input channel j, measured on calibration text, each block picks
//! the scale (and minimum) that minimises Σ_j importance\[j\]·(w_j − q_j)² over a grid of
//! candidates, each refit by weighted least squares. Uniform importance gives a plain
//! squared-error search, which already beats ggml's round-to-nearest a little.
//!
//! Formats with a search here: Q4_0, Q4_1, IQ4_NL, and the K-quants Q4_K and Q6_K, whose
//! searches live beside their reference quantizers ([`has_weighted_search`]).

use half::f16;

use super::block::{BlockQ4_0, BlockQ4_1, QK};
use super::iq4nl::quantize_iq4_nl_weighted;
use super::kquants::{quantize_q4_k_weighted, quantize_q6_k_weighted};
use super::{Format, QuantError, QuantMatrix};

/// Candidate inverse scales on each side of the natural one, a quarter of a step apart.
const SEARCH_STEPS: i32 = 12;

/// Whether [`quantize_weighted`] has a search for `format`.
pub const fn has_weighted_search(format: Format) -> bool {
    matches!(format, Format::Q4_0 | Format::Q4_1 | Format::IQ4_NL | Format::Q4_K | Format::Q6_K)
}

/// Quantizes `values` (`rows × cols`, row-major) minimising, per block, the squared error
/// weighted by `importance` (one non-negative value per column, i.e. per input channel).
pub fn quantize_weighted(
    format: Format,
    rows: usize,
    cols: usize,
    values: &[f32],
    importance: &[f32],
) -> Result<QuantMatrix, QuantError> {
    if !has_weighted_search(format) {
        return Err(QuantError::NoWeightedSearch { format });
    }
    let count = rows.checked_mul(cols).ok_or(QuantError::Overflow { rows, cols })?;
    if values.len() != count {
        return Err(QuantError::ValueCount { rows, cols, actual: values.len() });
    }
    if importance.len() != cols {
        return Err(QuantError::ImportanceLength { cols, actual: importance.len() });
    }
    if !cols.is_multiple_of(format.k_multiple()) {
        return Err(QuantError::RowLength { format, cols, multiple: format.k_multiple() });
    }
    let mut out = Vec::with_capacity(format.row_bytes(cols).unwrap_or(0) * rows);
    let block = format.block_size();
    for row in values.chunks_exact(cols) {
        for (x, w) in row.chunks_exact(block).zip(importance.chunks_exact(block)) {
            match format {
                Format::Q4_0 => out.extend_from_slice(bytemuck::bytes_of(&quantize_q4_0_weighted(x, w))),
                Format::Q4_1 => out.extend_from_slice(bytemuck::bytes_of(&quantize_q4_1_weighted(x, w))),
                Format::Q4_K => out.extend_from_slice(bytemuck::bytes_of(&quantize_q4_k_weighted(x, w))),
                Format::Q6_K => out.extend_from_slice(bytemuck::bytes_of(&quantize_q6_k_weighted(x, w))),
                _ => out.extend_from_slice(bytemuck::bytes_of(&quantize_iq4_nl_weighted(x, w))),
            }
        }
    }
    QuantMatrix::new(format, rows, cols, out)
}

/// Uniform weights when every weight is zero (a channel never seen in calibration).
pub(crate) fn usable<'a>(weights: &'a [f32], uniform: &'a [f32; QK]) -> &'a [f32] {
    if weights.iter().any(|&w| w > 0.0) {
        weights
    } else {
        uniform
    }
}

/// The value of largest magnitude, with its sign (0 for an empty or all-zero block).
pub(crate) fn signed_max(x: &[f32]) -> f32 {
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    max
}

/// The scale search shared by the symmetric 4-bit formats (Q4_0, IQ4_NL), whose stored value is
/// d·level(code). Candidates map `max` (the block's signed largest magnitude) onto each of `ends`,
/// moved by up to ±`steps` · `step`; `level(v · inverse)` is the level a value rounds to. With the
/// levels fixed, d = Σwqx / Σwq² minimises Σw(x − dq)², whose value is then Σwx² − (Σwqx)²/Σwq²:
/// the candidate maximising (Σwqx)²/Σwq² wins. `initial` is the scale kept if none is usable.
pub(crate) fn best_symmetric_scale(
    x: &[f32],
    weights: &[f32],
    max: f32,
    ends: [f32; 2],
    (steps, step): (i32, f32),
    initial: f32,
    level: impl Fn(f32) -> f32,
) -> f32 {
    let mut best = (f32::NEG_INFINITY, initial);
    for end in ends {
        for k in -steps..=steps {
            let inverse = (end + step * k as f32) / max;
            let (mut sum_qx, mut sum_qq) = (0.0f32, 0.0f32);
            for (&v, &w) in x.iter().zip(weights) {
                let q = level(v * inverse);
                sum_qx += w * q * v;
                sum_qq += w * q * q;
            }
            if sum_qq > 0.0 && sum_qx * sum_qx / sum_qq > best.0 {
                best = (sum_qx * sum_qx / sum_qq, sum_qx / sum_qq);
            }
        }
    }
    best.1
}

/// Q4_0 (value = d·(q − 8), q in 0..15) with the scale that minimises the weighted error.
pub fn quantize_q4_0_weighted(x: &[f32], weights: &[f32]) -> BlockQ4_0 {
    let uniform = [1.0f32; QK];
    let weights = usable(weights, &uniform);
    let max = signed_max(x);
    if max == 0.0 || !max.is_finite() {
        return BlockQ4_0 { d: f16::ZERO, qs: [0x88; QK / 2] };
    }
    let code = |scaled: f32| scaled.round().clamp(-8.0, 7.0);
    // ggml's choice (largest magnitude on −8) is the initial scale, so the search never loses.
    let d = f16::from_f32(best_symmetric_scale(x, weights, max, [-8.0, 7.0], (SEARCH_STEPS, 0.25), max / -8.0, code));
    let inverse = if d.to_f32() != 0.0 { 1.0 / d.to_f32() } else { 0.0 };
    let mut qs = [0u8; QK / 2];
    for (j, q) in qs.iter_mut().enumerate() {
        let lo = (code(x[j] * inverse) + 8.0) as u8;
        let hi = (code(x[j + QK / 2] * inverse) + 8.0) as u8;
        *q = lo | hi << 4;
    }
    BlockQ4_0 { d, qs }
}

/// Weighted least-squares fit of x ≈ d·q + m for fixed codes; `None` when the codes are all
/// equal (the fit is then not unique).
fn fit_affine(x: &[f32], weights: &[f32], codes: &[f32; QK]) -> Option<(f32, f32)> {
    let (mut sw, mut sq, mut sqq, mut sx, mut sqx) = (0.0f64, 0.0f64, 0.0f64, 0.0f64, 0.0f64);
    for ((&v, &w), &q) in x.iter().zip(weights).zip(codes) {
        let (v, w, q) = (v as f64, w as f64, q as f64);
        sw += w;
        sq += w * q;
        sqq += w * q * q;
        sx += w * v;
        sqx += w * q * v;
    }
    let det = sw * sqq - sq * sq;
    if det <= 1e-12 * sw * sqq {
        return None;
    }
    Some((((sw * sqx - sq * sx) / det) as f32, ((sqq * sx - sq * sqx) / det) as f32))
}

/// Q4_1 (value = d·q + m, q in 0..15) with the scale and minimum that minimise the weighted
/// error: candidate scales over the block's range, codes rounded, (d, m) refit, twice.
pub fn quantize_q4_1_weighted(x: &[f32], weights: &[f32]) -> BlockQ4_1 {
    let uniform = [1.0f32; QK];
    let weights = usable(weights, &uniform);
    let min = x.iter().fold(f32::MAX, |a, &v| a.min(v));
    let max = x.iter().fold(-f32::MAX, |a, &v| a.max(v));
    if max <= min || max.is_nan() || min.is_nan() || !(max - min).is_finite() {
        let m = if min.is_finite() { min } else { 0.0 };
        return BlockQ4_1 { d: f16::ZERO, m: f16::from_f32(m), qs: [0; QK / 2] };
    }
    let error = |d: f32, m: f32| -> f32 {
        let inverse = 1.0 / d;
        x.iter()
            .zip(weights)
            .map(|(&v, &w)| {
                let q = ((v - m) * inverse).round().clamp(0.0, 15.0);
                w * (v - d * q - m).powi(2)
            })
            .sum()
    };
    let codes_for = |d: f32, m: f32| -> [f32; QK] {
        let inverse = if d != 0.0 { 1.0 / d } else { 0.0 };
        std::array::from_fn(|j| ((x[j] - m) * inverse).round().clamp(0.0, 15.0))
    };
    // ggml's round-to-nearest choice first, so the search never loses to it.
    let mut best = ((max - min) / 15.0, min);
    let mut best_error = error(best.0, best.1);
    for step in -SEARCH_STEPS..=SEARCH_STEPS {
        let (mut d, mut m) = ((max - min) / (15.0 + 0.25 * step as f32), min);
        for _ in 0..2 {
            let Some((nd, nm)) = fit_affine(x, weights, &codes_for(d, m)) else { break };
            if nd.is_nan() || nd <= 0.0 || !nm.is_finite() {
                break;
            }
            (d, m) = (nd, nm);
            let e = error(d, m);
            if e < best_error {
                (best, best_error) = ((d, m), e);
            }
        }
    }
    let (d, m) = (f16::from_f32(best.0), f16::from_f32(best.1));
    let codes = codes_for(d.to_f32(), m.to_f32());
    let mut qs = [0u8; QK / 2];
    for (j, q) in qs.iter_mut().enumerate() {
        *q = codes[j] as u8 | (codes[j + QK / 2] as u8) << 4;
    }
    BlockQ4_1 { d, m, qs }
}
