//! GGUF blocks → the GPU layout that `shaders/weights.wgsl` and `weights_super.wgsl` read.
//!
//! GGUF interleaves each block's scale with its quants (18 bytes for Q4_0), which leaves the
//! quants 2-byte aligned. On upload we split every matrix into two arrays of `u32` words:
//!
//! * `quants`: row-major, each row `words_per_row(k)` words.
//!   - F32: one word per value (its bits). F16: two values per word, lower half first.
//!   - Q8_0: four signed bytes per word, value order.
//!   - Q4_0 / Q4_1 / IQ4_NL: eight nibbles per word, value order (nibble j = value 8w + j). GGUF stores
//!     value j and j + 16 in one byte; reordering here lets a kernel dot one word with two
//!     consecutive `vec4<f32>` of activations.
//!   - Q5_0 / Q5_1: per block, four words of nibbles as Q4_0's, then the 32 fifth bits as one
//!     word (bit j = value j), as GGUF's `qh`.
//!   - BF16: two values per word, lower half first.
//!   - Q4_K: the GGUF blocks unchanged, 36 words per 256 values (a block is 144 bytes, so
//!     blocks stay word-aligned): word 0 = `d` (lower half) | `dmin` (upper half), words 1..4 =
//!     the 12 bytes of packed 6-bit scales and mins, words 4..36 = the 128 bytes of `qs`, bytes
//!     little-endian within each word.
//!   - Q6_K: per block, its first 208 bytes as 52 words: words 0..32 = `ql`, 32..48 = `qh`,
//!     48..52 = the 16 int8 `scales`. The f16 `d` that ends each 210-byte GGUF block (and would
//!     leave the next block 2-byte aligned) goes to `scales`.
//!   - Q5_K / Q2_K: the GGUF blocks unchanged (176 and 84 bytes, word-aligned): Q5_K as Q4_K
//!     with `qh` (words 4..12) before `qs` (12..44); Q2_K words 0..4 = `scales`, 4..20 = `qs`,
//!     word 20 = `d | dmin << 16`.
//!   - Q3_K: per block, its first 108 bytes as 27 words (`hmask` 0..8, `qs` 8..24, `scales`
//!     24..27); its trailing f16 `d` goes to `scales`, as Q6_K's.
//!   - IQ4_XS: per block, word 0 = `d | scales_h << 16`, word 1 = `scales_l`, then each
//!     sub-block's 16 bytes of nibbles in value order as Q4_0's (4 words).
//!   - MXFP4: eight nibbles per word, value order, as Q4_0.
//!   - NF4 / FP4: eight nibbles per word, value order (bitsandbytes puts the even value in the
//!     high nibble; reordered here as Q4_0's).
//! * `scales`: per block, row-major. Q8_0 / Q5_0 / Q4_0 / IQ4_NL / Q6_K: one f16 `d` per block,
//!   two per word (lower half first); Q3_K likewise. Q4_1 / Q5_1: one word per block, `d` in the lower half and
//!   `m` in the upper. MXFP4: one E8M0 byte per block, four per word. NF4 / FP4: the
//!   f32 absmax of each 64-value block, one word each. F32 / F16 / BF16 / Q4_K / Q5_K / Q2_K / IQ4_XS: none.
//!
//! The byte count equals the GGUF byte count (4.5 bits per weight for Q4_0 and Q4_K, 6.5625 for
//! Q6_K; plus at most 2 bytes of padding when the halves of a chunk are odd in number): weights
//! stay quantized on the GPU.

use super::block::{
    BlockBnb4, BlockIQ4_NL, BlockIQ4_XS, BlockMXFP4, BlockQ2_K, BlockQ3_K, BlockQ4_0, BlockQ4_1, BlockQ4_K, BlockQ5_0, BlockQ5_1, BlockQ5_K, BlockQ6_K, BlockQ8_0, QK, QK_K,
};
use super::bnb4::BNB_BLOCK;
use super::{Format, QuantMatrixRef};

/// One row range of a matrix in GPU layout.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GpuLayout {
    pub quants: Vec<u32>,
    pub scales: Vec<u32>,
}

/// Words of one Q5_0 / Q5_1 block in `quants`: four of value-order nibbles, then `qh`.
pub const Q5_WORDS: usize = 5;
/// Words of one Q4_K block in `quants`: the whole 144-byte block.
pub const Q4_K_WORDS: usize = std::mem::size_of::<BlockQ4_K>() / 4;
/// Words of one Q6_K block in `quants`: `ql`, `qh` and `scales` (208 bytes), not `d`.
pub const Q6_K_WORDS: usize = (QK_K / 2 + QK_K / 4 + QK_K / 16) / 4;

/// Words of one Q5_K block: the whole 176-byte block.
pub const Q5_K_WORDS: usize = std::mem::size_of::<BlockQ5_K>() / 4;
/// Words of one Q3_K block: `hmask`, `qs` and `scales` (108 bytes), not `d`.
pub const Q3_K_WORDS: usize = (QK_K / 8 + QK_K / 4 + 12) / 4;
/// Words of one Q2_K block: the whole 84-byte block.
pub const Q2_K_WORDS: usize = std::mem::size_of::<BlockQ2_K>() / 4;
/// Words of one IQ4_XS block: `d | scales_h << 16`, `scales_l`, 32 words of nibbles.
pub const IQ4_XS_WORDS: usize = std::mem::size_of::<BlockIQ4_XS>() / 4;

const _: () = assert!(Q5_K_WORDS * 4 == std::mem::size_of::<BlockQ5_K>());
const _: () = assert!(Q3_K_WORDS * 4 + 2 == std::mem::size_of::<BlockQ3_K>());
const _: () = assert!(Q2_K_WORDS * 4 == std::mem::size_of::<BlockQ2_K>());
const _: () = assert!(IQ4_XS_WORDS * 4 == std::mem::size_of::<BlockIQ4_XS>());
const _: () = assert!(Q4_K_WORDS * 4 == std::mem::size_of::<BlockQ4_K>());
const _: () = assert!(Q6_K_WORDS * 4 + 2 == std::mem::size_of::<BlockQ6_K>());

/// `u32` words of quants per row of `k` values.
pub const fn quant_words_per_row(format: Format, k: usize) -> usize {
    match format {
        Format::F32 => k,
        Format::F16 | Format::BF16 => k / 2,
        Format::Q5_0 | Format::Q5_1 => k / QK * Q5_WORDS,
        Format::Q8_0 => k / 4,
        Format::Q4_0 | Format::Q4_1 | Format::IQ4_NL | Format::MXFP4 | Format::NF4 | Format::FP4 => k / 8,
        Format::Q4_K => k / QK_K * Q4_K_WORDS,
        Format::Q6_K => k / QK_K * Q6_K_WORDS,
        Format::Q5_K => k / QK_K * Q5_K_WORDS,
        Format::Q3_K => k / QK_K * Q3_K_WORDS,
        Format::Q2_K => k / QK_K * Q2_K_WORDS,
        Format::IQ4_XS => k / QK_K * IQ4_XS_WORDS,
    }
}

/// `u32` words of scales for `rows` rows of `k` values.
pub const fn scale_words(format: Format, rows: usize, k: usize) -> usize {
    match format {
        Format::F32 | Format::F16 | Format::BF16 | Format::Q4_K | Format::Q5_K | Format::Q2_K | Format::IQ4_XS => 0,
        Format::Q8_0 | Format::Q4_0 | Format::IQ4_NL | Format::Q5_0 => (rows * (k / QK)).div_ceil(2),
        Format::Q4_1 | Format::Q5_1 => rows * (k / QK),
        Format::Q6_K | Format::Q3_K => (rows * (k / QK_K)).div_ceil(2),
        Format::MXFP4 => (rows * (k / QK)).div_ceil(4),
        Format::NF4 | Format::FP4 => rows * (k / BNB_BLOCK),
    }
}

/// Repacks rows `start..end` of `w`.
pub fn repack(w: QuantMatrixRef<'_>, start: usize, end: usize) -> GpuLayout {
    let bytes = w.row_bytes(start, end);
    let (rows, k) = (end - start, w.cols());
    let mut quants = Vec::with_capacity(rows * quant_words_per_row(w.format(), k));
    let mut halves: Vec<u16> = Vec::new();
    let mut scales = Vec::with_capacity(scale_words(w.format(), rows, k));
    match w.format() {
        Format::F32 => quants.extend(bytes.chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
        Format::F16 | Format::BF16 => quants.extend(bytes.chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
        Format::Q8_0 => {
            for raw in bytes.chunks_exact(std::mem::size_of::<BlockQ8_0>()) {
                let b: BlockQ8_0 = bytemuck::pod_read_unaligned(raw);
                quants.extend(b.qs.chunks_exact(4).map(|q| u32::from_le_bytes([q[0] as u8, q[1] as u8, q[2] as u8, q[3] as u8])));
                halves.push(b.d.to_bits());
            }
        }
        Format::Q4_0 => {
            for raw in bytes.chunks_exact(std::mem::size_of::<BlockQ4_0>()) {
                let b: BlockQ4_0 = bytemuck::pod_read_unaligned(raw);
                push_nibbles(&mut quants, &b.qs);
                halves.push(b.d.to_bits());
            }
        }
        Format::IQ4_NL => {
            for raw in bytes.chunks_exact(std::mem::size_of::<BlockIQ4_NL>()) {
                let b: BlockIQ4_NL = bytemuck::pod_read_unaligned(raw);
                push_nibbles(&mut quants, &b.qs);
                halves.push(b.d.to_bits());
            }
        }
        Format::Q4_1 => {
            for raw in bytes.chunks_exact(std::mem::size_of::<BlockQ4_1>()) {
                let b: BlockQ4_1 = bytemuck::pod_read_unaligned(raw);
                push_nibbles(&mut quants, &b.qs);
                scales.push(b.d.to_bits() as u32 | (b.m.to_bits() as u32) << 16);
            }
        }
        Format::Q5_0 => {
            for raw in bytes.chunks_exact(std::mem::size_of::<BlockQ5_0>()) {
                let b: BlockQ5_0 = bytemuck::pod_read_unaligned(raw);
                push_nibbles(&mut quants, &b.qs);
                quants.push(u32::from_le_bytes(b.qh));
                halves.push(b.d.to_bits());
            }
        }
        Format::Q5_1 => {
            for raw in bytes.chunks_exact(std::mem::size_of::<BlockQ5_1>()) {
                let b: BlockQ5_1 = bytemuck::pod_read_unaligned(raw);
                push_nibbles(&mut quants, &b.qs);
                quants.push(u32::from_le_bytes(b.qh));
                scales.push(b.d.to_bits() as u32 | (b.m.to_bits() as u32) << 16);
            }
        }
        Format::Q4_K | Format::Q5_K | Format::Q2_K => quants.extend(bytes.chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
        Format::Q3_K => {
            for raw in bytes.chunks_exact(std::mem::size_of::<BlockQ3_K>()) {
                let b: BlockQ3_K = bytemuck::pod_read_unaligned(raw);
                quants.extend(raw[..Q3_K_WORDS * 4].chunks_exact(4).map(|q| u32::from_le_bytes([q[0], q[1], q[2], q[3]])));
                halves.push(b.d.to_bits());
            }
        }
        Format::MXFP4 => {
            let mut exponents = Vec::with_capacity(rows * (k / QK));
            for raw in bytes.chunks_exact(std::mem::size_of::<BlockMXFP4>()) {
                let b: BlockMXFP4 = bytemuck::pod_read_unaligned(raw);
                push_nibbles(&mut quants, &b.qs);
                exponents.push(b.e);
            }
            scales.extend(exponents.chunks(4).map(|e| (0..4).fold(0u32, |w, i| w | (*e.get(i).unwrap_or(&0) as u32) << (8 * i))));
        }
        Format::NF4 | Format::FP4 => {
            for raw in bytes.chunks_exact(std::mem::size_of::<BlockBnb4>()) {
                let b: BlockBnb4 = bytemuck::pod_read_unaligned(raw);
                for w in b.qs.chunks_exact(4) {
                    // Bytes of value pairs (even high, odd low) → nibble j = value 8w + j.
                    quants.push(w.iter().enumerate().fold(0u32, |acc, (i, &q)| acc | ((q >> 4) as u32) << (8 * i) | ((q & 0xF) as u32) << (8 * i + 4)));
                }
                scales.push(b.absmax.to_bits());
            }
        }
        Format::IQ4_XS => {
            for raw in bytes.chunks_exact(std::mem::size_of::<BlockIQ4_XS>()) {
                let b: BlockIQ4_XS = bytemuck::pod_read_unaligned(raw);
                quants.push(b.d.to_bits() as u32 | (b.scales_h as u32) << 16);
                quants.push(u32::from_le_bytes(b.scales_l));
                for qs in b.qs.chunks_exact(QK / 2) {
                    push_nibbles(&mut quants, qs);
                }
            }
        }
        Format::Q6_K => {
            for raw in bytes.chunks_exact(std::mem::size_of::<BlockQ6_K>()) {
                let b: BlockQ6_K = bytemuck::pod_read_unaligned(raw);
                quants.extend(raw[..Q6_K_WORDS * 4].chunks_exact(4).map(|q| u32::from_le_bytes([q[0], q[1], q[2], q[3]])));
                halves.push(b.d.to_bits());
            }
        }
    }
    scales.extend(halves.chunks(2).map(|p| p[0] as u32 | (*p.get(1).unwrap_or(&0) as u32) << 16));
    GpuLayout { quants, scales }
}

/// Reorders one block's 16 GGUF nibble bytes (value j low, j + 16 high) into value order, 8 per word.
fn push_nibbles(out: &mut Vec<u32>, qs: &[u8]) {
    let value = |i: usize| -> u32 {
        if i < QK / 2 {
            (qs[i] & 0xF) as u32
        } else {
            (qs[i - QK / 2] >> 4) as u32
        }
    };
    for w in 0..QK / 8 {
        out.push((0..8).fold(0u32, |acc, j| acc | value(8 * w + j) << (4 * j)));
    }
}
