//! Every kernel × format × variant against the CPU oracle in `quant::reference`, with seeded
//! random data on odd shapes. Runs on whatever adapter is found (lavapipe in CI).

mod common;

use common::{compare, context, context_with};
use qgpu::quant::reference::TestRng as Rng;
use qgpu::gpu::{Context, ContextOptions};
use qgpu::ops::{linear, GpuMatrix, GpuTensor, LinearKernel, MatvecKernel};
use qgpu::quant::{reference, Format, QuantMatrix};

/// Relative L2 error allowed against the f64 oracle: every path accumulates in f32.
const F32_PATH_TOLERANCE: f64 = 1e-5;
/// Per-element bound (in RMS units of the output) used only to point at the first bad index.
const ELEMENT_TOLERANCE: f64 = 1e-3;

const ROWS_M: [usize; 7] = [1, 2, 3, 7, 17, 64, 129];
const OUTPUTS_N: [usize; 6] = [1, 3, 17, 67, 257, 1031];
const INPUTS_K: [usize; 5] = [32, 96, 576, 1536, 4192];
/// K for the K-quants (Q4_K, Q6_K), whose rows are whole super-blocks of 256 values (GGUF never
/// splits a block across rows, and llama.cpp only picks a K-quant for tensors with such rows):
/// 1, 3, 6 and 17 super-blocks, so odd counts of blocks per row (and of Q6_K's f16 scales,
/// packed two a word) are covered.
const INPUTS_K_SUPER: [usize; 4] = [256, 768, 1536, 4352];

fn kernels_for(ctx: &Context, m: usize) -> Vec<LinearKernel> {
    let mut kernels = vec![LinearKernel::Matmul];
    if m <= qgpu::ops::MATVEC_MAX_ROWS {
        kernels.extend(
            MatvecKernel::ALL
                .into_iter()
                .filter(|v| v.supported(ctx.capabilities()))
                .map(LinearKernel::Matvec),
        );
    }
    kernels
}

fn check_case(ctx: &Context, rng: &mut Rng, w: &QuantMatrix, gw: &GpuMatrix, m: usize) {
    let (n, k) = (w.rows(), w.cols());
    let x = rng.vec(m * k);
    let want = reference::matmul(&x, m, w.as_ref());
    let gx = GpuTensor::from_slice(ctx, m, k, &x).unwrap();
    for kernel in kernels_for(ctx, m) {
        let gy = GpuTensor::zeros(ctx, m, n).unwrap();
        pollster::block_on(linear(ctx, gw, &gx, &gy, Some(kernel))).unwrap();
        let got = pollster::block_on(gy.read(ctx)).unwrap();
        let (rel, first) = compare(&got, &want, ELEMENT_TOLERANCE);
        assert!(
            rel <= F32_PATH_TOLERANCE && first.is_none(),
            "{} {kernel:?} M={m} N={n} K={k}: relative L2 error {rel:e}; first mismatch at index {:?} (row {:?}, col {:?}): got {:?}, want {:?}",
            w.format(),
            first,
            first.map(|i| i / n),
            first.map(|i| i % n),
            first.map(|i| got[i]),
            first.map(|i| want[i]),
        );
    }
}

fn format_matches_oracle(format: Format, seed: u64) {
    let Some(ctx) = context() else { return };
    let mut rng = Rng::new(seed);
    let inputs: &[usize] = if format.k_multiple() == 256 { &INPUTS_K_SUPER } else { &INPUTS_K };
    for &k in inputs {
        assert_eq!(k % format.k_multiple(), 0, "{format}: K = {k}");
        for &n in &OUTPUTS_N {
            let w = reference::quantize(format, n, k, &rng.vec(n * k)).unwrap();
            let gw = GpuMatrix::upload(&ctx, w.as_ref()).unwrap();
            assert_eq!(gw.gpu_bytes() as f64 * 8.0 / (n * k) as f64 >= format.bits_per_weight(), true);
            for &m in &ROWS_M {
                check_case(&ctx, &mut rng, &w, &gw, m);
            }
        }
    }
}

#[test]
fn f32_weights_match_oracle() {
    format_matches_oracle(Format::F32, 1);
}
#[test]
fn f16_weights_match_oracle() {
    format_matches_oracle(Format::F16, 2);
}
#[test]
fn q8_0_weights_match_oracle() {
    format_matches_oracle(Format::Q8_0, 3);
}
#[test]
fn q4_0_weights_match_oracle() {
    format_matches_oracle(Format::Q4_0, 4);
}
#[test]
fn q4_1_weights_match_oracle() {
    format_matches_oracle(Format::Q4_1, 5);
}

#[test]
fn q4_k_weights_match_oracle() {
    format_matches_oracle(Format::Q4_K, 6);
}
#[test]
fn q6_k_weights_match_oracle() {
    format_matches_oracle(Format::Q6_K, 7);
}

#[test]
fn iq4_nl_weights_match_oracle() {
    format_matches_oracle(Format::IQ4_NL, 8);
}

#[test]
fn gpu_bytes_equal_format_bits() {
    let Some(ctx) = context() else { return };
    let (n, k) = (64, 4096);
    for format in Format::ALL {
        let w = reference::quantize(format, n, k, &Rng::new(9).vec(n * k)).unwrap();
        let gw = GpuMatrix::upload(&ctx, w.as_ref()).unwrap();
        assert_eq!(gw.gpu_bytes(), w.data().len() as u64, "{format}: GPU bytes must equal GGUF bytes");
        assert_eq!(gw.gpu_bytes() as f64 * 8.0 / (n * k) as f64, format.bits_per_weight());
    }
}

/// A binding limit far below the weights' size forces a split by rows; the product is the same.
#[test]
fn matrices_larger_than_a_binding_are_split_by_rows() {
    const LIMIT: u64 = 16 * 1024;
    let Some(ctx) = context_with(ContextOptions { max_binding_size: Some(LIMIT), ..Default::default() }) else { return };
    assert_eq!(ctx.max_binding_size(), LIMIT);
    let mut rng = Rng::new(11);
    let n = 1031;
    for format in Format::ALL {
        // 576 for the 32-wide formats (18 blocks a row); 768 for the K-quants, whose rows are
        // whole super-blocks of 256 (3 a row, so chunks of odd row counts hold odd block counts).
        let k = 576usize.next_multiple_of(format.k_multiple());
        let w = reference::quantize(format, n, k, &rng.vec(n * k)).unwrap();
        let gw = GpuMatrix::upload(&ctx, w.as_ref()).unwrap();
        assert!(gw.chunk_count() > 1, "{format}: {} bytes fit one {LIMIT}-byte binding?", gw.gpu_bytes());
        for m in [1, 3] {
            check_case(&ctx, &mut rng, &w, &gw, m);
        }
    }
}
