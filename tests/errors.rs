//! Bad shapes and sizes give typed errors naming what failed, never a panic.

mod common;

use common::{context, context_with};
use qgpu::gpu::{BackendChoice, ContextOptions, GpuError};
use qgpu::ops::{linear, plan_linear, GpuMatrix, GpuTensor, LinearKernel, MatvecKernel};
use qgpu::quant::{reference, Format};
use qgpu::tensor::ShapeError;
use qgpu::Error;

fn weights(n: usize, k: usize) -> qgpu::quant::QuantMatrix {
    reference::quantize(Format::Q4_0, n, k, &vec![0.5; n * k]).unwrap()
}

#[test]
fn mismatched_shapes_are_rejected_before_dispatch() {
    let Some(ctx) = context() else { return };
    let w = GpuMatrix::upload(&ctx, weights(3, 64).as_ref()).unwrap();
    let x = GpuTensor::zeros(&ctx, 2, 32).unwrap();
    let y = GpuTensor::zeros(&ctx, 2, 3).unwrap();
    let e = pollster::block_on(linear(&ctx, &w, &x, &y, None)).unwrap_err();
    assert!(matches!(e, Error::Shape(ShapeError::Mismatch { what: "x columns (K)", expected: 64, actual: 32, .. })), "{e}");

    let x = GpuTensor::zeros(&ctx, 2, 64).unwrap();
    let y = GpuTensor::zeros(&ctx, 2, 4).unwrap();
    let e = pollster::block_on(linear(&ctx, &w, &x, &y, None)).unwrap_err();
    assert!(matches!(e, Error::Shape(ShapeError::Mismatch { what: "y columns (N)", expected: 3, actual: 4, .. })), "{e}");

    let y = GpuTensor::zeros(&ctx, 1, 3).unwrap();
    let e = pollster::block_on(linear(&ctx, &w, &x, &y, None)).unwrap_err();
    assert!(matches!(e, Error::Shape(ShapeError::Mismatch { what: "y rows (M)", expected: 2, actual: 1, .. })), "{e}");
}

/// The integer-dot matvec handles one pass of at most eight rows; the others run more rows as
/// several passes, and a CPU adapter picks those passes up to 32 rows.
#[test]
fn integer_dot_matvec_takes_at_most_eight_rows() {
    let Some(ctx) = context() else { return };
    // Native contexts always offer it (naga polyfills dot4I8Packed).
    assert!(ctx.capabilities().integer_dot);
    let w = reference::quantize(Format::Q8_0, 3, 32, &vec![0.5; 3 * 32]).unwrap();
    let w = GpuMatrix::upload(&ctx, w.as_ref()).unwrap();
    let x = GpuTensor::zeros(&ctx, 9, 32).unwrap();
    let y = GpuTensor::zeros(&ctx, 9, 3).unwrap();
    let kernel = Some(LinearKernel::Matvec(MatvecKernel::IntegerDot));
    let e = pollster::block_on(plan_linear(&ctx, &w, &x, &y, kernel)).err().unwrap();
    assert!(matches!(e, Error::Shape(ShapeError::TooLarge { what: "integer-dot matvec rows (M)", actual: 9, max: 8, .. })), "{e}");
    // A step of 16 weights on rows of 40 (F32 rows need only be a multiple of 8).
    let f32_w = GpuMatrix::upload(&ctx, reference::quantize(Format::F32, 3, 40, &[0.5; 120]).unwrap().as_ref()).unwrap();
    let (x40, y3) = (GpuTensor::zeros(&ctx, 1, 40).unwrap(), GpuTensor::zeros(&ctx, 1, 3).unwrap());
    let wide = Some(LinearKernel::MatvecVariant(qgpu::ops::MatvecVariant { kernel: MatvecKernel::Lane, workgroup: 64, step: 16 }));
    let e = pollster::block_on(plan_linear(&ctx, &f32_w, &x40, &y3, wide)).err().unwrap();
    assert!(matches!(e, Error::Shape(ShapeError::NotMultiple { actual: 40, multiple: 16, .. })), "{e}");
    // Nine rows with an exact matvec variant: two passes.
    let plan = pollster::block_on(plan_linear(&ctx, &w, &x, &y, Some(LinearKernel::Matvec(MatvecKernel::Lane)))).unwrap();
    assert_eq!(plan.dispatches.len(), 2);
    // CPU adapters run passes up to a format's bound (128 rows with subgroups, but 32 for the
    // 32-weight sub-block formats), GPUs the matmul beyond 8 rows.
    let caps = ctx.capabilities();
    let passes = LinearKernel::Matvec(MatvecKernel::preferred(caps));
    for (format, bound) in [(Format::Q4_0, if caps.subgroups { 128 } else { 32 }), (Format::Q4_K, 32)] {
        assert_eq!(qgpu::ops::cpu_matvec_rows(caps, format), bound, "{format}");
        let expected = if caps.cpu_device { passes } else { LinearKernel::Matmul };
        assert_eq!(qgpu::ops::default_kernel(&ctx, bound, format), expected, "{format}");
        assert_eq!(qgpu::ops::default_kernel(&ctx, bound + 1, format), LinearKernel::Matmul, "{format}");
    }
    assert_eq!(qgpu::ops::default_kernel(&ctx, 8, Format::Q4_K), passes);
}

#[test]
fn empty_tensors_are_rejected() {
    let Some(ctx) = context() else { return };
    let e = GpuTensor::from_slice(&ctx, 0, 4, &[]).err().unwrap();
    assert!(matches!(e, Error::Shape(ShapeError::Empty { rows: 0, cols: 4, .. })), "{e}");
    let e = GpuTensor::from_slice(&ctx, 2, 4, &[0.0; 7]).err().unwrap();
    assert!(matches!(e, Error::Shape(ShapeError::DataLength { actual: 7, .. })), "{e}");
}

#[test]
fn a_row_larger_than_a_binding_is_a_typed_error() {
    let Some(ctx) = context_with(ContextOptions { max_binding_size: Some(4096), ..Default::default() }) else { return };
    // One F32 row of 2048 values is 8 KiB, twice the forced binding limit.
    let w = reference::quantize(Format::F32, 2, 2048, &vec![1.0; 4096]).unwrap();
    let e = GpuMatrix::upload(&ctx, w.as_ref()).err().unwrap();
    assert!(matches!(e, Error::Gpu(GpuError::BindingTooLarge { what: "one weight row", bytes: 8192, limit: 4096 })), "{e}");
    // Activations larger than a binding, likewise.
    let w = GpuMatrix::upload(&ctx, weights(2, 256).as_ref()).unwrap();
    let x = GpuTensor::zeros(&ctx, 8, 256).unwrap();
    let y = GpuTensor::zeros(&ctx, 8, 2).unwrap();
    let e = pollster::block_on(linear(&ctx, &w, &x, &y, None)).unwrap_err();
    assert!(matches!(e, Error::Gpu(GpuError::BindingTooLarge { what: "activations x", .. })), "{e}");
}

#[test]
fn unknown_backend_names_are_typed_errors() {
    let e = "vulkan2".parse::<BackendChoice>().unwrap_err();
    assert!(matches!(e, GpuError::UnknownBackend { ref name } if name == "vulkan2"));
    assert_eq!("VK".parse::<BackendChoice>().unwrap(), BackendChoice::Vulkan);
}

#[test]
fn a_buffer_beyond_the_device_limit_is_a_typed_error() {
    let Some(ctx) = context() else { return };
    let limit = ctx.limits().max_buffer_size;
    let e = ctx.zeroed_buffer("huge", limit + 4).unwrap_err();
    assert!(matches!(e, GpuError::BufferTooLarge { what: "huge", .. }), "{e}");
}

#[test]
fn a_pipeline_the_driver_rejects_is_a_shader_error() {
    use qgpu::gpu::{Constant, Kernel, PipelineKey};
    let Some(ctx) = context() else { return };
    // An override the module does not declare fails pipeline validation.
    let key = PipelineKey { kernel: Kernel::Copy, constants: vec![Constant { name: "NOT_AN_OVERRIDE", value: 1 }] };
    let e = pollster::block_on(ctx.pipeline(&key)).err().unwrap();
    assert!(matches!(e, GpuError::Shader { shader: "copy.wgsl", entry: "copy", .. }), "{e}");
    // The context still works afterwards.
    let key = PipelineKey { kernel: Kernel::Copy, constants: vec![Constant { name: "WORKGROUP", value: 64 }] };
    assert!(pollster::block_on(ctx.pipeline(&key)).is_ok());
}

#[test]
fn a_lost_device_is_a_typed_error() {
    let Some(ctx) = context() else { return };
    let w = GpuMatrix::upload(&ctx, weights(3, 32).as_ref()).unwrap();
    let x = GpuTensor::zeros(&ctx, 1, 32).unwrap();
    let y = GpuTensor::zeros(&ctx, 1, 3).unwrap();
    ctx.destroy();
    let e = pollster::block_on(linear(&ctx, &w, &x, &y, None)).unwrap_err();
    assert!(matches!(e, Error::Gpu(GpuError::DeviceLost { .. })), "{e}");
    let e = GpuTensor::zeros(&ctx, 1, 4).err().unwrap();
    assert!(matches!(e, Error::Gpu(GpuError::DeviceLost { .. })), "{e}");
}
