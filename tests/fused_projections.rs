//! Several weight matrices writing one block of planar output parts (a fused Q|K|V or
//! gate|up projection): stacked where they can be, apart where they cannot, each part against
//! the CPU oracle for every kernel and row count the decoder uses.

mod common;

use common::{compare, context};
use qgpu::gpu::Context;
use qgpu::ops::{plan_linear_parts, GpuMatrix, GpuTensor, LinearKernel};
use qgpu::quant::reference::TestRng as Rng;
use qgpu::quant::{reference, Format, QuantMatrix};

/// Runs `matrices` (each with its first output feature) into a block of `widths` parts for
/// `m` rows of `x`, and checks every part against the oracle of the matrix rows it holds.
fn check(ctx: &Context, rng: &mut Rng, parts: &[QuantMatrix], matrices: &[(GpuMatrix, usize)], widths: &[usize], m: usize, kernel: Option<LinearKernel>) {
    let k = parts[0].cols();
    let x = rng.vec(m * k);
    let gx = GpuTensor::from_slice(ctx, m, k, &x).unwrap();
    // More block rows than x rows, as the decoder's blocks have: parts start a block apart.
    let block_rows = 64;
    let block = GpuTensor::zeros(ctx, block_rows, widths.iter().sum()).unwrap();
    let views = block.planar_parts(ctx, widths).unwrap();
    let mut dispatches = Vec::new();
    for (w, first) in matrices {
        dispatches.extend(pollster::block_on(plan_linear_parts(ctx, w, &gx, &block, widths, *first, kernel)).unwrap().dispatches);
    }
    pollster::block_on(ctx.run(&dispatches.iter().collect::<Vec<_>>())).unwrap();
    for (i, (part, view)) in parts.iter().zip(&views).enumerate() {
        let want = reference::matmul(&x, m, part.as_ref());
        let got = pollster::block_on(view.read_rows(ctx, m)).unwrap();
        let (rel, first) = compare(&got, &want, 1e-3);
        assert!(rel <= 1e-5 && first.is_none(), "part {i} ({}) M={m} {kernel:?}: relative L2 error {rel:e}, first bad index {first:?}", part.format());
    }
}

fn upload(ctx: &Context, parts: &[QuantMatrix]) -> Vec<GpuMatrix> {
    parts.iter().map(|p| GpuMatrix::upload(ctx, p.as_ref()).unwrap()).collect()
}

/// Q|K in one Q4_0 matrix and V apart in Q8_0 (as Q4_K_M files mix them), then gate|up in one;
/// then a part of 10 rows (its Q8_0 scales end mid-word) that cannot be stacked, apart.
#[test]
fn projections_fill_planar_parts_stacked_and_apart() {
    let Some(ctx) = context() else { return };
    let mut rng = Rng::new(5);
    let k = 96;
    let q = |format, rows: usize, rng: &mut Rng| reference::quantize(format, rows, k, &rng.vec(rows * k)).unwrap();
    for m in [1, 5, 17, 40] {
        let kernels = if m == 5 { vec![None, Some(LinearKernel::Matmul)] } else { vec![None] };
        for kernel in kernels {
            // Q 24 rows, K and V 8 each.
            let parts = [q(Format::Q4_0, 24, &mut rng), q(Format::Q4_0, 8, &mut rng), q(Format::Q8_0, 8, &mut rng)];
            let gpu = upload(&ctx, &parts);
            let mut gpu = gpu.into_iter();
            let (wq, wk, wv) = (gpu.next().unwrap(), gpu.next().unwrap(), gpu.next().unwrap());
            let qk = GpuMatrix::stack_rows(&ctx, vec![wq, wk]).unwrap().ok().expect("Q and K share a format");
            assert_eq!((qk.rows(), qk.chunk_count()), (32, 1));
            check(&ctx, &mut rng, &parts, &[(qk, 0), (wv, 32)], &[24, 8, 8], m, kernel);

            let halves = [q(Format::Q4_1, 20, &mut rng), q(Format::Q4_1, 20, &mut rng)];
            let gate_up = GpuMatrix::stack_rows(&ctx, upload(&ctx, &halves)).unwrap().ok().expect("gate and up share a format");
            check(&ctx, &mut rng, &halves, &[(gate_up, 0)], &[20, 20], m, kernel);

            let uneven = [q(Format::Q8_0, 10, &mut rng), q(Format::Q8_0, 6, &mut rng)];
            let apart = GpuMatrix::stack_rows(&ctx, upload(&ctx, &uneven)).unwrap().err().expect("10 rows of Q8_0 end mid-word");
            let mut apart = apart.into_iter();
            let matrices = [(apart.next().unwrap(), 0), (apart.next().unwrap(), 10)];
            check(&ctx, &mut rng, &uneven, &matrices, &[10, 6], m, kernel);
        }
    }
}

/// Misfit blocks and matrices are shape errors, not writes out of bounds.
#[test]
fn planar_parts_and_outputs_are_checked() {
    let Some(ctx) = context() else { return };
    let mut rng = Rng::new(6);
    let w = GpuMatrix::upload(&ctx, reference::quantize(Format::Q4_0, 8, 32, &rng.vec(256)).unwrap().as_ref()).unwrap();
    let x = GpuTensor::from_slice(&ctx, 2, 32, &rng.vec(64)).unwrap();
    let block = GpuTensor::zeros(&ctx, 64, 24).unwrap();
    let plan = |block: &GpuTensor, widths: &[usize], first: usize| pollster::block_on(plan_linear_parts(&ctx, &w, &x, block, widths, first, None)).err().map(|e| e.to_string());
    // Features 20..28 of 24.
    assert!(plan(&block, &[8, 8, 8], 20).is_some_and(|e| e.contains("output features")));
    // Widths that do not add up to the block.
    assert!(plan(&block, &[8, 8], 0).is_some_and(|e| e.contains("widths")));
    // More x rows than the block holds.
    let short = GpuTensor::zeros(&ctx, 1, 24).unwrap();
    assert!(plan(&short, &[8, 8, 8], 0).is_some_and(|e| e.contains("rows")));
    assert!(plan(&block, &[8, 8, 8], 16).is_none());
    // A part that would start off the adapter's offset alignment.
    let odd = GpuTensor::zeros(&ctx, 3, 24).unwrap();
    assert!(odd.planar_parts(&ctx, &[1, 23]).is_err());
}
