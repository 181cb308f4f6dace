//! The CPU reference against hand-worked blocks: ggml's rounding, nibble order and the GPU
//! repack layout. No GPU needed.

mod common;

use common::Rng;
use half::f16;
use qgpu::quant::block::{BlockQ4_0, BlockQ4_1, BlockQ8_0};
use qgpu::quant::reference::{dequantize, quantize, quantize_q4_0, quantize_q4_1, quantize_q8_0};
use qgpu::quant::repack::repack;
use qgpu::quant::{Format, QuantError, QuantMatrix, QuantMatrixRef};

/// ggml's bound on total quantization error for its own tests (`GGML_MAX_QUANTIZATION_TOTAL_ERROR`
/// in test-quantize-fns.cpp), as RMS error over values in [-1, 1].
const MAX_TOTAL_ERROR_4BIT: f64 = 0.002 * 20.0;
const MAX_TOTAL_ERROR_8BIT: f64 = 0.002 * 2.0;

#[test]
fn q4_0_integers_round_trip_exactly() {
    // max magnitude -8 → d = 1 exactly, q = x + 8.
    let x: Vec<f32> = (0..32).map(|i| (i % 16) as f32 - 8.0).collect();
    let b = quantize_q4_0(&x);
    assert_eq!(b.d, f16::from_f32(1.0));
    // value j in the low nibble, value j + 16 in the high nibble
    for j in 0..16 {
        assert_eq!(b.qs[j] & 0xF, (x[j] + 8.0) as u8);
        assert_eq!(b.qs[j] >> 4, (x[j + 16] + 8.0) as u8);
    }
    let m = QuantMatrix::new(Format::Q4_0, 1, 32, bytemuck::bytes_of(&b).to_vec()).unwrap();
    assert_eq!(dequantize(m.as_ref()), x);
}

#[test]
fn q4_0_keeps_sign_of_largest_magnitude() {
    // Largest magnitude is +4, so d = 4 / -8 = -0.5 and +4 maps to nibble 0.
    let mut x = vec![0.0f32; 32];
    x[3] = 4.0;
    x[5] = -2.0;
    let b = quantize_q4_0(&x);
    assert_eq!(b.d.to_f32(), -0.5);
    assert_eq!(b.qs[3] & 0xF, 0);
    assert_eq!(b.qs[5] & 0xF, 12); // -2 / -0.5 + 8.5 = 12.5 → 12
    assert_eq!(b.qs[0], 0x88); // zeros sit at 8
}

#[test]
fn q8_0_rounds_half_away_from_zero() {
    // amax 127 → d = 1, id = 1: 2.5 → 3, -2.5 → -3 (roundf), 1.49 → 1.
    let mut x = vec![0.0f32; 32];
    x[0] = 127.0;
    x[1] = 2.5;
    x[2] = -2.5;
    x[3] = 1.49;
    let b = quantize_q8_0(&x);
    assert_eq!(b.d.to_f32(), 1.0);
    assert_eq!(&b.qs[..4], &[127, 3, -3, 1]);
}

#[test]
fn q4_1_maps_min_and_max_to_0_and_15() {
    let x: Vec<f32> = (0..32).map(|i| i as f32 * 0.5 - 3.0).collect(); // -3 .. 12.5
    let b = quantize_q4_1(&x);
    assert_eq!(b.m.to_f32(), -3.0);
    assert!((b.d.to_f32() - 15.5 / 15.0).abs() < 1e-3);
    assert_eq!(b.qs[0] & 0xF, 0);
    assert_eq!(b.qs[15] >> 4, 15);
}

#[test]
fn all_zero_blocks_have_zero_scale() {
    let x = [0.0f32; 32];
    assert_eq!(quantize_q8_0(&x).d.to_f32(), 0.0);
    assert_eq!(quantize_q4_0(&x).d.to_f32(), 0.0);
    let b = quantize_q4_1(&x);
    assert_eq!((b.d.to_f32(), b.m.to_f32()), (0.0, 0.0));
}

#[test]
fn round_trip_error_within_ggml_bounds() {
    let (rows, cols) = (7, 4192);
    let x = Rng::new(42).vec(rows * cols);
    for (format, bound) in [
        (Format::F32, 0.0),
        (Format::F16, 1e-3),
        (Format::Q8_0, MAX_TOTAL_ERROR_8BIT),
        (Format::Q4_0, MAX_TOTAL_ERROR_4BIT),
        (Format::Q4_1, MAX_TOTAL_ERROR_4BIT),
    ] {
        let q = quantize(format, rows, cols, &x).unwrap();
        assert_eq!(q.data().len() as f64 * 8.0 / (rows * cols) as f64, format.bits_per_weight());
        let y = dequantize(q.as_ref());
        let rms = (x.iter().zip(&y).map(|(a, b)| ((a - b) as f64).powi(2)).sum::<f64>() / x.len() as f64).sqrt();
        assert!(rms <= bound, "{format}: RMS error {rms} > {bound}");
    }
}

#[test]
fn repack_orders_nibbles_by_value_and_splits_scales() {
    let x: Vec<f32> = (0..64).map(|i| ((i * 7) % 16) as f32 - 8.0).collect();
    for format in [Format::Q4_0, Format::Q4_1] {
        let q = quantize(format, 2, 32, &x).unwrap();
        let values = dequantize(q.as_ref());
        let layout = repack(q.as_ref(), 0, 2);
        assert_eq!(layout.quants.len(), 8);
        // Nibble j of word w is value 8w + j of its row; decode with the block's scale.
        for (w, word) in layout.quants.iter().enumerate() {
            let row = w / 4;
            let (d, m) = match format {
                Format::Q4_0 => {
                    let pair = layout.scales[0];
                    let bits = if row == 0 { pair & 0xFFFF } else { pair >> 16 };
                    (f16::from_bits(bits as u16).to_f32(), -8.0 * f16::from_bits(bits as u16).to_f32())
                }
                _ => {
                    let s = layout.scales[row];
                    (f16::from_bits(s as u16).to_f32(), f16::from_bits((s >> 16) as u16).to_f32())
                }
            };
            for j in 0..8 {
                let nibble = (word >> (4 * j)) & 0xF;
                assert_eq!(nibble as f32 * d + m, values[row * 32 + (w % 4) * 8 + j], "{format} word {w} nibble {j}");
            }
        }
    }
    // Q8_0: four bytes per word in value order; one f16 scale per block, two per word.
    let q = quantize(Format::Q8_0, 3, 32, &Rng::new(1).vec(96)).unwrap();
    let layout = repack(q.as_ref(), 1, 3);
    assert_eq!((layout.quants.len(), layout.scales.len()), (16, 1));
    let b: BlockQ8_0 = bytemuck::pod_read_unaligned(&q.data()[34..68]);
    assert_eq!(layout.quants[0].to_le_bytes().map(|v| v as i8), [b.qs[0], b.qs[1], b.qs[2], b.qs[3]]);
    assert_eq!(layout.scales[0] & 0xFFFF, b.d.to_bits() as u32);
}

#[test]
fn block_sizes_match_ggml() {
    assert_eq!(std::mem::size_of::<BlockQ8_0>(), Format::Q8_0.block_bytes());
    assert_eq!(std::mem::size_of::<BlockQ4_0>(), 18);
    assert_eq!(std::mem::size_of::<BlockQ4_1>(), 20);
    assert_eq!(Format::Q4_0.bits_per_weight(), 4.5);
    assert_eq!(Format::Q4_1.bits_per_weight(), 5.0);
    assert_eq!(Format::Q8_0.bits_per_weight(), 8.5);
}

#[test]
fn malformed_host_matrices_are_typed_errors() {
    assert_eq!(
        QuantMatrixRef::new(Format::Q4_0, 2, 40, &[0; 40]).unwrap_err(),
        QuantError::RowLength { format: Format::Q4_0, cols: 40, multiple: 32 }
    );
    assert_eq!(QuantMatrixRef::new(Format::Q8_0, 0, 32, &[]).unwrap_err(), QuantError::Empty { rows: 0, cols: 32 });
    assert_eq!(
        QuantMatrixRef::new(Format::Q8_0, 2, 32, &[0; 34]).unwrap_err(),
        QuantError::ByteCount { format: Format::Q8_0, rows: 2, cols: 32, needed: 68, actual: 34 }
    );
    assert!(matches!(QuantMatrixRef::new(Format::F32, usize::MAX, 8, &[]).unwrap_err(), QuantError::Overflow { .. }));
    assert_eq!(quantize(Format::F16, 2, 8, &[0.0; 15]).unwrap_err(), QuantError::ValueCount { rows: 2, cols: 8, actual: 15 });
    assert!(matches!(quantize(Format::F16, 1, 12, &[0.0; 12]).unwrap_err(), QuantError::RowLength { multiple: 8, .. }));
    assert!(matches!("Q5_K".parse::<Format>().unwrap_err(), QuantError::UnknownFormat { .. }));
    assert_eq!("q4_1".parse::<Format>().unwrap(), Format::Q4_1);
}
