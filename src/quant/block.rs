//! GGUF block structs, byte-compatible with ggml (`ggml-common.h`).
//!
//! Each struct is exactly one block as it sits in a GGUF file, so a slice of file bytes can be
//! viewed as a slice of blocks without copying.

use bytemuck::{Pod, Zeroable};
use half::f16;

/// Values per block of every 32-wide format (Q8_0, Q5_0, Q5_1, Q4_0, Q4_1, IQ4_NL).
pub const QK: usize = 32;

/// Values per super-block of the K-quants (Q2_K..Q6_K) and IQ4_XS.
pub const QK_K: usize = 256;

/// Bytes of Q4_K's packed 6-bit sub-block scales and mins (`K_SCALE_SIZE` in ggml).
pub const K_SCALE_SIZE: usize = 12;

/// Q8_0: one f16 scale and 32 signed bytes; value = d * q.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ8_0 {
    pub d: f16,
    pub qs: [i8; QK],
}

/// Q4_0: one f16 scale and 32 nibbles; value = d * (q - 8).
/// Byte j holds value j in its low nibble and value j + 16 in its high nibble.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ4_0 {
    pub d: f16,
    pub qs: [u8; QK / 2],
}

/// Q4_1: f16 scale and f16 minimum, 32 nibbles; value = d * q + m. Nibble order as Q4_0.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ4_1 {
    pub d: f16,
    pub m: f16,
    pub qs: [u8; QK / 2],
}

/// IQ4_NL: one f16 scale and 32 nibbles that index a fixed non-linear codebook
/// ([`super::iq4nl::IQ4_NL_VALUES`]); value = d * codebook\[q\]. Nibble order as Q4_0.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockIQ4_NL {
    pub d: f16,
    pub qs: [u8; QK / 2],
}

/// Q4_K: a super-block of 256 values in 8 sub-blocks of 32, each with a 6-bit scale `sc` and a
/// 6-bit min `m`; value = d·sc·q − dmin·m with q a nibble.
///
/// `scales` packs the eight (sc, m) pairs as ggml's `get_scale_min_k4` reads them: for sub-block
/// j < 4, sc = scales\[j\] & 63 and m = scales\[j + 4\] & 63; for j ≥ 4, the low 4 bits come from
/// scales\[j + 4\] (sc low nibble, m high nibble) and the top 2 bits from the top bits of
/// scales\[j − 4\] (sc) and scales\[j\] (m).
///
/// `qs` holds four chunks of 64 values, 32 bytes each: in chunk c, byte l holds value 64c + l in
/// its low nibble (sub-block 2c) and value 64c + 32 + l in its high nibble (sub-block 2c + 1).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ4_K {
    pub d: f16,
    pub dmin: f16,
    pub scales: [u8; K_SCALE_SIZE],
    pub qs: [u8; QK_K / 2],
}

/// Q6_K: a super-block of 256 values in 16 sub-blocks of 16, each with an int8 scale;
/// value = d·scale·(q − 32) with q a 6-bit value, its low 4 bits in `ql`, its top 2 in `qh`.
///
/// Each half h (values 128h..128h + 128) uses ql\[64h..64h + 64\], qh\[32h..32h + 32\] and
/// scales\[8h..8h + 8\]. Within a half, value 32·quadrant + l (l < 32, quadrant < 4) has its low
/// bits in ql\[64h + l + 32·(quadrant & 1)\] (low nibble for quadrants 0 and 1, high nibble for 2
/// and 3), its top bits at bit 2·quadrant of qh\[32h + l\], and its scale in
/// scales\[8h + l / 16 + 2·quadrant\].
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ6_K {
    pub ql: [u8; QK_K / 2],
    pub qh: [u8; QK_K / 4],
    pub scales: [i8; QK_K / 16],
    pub d: f16,
}

/// Q5_0: one f16 scale, 32 fifth bits and 32 nibbles; value = d * (q - 16) with q 5 bits.
/// Bit j of `qh` (little-endian u32) is the top bit of value j; nibble order as Q4_0.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ5_0 {
    pub d: f16,
    pub qh: [u8; 4],
    pub qs: [u8; QK / 2],
}

/// Q5_1: f16 scale and f16 minimum, then as Q5_0; value = d * q + m.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ5_1 {
    pub d: f16,
    pub m: f16,
    pub qh: [u8; 4],
    pub qs: [u8; QK / 2],
}

/// Q5_K: Q4_K plus a fifth bit per value; value = d·sc·q − dmin·m with q 5 bits. `scales` and
/// `qs` as Q4_K; bit 2c (low nibbles) or 2c + 1 (high nibbles) of `qh[l]` is the top bit of
/// the value that byte l of chunk c holds.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ5_K {
    pub d: f16,
    pub dmin: f16,
    pub scales: [u8; K_SCALE_SIZE],
    pub qh: [u8; QK_K / 8],
    pub qs: [u8; QK_K / 2],
}

/// Q3_K: 16 sub-blocks of 16, each a 6-bit scale; value = d·(sc − 32)·(q − 4·!h) with q 2 bits
/// and h a bit of `hmask`. Value v = 128n + 32j + l (l < 32) has q at bits 2j of qs\[32n + l\],
/// h at bit 4n + j of hmask\[l\], and sub-block 8n + 2j + l / 16, whose scale's low 4 bits are a
/// nibble of `scales[0..8]` and top 2 bits a pair of `scales[8..12]`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ3_K {
    pub hmask: [u8; QK_K / 8],
    pub qs: [u8; QK_K / 4],
    pub scales: [u8; K_SCALE_SIZE],
    pub d: f16,
}

/// Q2_K: 16 sub-blocks of 16, each a 4-bit scale (low nibble of `scales`) and 4-bit min (high
/// nibble); value = d·sc·q − dmin·m with q 2 bits, placed as Q3_K's.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ2_K {
    pub scales: [u8; QK_K / 16],
    pub qs: [u8; QK_K / 4],
    pub d: f16,
    pub dmin: f16,
}

/// IQ4_XS: IQ4_NL's codebook in 8 sub-blocks of 32, each a 6-bit scale (low 4 bits in
/// `scales_l`, top 2 in `scales_h`); value = d·(ls − 32)·codebook\[q\]. Each sub-block's 16
/// bytes of `qs` hold value j in the low nibble and j + 16 in the high one.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockIQ4_XS {
    pub d: f16,
    pub scales_h: u16,
    pub scales_l: [u8; QK_K / 64],
    pub qs: [u8; QK_K / 2],
}

/// MXFP4 (OCP microscaling FP4): an E8M0 exponent `e` and 32 E2M1 nibbles (nibble order as
/// Q4_0); value = 2^(e − 128) · [`super::mxfp4::MXFP4_VALUES`]\[q\] (the codebook is E2M1
/// doubled, so the scale is halved, as ggml's `GGML_E8M0_TO_FP32_HALF`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockMXFP4 {
    pub e: u8,
    pub qs: [u8; QK / 2],
}

/// NF4 / FP4 (bitsandbytes): the f32 absmax of 64 values, then their 32 packed nibble bytes in
/// bitsandbytes' order (byte i: value 2i high, value 2i + 1 low); see [`super::bnb4`]. Not a
/// ggml block: GGUF has no such type, so these live only in memory and in bnb checkpoints.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockBnb4 {
    pub absmax: f32,
    pub qs: [u8; 32],
}

const _: () = assert!(std::mem::size_of::<BlockBnb4>() == 36);
const _: () = assert!(std::mem::size_of::<BlockQ8_0>() == 34);
const _: () = assert!(std::mem::size_of::<BlockMXFP4>() == 17);
const _: () = assert!(std::mem::size_of::<BlockQ5_0>() == 22);
const _: () = assert!(std::mem::size_of::<BlockQ5_1>() == 24);
const _: () = assert!(std::mem::size_of::<BlockQ5_K>() == 176);
const _: () = assert!(std::mem::size_of::<BlockQ3_K>() == 110);
const _: () = assert!(std::mem::size_of::<BlockQ2_K>() == 84);
const _: () = assert!(std::mem::size_of::<BlockIQ4_XS>() == 136);
const _: () = assert!(std::mem::size_of::<BlockQ4_0>() == 18);
const _: () = assert!(std::mem::size_of::<BlockQ4_1>() == 20);
const _: () = assert!(std::mem::size_of::<BlockIQ4_NL>() == 18);
const _: () = assert!(std::mem::size_of::<BlockQ4_K>() == 144);
const _: () = assert!(std::mem::size_of::<BlockQ6_K>() == 210);
