//! Plain scalar CPU quantization and dequantization, bit-exact with ggml's reference functions
//! (`quantize_row_q8_0_ref`, `quantize_row_q4_0_ref`, `quantize_row_q4_1_ref` and the matching
//! `dequantize_row_*` in ggml-quants.c). This is the oracle every kernel test compares against;
//! it is written for clarity, not speed.
//!
//! The K-quants live in [`super::kquants`] (Q4_K, Q6_K) and [`super::kquants_low`] (Q2_K, Q3_K,
//! Q5_K), IQ4_NL and IQ4_XS in [`super::iq4nl`]: their dequantization is bit-exact with ggml too;
//! their quantization follows ggml's algorithm but is not guaranteed bit-identical.

use super::block::{
    BlockBnb4, BlockIQ4_NL, BlockIQ4_XS, BlockMXFP4, BlockQ2_K, BlockQ3_K, BlockQ4_0, BlockQ4_1, BlockQ4_K, BlockQ5_0, BlockQ5_1, BlockQ5_K, BlockQ6_K, BlockQ8_0, QK, QK_K,
};
pub use super::iq4nl::{dequantize_iq4_nl, dequantize_iq4_xs, quantize_iq4_nl, quantize_iq4_nl_weighted, quantize_iq4_xs, IQ4_NL_VALUES};
pub use super::kquants::{dequantize_q4_k, dequantize_q6_k, get_scale_min_k4, quantize_q4_k, quantize_q6_k};
pub use super::bnb4::{dequantize_bnb4, quantize_bnb4, Bnb4Kind, BNB_BLOCK, FP4_VALUES, NF4_VALUES};
pub use super::mxfp4::{dequantize_mxfp4, quantize_mxfp4, MXFP4_VALUES};
pub use super::kquants_low::{dequantize_q2_k, dequantize_q3_k, dequantize_q5_k, quantize_q2_k, quantize_q3_k, quantize_q5_k};
use super::{Format, QuantError, QuantMatrix, QuantMatrixRef};
use half::{bf16, f16};

/// Quantizes `values` (`rows × cols`, row-major) as ggml's reference quantizers do:
/// round-to-nearest for the 32-wide formats, ggml's scale searches for the K-quants, and a
/// least-squares scale search for IQ4_NL (see [`super::iq4nl`]).
pub fn quantize(format: Format, rows: usize, cols: usize, values: &[f32]) -> Result<QuantMatrix, QuantError> {
    let count = rows.checked_mul(cols).ok_or(QuantError::Overflow { rows, cols })?;
    if values.len() != count {
        return Err(QuantError::ValueCount { rows, cols, actual: values.len() });
    }
    if !cols.is_multiple_of(format.k_multiple()) {
        return Err(QuantError::RowLength { format, cols, multiple: format.k_multiple() });
    }
    let mut out = Vec::with_capacity(format.row_bytes(cols).unwrap_or(0) * rows);
    match format {
        Format::F32 => values.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        Format::F16 => values.iter().for_each(|v| out.extend_from_slice(&f16::from_f32(*v).to_le_bytes())),
        Format::Q8_0 => values.chunks_exact(QK).for_each(|b| out.extend_from_slice(bytemuck::bytes_of(&quantize_q8_0(b)))),
        Format::Q4_0 => values.chunks_exact(QK).for_each(|b| out.extend_from_slice(bytemuck::bytes_of(&quantize_q4_0(b)))),
        Format::Q4_1 => values.chunks_exact(QK).for_each(|b| out.extend_from_slice(bytemuck::bytes_of(&quantize_q4_1(b)))),
        Format::Q4_K => values.chunks_exact(QK_K).for_each(|b| out.extend_from_slice(bytemuck::bytes_of(&quantize_q4_k(b)))),
        Format::Q6_K => values.chunks_exact(QK_K).for_each(|b| out.extend_from_slice(bytemuck::bytes_of(&quantize_q6_k(b)))),
        Format::IQ4_NL => values.chunks_exact(QK).for_each(|b| out.extend_from_slice(bytemuck::bytes_of(&quantize_iq4_nl(b)))),
        Format::Q5_0 => values.chunks_exact(QK).for_each(|b| out.extend_from_slice(bytemuck::bytes_of(&quantize_q5_0(b)))),
        Format::Q5_1 => values.chunks_exact(QK).for_each(|b| out.extend_from_slice(bytemuck::bytes_of(&quantize_q5_1(b)))),
        // Round to nearest even, as ggml's GGML_FP32_TO_BF16.
        Format::BF16 => values.iter().for_each(|v| out.extend_from_slice(&bf16::from_f32(*v).to_le_bytes())),
        Format::Q5_K => values.chunks_exact(QK_K).for_each(|b| out.extend_from_slice(bytemuck::bytes_of(&quantize_q5_k(b)))),
        Format::Q3_K => values.chunks_exact(QK_K).for_each(|b| out.extend_from_slice(bytemuck::bytes_of(&quantize_q3_k(b)))),
        Format::Q2_K => values.chunks_exact(QK_K).for_each(|b| out.extend_from_slice(bytemuck::bytes_of(&quantize_q2_k(b)))),
        Format::MXFP4 => values.chunks_exact(QK).for_each(|b| out.extend_from_slice(bytemuck::bytes_of(&quantize_mxfp4(b)))),
        Format::IQ4_XS => values.chunks_exact(QK_K).for_each(|b| out.extend_from_slice(bytemuck::bytes_of(&quantize_iq4_xs(b)))),
        Format::NF4 | Format::FP4 => {
            let kind = bnb4_kind(format).expect("NF4 or FP4");
            values.chunks_exact(BNB_BLOCK).for_each(|b| out.extend_from_slice(bytemuck::bytes_of(&quantize_bnb4(kind, b))))
        }
    }
    QuantMatrix::new(format, rows, cols, out)
}

/// Q8_0's scale d = max|x| / 127 and its inverse (0 for an all-zero run); shared with the
/// Q8_0 KV cache, whose runs may be shorter than a block.
pub(crate) fn q8_0_scale(x: &[f32]) -> (f32, f32) {
    let amax = x.iter().fold(0.0f32, |a, v| a.max(v.abs()));
    let d = amax / 127.0;
    (d, if d != 0.0 { 1.0 / d } else { 0.0 })
}

/// Q4_0's scale d = (the value of largest magnitude) / -8 and its inverse: ggml keeps the
/// signed value, so that it maps exactly to -8. Shared with the Q4_0 KV cache.
pub(crate) fn q4_0_scale(x: &[f32]) -> (f32, f32) {
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    let d = max / -8.0;
    (d, if d != 0.0 { 1.0 / d } else { 0.0 })
}

pub fn quantize_q8_0(x: &[f32]) -> BlockQ8_0 {
    let (d, id) = q8_0_scale(x);
    let mut qs = [0i8; QK];
    for (q, v) in qs.iter_mut().zip(x) {
        // C's roundf rounds half away from zero, as f32::round does.
        *q = (v * id).round() as i8;
    }
    BlockQ8_0 { d: f16::from_f32(d), qs }
}

pub fn quantize_q4_0(x: &[f32]) -> BlockQ4_0 {
    let (d, id) = q4_0_scale(x);
    let mut qs = [0u8; QK / 2];
    for (j, q) in qs.iter_mut().enumerate() {
        // (int8_t)(x + 8.5f) truncates toward zero, as `as i8` does.
        let lo = ((x[j] * id + 8.5) as i8).min(15) as u8;
        let hi = ((x[j + QK / 2] * id + 8.5) as i8).min(15) as u8;
        *q = lo | (hi << 4);
    }
    BlockQ4_0 { d: f16::from_f32(d), qs }
}

pub fn quantize_q4_1(x: &[f32]) -> BlockQ4_1 {
    let min = x.iter().fold(f32::MAX, |a, &v| a.min(v));
    let max = x.iter().fold(-f32::MAX, |a, &v| a.max(v));
    let d = (max - min) / 15.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut qs = [0u8; QK / 2];
    for (j, q) in qs.iter_mut().enumerate() {
        let lo = (((x[j] - min) * id + 0.5) as i8).min(15) as u8;
        let hi = (((x[j + QK / 2] - min) * id + 0.5) as i8).min(15) as u8;
        *q = lo | (hi << 4);
    }
    BlockQ4_1 { d: f16::from_f32(d), m: f16::from_f32(min), qs }
}

pub fn quantize_q5_0(x: &[f32]) -> BlockQ5_0 {
    // As Q4_0: the signed value of largest magnitude maps exactly to -16.
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    let d = max / -16.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let (mut qs, mut qh) = ([0u8; QK / 2], 0u32);
    for (j, q) in qs.iter_mut().enumerate() {
        let lo = ((x[j] * id + 16.5) as i8).min(31) as u8;
        let hi = ((x[j + QK / 2] * id + 16.5) as i8).min(31) as u8;
        *q = (lo & 0xF) | ((hi & 0xF) << 4);
        qh |= ((lo as u32 & 0x10) >> 4) << j | ((hi as u32 & 0x10) >> 4) << (j + QK / 2);
    }
    BlockQ5_0 { d: f16::from_f32(d), qh: qh.to_le_bytes(), qs }
}

pub fn quantize_q5_1(x: &[f32]) -> BlockQ5_1 {
    let min = x.iter().fold(f32::MAX, |a, &v| a.min(v));
    let max = x.iter().fold(-f32::MAX, |a, &v| a.max(v));
    let d = (max - min) / 31.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let (mut qs, mut qh) = ([0u8; QK / 2], 0u32);
    for (j, q) in qs.iter_mut().enumerate() {
        // ggml does not clamp; the clamp only matters for rounding at the very top.
        let lo = (((x[j] - min) * id + 0.5) as u8).min(31);
        let hi = (((x[j + QK / 2] - min) * id + 0.5) as u8).min(31);
        *q = (lo & 0xF) | ((hi & 0xF) << 4);
        qh |= ((lo as u32 & 0x10) >> 4) << j | ((hi as u32 & 0x10) >> 4) << (j + QK / 2);
    }
    BlockQ5_1 { d: f16::from_f32(d), m: f16::from_f32(min), qh: qh.to_le_bytes(), qs }
}

/// The bitsandbytes codebook of NF4 and FP4; `None` for every other format.
pub fn bnb4_kind(format: Format) -> Option<Bnb4Kind> {
    match format {
        Format::NF4 => Some(Bnb4Kind::Nf4),
        Format::FP4 => Some(Bnb4Kind::Fp4),
        _ => None,
    }
}

/// Dequantizes a whole matrix to f32, row-major.
pub fn dequantize(w: QuantMatrixRef<'_>) -> Vec<f32> {
    let mut out = vec![0.0f32; w.rows() * w.cols()];
    dequantize_into(w.format(), w.data(), &mut out);
    out
}

/// Dequantizes `bytes` of `format` into `out`, whose length is the number of values.
pub fn dequantize_into(format: Format, bytes: &[u8], out: &mut [f32]) {
    let bb = format.block_bytes();
    let bs = format.block_size();
    for (block, dst) in bytes.chunks_exact(bb).zip(out.chunks_exact_mut(bs)) {
        match format {
            Format::F32 => dst[0] = f32::from_le_bytes([block[0], block[1], block[2], block[3]]),
            Format::F16 => dst[0] = f16::from_le_bytes([block[0], block[1]]).to_f32(),
            Format::Q8_0 => {
                let b: BlockQ8_0 = bytemuck::pod_read_unaligned(block);
                let d = b.d.to_f32();
                for (o, &q) in dst.iter_mut().zip(&b.qs) {
                    *o = q as f32 * d;
                }
            }
            Format::Q4_0 => {
                let b: BlockQ4_0 = bytemuck::pod_read_unaligned(block);
                let d = b.d.to_f32();
                for (j, &q) in b.qs.iter().enumerate() {
                    dst[j] = ((q & 0xF) as i32 - 8) as f32 * d;
                    dst[j + QK / 2] = ((q >> 4) as i32 - 8) as f32 * d;
                }
            }
            Format::Q4_1 => {
                let b: BlockQ4_1 = bytemuck::pod_read_unaligned(block);
                let (d, m) = (b.d.to_f32(), b.m.to_f32());
                for (j, &q) in b.qs.iter().enumerate() {
                    dst[j] = (q & 0xF) as f32 * d + m;
                    dst[j + QK / 2] = (q >> 4) as f32 * d + m;
                }
            }
            Format::Q4_K => dequantize_q4_k(&bytemuck::pod_read_unaligned::<BlockQ4_K>(block), dst),
            Format::Q6_K => dequantize_q6_k(&bytemuck::pod_read_unaligned::<BlockQ6_K>(block), dst),
            Format::IQ4_NL => dequantize_iq4_nl(&bytemuck::pod_read_unaligned::<BlockIQ4_NL>(block), dst),
            Format::Q5_K => dequantize_q5_k(&bytemuck::pod_read_unaligned::<BlockQ5_K>(block), dst),
            Format::Q3_K => dequantize_q3_k(&bytemuck::pod_read_unaligned::<BlockQ3_K>(block), dst),
            Format::Q2_K => dequantize_q2_k(&bytemuck::pod_read_unaligned::<BlockQ2_K>(block), dst),
            Format::MXFP4 => dequantize_mxfp4(&bytemuck::pod_read_unaligned::<BlockMXFP4>(block), dst),
            Format::IQ4_XS => dequantize_iq4_xs(&bytemuck::pod_read_unaligned::<BlockIQ4_XS>(block), dst),
            Format::NF4 | Format::FP4 => {
                dequantize_bnb4(bnb4_kind(format).expect("NF4 or FP4"), &bytemuck::pod_read_unaligned::<BlockBnb4>(block), dst)
            }
            Format::BF16 => dst[0] = bf16::from_le_bytes([block[0], block[1]]).to_f32(),
            Format::Q5_0 => {
                let b: BlockQ5_0 = bytemuck::pod_read_unaligned(block);
                let (d, qh) = (b.d.to_f32(), u32::from_le_bytes(b.qh));
                for (j, &q) in b.qs.iter().enumerate() {
                    let h0 = ((qh >> j) << 4) & 0x10;
                    let h1 = (qh >> (j + 12)) & 0x10;
                    dst[j] = (((q & 0xF) as u32 | h0) as i32 - 16) as f32 * d;
                    dst[j + QK / 2] = (((q >> 4) as u32 | h1) as i32 - 16) as f32 * d;
                }
            }
            Format::Q5_1 => {
                let b: BlockQ5_1 = bytemuck::pod_read_unaligned(block);
                let (d, m, qh) = (b.d.to_f32(), b.m.to_f32(), u32::from_le_bytes(b.qh));
                for (j, &q) in b.qs.iter().enumerate() {
                    let h0 = ((qh >> j) << 4) & 0x10;
                    let h1 = (qh >> (j + 12)) & 0x10;
                    dst[j] = ((q & 0xF) as u32 | h0) as f32 * d + m;
                    dst[j + QK / 2] = ((q >> 4) as u32 | h1) as f32 * d + m;
                }
            }
        }
    }
}

/// The oracle: y\[m, n\] = Σ_k x\[m, k\] · W\[n, k\], in f64 over the dequantized weights.
/// `x` is `m × w.cols()` row-major; the result is `m × w.rows()`.
pub fn matmul(x: &[f32], m: usize, w: QuantMatrixRef<'_>) -> Vec<f64> {
    let (n, k) = (w.rows(), w.cols());
    assert_eq!(x.len(), m * k, "oracle: x must be m × k");
    let wd = dequantize(w);
    let mut y = vec![0.0f64; m * n];
    for i in 0..m {
        let xr = &x[i * k..(i + 1) * k];
        for j in 0..n {
            let wr = &wd[j * k..(j + 1) * k];
            y[i * n + j] = xr.iter().zip(wr).map(|(&a, &b)| a as f64 * b as f64).sum();
        }
    }
    y
}

/// xorshift64*: the seeded data of the kernel tests, the benchmarks and the in-page self-test.
/// No dependency, and the same sequence natively and in WebAssembly.
pub struct TestRng(u64);

impl TestRng {
    pub fn new(seed: u64) -> Self {
        TestRng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [-1, 1).
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    /// `n` values uniform in [-1, 1).
    pub fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.uniform()).collect()
    }
}
