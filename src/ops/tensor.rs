//! f32 matrices that live on the GPU.

use crate::gpu::{Bind, Context, GpuError};
use crate::tensor::check_matrix;
use crate::Error;

/// A row-major `rows × cols` f32 matrix in one GPU buffer, from byte `offset` on.
pub struct GpuTensor {
    pub(crate) buffer: wgpu::Buffer,
    /// Non-zero for a part of a planar block ([`GpuTensor::planar_parts`]).
    offset: u64,
    /// A planar part's bytes (all its block's rows), which is all it binds: parts of one block
    /// bound writable together must not overlap. `None`: the buffer to its end.
    extent: Option<u64>,
    rows: usize,
    cols: usize,
}

impl GpuTensor {
    /// Uploads `data` (`rows × cols`, row-major).
    pub fn from_slice(ctx: &Context, rows: usize, cols: usize, data: &[f32]) -> Result<Self, Error> {
        check_matrix("upload", "tensor", rows, cols, Some(data.len()))?;
        let buffer = ctx.storage_buffer("tensor", bytemuck::cast_slice(data))?;
        Ok(Self { buffer, offset: 0, extent: None, rows, cols })
    }

    /// A zeroed `rows × cols` matrix.
    pub fn zeros(ctx: &Context, rows: usize, cols: usize) -> Result<Self, Error> {
        check_matrix("allocate", "tensor", rows, cols, None)?;
        let bytes = (rows as u64).checked_mul(cols as u64).and_then(|v| v.checked_mul(4)).unwrap_or(u64::MAX);
        let buffer = ctx.zeroed_buffer("tensor", bytes)?;
        Ok(Self { buffer, offset: 0, extent: None, rows, cols })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }
    pub fn cols(&self) -> usize {
        self.cols
    }
    pub fn bytes(&self) -> u64 {
        (self.rows * self.cols * 4) as u64
    }

    /// Reads the whole matrix back, row-major.
    pub async fn read(&self, ctx: &Context) -> Result<Vec<f32>, Error> {
        self.read_rows(ctx, self.rows).await
    }

    /// Reads the first `rows` rows back, row-major.
    pub async fn read_rows(&self, ctx: &Context, rows: usize) -> Result<Vec<f32>, Error> {
        let rows = rows.min(self.rows);
        Ok(ctx.read_f32("tensor", &self.buffer, self.offset, rows * self.cols).await?)
    }
}

impl GpuTensor {
    /// The first `rows` rows, sharing this tensor's buffer: activations are allocated for the
    /// longest chunk and planned for shorter ones.
    pub fn view_rows(&self, rows: usize) -> Result<GpuTensor, Error> {
        if rows == 0 || rows > self.rows {
            return Err(crate::tensor::ShapeError::TooLarge { op: "view", what: "rows", actual: rows, max: self.rows }.into());
        }
        Ok(GpuTensor { buffer: self.buffer.clone(), offset: self.offset, extent: self.extent, rows, cols: self.cols })
    }

    /// The first `rows × cols` values seen as a `rows × cols` matrix, sharing this tensor's
    /// buffer (Q as one row per head, for the per-head norms).
    pub fn view_as(&self, rows: usize, cols: usize) -> Result<GpuTensor, Error> {
        let max = self.rows * self.cols;
        if rows == 0 || cols == 0 || rows.checked_mul(cols).is_none_or(|n| n > max) {
            return Err(crate::tensor::ShapeError::TooLarge { op: "view", what: "values", actual: rows.saturating_mul(cols), max }.into());
        }
        Ok(GpuTensor { buffer: self.buffer.clone(), offset: self.offset, extent: self.extent, rows, cols })
    }

    /// The binding of this tensor: its buffer from its offset on.
    pub(crate) fn bind(&self) -> Bind<'_> {
        Bind { buffer: &self.buffer, offset: self.offset, size: self.extent }
    }

    /// This `rows × Σwidths` tensor seen as consecutive `rows × width` matrices, one after the
    /// other in memory (planar, not interleaved by row): the outputs of a fused projection
    /// ([`plan_linear_parts`](super::plan_linear_parts)), each bound on its own. Every part
    /// must start on the adapter's storage offset alignment.
    pub fn planar_parts(&self, ctx: &Context, widths: &[usize]) -> Result<Vec<GpuTensor>, Error> {
        let total: usize = widths.iter().sum();
        if total != self.cols || widths.contains(&0) {
            return Err(crate::tensor::ShapeError::Mismatch { op: "planar parts", what: "sum of widths", expected: self.cols, actual: total }.into());
        }
        let align = ctx.limits().min_storage_buffer_offset_alignment as u64;
        let mut parts = Vec::with_capacity(widths.len());
        let mut start = 0;
        for &width in widths {
            let offset = self.offset + (self.rows * start * 4) as u64;
            if !offset.is_multiple_of(align) {
                return Err(GpuError::MisalignedOffset { what: "planar tensor part", offset, alignment: align }.into());
            }
            let extent = Some((self.rows * width * 4) as u64);
            parts.push(GpuTensor { buffer: self.buffer.clone(), offset, extent, rows: self.rows, cols: width });
            start += width;
        }
        Ok(parts)
    }

    /// Overwrites the start of the tensor with `data` (row-major).
    pub fn write(&self, ctx: &Context, data: &[f32]) -> Result<(), Error> {
        if data.len() > self.rows * self.cols {
            return Err(crate::tensor::ShapeError::TooLarge { op: "write", what: "values", actual: data.len(), max: self.rows * self.cols }.into());
        }
        ctx.write_buffer(&self.buffer, self.offset, bytemuck::cast_slice(data));
        Ok(())
    }
}

/// Token ids on the GPU, written before each call.
pub struct GpuIds {
    pub(crate) buffer: wgpu::Buffer,
    capacity: usize,
}

impl GpuIds {
    pub fn new(ctx: &Context, capacity: usize) -> Result<Self, Error> {
        check_matrix("allocate", "token ids", capacity, 1, None)?;
        Ok(Self { buffer: ctx.zeroed_buffer("token ids", capacity as u64 * 4)?, capacity })
    }
    pub fn write(&self, ctx: &Context, ids: &[u32]) -> Result<(), Error> {
        if ids.len() > self.capacity {
            return Err(crate::tensor::ShapeError::TooLarge { op: "write", what: "token ids", actual: ids.len(), max: self.capacity }.into());
        }
        ctx.write_buffer(&self.buffer, 0, bytemuck::cast_slice(ids));
        Ok(())
    }
}

/// Per-call values every planned dispatch reads (the position of the first token), so that
/// plans are built once and replayed for every decode step.
pub struct StepParams {
    pub(crate) buffer: wgpu::Buffer,
}

impl StepParams {
    pub fn new(ctx: &Context) -> Self {
        Self { buffer: ctx.uniform_buffer("step", &[0u8; 16]) }
    }
    pub fn write(&self, ctx: &Context, pos0: u32) {
        ctx.write_buffer(&self.buffer, 0, bytemuck::bytes_of(&[pos0, 0, 0, 0]));
    }
}
