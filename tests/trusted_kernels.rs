//! Kernels built without wgpu's runtime checks (`ShaderChecks::Trusted`, what release builds
//! run) against the same kernels checked and against the CPU oracle, and the host-side bounds
//! that stand in for the checks: a trusted pipeline is only dispatched with every binding's
//! size checked against what the planned shape makes it index.

mod common;

use common::{compare, context_with};
use qgpu::gpu::{Bind, Context, ContextOptions, GpuError, Kernel, PipelineKey, ShaderChecks};
use qgpu::ops::{linear, GpuMatrix, GpuTensor, LinearKernel, MatvecKernel, MatvecVariant};
use qgpu::quant::reference::TestRng as Rng;
use qgpu::quant::{reference, Format};
use std::collections::HashSet;

fn contexts() -> Option<(Context, Context)> {
    let trusted = context_with(ContextOptions { shader_checks: ShaderChecks::Trusted, ..Default::default() })?;
    let checked = context_with(ContextOptions { shader_checks: ShaderChecks::Checked, ..Default::default() })?;
    assert!(trusted.trusts_host_bounds() && !checked.trusts_host_bounds());
    Some((trusted, checked))
}

/// Every linear kernel the device runs, the integer-dot one included where `format` allows it;
/// the 32-weight step of the lane kernel where K allows it (the other variants' steps share its
/// code; tests/kernels.rs runs them all checked).
fn kernels(ctx: &Context, format: Format, k: usize) -> Vec<LinearKernel> {
    let mut all = vec![LinearKernel::Matmul];
    all.extend(MatvecKernel::ALL.into_iter().filter(|v| v.supported(ctx.capabilities()) && v.handles(format)).map(LinearKernel::Matvec));
    let wide = MatvecVariant { kernel: MatvecKernel::Lane, workgroup: 64, step: 32 };
    if wide.handles(format, k) {
        all.push(LinearKernel::MatvecVariant(wide));
    }
    all
}

/// Each linear kernel built trusted, on odd shapes of a format from each family of block
/// layouts (Q8_0, Q4_1, Q5_0, and the super-blocks of Q4_K and Q6_K), within f32 rounding of the oracle (the checked builds are held to the same in
/// tests/kernels.rs); then every host-bounded kernel the device has was built trusted, and
/// nothing else was.
#[test]
fn trusted_linear_kernels_match_the_oracle() {
    let Some((trusted, checked)) = contexts() else { return };
    let mut rng = Rng::new(41);
    // Pipelines are compiled per format and kernel, and compiling dominates here.
    let formats = [Format::Q8_0, Format::Q4_1, Format::Q5_0, Format::Q4_K, Format::Q6_K];
    for format in formats {
        let k = format.k_multiple() * 3;
        let n = 67;
        let w = reference::quantize(format, n, k, &rng.vec(n * k)).unwrap();
        let gw = GpuMatrix::upload(&trusted, w.as_ref()).unwrap();
        // One pass of one row, and two passes (8 rows, then 1).
        for m in [1usize, 9] {
            let x = rng.vec(m * k);
            let want = reference::matmul(&x, m, w.as_ref());
            let gx = GpuTensor::from_slice(&trusted, m, k, &x).unwrap();
            for kernel in kernels(&trusted, format, k) {
                let integer_dot = matches!(kernel, LinearKernel::Matvec(MatvecKernel::IntegerDot));
                if integer_dot && m > 8 {
                    continue;
                }
                let gy = GpuTensor::zeros(&trusted, m, n).unwrap();
                pollster::block_on(linear(&trusted, &gw, &gx, &gy, Some(kernel))).unwrap();
                let got = pollster::block_on(gy.read(&trusted)).unwrap();
                // The integer-dot kernel rounds activations to int8 (bounded in tests/kernels.rs).
                let (rel, _) = compare(&got, &want, 1e-3);
                assert!(rel <= if integer_dot { 2e-2 } else { 1e-5 }, "{format} {kernel:?} M={m}: relative L2 error {rel:e}");
            }
        }
    }
    let built: Vec<(Kernel, bool)> = trusted.built_pipelines().iter().map(|p| (p.kernel(), p.trusted())).collect();
    for (kernel, is_trusted) in &built {
        assert_eq!(*is_trusted, kernel.module().host_bounded(), "{kernel:?}");
    }
    let kinds: HashSet<Kernel> = built.iter().map(|(k, _)| *k).collect();
    for kernel in Kernel::ALL.into_iter().filter(|k| k.module().host_bounded()) {
        let needs_missing = (kernel.module().needs_subgroups() && !trusted.capabilities().subgroups)
            || (kernel.module().needs_integer_dot() && !trusted.capabilities().integer_dot);
        assert!(needs_missing || kinds.contains(&kernel), "host-bounded {kernel:?} never ran trusted");
    }
    // A checked context builds nothing trusted.
    let key = PipelineKey { kernel: Kernel::Matmul, constants: vec![qgpu::gpu::Constant { name: "FORMAT", value: Format::Q4_0.shader_code() }] };
    assert!(!pollster::block_on(checked.pipeline(&key)).unwrap().trusted());
}

/// A trusted pipeline cannot be dispatched without host bounds, and a binding smaller than
/// the planned shape indexes is a typed error naming the kernel and the binding.
#[test]
fn trusted_pipelines_need_host_bounds() {
    let Some((trusted, _)) = contexts() else { return };
    let format = qgpu::gpu::Constant { name: "FORMAT", value: Format::Q4_0.shader_code() };
    let pipeline = pollster::block_on(trusted.pipeline(&PipelineKey { kernel: Kernel::Matmul, constants: vec![format] })).unwrap();
    assert!(pipeline.trusted());
    let small_buffer = trusted.zeroed_buffer("small", 64).unwrap();
    let uniform_buffer = trusted.uniform_buffer("params", &[0u8; 20]);
    let (small, uniform) = (Bind::from(&small_buffer), Bind::from(&uniform_buffer));
    let refused = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        trusted.dispatch(pipeline.clone(), &[small, small, small, small, uniform], [1, 1, 1]);
    }));
    assert!(refused.is_err(), "a trusted pipeline was dispatched without host bounds");
    let bindings = [(small, 64), (small, 64), (small, 65), (small, 16), (uniform, 20)];
    match trusted.dispatch_bounded(pipeline.clone(), &bindings, [1, 1, 1]) {
        Err(GpuError::BindingTooSmall { kernel: "matmul", binding: 2, needed: 65, size: 64 }) => {}
        Err(other) => panic!("wrong error: {other}"),
        Ok(_) => panic!("a 64-byte buffer passed for 65 bytes"),
    }
    assert!(trusted.dispatch_bounded(pipeline, &[(small, 64), (small, 64), (small, 64), (small, 16), (uniform, 20)], [1, 1, 1]).is_ok());
}
