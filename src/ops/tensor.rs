//! f32 matrices that live on the GPU.

use crate::gpu::Context;
use crate::tensor::check_matrix;
use crate::Error;

/// A row-major `rows × cols` f32 matrix in one GPU buffer.
pub struct GpuTensor {
    pub(crate) buffer: wgpu::Buffer,
    rows: usize,
    cols: usize,
}

impl GpuTensor {
    /// Uploads `data` (`rows × cols`, row-major).
    pub fn from_slice(ctx: &Context, rows: usize, cols: usize, data: &[f32]) -> Result<Self, Error> {
        check_matrix("upload", "tensor", rows, cols, Some(data.len()))?;
        let buffer = ctx.storage_buffer("tensor", bytemuck::cast_slice(data))?;
        Ok(Self { buffer, rows, cols })
    }

    /// A zeroed `rows × cols` matrix.
    pub fn zeros(ctx: &Context, rows: usize, cols: usize) -> Result<Self, Error> {
        check_matrix("allocate", "tensor", rows, cols, None)?;
        let bytes = (rows as u64).checked_mul(cols as u64).and_then(|v| v.checked_mul(4)).unwrap_or(u64::MAX);
        let buffer = ctx.zeroed_buffer("tensor", bytes)?;
        Ok(Self { buffer, rows, cols })
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
        Ok(ctx.read_f32("tensor", &self.buffer, self.rows * self.cols).await?)
    }
}
