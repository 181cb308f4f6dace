//! Timing submissions: GPU timestamps around one compute pass where the device has
//! TIMESTAMP_QUERY, and a completion wait that works natively and in the browser for the
//! wall-clock fallback.

use super::buffer::encode_pass;
use super::{Context, Dispatch, GpuError};

/// A two-entry timestamp query set and the buffers its ticks are resolved and read through.
pub struct GpuTimer {
    queries: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    read: wgpu::Buffer,
}

/// Bytes of two resolved u64 timestamps.
const TICKS_BYTES: u64 = 16;

impl Context {
    /// A timer, or `None` where the device lacks TIMESTAMP_QUERY.
    pub fn timer(&self) -> Option<GpuTimer> {
        if !self.capabilities().timestamps {
            return None;
        }
        let queries = self.device.create_query_set(&wgpu::QuerySetDescriptor { label: Some("pass timestamps"), ty: wgpu::QueryType::Timestamp, count: 2 });
        let buffer = |label, usage| self.device.create_buffer(&wgpu::BufferDescriptor { label: Some(label), size: TICKS_BYTES, usage, mapped_at_creation: false });
        let resolve = buffer("timestamp resolve", wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC);
        let read = buffer("timestamp read", wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST);
        Some(GpuTimer { queries, resolve, read })
    }

    /// Runs `dispatches` in one compute pass with timestamps at its start and end and returns
    /// the GPU time between them, in seconds.
    pub async fn run_timed(&self, timer: &GpuTimer, dispatches: &[&Dispatch]) -> Result<f64, GpuError> {
        self.check_lost()?;
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let mut encoder = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("qgpu timed") });
        let writes = wgpu::ComputePassTimestampWrites { query_set: &timer.queries, beginning_of_pass_write_index: Some(0), end_of_pass_write_index: Some(1) };
        encode_pass(&mut encoder, dispatches, Some(writes));
        encoder.resolve_query_set(&timer.queries, 0..2, &timer.resolve, 0);
        encoder.copy_buffer_to_buffer(&timer.resolve, 0, &timer.read, 0, TICKS_BYTES);
        self.queue.submit([encoder.finish()]);
        let validation = validation.pop().await;
        let oom = oom.pop().await;
        if let Some(e) = oom.or(validation) {
            return Err(GpuError::from_scope("timed dispatch", e));
        }
        let (tx, rx) = futures_channel::oneshot::channel();
        timer.read.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        self.wait_idle()?;
        let what = "timestamps";
        rx.await.map_err(|_| GpuError::Readback { what, message: "map callback dropped".into() })?.map_err(|e| GpuError::Readback { what, message: e.to_string() })?;
        let ticks: [u64; 2] = {
            let view = timer.read.get_mapped_range(..).map_err(|e| GpuError::Readback { what, message: e.to_string() })?;
            bytemuck::pod_read_unaligned(&view[..TICKS_BYTES as usize])
        };
        timer.read.unmap();
        // A driver may reorder or reset counters; a negative span reads as zero, not a wrap.
        let ns = ticks[1].saturating_sub(ticks[0]) as f64 * self.queue.get_timestamp_period() as f64;
        Ok(ns * 1e-9)
    }

    /// Waits until everything submitted so far has finished executing, natively and in the
    /// browser (where [`Context::wait_idle`] cannot block).
    pub async fn finish(&self) -> Result<(), GpuError> {
        let (tx, rx) = futures_channel::oneshot::channel();
        self.queue.on_submitted_work_done(move || {
            let _ = tx.send(());
        });
        self.wait_idle()?;
        rx.await.map_err(|_| GpuError::Internal { operation: "finish", message: "work-done callback dropped".into() })?;
        self.check_lost()
    }
}
