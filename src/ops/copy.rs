//! The copy kernel that measures an adapter's real memory bandwidth.

use crate::gpu::{Constant, Context, Dispatch, Kernel, PipelineKey};
use crate::Error;

const WORKGROUP: u32 = 256;

/// A planned copy of `bytes` bytes between two fresh buffers.
pub struct CopyProbe {
    pub dispatch: Dispatch,
    pub bytes: u64,
    _buffers: [wgpu::Buffer; 2],
}

impl CopyProbe {
    /// Allocates source and destination of `bytes` (a multiple of 16, within one binding).
    pub async fn new(ctx: &Context, bytes: u64) -> Result<Self, Error> {
        let bytes = bytes.min(ctx.max_binding_size()) / 16 * 16;
        ctx.check_binding("copy probe", bytes)?;
        let src = ctx.zeroed_buffer("copy src", bytes)?;
        let dst = ctx.zeroed_buffer("copy dst", bytes)?;
        let key = PipelineKey { kernel: Kernel::Copy, constants: vec![Constant { name: "WORKGROUP", value: WORKGROUP }] };
        let pipeline = ctx.pipeline(&key).await?;
        // Enough workgroups to fill any GPU, few enough to stay within one dimension.
        let groups = (bytes / 16).div_ceil(WORKGROUP as u64).min(4096) as u32;
        let dispatch = ctx.dispatch(pipeline, &[(&src).into(), (&dst).into()], [groups, 1, 1]);
        Ok(Self { dispatch, bytes, _buffers: [src, dst] })
    }

    /// Bytes moved per run: each byte is read once and written once.
    pub fn bytes_moved(&self) -> u64 {
        2 * self.bytes
    }
}
