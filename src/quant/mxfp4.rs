//! MXFP4 (the OCP microscaling format; gpt-oss ships its experts in it): 32 E2M1 values, each
//! a nibble indexing [`MXFP4_VALUES`], sharing one power-of-two scale stored as an E8M0
//! exponent. Dequantization is bit-exact with ggml's `dequantize_row_mxfp4`.

use super::block::{BlockMXFP4, QK};

/// ggml's `kvalues_mxfp4`: the E2M1 values (0, 0.5, 1, 1.5, 2, 3, 4, 6 and their negatives),
/// doubled so they are integers.
pub const MXFP4_VALUES: [i8; 16] = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12];

/// ggml's `GGML_E8M0_TO_FP32_HALF`: 2^(e − 127) / 2, halved because the codebook is doubled.
/// e = 0 and 1 give the subnormals 2^-128 and 2^-127.
pub fn e8m0_to_f32_half(e: u8) -> f32 {
    let bits = if e < 2 { 0x0020_0000u32 << e } else { (e as u32 - 1) << 23 };
    f32::from_bits(bits)
}

/// Dequantizes one block into `out` (32 values).
pub fn dequantize_mxfp4(b: &BlockMXFP4, out: &mut [f32]) {
    let d = e8m0_to_f32_half(b.e);
    for (j, &q) in b.qs.iter().enumerate() {
        out[j] = MXFP4_VALUES[(q & 0xF) as usize] as f32 * d;
        out[j + QK / 2] = MXFP4_VALUES[(q >> 4) as usize] as f32 * d;
    }
}

/// Quantizes 32 values as `quantize_row_mxfp4_ref`: the exponent puts the largest magnitude
/// in the top binade of the codebook (floor(log2 amax) − 2 + 127), then each value takes the
/// nearest entry (ties to the lower index).
pub fn quantize_mxfp4(x: &[f32]) -> BlockMXFP4 {
    let amax = x.iter().fold(0.0f32, |a, v| a.max(v.abs()));
    let e = if amax > 0.0 && amax.is_finite() { (amax.log2().floor() - 2.0 + 127.0).clamp(0.0, 254.0) as u8 } else { 0 };
    let d = e8m0_to_f32_half(e);
    let nearest = |v: f32| -> u8 {
        let mut best = (f32::INFINITY, 0u8);
        for (i, &k) in MXFP4_VALUES.iter().enumerate() {
            let err = (k as f32 * d - v).abs();
            if err < best.0 {
                best = (err, i as u8);
            }
        }
        best.1
    };
    let mut qs = [0u8; QK / 2];
    for (j, q) in qs.iter_mut().enumerate() {
        *q = nearest(x[j]) | nearest(x[j + QK / 2]) << 4;
    }
    BlockMXFP4 { e, qs }
}
