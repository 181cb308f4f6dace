//! A weight matrix uploaded as its bytes arrive: rows are repacked into the GPU layout a band
//! at a time, so host memory holds one band, not the whole matrix.

use crate::gpu::{Context, GpuError};
use crate::ops::linear::{Chunk, GpuMatrix};
use crate::quant::repack::{quant_words_per_row, repack, scale_words};
use crate::quant::{Format, QuantError, QuantMatrixRef};
use crate::Error;

/// GPU-layout bytes repacked at once when the rows arrive in pieces. A multiple of four rows
/// always starts on a whole scale word (scales pack two f16 or four bytes to a word).
const BAND_BYTES: u64 = 4 << 20;

/// A [`GpuMatrix`] being filled row by row, in order.
pub struct MatrixUpload {
    format: Format,
    rows: usize,
    cols: usize,
    /// Stored bytes of one row.
    row_bytes: usize,
    /// Rows of one GPU buffer (the binding limit's share).
    rows_per_chunk: usize,
    /// Rows repacked together when they arrive in pieces.
    band_rows: usize,
    chunks: Vec<Chunk>,
    /// Bytes of rows not yet repacked (at most one band).
    band: Vec<u8>,
    /// Rows written to the GPU so far.
    next_row: usize,
    gpu_bytes: u64,
}

impl MatrixUpload {
    /// An upload of a `rows` × `cols` matrix stored in `format`. Allocates nothing yet: each
    /// buffer is created when its first rows arrive.
    pub fn new(ctx: &Context, format: Format, rows: usize, cols: usize) -> Result<Self, Error> {
        Self::with_band(ctx, format, rows, cols, BAND_BYTES)
    }

    /// [`MatrixUpload::new`] repacking about `band_bytes` of GPU layout at a time (at least four
    /// rows) when rows arrive in pieces.
    pub fn with_band(ctx: &Context, format: Format, rows: usize, cols: usize, band_bytes: u64) -> Result<Self, Error> {
        if rows == 0 || cols == 0 {
            return Err(QuantError::Empty { rows, cols }.into());
        }
        if !cols.is_multiple_of(format.k_multiple()) {
            return Err(QuantError::RowLength { format, cols, multiple: format.k_multiple() }.into());
        }
        let row_bytes = format.row_bytes(cols).filter(|r| r.checked_mul(rows).is_some()).ok_or(QuantError::Overflow { rows, cols })?;
        let limit = ctx.max_binding_size();
        let row_gpu = GpuMatrix::row_binding_bytes(format, cols);
        let rows_per_chunk = (limit / row_gpu) as usize;
        if rows_per_chunk == 0 {
            return Err(GpuError::BindingTooLarge { what: "one weight row", bytes: row_gpu, limit }.into());
        }
        let band_rows = ((band_bytes / row_gpu) as usize / 4 * 4).max(4);
        let chunks = Vec::with_capacity(rows.div_ceil(rows_per_chunk).min(1024));
        Ok(Self { format, rows, cols, row_bytes, rows_per_chunk, band_rows, chunks, band: Vec::new(), next_row: 0, gpu_bytes: 0 })
    }

    /// Stored bytes still to come.
    pub fn remaining_bytes(&self) -> usize {
        (self.rows - self.next_row) * self.row_bytes - self.band.len()
    }

    /// The next `bytes` of the matrix (any split; at most [`Self::remaining_bytes`]).
    pub fn push(&mut self, ctx: &Context, mut bytes: &[u8]) -> Result<(), Error> {
        if bytes.len() > self.remaining_bytes() {
            return Err(self.byte_count(self.rows * self.row_bytes - self.remaining_bytes() + bytes.len()).into());
        }
        while !bytes.is_empty() {
            let chunk_end = ((self.next_row / self.rows_per_chunk + 1) * self.rows_per_chunk).min(self.rows);
            if self.band.is_empty() {
                // Whole rows in hand go up without a copy: a whole chunk at once, else whole bands.
                let whole = (bytes.len() / self.row_bytes).min(chunk_end - self.next_row);
                let n = if whole == chunk_end - self.next_row { whole } else { whole / self.band_rows * self.band_rows };
                if n > 0 {
                    self.write_rows(ctx, &bytes[..n * self.row_bytes])?;
                    bytes = &bytes[n * self.row_bytes..];
                    continue;
                }
            }
            let band_rows = self.band_rows.min(chunk_end - self.next_row);
            let take = (band_rows * self.row_bytes - self.band.len()).min(bytes.len());
            self.band.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.band.len() == band_rows * self.row_bytes {
                let band = std::mem::take(&mut self.band);
                self.write_rows(ctx, &band)?;
                self.band = band;
                self.band.clear();
            }
        }
        Ok(())
    }

    /// Repacks and writes whole rows from `next_row` on, all within one chunk.
    fn write_rows(&mut self, ctx: &Context, bytes: &[u8]) -> Result<(), Error> {
        let (format, k) = (self.format, self.cols);
        let n = bytes.len() / self.row_bytes;
        let chunk_start = self.next_row / self.rows_per_chunk * self.rows_per_chunk;
        let chunk_rows = self.rows_per_chunk.min(self.rows - chunk_start);
        let layout = repack(QuantMatrixRef::new(format, n, k, bytes)?, 0, n);
        if self.next_row == chunk_start && n == chunk_rows {
            // The whole chunk at once: created with its contents.
            self.chunks.push(Chunk {
                row_start: chunk_start,
                rows: chunk_rows,
                quants: ctx.storage_buffer("weight quants", bytemuck::cast_slice(&layout.quants))?,
                scales: ctx.storage_buffer("weight scales", bytemuck::cast_slice(&layout.scales))?,
            });
        } else {
            if self.next_row == chunk_start {
                let quants = (chunk_rows * quant_words_per_row(format, k) * 4) as u64;
                let scales = (scale_words(format, chunk_rows, k) * 4) as u64;
                self.chunks.push(Chunk {
                    row_start: chunk_start,
                    rows: chunk_rows,
                    quants: ctx.zeroed_buffer("weight quants", quants)?,
                    scales: ctx.zeroed_buffer("weight scales", scales)?,
                });
            }
            let chunk = self.chunks.last().expect("the chunk was created with its first rows");
            // Rows start on a whole scale word: earlier writes in this chunk were whole bands.
            let before = self.next_row - chunk_start;
            ctx.write_buffer(&chunk.quants, (before * quant_words_per_row(format, k) * 4) as u64, bytemuck::cast_slice(&layout.quants));
            if !layout.scales.is_empty() {
                ctx.write_buffer(&chunk.scales, (scale_words(format, before, k) * 4) as u64, bytemuck::cast_slice(&layout.scales));
            }
        }
        self.gpu_bytes += (layout.quants.len() + layout.scales.len()) as u64 * 4;
        self.next_row += n;
        Ok(())
    }

    /// The error for a matrix given `actual` bytes.
    fn byte_count(&self, actual: usize) -> QuantError {
        QuantError::ByteCount { format: self.format, rows: self.rows, cols: self.cols, needed: self.rows * self.row_bytes, actual }
    }

    /// The uploaded matrix; fails if rows are missing.
    pub fn finish(self) -> Result<GpuMatrix, Error> {
        if self.next_row != self.rows {
            return Err(self.byte_count(self.next_row * self.row_bytes + self.band.len()).into());
        }
        Ok(GpuMatrix::from_chunks(self.format, self.rows, self.cols, self.gpu_bytes, self.chunks))
    }
}
