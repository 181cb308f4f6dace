//! Shapes and the errors of checking them. Knows nothing of the GPU.

/// A shape that does not fit an operation. Checked before any GPU work is encoded.
#[non_exhaustive]
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ShapeError {
    /// A tensor with a zero dimension.
    #[error("{op}: `{tensor}` is empty ({rows} × {cols})")]
    Empty { op: &'static str, tensor: &'static str, rows: usize, cols: usize },
    /// Two dimensions that must agree do not.
    #[error("{op}: {what} must be {expected}, got {actual}")]
    Mismatch { op: &'static str, what: &'static str, expected: usize, actual: usize },
    /// A dimension the kernel needs as a multiple of some block.
    #[error("{op}: {what} = {actual} is not a multiple of {multiple}")]
    NotMultiple { op: &'static str, what: &'static str, actual: usize, multiple: usize },
    /// More rows than the kernel handles (matvec takes at most 8 activation rows).
    #[error("{op}: {what} = {actual} exceeds the maximum of {max}")]
    TooLarge { op: &'static str, what: &'static str, actual: usize, max: usize },
    /// A host slice whose length is not `rows × cols`.
    #[error("{op}: `{tensor}` has {actual} values, expected {rows} × {cols}")]
    DataLength { op: &'static str, tensor: &'static str, rows: usize, cols: usize, actual: usize },
}

/// Checks a `rows × cols` shape is non-empty and that `data_len` (if given) matches it.
pub fn check_matrix(op: &'static str, tensor: &'static str, rows: usize, cols: usize, data_len: Option<usize>) -> Result<(), ShapeError> {
    if rows == 0 || cols == 0 {
        return Err(ShapeError::Empty { op, tensor, rows, cols });
    }
    if let Some(actual) = data_len {
        if rows.checked_mul(cols) != Some(actual) {
            return Err(ShapeError::DataLength { op, tensor, rows, cols, actual });
        }
    }
    Ok(())
}
