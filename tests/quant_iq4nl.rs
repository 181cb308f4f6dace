//! IQ4_NL's CPU reference: hand-made blocks decode bit-exactly, rounding picks the nearest
//! codebook entry, the scale search beats Q4_0 at the same 4.5 bits, and importance weights
//! move the error where they should. No GPU needed.

mod common;

use half::f16;
use qgpu::loader::{GgufFile, TensorSource};
use qgpu::quant::block::{BlockIQ4_NL, QK};
use qgpu::quant::iq4nl::nearest_index;
use qgpu::quant::reference::{
    dequantize, dequantize_iq4_nl, quantize, quantize_iq4_nl, quantize_iq4_nl_weighted, TestRng, IQ4_NL_VALUES,
};
use qgpu::quant::repack::repack;
use qgpu::quant::{Format, QuantMatrix};

/// Gaussian values (Box-Muller over the seeded generator), like trained weights.
fn gaussian(rng: &mut TestRng, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let u1 = (rng.uniform() * 0.5 + 0.5).max(1e-7);
            let u2 = rng.uniform() * 0.5 + 0.5;
            (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
        })
        .collect()
}

/// ‖x − dequant(quant(x))‖ / ‖x‖.
fn relative_rms(format: Format, rows: usize, cols: usize, x: &[f32]) -> f64 {
    let q = quantize(format, rows, cols, x).unwrap();
    let y = dequantize(q.as_ref());
    let err: f64 = x.iter().zip(&y).map(|(a, b)| ((a - b) as f64).powi(2)).sum();
    let norm: f64 = x.iter().map(|a| (*a as f64).powi(2)).sum();
    (err / norm).sqrt()
}

#[test]
fn hand_made_block_decodes_bit_exactly() {
    // Byte j: low nibble j (value j → entry j), high nibble 15 − j (value j + 16 → entry 15 − j).
    let qs: [u8; 16] = std::array::from_fn(|j| j as u8 | ((15 - j as u8) << 4));
    let b = BlockIQ4_NL { d: f16::from_f32(0.25), qs };
    let mut out = [0.0f32; QK];
    dequantize_iq4_nl(&b, &mut out);
    for j in 0..16 {
        assert_eq!(out[j], 0.25 * IQ4_NL_VALUES[j] as f32);
        assert_eq!(out[j + 16], 0.25 * IQ4_NL_VALUES[15 - j] as f32);
    }
    // The same bytes through the matrix path, and the GPU repack: nibbles in value order.
    let m = QuantMatrix::new(Format::IQ4_NL, 1, 32, bytemuck::bytes_of(&b).to_vec()).unwrap();
    assert_eq!(dequantize(m.as_ref()), out.to_vec());
    let layout = repack(m.as_ref(), 0, 1);
    assert_eq!(layout.quants, vec![0x7654_3210, 0xFEDC_BA98, 0x89AB_CDEF, 0x0123_4567]);
    assert_eq!(layout.scales, vec![f16::from_f32(0.25).to_bits() as u32]);
}

#[test]
fn nearest_index_rounds_to_the_closest_entry() {
    for (i, &v) in IQ4_NL_VALUES.iter().enumerate() {
        assert_eq!(nearest_index(v as f32), i as u8);
    }
    assert_eq!(nearest_index(-1000.0), 0);
    assert_eq!(nearest_index(1000.0), 15);
    assert_eq!(nearest_index(7.1), 9); // between 1 and 13, nearer 13
    assert_eq!(nearest_index(6.9), 8);
    assert_eq!(nearest_index(7.0), 8); // a tie goes to the lower entry
}

#[test]
fn codebook_values_times_a_scale_round_trip_exactly() {
    // Values that are exactly d · codebook entries (d a power of two) come back unchanged.
    let x: Vec<f32> = (0..QK).map(|j| 0.5 * IQ4_NL_VALUES[(j * 5) % 16] as f32).collect();
    let b = quantize_iq4_nl(&x);
    let mut y = [0.0f32; QK];
    dequantize_iq4_nl(&b, &mut y);
    assert_eq!(y.to_vec(), x);
    assert_eq!(b.d.to_f32(), 0.5);
}

#[test]
fn zero_and_non_finite_blocks_give_a_zero_scale() {
    let b = quantize_iq4_nl(&[0.0; QK]);
    assert_eq!(b.d.to_f32(), 0.0);
    let mut y = [1.0f32; QK];
    dequantize_iq4_nl(&b, &mut y);
    assert!(y.iter().all(|&v| v == 0.0));
}

#[test]
fn iq4_nl_beats_q4_0_at_the_same_size() {
    assert_eq!(Format::IQ4_NL.bits_per_weight(), Format::Q4_0.bits_per_weight());
    let (rows, cols) = (64, 4096);
    let mut rng = TestRng::new(5);
    let normal = gaussian(&mut rng, rows * cols);
    let uniform = rng.vec(rows * cols);
    for (data, x) in [("gaussian", &normal), ("uniform", &uniform)] {
        let q4_0 = relative_rms(Format::Q4_0, rows, cols, x);
        let iq4 = relative_rms(Format::IQ4_NL, rows, cols, x);
        let q4_1 = relative_rms(Format::Q4_1, rows, cols, x);
        eprintln!("{data}: relative RMS error Q4_0 {q4_0:.5}, IQ4_NL {iq4:.5}, Q4_1 {q4_1:.5}");
        // The codebook is shaped for bell-shaped data; on uniform data only the scale search helps.
        let margin = if data == "gaussian" { 0.9 } else { 1.0 };
        assert!(iq4 < margin * q4_0, "{data}: IQ4_NL {iq4} vs Q4_0 {q4_0}");
    }
    // Bound in ggml's terms (RMS over [-1, 1] data, like quant_reference.rs's 4-bit bound).
    let q = quantize(Format::IQ4_NL, rows, cols, &uniform).unwrap();
    let y = dequantize(q.as_ref());
    let rms = (uniform.iter().zip(&y).map(|(a, b)| ((a - b) as f64).powi(2)).sum::<f64>() / y.len() as f64).sqrt();
    assert!(rms <= 0.04, "IQ4_NL RMS {rms}");
}

#[test]
fn importance_weights_lower_the_weighted_error() {
    let mut rng = TestRng::new(6);
    let mut wins = 0;
    let blocks = 200;
    for _ in 0..blocks {
        let x = gaussian(&mut rng, QK);
        // A few heavily weighted values, as calibration gives for channels with large inputs.
        let w: Vec<f32> = (0..QK).map(|j| if j % 7 == 0 { 50.0 } else { 1.0 }).collect();
        let weighted_error = |b: &BlockIQ4_NL| {
            let mut y = [0.0f32; QK];
            dequantize_iq4_nl(b, &mut y);
            x.iter().zip(&y).zip(&w).map(|((a, b), w)| w * (a - b) * (a - b)).sum::<f32>()
        };
        let plain = weighted_error(&quantize_iq4_nl(&x));
        let aware = weighted_error(&quantize_iq4_nl_weighted(&x, &w));
        assert!(aware <= plain * 1.02, "weighted search {aware} worse than plain {plain}");
        wins += usize::from(aware < plain);
    }
    assert!(wins > blocks / 2, "the weighted search helped in only {wins} of {blocks} blocks");
}

/// Real weights: SmolLM2's matrices (stored Q4_1, dequantized) re-quantized both ways.
#[test]
fn iq4_nl_beats_q4_0_on_smollm2_weights() {
    let path = common::model_path();
    let Ok(file) = GgufFile::open(&path) else {
        assert!(std::env::var("CI").is_err(), "model missing at {}", path.display());
        return;
    };
    let (mut q4_0, mut iq4, mut norm) = (0.0f64, 0.0f64, 0.0f64);
    for layer in [0, 14, 29] {
        for name in ["attn_q", "attn_v", "ffn_down", "ffn_up"] {
            let name = format!("blk.{layer}.{name}.weight");
            let info = file.tensor(&name).unwrap().clone();
            let x = TensorSource::tensor_f32(&file, &name).unwrap();
            let (cols, rows) = (info.dims[0] as usize, info.dims[1] as usize);
            let sq = |f: Format| {
                let y = dequantize(quantize(f, rows, cols, &x).unwrap().as_ref());
                x.iter().zip(&y).map(|(a, b)| ((a - b) as f64).powi(2)).sum::<f64>()
            };
            q4_0 += sq(Format::Q4_0);
            iq4 += sq(Format::IQ4_NL);
            norm += x.iter().map(|a| (*a as f64).powi(2)).sum::<f64>();
        }
    }
    let (q4_0, iq4) = ((q4_0 / norm).sqrt(), (iq4 / norm).sqrt());
    eprintln!("SmolLM2 (12 matrices): relative RMS error Q4_0 {q4_0:.5}, IQ4_NL {iq4:.5}");
    assert!(iq4 < q4_0, "IQ4_NL {iq4} vs Q4_0 {q4_0}");
}
