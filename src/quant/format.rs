//! The weight formats qgpu multiplies by, and their sizes.

use super::bnb4::BNB_BLOCK;
use super::block::{
    BlockBnb4, BlockIQ4_NL, BlockIQ4_XS, BlockMXFP4, BlockQ2_K, BlockQ3_K, BlockQ4_0, BlockQ4_1, BlockQ4_K, BlockQ5_0, BlockQ5_1, BlockQ5_K, BlockQ6_K, BlockQ8_0, QK, QK_K,
};

/// A weight storage format. The numeric codes of [`Format::shader_code`] are the `FORMAT`
/// override constant of `shaders/weights.wgsl`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Format {
    F32,
    F16,
    Q8_0,
    Q4_0,
    Q4_1,
    /// ggml's Q4_K: 256-value super-blocks, 4.5 bits a weight.
    #[allow(non_camel_case_types)]
    Q4_K,
    /// ggml's Q6_K: 256-value super-blocks, 6.5625 bits a weight.
    #[allow(non_camel_case_types)]
    Q6_K,
    /// ggml's IQ4_NL: 32 values a block, each a nibble indexing a 16-entry non-linear codebook,
    /// times an f16 scale; 4.5 bits a weight, as Q4_0.
    #[allow(non_camel_case_types)]
    IQ4_NL,
    /// ggml's Q5_0: Q4_0 with a fifth bit a value, 5.5 bits a weight.
    Q5_0,
    /// ggml's Q5_1: Q4_1 with a fifth bit a value, 6 bits a weight.
    Q5_1,
    /// bfloat16: the top half of an f32.
    BF16,
    /// ggml's Q5_K: Q4_K with a fifth bit a value, 5.5 bits a weight.
    #[allow(non_camel_case_types)]
    Q5_K,
    /// ggml's Q3_K: 16 sub-blocks of 16 with 6-bit scales, 3.4375 bits a weight.
    #[allow(non_camel_case_types)]
    Q3_K,
    /// ggml's Q2_K: 16 sub-blocks of 16 with 4-bit scales and mins, 2.625 bits a weight.
    #[allow(non_camel_case_types)]
    Q2_K,
    /// ggml's IQ4_XS: IQ4_NL's codebook in 256-value super-blocks with 6-bit sub-block scales,
    /// 4.25 bits a weight.
    #[allow(non_camel_case_types)]
    IQ4_XS,
    /// OCP MXFP4: 32 E2M1 values sharing a power-of-two scale, 4.25 bits a weight.
    MXFP4,
    /// bitsandbytes' NF4: 64 NormalFloat nibbles and an f32 absmax, 4.5 bits a weight (see
    /// [`super::bnb4`]). qgpu's own: GGUF has no type for it.
    NF4,
    /// bitsandbytes' FP4: NF4's layout with a 4-bit float codebook.
    FP4,
}

/// Type ids at and above this are qgpu's own (NF4, FP4): they name an element type in memory
/// and in a [`crate::loader::TensorSource`], but never appear in a GGUF file.
pub const QGPU_TYPE_BASE: u32 = 0x7167_0000;

impl Format {
    pub const ALL: [Format; 18] = [
        Format::F32,
        Format::F16,
        Format::Q8_0,
        Format::Q4_0,
        Format::Q4_1,
        Format::Q4_K,
        Format::Q6_K,
        Format::IQ4_NL,
        Format::Q5_0,
        Format::Q5_1,
        Format::BF16,
        Format::Q5_K,
        Format::Q3_K,
        Format::Q2_K,
        Format::IQ4_XS,
        Format::MXFP4,
        Format::NF4,
        Format::FP4,
    ];

    /// Values per block as stored in GGUF.
    pub const fn block_size(self) -> usize {
        match self {
            Format::F32 | Format::F16 | Format::BF16 => 1,
            Format::Q8_0 | Format::Q4_0 | Format::Q4_1 | Format::IQ4_NL | Format::Q5_0 | Format::Q5_1 | Format::MXFP4 => QK,
            Format::Q4_K | Format::Q6_K | Format::Q5_K | Format::Q3_K | Format::Q2_K | Format::IQ4_XS => QK_K,
            Format::NF4 | Format::FP4 => BNB_BLOCK,
        }
    }

    /// Bytes per block as stored in GGUF.
    pub const fn block_bytes(self) -> usize {
        match self {
            Format::F32 => 4,
            Format::F16 | Format::BF16 => 2,
            Format::Q5_0 => std::mem::size_of::<BlockQ5_0>(),
            Format::Q5_1 => std::mem::size_of::<BlockQ5_1>(),
            Format::Q5_K => std::mem::size_of::<BlockQ5_K>(),
            Format::Q3_K => std::mem::size_of::<BlockQ3_K>(),
            Format::Q2_K => std::mem::size_of::<BlockQ2_K>(),
            Format::IQ4_XS => std::mem::size_of::<BlockIQ4_XS>(),
            Format::MXFP4 => std::mem::size_of::<BlockMXFP4>(),
            Format::NF4 | Format::FP4 => std::mem::size_of::<BlockBnb4>(),
            Format::Q8_0 => std::mem::size_of::<BlockQ8_0>(),
            Format::Q4_0 => std::mem::size_of::<BlockQ4_0>(),
            Format::Q4_1 => std::mem::size_of::<BlockQ4_1>(),
            Format::Q4_K => std::mem::size_of::<BlockQ4_K>(),
            Format::Q6_K => std::mem::size_of::<BlockQ6_K>(),
            Format::IQ4_NL => std::mem::size_of::<BlockIQ4_NL>(),
        }
    }

    /// Storage cost in bits per weight, scales included (4.5 for Q4_0 and Q4_K, 6.5625 for Q6_K).
    pub fn bits_per_weight(self) -> f64 {
        self.block_bytes() as f64 * 8.0 / self.block_size() as f64
    }

    /// The row length (K) must be a multiple of this: the block size (256 for the K-quants and IQ4_XS,
    /// which GGUF never splits across rows). The kernels read weights in groups of 8, so even
    /// the unblocked formats need K % 8 == 0.
    pub const fn k_multiple(self) -> usize {
        match self {
            Format::F32 | Format::F16 | Format::BF16 => 8,
            Format::Q8_0 | Format::Q4_0 | Format::Q4_1 | Format::IQ4_NL | Format::Q5_0 | Format::Q5_1 | Format::MXFP4 => QK,
            Format::Q4_K | Format::Q6_K | Format::Q5_K | Format::Q3_K | Format::Q2_K | Format::IQ4_XS => QK_K,
            Format::NF4 | Format::FP4 => BNB_BLOCK,
        }
    }

    /// The ggml type id used in GGUF files; for qgpu's own formats an id from
    /// [`QGPU_TYPE_BASE`] up, which no GGUF file may carry.
    pub const fn ggml_type(self) -> u32 {
        match self {
            Format::F32 => 0,
            Format::F16 => 1,
            Format::Q4_0 => 2,
            Format::Q4_1 => 3,
            Format::Q8_0 => 8,
            Format::Q4_K => 12,
            Format::Q6_K => 14,
            Format::IQ4_NL => 20,
            Format::Q5_0 => 6,
            Format::Q5_1 => 7,
            Format::BF16 => 30,
            Format::Q5_K => 13,
            Format::Q3_K => 11,
            Format::Q2_K => 10,
            Format::IQ4_XS => 23,
            Format::MXFP4 => 39,
            Format::NF4 => QGPU_TYPE_BASE,
            Format::FP4 => QGPU_TYPE_BASE + 1,
        }
    }

    /// The format stored under a ggml type id, if qgpu has kernels for it.
    pub fn from_ggml_type(id: u32) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.ggml_type() == id)
    }

    /// The value of the `FORMAT` override constant in the shaders.
    pub const fn shader_code(self) -> u32 {
        match self {
            Format::F32 => 0,
            Format::F16 => 1,
            Format::Q8_0 => 2,
            Format::Q4_0 => 3,
            Format::Q4_1 => 4,
            Format::Q4_K => 5,
            Format::Q6_K => 6,
            Format::IQ4_NL => 7,
            Format::Q5_0 => 8,
            Format::Q5_1 => 9,
            Format::BF16 => 10,
            Format::Q5_K => 11,
            Format::Q3_K => 12,
            Format::Q2_K => 13,
            Format::IQ4_XS => 14,
            Format::MXFP4 => 15,
            Format::NF4 => 16,
            Format::FP4 => 17,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Format::F32 => "F32",
            Format::F16 => "F16",
            Format::Q8_0 => "Q8_0",
            Format::Q4_0 => "Q4_0",
            Format::Q4_1 => "Q4_1",
            Format::Q4_K => "Q4_K",
            Format::Q6_K => "Q6_K",
            Format::IQ4_NL => "IQ4_NL",
            Format::Q5_0 => "Q5_0",
            Format::Q5_1 => "Q5_1",
            Format::BF16 => "BF16",
            Format::Q5_K => "Q5_K",
            Format::Q3_K => "Q3_K",
            Format::Q2_K => "Q2_K",
            Format::IQ4_XS => "IQ4_XS",
            Format::MXFP4 => "MXFP4",
            Format::NF4 => "NF4",
            Format::FP4 => "FP4",
        }
    }

    /// Whether GGUF has a type for this format (all but qgpu's own NF4 and FP4).
    pub const fn in_gguf(self) -> bool {
        self.ggml_type() < QGPU_TYPE_BASE
    }

    /// Bytes of one row of `k` values as stored in GGUF, or `None` on overflow.
    pub fn row_bytes(self, k: usize) -> Option<usize> {
        (k / self.block_size()).checked_mul(self.block_bytes())
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Format {
    type Err = super::QuantError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Format::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| super::QuantError::UnknownFormat { name: s.to_string() })
    }
}
