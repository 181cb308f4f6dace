//! Buffers: creation with size checks, upload, readback, and batches of dispatches.

use super::pipeline::{Pipeline, MIN_STORAGE_BINDING, MIN_UNIFORM_BINDING};
use super::{Context, GpuError};
use std::sync::Arc;
use wgpu::util::DeviceExt;

/// One compute dispatch, ready to encode any number of times: ops are planned once and replayed.
/// A buffer bound from byte `offset`, for `size` bytes or to its end (a tensor that is a part
/// of a larger buffer; `offset` a multiple of the adapter's `min_storage_buffer_offset_alignment`).
/// Parts of one buffer bound writable in one dispatch must not overlap: browsers refuse that.
#[derive(Clone, Copy)]
pub struct Bind<'a> {
    pub buffer: &'a wgpu::Buffer,
    pub offset: u64,
    pub size: Option<u64>,
}

impl Bind<'_> {
    /// Bytes the binding covers.
    pub fn bytes(&self) -> u64 {
        let rest = self.buffer.size().saturating_sub(self.offset);
        self.size.map_or(rest, |s| s.min(rest))
    }
}

impl<'a> From<&'a wgpu::Buffer> for Bind<'a> {
    fn from(buffer: &'a wgpu::Buffer) -> Self {
        Bind { buffer, offset: 0, size: None }
    }
}

pub struct Dispatch {
    pub(crate) pipeline: Arc<Pipeline>,
    pub(crate) bind_group: wgpu::BindGroup,
    pub(crate) workgroups: Workgroups,
}

/// How many workgroups a dispatch launches.
pub(crate) enum Workgroups {
    Direct([u32; 3]),
    /// Read from a buffer the host rewrites before each run (counts that grow with the
    /// sequence, planned once).
    Indirect(wgpu::Buffer),
}

impl Context {
    /// A storage buffer initialised with `contents`, zero-padded to at least 16 bytes since
    /// bindings may not be empty and kernels read whole vectors.
    pub fn storage_buffer(&self, what: &'static str, contents: &[u8]) -> Result<wgpu::Buffer, GpuError> {
        self.check_buffer_size(what, contents.len() as u64)?;
        let mut padded = [0u8; MIN_STORAGE_BINDING as usize];
        let contents = if contents.len() < padded.len() {
            padded[..contents.len()].copy_from_slice(contents);
            &padded[..]
        } else {
            contents
        };
        self.scoped("buffer upload", || {
            self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(what),
                contents,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            })
        })
    }

    /// A zeroed storage buffer of `bytes` bytes (rounded up to 4).
    pub fn zeroed_buffer(&self, what: &'static str, bytes: u64) -> Result<wgpu::Buffer, GpuError> {
        self.check_buffer_size(what, bytes)?;
        self.scoped("buffer allocation", || {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(what),
                size: bytes.max(MIN_STORAGE_BINDING).next_multiple_of(4),
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        })
    }

    /// A uniform buffer holding `contents`, zero-padded to a multiple of 64 bytes.
    pub fn uniform_buffer(&self, what: &'static str, contents: &[u8]) -> wgpu::Buffer {
        let mut data = contents.to_vec();
        data.resize((contents.len() as u64).max(MIN_UNIFORM_BINDING).next_multiple_of(MIN_UNIFORM_BINDING) as usize, 0);
        self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(what),
            contents: &data,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        })
    }

    /// Copies each `(source, bytes, destination, offset)`: the source's first `bytes` to
    /// `offset` in the destination, all in one submit. Sizes and offsets are multiples of 4.
    pub fn copy_into(&self, copies: &[(&wgpu::Buffer, u64, &wgpu::Buffer, u64)]) -> Result<(), GpuError> {
        self.scoped("buffer copy", || {
            let mut encoder = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("copy") });
            for &(source, bytes, destination, offset) in copies {
                if bytes > 0 {
                    encoder.copy_buffer_to_buffer(source, 0, destination, offset, bytes);
                }
            }
            self.queue.submit([encoder.finish()]);
        })
    }

    pub fn write_buffer(&self, buffer: &wgpu::Buffer, offset: u64, data: &[u8]) {
        self.queue.write_buffer(buffer, offset, data);
    }

    fn check_buffer_size(&self, what: &'static str, bytes: u64) -> Result<(), GpuError> {
        let limit = self.limits().max_buffer_size;
        if bytes > limit {
            return Err(GpuError::BufferTooLarge { what, bytes, limit });
        }
        Ok(())
    }

    /// Fails with [`GpuError::BindingTooLarge`] if `bytes` cannot be bound as one storage binding.
    pub fn check_binding(&self, what: &'static str, bytes: u64) -> Result<(), GpuError> {
        let limit = self.max_binding_size();
        if bytes > limit {
            return Err(GpuError::BindingTooLarge { what, bytes, limit });
        }
        Ok(())
    }

    /// Runs `f` inside out-of-memory and validation error scopes.
    fn scoped<T>(&self, operation: &'static str, f: impl FnOnce() -> T) -> Result<T, GpuError> {
        self.check_lost()?;
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let value = f();
        // Native scopes resolve at once; in the browser an error shows up at the next check.
        let validation = pollster_or_ready(validation.pop());
        let oom = pollster_or_ready(oom.pop());
        if let Some(e) = oom.or(validation) {
            return Err(GpuError::from_scope(operation, e));
        }
        Ok(value)
    }

    /// Binds `buffers` (whole) in binding order for `pipeline`, and sizes the dispatch.
    ///
    /// Panics if the pipeline was built without runtime checks: those go through
    /// [`Context::dispatch_bounded`] (a bug in qgpu, not something input can cause).
    pub fn dispatch(&self, pipeline: Arc<Pipeline>, buffers: &[Bind<'_>], workgroups: [u32; 3]) -> Dispatch {
        assert!(!pipeline.trusted, "{} was built without runtime checks and dispatched without host bounds", pipeline.kernel.entry());
        self.bind(pipeline, buffers, workgroups)
    }

    /// As [`Context::dispatch`], after checking that every binding holds at least the bytes
    /// the kernel will index with the parameters the caller planned (`bindings`: each buffer
    /// with that size). The only way to dispatch a kernel built without runtime checks.
    pub fn dispatch_bounded(&self, pipeline: Arc<Pipeline>, bindings: &[(Bind<'_>, u64)], workgroups: [u32; 3]) -> Result<Dispatch, GpuError> {
        for (binding, (bind, needed)) in bindings.iter().enumerate() {
            if bind.bytes() < *needed {
                return Err(GpuError::BindingTooSmall { kernel: pipeline.kernel.entry(), binding: binding as u32, needed: *needed, size: bind.bytes() });
            }
        }
        let buffers: Vec<Bind<'_>> = bindings.iter().map(|(b, _)| *b).collect();
        Ok(self.bind(pipeline, &buffers, workgroups))
    }

    fn bind(&self, pipeline: Arc<Pipeline>, buffers: &[Bind<'_>], workgroups: [u32; 3]) -> Dispatch {
        let entries: Vec<wgpu::BindGroupEntry> = buffers
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding { buffer: b.buffer, offset: b.offset, size: b.size.and_then(std::num::NonZeroU64::new) }),
            })
            .collect();
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipeline.layout,
            entries: &entries,
        });
        Dispatch { pipeline, bind_group, workgroups: Workgroups::Direct(workgroups) }
    }

    /// As [`Context::dispatch`], with the workgroup counts read at run time from `args` (three
    /// `u32`, written with [`Context::write_buffer`]).
    pub fn dispatch_indirect(&self, pipeline: Arc<Pipeline>, buffers: &[Bind<'_>], args: &wgpu::Buffer) -> Dispatch {
        let mut d = self.dispatch(pipeline, buffers, [0; 3]);
        d.workgroups = Workgroups::Indirect(args.clone());
        d
    }

    /// A buffer for indirect dispatch arguments, initially `[0, 0, 0]`.
    pub fn indirect_buffer(&self) -> wgpu::Buffer {
        self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("indirect args"),
            contents: &[0u8; 12],
            usage: wgpu::BufferUsages::INDIRECT | wgpu::BufferUsages::COPY_DST,
        })
    }

    /// Splits `count` workgroups over x and y so that neither exceeds the adapter's limit.
    /// Kernels rebuild the linear index as `id.x + id.y * num_workgroups.x`.
    pub fn workgroup_grid(&self, what: &'static str, count: u64) -> Result<[u32; 3], GpuError> {
        let limit = self.limits().max_compute_workgroups_per_dimension;
        let count = count.max(1);
        if count <= limit as u64 {
            return Ok([count as u32, 1, 1]);
        }
        let y = count.div_ceil(limit as u64);
        if y > limit as u64 {
            return Err(GpuError::TooManyWorkgroups { what, workgroups: count, limit });
        }
        Ok([count.div_ceil(y) as u32, y as u32, 1])
    }

    /// Encodes `dispatches` into one compute pass and submits them, inside error scopes.
    pub async fn run(&self, dispatches: &[&Dispatch]) -> Result<(), GpuError> {
        self.check_lost()?;
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let mut encoder = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("qgpu") });
        encode_pass(&mut encoder, dispatches, None);
        self.queue.submit([encoder.finish()]);
        let validation = validation.pop().await;
        let oom = oom.pop().await;
        if let Some(e) = oom.or(validation) {
            return Err(GpuError::from_scope("dispatch", e));
        }
        self.check_lost()
    }

    /// Copies `buffer[offset..offset + bytes]` to the host (`offset` a multiple of 4).
    pub async fn read_bytes(&self, what: &'static str, buffer: &wgpu::Buffer, offset: u64, bytes: u64) -> Result<Vec<u8>, GpuError> {
        self.check_lost()?;
        let size = bytes.next_multiple_of(4).max(4);
        // Decode reads logits back every token: reuse one staging buffer instead of allocating.
        // A concurrent read finds the slot empty and makes its own.
        let cached = self.staging.lock().ok().and_then(|mut slot| slot.take_if(|b| b.size() >= size));
        let staging = cached.unwrap_or_else(|| {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("readback"),
                size,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        });
        let mut encoder = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("readback") });
        encoder.copy_buffer_to_buffer(buffer, offset, &staging, 0, size);
        self.queue.submit([encoder.finish()]);
        let (tx, rx) = futures_channel::oneshot::channel();
        staging.map_async(wgpu::MapMode::Read, ..size, move |r| {
            let _ = tx.send(r);
        });
        self.wait_idle()?;
        let mapped = rx.await.map_err(|_| GpuError::Readback { what, message: "map callback dropped".into() })?;
        mapped.map_err(|e| GpuError::Readback { what, message: e.to_string() })?;
        let data = {
            let view = staging
                .get_mapped_range(..size)
                .map_err(|e| GpuError::Readback { what, message: e.to_string() })?;
            view[..bytes as usize].to_vec()
        };
        staging.unmap();
        if let Ok(mut slot) = self.staging.lock() {
            if slot.as_ref().is_none_or(|b| b.size() < staging.size()) {
                *slot = Some(staging);
            }
        }
        Ok(data)
    }

    /// Copies `count` f32 values from byte `offset` of `buffer` to the host.
    pub async fn read_f32(&self, what: &'static str, buffer: &wgpu::Buffer, offset: u64, count: usize) -> Result<Vec<f32>, GpuError> {
        let bytes = self.read_bytes(what, buffer, offset, count as u64 * 4).await?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }
}

/// Encodes `dispatches` in order into one compute pass.
pub(crate) fn encode_pass(encoder: &mut wgpu::CommandEncoder, dispatches: &[&Dispatch], timestamp_writes: Option<wgpu::ComputePassTimestampWrites<'_>>) {
    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: None, timestamp_writes });
    for d in dispatches {
        pass.set_pipeline(&d.pipeline.pipeline);
        pass.set_bind_group(0, &d.bind_group, &[]);
        match &d.workgroups {
            Workgroups::Direct([x, y, z]) => pass.dispatch_workgroups(*x, *y, *z),
            Workgroups::Indirect(args) => pass.dispatch_workgroups_indirect(args, 0),
        }
    }
}

/// Error-scope futures are ready at once on native backends; on the web we cannot block, so an
/// error there is reported by the next awaited scope (`run`) instead.
fn pollster_or_ready<F: std::future::Future<Output = Option<wgpu::Error>>>(f: F) -> Option<wgpu::Error> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        pollster::block_on(f)
    }
    #[cfg(target_arch = "wasm32")]
    {
        drop(f);
        None
    }
}
