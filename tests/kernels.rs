//! Every kernel × format × variant against the CPU oracle in `quant::reference`, with seeded
//! random data on odd shapes. Runs on whatever adapter is found (lavapipe in CI).

mod common;

use common::{compare, context, context_with};
use qgpu::quant::reference::TestRng as Rng;
use qgpu::gpu::{Context, ContextOptions};
use qgpu::ops::{linear, plan_embed, GpuIds, GpuMatrix, GpuTensor, LinearKernel, MatvecKernel, MatvecVariant, CPU_MATVEC_PASS_ROWS};
use qgpu::quant::{reference, Format, QuantMatrix};

/// Relative L2 error allowed against the f64 oracle: every path accumulates in f32.
const F32_PATH_TOLERANCE: f64 = 1e-5;
/// Per-element bound (in RMS units of the output) used only to point at the first bad index.
const ELEMENT_TOLERANCE: f64 = 1e-3;

const ROWS_M: [usize; 6] = [1, 2, 3, 17, 64, 129];
// Odd N from 1 to 1031 (many workgroups, a ragged last one); K from one block to 131 (an odd
// count, several loop trips of every step). 257 rows and K = 1536 (48 blocks)
// were cut to keep the sweep inside the test budget: they added no path these miss.
const OUTPUTS_N: [usize; 5] = [1, 3, 17, 67, 1031];
const INPUTS_K: [usize; 4] = [32, 96, 576, 4192];
/// K for the K-quants (Q4_K, Q6_K), whose rows are whole super-blocks of 256 values (GGUF never
/// splits a block across rows, and llama.cpp only picks a K-quant for tensors with such rows):
/// 1, 3 and 17 super-blocks, so odd counts of blocks per row (and of Q6_K's f16 scales, packed
/// two a word) are covered.
const INPUTS_K_SUPER: [usize; 3] = [256, 768, 4352];
/// K for NF4 and FP4, whose blocks are 64 values (bitsandbytes' default): 1, 3, 9 and 65 blocks
/// a row.
const INPUTS_K_64: [usize; 4] = [64, 192, 576, 4160];

/// Every exact kernel: the matmul, and each matvec variant (in passes of at most
/// `MATVEC_MAX_ROWS` rows when M is larger) up to `CPU_MATVEC_PASS_ROWS` (CPU adapters get
/// passes up to `CPU_SUBGROUP_PASS_ROWS`, but 17 rows already runs three passes, the last one
/// partial, and a pass reads only its own rows whatever M is); for 1 and
/// 17 rows also the wider steps (16 and 32 weights an invocation takes per iteration) where K
/// allows them (but four rows a subgroup, whose steps are the one-row kernel's code). The matmul
/// runs on one row, a partial tile (17), one whole tile (64) and three tiles, the last partial
/// (129); 3 rows are a partial tile as 17 is, and cost the matmul as much as a whole tile.
fn kernels_for(ctx: &Context, format: Format, m: usize, k: usize) -> Vec<LinearKernel> {
    let exact = MatvecKernel::ALL.into_iter().filter(|v| v.supported(ctx.capabilities()) && !v.quantizes_activations());
    let mut kernels = Vec::new();
    if m != 3 {
        kernels.push(LinearKernel::Matmul);
    }
    if m > CPU_MATVEC_PASS_ROWS {
        return kernels;
    }
    kernels.extend(exact.clone().map(LinearKernel::Matvec));
    if m == 1 || m == 17 {
        for step in [16, 32] {
            kernels.extend(
                exact
                    .clone()
                    // Four rows a subgroup takes its steps through the same accumulate_span.
                    .filter(|&kernel| kernel != MatvecKernel::SubgroupRows)
                    .map(|kernel| MatvecVariant { kernel, workgroup: 64, step })
                    .filter(|v| v.supported(ctx) && v.handles(format, k))
                    .map(LinearKernel::MatvecVariant),
            );
        }
    }
    kernels
}

fn check_case(ctx: &Context, rng: &mut Rng, w: &QuantMatrix, gw: &GpuMatrix, m: usize) {
    let (n, k) = (w.rows(), w.cols());
    let x = rng.vec(m * k);
    let want = reference::matmul(&x, m, w.as_ref());
    let gx = GpuTensor::from_slice(ctx, m, k, &x).unwrap();
    for kernel in kernels_for(ctx, w.format(), m, k) {
        let gy = GpuTensor::zeros(ctx, m, n).unwrap();
        pollster::block_on(linear(ctx, gw, &gx, &gy, Some(kernel))).unwrap();
        let got = pollster::block_on(gy.read(ctx)).unwrap();
        let (rel, first) = compare(&got, &want, ELEMENT_TOLERANCE);
        assert!(
            (rel <= F32_PATH_TOLERANCE && first.is_none()) || within_f32_rounding(&got, &want, &x, w, m),
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

/// Whether every output is within f32 rounding of the oracle: |got - want| at most 4·√K ulps of
/// Σ|x·w| over its K terms. The relative L2 bound above is measured against the result, and a
/// few outputs whose terms cancel (N = 1 leaves no other row to average with) can fail it while
/// the kernel is exact to rounding; a wrong weight still misses this bound by orders of magnitude.
fn within_f32_rounding(got: &[f32], want: &[f64], x: &[f32], w: &QuantMatrix, m: usize) -> bool {
    let (n, k) = (w.rows(), w.cols());
    let wd = reference::dequantize(w.as_ref());
    let bound = 4.0 * (k as f64).sqrt() * f32::EPSILON as f64;
    (0..m * n).all(|i| {
        let (r, j) = (i / n, i % n);
        let scale: f64 = x[r * k..(r + 1) * k].iter().zip(&wd[j * k..(j + 1) * k]).map(|(&a, &b)| (a as f64 * b as f64).abs()).sum();
        (got[i] as f64 - want[i]).abs() <= bound * scale
    })
}

fn format_matches_oracle(format: Format, seed: u64) {
    let Some(ctx) = context() else { return };
    let mut rng = Rng::new(seed);
    let inputs: &[usize] = match format.k_multiple() {
        256 => &INPUTS_K_SUPER,
        64 => &INPUTS_K_64,
        _ => &INPUTS_K,
    };
    for &k in inputs {
        assert_eq!(k % format.k_multiple(), 0, "{format}: K = {k}");
        for &n in &OUTPUTS_N {
            let w = reference::quantize(format, n, k, &rng.vec(n * k)).unwrap();
            let gw = GpuMatrix::upload(&ctx, w.as_ref()).unwrap();
            let bits = gw.gpu_bytes() as f64 * 8.0 / (n * k) as f64;
            assert!(bits >= format.bits_per_weight(), "{format}: {bits} bits a weight on the GPU");
            for &m in &ROWS_M {
                // Two row counts are left out to keep the sweep short: M = 2 (one partial matvec
                // pass, as M = 3), and from 17 rows on the largest matrix (K > 4000 by N = 1031,
                // half of the sweep's work; 67 rows at the same K cover its multi-pass matvec
                // and two matmul column tiles). Their activations are still drawn. (M = 7, a
                // partial pass as M = 3, is no longer in the list.)
                if m == 2 || (k > 4000 && n == 1031 && m >= 17) {
                    rng.vec(m * k);
                    continue;
                }
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
fn q5_0_weights_match_oracle() {
    format_matches_oracle(Format::Q5_0, 13);
}
#[test]
fn q5_1_weights_match_oracle() {
    format_matches_oracle(Format::Q5_1, 21);
}
#[test]
fn bf16_weights_match_oracle() {
    format_matches_oracle(Format::BF16, 15);
}

#[test]
fn q5_k_weights_match_oracle() {
    format_matches_oracle(Format::Q5_K, 17);
}
#[test]
fn q3_k_weights_match_oracle() {
    format_matches_oracle(Format::Q3_K, 18);
}
#[test]
fn q2_k_weights_match_oracle() {
    format_matches_oracle(Format::Q2_K, 19);
}
#[test]
fn iq4_xs_weights_match_oracle() {
    format_matches_oracle(Format::IQ4_XS, 22);
}

#[test]
fn mxfp4_weights_match_oracle() {
    format_matches_oracle(Format::MXFP4, 24);
}

#[test]
fn nf4_weights_match_oracle() {
    format_matches_oracle(Format::NF4, 25);
}

#[test]
fn fp4_weights_match_oracle() {
    format_matches_oracle(Format::FP4, 26);
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
            // One quantize pass feeds every chunk's dispatch.
            if format == Format::Q8_0 && integer_dot_available(&ctx) {
                check_integer_dot(&ctx, &w, &gw, &rng.vec(m * k), m);
            }
        }
    }
}

/// The embedding lookup of every format returns the reference's dequantized rows, also from a
/// table split over several bindings (each chunk writes only the tokens whose rows it holds).
#[test]
fn embedding_lookup_matches_dequantized_rows() {
    const LIMIT: u64 = 16 * 1024;
    for options in [ContextOptions::default(), ContextOptions { max_binding_size: Some(LIMIT), ..Default::default() }] {
        let split = options.max_binding_size.is_some();
        let Some(ctx) = context_with(options) else { return };
        let mut rng = Rng::new(23);
        for format in Format::ALL {
            let (vocab, dim) = (if split { 1031 } else { 67 }, 576usize.next_multiple_of(format.k_multiple()));
            let w = reference::quantize(format, vocab, dim, &rng.vec(vocab * dim)).unwrap();
            let table = GpuMatrix::upload(&ctx, w.as_ref()).unwrap();
            assert_eq!(table.chunk_count() > 1, split, "{format}: {} chunks", table.chunk_count());
            // Four tokens, so the output (4 × 768 f32) fits the 16 KiB binding too.
            let ids = [vocab as u32 - 1, 0, vocab as u32 / 2, 0];
            let gids = GpuIds::new(&ctx, ids.len()).unwrap();
            gids.write(&ctx, &ids).unwrap();
            let out = GpuTensor::zeros(&ctx, ids.len(), dim).unwrap();
            let plan = pollster::block_on(plan_embed(&ctx, &table, &gids, &out, ids.len())).unwrap();
            pollster::block_on(ctx.run(&plan.iter().collect::<Vec<_>>())).unwrap();
            let got = pollster::block_on(out.read(&ctx)).unwrap();
            let want = reference::dequantize(w.as_ref());
            for (t, &id) in ids.iter().enumerate() {
                let row = &want[id as usize * dim..(id as usize + 1) * dim];
                for (c, (&g, &r)) in got[t * dim..(t + 1) * dim].iter().zip(row).enumerate() {
                    // A fused multiply-add may round d·q − m once instead of twice.
                    assert!((g - r).abs() <= 1e-6 * r.abs().max(1.0), "{format} token {t} (id {id}) col {c}: got {g}, want {r}");
                }
            }
        }
    }
}

/// Activations quantized to int8 per block of 32 exactly as quantize_x.wgsl does: f32 scale
/// d = amax / 127, q = round_ties_even(x · 127 / amax). Also returns, per value, whether
/// x · 127 / amax lies so near a rounding boundary that the GPU's division (WGSL allows 2.5 ULP)
/// may round it the other way.
fn quantize_activations(x: &[f32]) -> (Vec<i8>, Vec<f32>, Vec<bool>) {
    let (mut q, mut d, mut near_tie) = (Vec::with_capacity(x.len()), Vec::new(), Vec::with_capacity(x.len()));
    for block in x.chunks(32) {
        let amax = block.iter().fold(0.0f32, |a, v| a.max(v.abs()));
        d.push(amax / 127.0);
        let inv = if amax > 0.0 { 127.0 / amax } else { 0.0 };
        for v in block {
            let t = v * inv;
            q.push(t.round_ties_even().clamp(-127.0, 127.0) as i8);
            near_tie.push(((t.abs().fract()) - 0.5).abs() < 1e-4);
        }
    }
    (q, d, near_tie)
}

/// Weights the integer-dot kernel takes, from the GGUF bytes, as the integers it multiplies and
/// each block's scale and offset: Q8_0 (34-byte blocks: d, 32 int8), Q4_0 (18: d, 16 bytes of
/// two nibbles, value n − 8) and Q4_1 (20: d, m, nibbles, value d · n + m).
fn integer_blocks(w: &QuantMatrix) -> (Vec<i32>, Vec<f32>, Vec<f32>) {
    let (mut q, mut d, mut m) = (Vec::new(), Vec::new(), Vec::new());
    let f16 = |b: &[u8]| half::f16::from_le_bytes([b[0], b[1]]).to_f32();
    let (size, offset) = match w.format() {
        Format::Q8_0 => (34, 0),
        Format::Q4_0 => (18, -8),
        Format::Q4_1 => (20, 0),
        other => panic!("no integer-dot kernel for {other}"),
    };
    for block in w.data().chunks(size) {
        d.push(f16(block));
        m.push(if w.format() == Format::Q4_1 { f16(&block[2..]) } else { 0.0 });
        match w.format() {
            Format::Q8_0 => q.extend(block[2..].iter().map(|&b| b as i8 as i32)),
            _ => {
                let nibbles = &block[size - 16..];
                q.extend(nibbles.iter().map(|&b| (b & 15) as i32 + offset));
                q.extend(nibbles.iter().map(|&b| (b >> 4) as i32 + offset));
            }
        }
    }
    (q, d, m)
}

/// Runs the integer-dot kernel (int8 activations, dot4I8Packed) on `x` and checks it against (a) the f64 oracle,
/// within a bound derived from activation rounding, and (b) a CPU emulation of the same
/// integer arithmetic, within 1e-5.
///
/// Bound for (a): the kernel computes ŷ_n = Σ_k w_nk x̂_k with x̂_k = d_x(b) q_k, where
/// round-to-nearest gives |x̂_k − x_k| ≤ d_x(b)/2 for k in block b (d_x(b) = amax_b / 127; the
/// clamp to ±127 never bites since |x_k| ≤ amax_b). The weights are the same dequantized values
/// the oracle uses, so |ŷ_n − y_n| ≤ Σ_k |w_nk| d_x(b(k))/2 =: B_n, plus f32 accumulation error
/// (≤ 1e-5 · Σ_k |w_nk x_k| for these K). Hence relative L2 error ≤ ‖B + slack‖ / ‖y‖, computed
/// per case; every element is also checked against its own B_n.
/// Returns the relative L2 error against the oracle, its bound, and how many activations lay
/// near a rounding tie.
fn check_integer_dot(ctx: &Context, w: &QuantMatrix, gw: &GpuMatrix, x: &[f32], m: usize) -> (f64, f64, usize) {
    let (n, k) = (w.rows(), w.cols());
    let wd = reference::dequantize(w.as_ref());
    let (wq, wscale, woffset) = integer_blocks(w);
    let want = reference::matmul(x, m, w.as_ref());
    let gx = GpuTensor::from_slice(ctx, m, k, x).unwrap();
    let gy = GpuTensor::zeros(ctx, m, n).unwrap();
    pollster::block_on(linear(ctx, gw, &gx, &gy, Some(LinearKernel::Matvec(MatvecKernel::IntegerDot)))).unwrap();
    let got = pollster::block_on(gy.read(ctx)).unwrap();
    let (xq, xd, tie) = quantize_activations(x);
    let what = format!("M={m} N={n} K={k}");
    let (mut bound2, mut err2, mut norm2, mut emu_err2, mut emu_norm2) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for r in 0..m {
        for j in 0..n {
            let i = r * n + j;
            // b: the rounding bound B; slack: f32 accumulation; emu: the same integer arithmetic
            // in the same f32 order; allow: what near-tie activations may change.
            let (mut b, mut slack, mut emu, mut allow) = (0.0f64, 0.0f64, 0.0f32, 0.0f64);
            for blk in 0..k / 32 {
                let d_x = xd[r * k / 32 + blk];
                let (mut isum, mut sum_x) = (0i32, 0i32);
                for c in blk * 32..blk * 32 + 32 {
                    let wv = wd[j * k + c] as f64;
                    b += wv.abs() * d_x as f64 / 2.0;
                    slack += 1e-5 * (wv * x[r * k + c] as f64).abs();
                    isum += wq[j * k + c] * xq[r * k + c] as i32;
                    sum_x += xq[r * k + c] as i32;
                    if tie[r * k + c] {
                        allow += (wv * d_x as f64).abs();
                    }
                }
                let wb = j * k / 32 + blk;
                // The kernel's f32 order: Q4_1's offset term after the scaled integer sum. A
                // compiler may fuse a product into the next addition, which changes the result
                // by at most an f32 rounding of that product.
                let scaled = isum as f32 * wscale[wb] * d_x;
                let offset = if w.format() == Format::Q4_1 { woffset[wb] * d_x * sum_x as f32 } else { 0.0 };
                emu += scaled + offset;
                allow += f32::EPSILON as f64 * (scaled.abs() + offset.abs()) as f64;
            }
            let e = (got[i] as f64 - want[i]).abs();
            assert!(got[i].is_finite() && e <= b + slack, "{what} y[{r},{j}]: got {}, oracle {}, bound {b:e}", got[i], want[i]);
            bound2 += (b + slack).powi(2);
            err2 += e * e;
            norm2 += want[i] * want[i];
            let emu_e = ((got[i] as f64 - emu as f64).abs() - allow).max(0.0);
            emu_err2 += emu_e * emu_e;
            emu_norm2 += (emu as f64).powi(2);
        }
    }
    let norm2 = f64::max(norm2, f64::MIN_POSITIVE);
    let (rel, rel_bound) = ((err2 / norm2).sqrt(), (bound2 / norm2).sqrt());
    assert!(rel <= rel_bound, "{what}: relative L2 error {rel:e} above the int8 bound {rel_bound:e}");
    let emu_rel = (emu_err2 / emu_norm2.max(f64::MIN_POSITIVE)).sqrt();
    assert!(emu_rel <= 1e-5, "{what}: relative L2 error {emu_rel:e} against the CPU emulation of the integer arithmetic");
    (rel, rel_bound, tie.iter().filter(|&&t| t).count())
}

/// Whether this adapter offers the integer-dot kernel (every native one does).
fn integer_dot_available(ctx: &Context) -> bool {
    let available = ctx.capabilities().integer_dot;
    assert!(available || std::env::var("CI").as_deref() != Ok("true"), "native adapters always offer dot4I8Packed");
    available
}

#[test]
fn q8_0_integer_dot_matches_oracle_and_emulation() {
    integer_dot_matches(Format::Q8_0, 12);
}

#[test]
fn q4_0_integer_dot_matches_oracle_and_emulation() {
    integer_dot_matches(Format::Q4_0, 13);
}

#[test]
fn q4_1_integer_dot_matches_oracle_and_emulation() {
    integer_dot_matches(Format::Q4_1, 14);
}

fn integer_dot_matches(format: Format, seed: u64) {
    let Some(ctx) = context() else { return };
    if !integer_dot_available(&ctx) {
        return;
    }
    let mut rng = Rng::new(seed);
    let (mut worst_oracle, mut worst_bound, mut near_ties, mut values) = (0.0f64, 0.0f64, 0usize, 0usize);
    for k in [32usize, 96, 576, 1536] {
        for n in [1usize, 17, 67, 257] {
            let w = reference::quantize(format, n, k, &rng.vec(n * k)).unwrap();
            let gw = GpuMatrix::upload(&ctx, w.as_ref()).unwrap();
            for m in [1usize, 3, 7, 8] {
                let mut x = rng.vec(m * k);
                if k > 32 {
                    // An all-zero block (amax = 0) must contribute zero, not NaN.
                    x[..32].fill(0.0);
                }
                let (rel, bound, ties) = check_integer_dot(&ctx, &w, &gw, &x, m);
                worst_oracle = worst_oracle.max(rel);
                worst_bound = worst_bound.max(bound);
                near_ties += ties;
                values += x.len();
            }
        }
    }
    // The tie allowance must stay an exception, or the emulation check would prove nothing.
    assert!(near_ties * 1000 <= values, "{near_ties} of {values} activations near a rounding tie");
    eprintln!("{format} integer dot: worst relative L2 vs oracle {worst_oracle:e} (bound {worst_bound:e}); {near_ties}/{values} near ties");
}
