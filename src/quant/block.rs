//! GGUF block structs, byte-compatible with ggml (`ggml-common.h`).
//!
//! Each struct is exactly one block as it sits in a GGUF file, so a slice of file bytes can be
//! viewed as a slice of blocks without copying.

use bytemuck::{Pod, Zeroable};
use half::f16;

/// Values per block of every 32-wide format (Q8_0, Q4_0, Q4_1).
pub const QK: usize = 32;

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

const _: () = assert!(std::mem::size_of::<BlockQ8_0>() == 34);
const _: () = assert!(std::mem::size_of::<BlockQ4_0>() == 18);
const _: () = assert!(std::mem::size_of::<BlockQ4_1>() == 20);
