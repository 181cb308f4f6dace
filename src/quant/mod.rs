//! Block formats and their CPU reference. Knows nothing of the GPU.

pub mod block;
pub mod bnb4;
mod format;
pub mod iq4nl;
pub mod kquants;
pub mod kquants_low;
pub mod kv;
mod matrix;
pub mod mxfp4;
pub mod reference;
pub mod repack;
pub mod weighted;

pub use format::{Format, QGPU_TYPE_BASE};
pub use matrix::{QuantMatrix, QuantMatrixRef};

/// The names of every format, comma-separated, for error messages.
pub fn known_formats() -> String {
    Format::ALL.map(Format::name).join(", ")
}

/// Errors of building or quantizing a host matrix.
#[non_exhaustive]
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QuantError {
    /// A matrix with no rows or no columns.
    #[error("empty matrix: {rows} rows × {cols} columns")]
    Empty { rows: usize, cols: usize },
    /// The row length is not a multiple of what the format needs (its block size, or 8).
    #[error("{format}: row length {cols} is not a multiple of {multiple}")]
    RowLength { format: Format, cols: usize, multiple: usize },
    /// The byte buffer does not hold exactly `rows × cols` values of the format.
    #[error("{format}: {rows} × {cols} needs {needed} bytes, got {actual}")]
    ByteCount { format: Format, rows: usize, cols: usize, needed: usize, actual: usize },
    /// The number of f32 values given to quantize is not `rows × cols`.
    #[error("quantize: {rows} × {cols} needs {} values, got {actual}", rows * cols)]
    ValueCount { rows: usize, cols: usize, actual: usize },
    /// `rows × cols` or its byte size does not fit in `usize`.
    #[error("size of {rows} × {cols} overflows")]
    Overflow { rows: usize, cols: usize },
    /// A format name that qgpu does not know.
    #[error("unknown weight format `{name}` (known: {})", known_formats())]
    UnknownFormat { name: String },
    /// [`weighted::quantize_weighted`] has no importance-weighted search for this format.
    #[error("{format}: no importance-weighted quantization (Q4_0, Q4_1, IQ4_NL, Q4_K and Q6_K have one)")]
    NoWeightedSearch { format: Format },
    /// The importance vector must hold one value per column (input channel).
    #[error("importance has {actual} values for {cols} columns")]
    ImportanceLength { cols: usize, actual: usize },
}
