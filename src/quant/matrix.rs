//! A weight matrix in GGUF block bytes, held on the host.

use super::{Format, QuantError};

/// A borrowed `rows × cols` matrix in `format`, rows stored one after another exactly as in a
/// GGUF file (GGUF calls `cols` ne\[0\]). Borrowing lets a memory-mapped file be uploaded with
/// no copy.
#[derive(Clone, Copy, Debug)]
pub struct QuantMatrixRef<'a> {
    format: Format,
    rows: usize,
    cols: usize,
    data: &'a [u8],
}

/// An owned matrix, as [`QuantMatrixRef`].
#[derive(Clone, Debug)]
pub struct QuantMatrix {
    format: Format,
    rows: usize,
    cols: usize,
    data: Vec<u8>,
}

/// Checks the shape against the format and the byte count, with checked arithmetic.
fn check(format: Format, rows: usize, cols: usize, len: usize) -> Result<(), QuantError> {
    if rows == 0 || cols == 0 {
        return Err(QuantError::Empty { rows, cols });
    }
    if !cols.is_multiple_of(format.k_multiple()) {
        return Err(QuantError::RowLength { format, cols, multiple: format.k_multiple() });
    }
    let needed = format
        .row_bytes(cols)
        .and_then(|r| r.checked_mul(rows))
        .ok_or(QuantError::Overflow { rows, cols })?;
    if needed != len {
        return Err(QuantError::ByteCount { format, rows, cols, needed, actual: len });
    }
    Ok(())
}

impl<'a> QuantMatrixRef<'a> {
    pub fn new(format: Format, rows: usize, cols: usize, data: &'a [u8]) -> Result<Self, QuantError> {
        check(format, rows, cols, data.len())?;
        Ok(Self { format, rows, cols, data })
    }
    pub fn format(&self) -> Format {
        self.format
    }
    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn cols(&self) -> usize {
        self.cols
    }
    pub fn data(&self) -> &'a [u8] {
        self.data
    }
    /// The bytes of rows `start..end`.
    pub fn row_bytes(&self, start: usize, end: usize) -> &'a [u8] {
        let rb = self.data.len() / self.rows;
        &self.data[start * rb..end * rb]
    }
}

impl QuantMatrix {
    pub fn new(format: Format, rows: usize, cols: usize, data: Vec<u8>) -> Result<Self, QuantError> {
        check(format, rows, cols, data.len())?;
        Ok(Self { format, rows, cols, data })
    }
    pub fn as_ref(&self) -> QuantMatrixRef<'_> {
        QuantMatrixRef { format: self.format, rows: self.rows, cols: self.cols, data: &self.data }
    }
    pub fn format(&self) -> Format {
        self.format
    }
    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn cols(&self) -> usize {
        self.cols
    }
    pub fn data(&self) -> &[u8] {
        &self.data
    }
}
