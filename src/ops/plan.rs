//! The one way ops turn a kernel, its buffers and its parameters into a [`Dispatch`].

use crate::gpu::{Bind, Constant, Context, Dispatch, Kernel, PipelineKey};
use crate::Error;

/// Binds `storage` buffers, then a uniform holding `params`, then `uniforms`, in that order:
/// every kernel declares its bindings so.
pub(crate) async fn plan(
    ctx: &Context,
    kernel: Kernel,
    constants: Vec<Constant>,
    storage: &[Bind<'_>],
    params: &[u32],
    uniforms: &[&wgpu::Buffer],
    workgroups: Workgroups<'_>,
) -> Result<Dispatch, Error> {
    let pipeline = ctx.pipeline(&PipelineKey { kernel, constants }).await?;
    let params = ctx.uniform_buffer(kernel.entry(), bytemuck::cast_slice(params));
    let mut buffers: Vec<Bind<'_>> = storage.to_vec();
    buffers.push((&params).into());
    buffers.extend(uniforms.iter().map(|&u| Bind::from(u)));
    Ok(match workgroups {
        Workgroups::Direct(groups) => ctx.dispatch(pipeline, &buffers, groups),
        Workgroups::Indirect(args) => ctx.dispatch_indirect(pipeline, &buffers, args),
    })
}

pub(crate) enum Workgroups<'a> {
    Direct([u32; 3]),
    Indirect(&'a wgpu::Buffer),
}

/// Workgroups of 64 invocations covering `count` invocations, over x and y as needed.
pub(crate) fn linear_grid(ctx: &Context, what: &'static str, count: usize) -> Result<Workgroups<'static>, Error> {
    Ok(Workgroups::Direct(ctx.workgroup_grid(what, (count as u64).div_ceil(64))?))
}
