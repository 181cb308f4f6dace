//! The CPU reference against hand-worked blocks: ggml's rounding, nibble order and the GPU
//! repack layout. No GPU needed.

mod common;

use qgpu::quant::reference::TestRng as Rng;
use half::f16;
use qgpu::loader::GgmlType;
use qgpu::quant::block::{BlockQ4_0, BlockQ4_1, BlockQ4_K, BlockQ6_K, BlockQ8_0, QK_K};
use qgpu::quant::kquants::pack_scale_min_k4;
use qgpu::quant::reference::{
    dequantize, dequantize_q4_k, dequantize_q6_k, get_scale_min_k4, quantize, quantize_q4_0, quantize_q4_1, quantize_q4_k,
    quantize_q6_k, quantize_q8_0,
};
use qgpu::quant::repack::{quant_words_per_row, repack, scale_words};
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
    assert!(matches!("IQ2_XXS".parse::<Format>().unwrap_err(), QuantError::UnknownFormat { .. }));
    assert_eq!("q4_1".parse::<Format>().unwrap(), Format::Q4_1);
    assert_eq!("q4_k".parse::<Format>().unwrap(), Format::Q4_K);
    assert_eq!("Q6_K".parse::<Format>().unwrap(), Format::Q6_K);
    // K-quant rows are whole super-blocks of 256.
    assert_eq!(
        QuantMatrixRef::new(Format::Q4_K, 1, 96, &[0; 54]).unwrap_err(),
        QuantError::RowLength { format: Format::Q4_K, cols: 96, multiple: 256 }
    );
    assert!(matches!(quantize(Format::Q6_K, 1, 288, &[0.0; 288]).unwrap_err(), QuantError::RowLength { multiple: 256, .. }));
}

// ---- K-quants -----------------------------------------------------------------------------

#[test]
fn every_format_matches_its_ggml_type() {
    for format in Format::ALL {
        let ty = GgmlType::from_element_id(format.ggml_type()).unwrap();
        assert_eq!(ty.name(), format.name());
        assert_eq!(ty.block_layout(), (format.block_size() as u64, format.block_bytes() as u64), "{format}");
    }
    assert_eq!((Format::Q4_K.ggml_type(), Format::Q6_K.ggml_type()), (12, 14));
    assert_eq!((Format::Q4_K.shader_code(), Format::Q6_K.shader_code()), (5, 6));
    assert_eq!(std::mem::size_of::<BlockQ4_K>(), 144);
    assert_eq!(std::mem::size_of::<BlockQ6_K>(), 210);
    assert_eq!(Format::Q4_K.bits_per_weight(), 4.5);
    assert_eq!(Format::Q6_K.bits_per_weight(), 6.5625);
    assert_eq!((Format::Q4_K.k_multiple(), Format::Q6_K.k_multiple()), (QK_K, QK_K));
}

/// Eight 6-bit scales and mins whose top bits (16, 32) are all exercised, and their 12 packed
/// bytes worked out by hand from ggml's layout.
const Q4_K_SCALES: [u8; 8] = [5, 17, 33, 63, 20, 47, 9, 62];
const Q4_K_MINS: [u8; 8] = [63, 0, 18, 34, 51, 16, 40, 3];
const Q4_K_PACKED: [u8; 12] = [
    // j < 4: sc[j] | (sc[j + 4] >> 4) << 6     5|1<<6, 17|2<<6, 33|0<<6, 63|3<<6
    0x45, 0x91, 0x21, 0xFF,
    // j < 4: m[j] | (m[j + 4] >> 4) << 6       63|3<<6, 0|1<<6, 18|2<<6, 34|0<<6
    0xFF, 0x40, 0x92, 0x22,
    // sc[j + 4] & 15 | (m[j + 4] & 15) << 4    4|3<<4, 15|0<<4, 9|8<<4, 14|3<<4
    0x34, 0x0F, 0x89, 0x3E,
];

#[test]
fn q4_k_scales_and_mins_unpack_like_ggml() {
    for j in 0..8 {
        assert_eq!(get_scale_min_k4(j, &Q4_K_PACKED), (Q4_K_SCALES[j], Q4_K_MINS[j]), "sub-block {j}");
    }
    assert_eq!(pack_scale_min_k4(&Q4_K_SCALES, &Q4_K_MINS), Q4_K_PACKED);
}

#[test]
fn q4_k_hand_built_block_dequantizes_by_hand() {
    // d = 0.5, dmin = 0.25; all nibbles 0 except three bytes, so every other value is
    // -dmin·m of its sub-block.
    let mut b = BlockQ4_K { d: f16::from_f32(0.5), dmin: f16::from_f32(0.25), scales: Q4_K_PACKED, qs: [0; 128] };
    b.qs[0] = 0x21; // chunk 0, l = 0: value 0 (low, sub-block 0) = 1, value 32 (high, sub-block 1) = 2
    b.qs[37] = 0x90; // chunk 1, l = 5: value 69 (sub-block 2) = 0, value 101 (sub-block 3) = 9
    b.qs[74] = 0x3B; // chunk 2, l = 10: value 138 (sub-block 4) = 11, value 170 (sub-block 5) = 3
    b.qs[127] = 0xF7; // chunk 3, l = 31: value 223 (sub-block 6) = 7, value 255 (sub-block 7) = 15
    let mut y = [f32::NAN; QK_K];
    dequantize_q4_k(&b, &mut y);
    let expected = [
        (0, 0.5 * 5.0 * 1.0 - 0.25 * 63.0), // -13.25
        (32, 0.5 * 17.0 * 2.0 - 0.0),       // 17
        (69, -0.25 * 18.0),                 // -4.5
        (101, 0.5 * 63.0 * 9.0 - 0.25 * 34.0), // 275
        (138, 0.5 * 20.0 * 11.0 - 0.25 * 51.0), // 97.25
        (170, 0.5 * 47.0 * 3.0 - 0.25 * 16.0),  // 66.5
        (223, 0.5 * 9.0 * 7.0 - 0.25 * 40.0),  // 21.5
        (255, 0.5 * 62.0 * 15.0 - 0.25 * 3.0), // 464.25
    ];
    assert_eq!(expected.map(|e| e.1), [-13.25, 17.0, -4.5, 275.0, 97.25, 66.5, 21.5, 464.25]);
    // The zero nibble of each sub-block of 32 (values 32s..32s + 32) is -dmin·m.
    let base = [-15.75, 0.0, -4.5, -8.5, -12.75, -4.0, -10.0, -0.75];
    for (i, &v) in y.iter().enumerate() {
        let want = expected.iter().find(|e| e.0 == i).map_or(base[i / 32], |e| e.1);
        assert_eq!(v, want, "value {i}");
    }
}

#[test]
fn q6_k_hand_built_block_dequantizes_by_hand() {
    // d = 0.5; sub-block s (values 16s..16s + 16) has scale ±(s + 1); all 6-bit quants 0
    // (value -32) except where set below.
    let scales: [i8; 16] = std::array::from_fn(|s| if s % 2 == 0 { s as i8 + 1 } else { -(s as i8 + 1) });
    let mut b = BlockQ6_K { ql: [0; 128], qh: [0; 64], scales, d: f16::from_f32(0.5) };
    // Half 0, l = 1: ql[1] serves values 1 (low) and 65 (high), ql[33] values 33 (low) and 97
    // (high); qh[1] gives bits 4-5 to values 1, 33, 65, 97 at shifts 0, 2, 4, 6.
    b.ql[33] = 0x5A;
    b.qh[1] = 0b11_10_01_00;
    // Half 1, l = 2: ql[66] serves 130 (low) and 194 (high), ql[98] 162 and 226; qh[34] their
    // top bits.
    b.ql[66] = 0x3C;
    b.qh[34] = 0b00_01_10_11;
    let mut y = [f32::NAN; QK_K];
    dequantize_q6_k(&b, &mut y);
    // value = d · scale · (q − 32)
    let expected = [
        (1, 0.5 * 1.0 * (0x0 as f32 - 32.0)),                // q = 0 | 0 << 4
        (33, 0.5 * 3.0 * ((0xA | 1 << 4) as f32 - 32.0)),    // q = 26
        (65, 0.5 * 5.0 * ((2 << 4) as f32 - 32.0)),          // q = 0 | 2 << 4 = 32
        (97, 0.5 * 7.0 * ((0x5 | 3 << 4) as f32 - 32.0)),    // q = 53
        (130, 0.5 * 9.0 * ((0xC | 3 << 4) as f32 - 32.0)),   // q = 60
        (162, 0.5 * 11.0 * ((2 << 4) as f32 - 32.0)),        // q = 0 | 2 << 4 = 32
        (194, 0.5 * 13.0 * ((0x3 | 1 << 4) as f32 - 32.0)),  // q = 19
        (226, 0.5 * 15.0 * (0x0 as f32 - 32.0)),             // q = 0
    ];
    assert_eq!(expected.map(|e| e.1), [-16.0, -9.0, 0.0, 73.5, 126.0, 0.0, -84.5, -240.0]);
    for (i, &v) in y.iter().enumerate() {
        let want = expected.iter().find(|e| e.0 == i).map_or(0.5 * scales[i / 16] as f32 * -32.0, |e| e.1);
        assert_eq!(v, want, "value {i}");
    }
}

/// Every value dequantizes to the nearest point of its sub-block's grid (`grid(i)` lists the
/// points): the quantizer's last step is plain rounding against the stored scales.
fn assert_nearest_on_grid(what: &str, x: &[f32], y: &[f32], grid: impl Fn(usize) -> Vec<f32>) {
    for (i, (&xv, &yv)) in x.iter().zip(y).enumerate() {
        let points = grid(i);
        assert!(points.contains(&yv), "{what} value {i}: {yv} is not on its grid");
        let best = points.iter().map(|p| (p - xv).abs()).fold(f32::MAX, f32::min);
        assert!((yv - xv).abs() <= best * (1.0 + 1e-5) + 1e-7, "{what} value {i}: {xv} → {yv}, but a grid point is {best} away");
    }
}

#[test]
fn k_quantizers_round_to_the_nearest_grid_point() {
    let mut rng = Rng::new(7);
    for scale in [1.0f32, 1e-3, 300.0] {
        let x: Vec<f32> = rng.vec(QK_K).iter().map(|v| v * scale).collect();
        let b = quantize_q4_k(&x);
        let mut y = [0.0; QK_K];
        dequantize_q4_k(&b, &mut y);
        assert_nearest_on_grid("Q4_K", &x, &y, |i| {
            let (sc, m) = get_scale_min_k4(i / 32, &b.scales);
            (0..16).map(|q| b.d.to_f32() * sc as f32 * q as f32 - b.dmin.to_f32() * m as f32).collect()
        });
        let b = quantize_q6_k(&x);
        dequantize_q6_k(&b, &mut y);
        // The scale of largest magnitude is stored as −128.
        assert_eq!(b.scales.iter().map(|s| (*s as i32).abs()).max(), Some(128));
        assert_nearest_on_grid("Q6_K", &x, &y, |i| (-32..32).map(|q| b.d.to_f32() * b.scales[i / 16] as f32 * q as f32).collect());
    }
}

#[test]
fn k_quantizers_handle_flat_blocks() {
    let mut y = [f32::NAN; QK_K];
    let zeros = [0.0f32; QK_K];
    let b = quantize_q4_k(&zeros);
    assert_eq!((b.d.to_f32(), b.dmin.to_f32()), (0.0, 0.0));
    dequantize_q4_k(&b, &mut y);
    assert!(y.iter().all(|&v| v == 0.0));
    let b = quantize_q6_k(&zeros);
    assert_eq!(bytemuck::bytes_of(&b), &[0u8; 210][..]);
    dequantize_q6_k(&b, &mut y);
    assert!(y.iter().all(|&v| v == 0.0));
    // All positive: the min is clamped to 0, so dmin = 0 and the scale alone fits the values.
    let ones = [0.75f32; QK_K];
    let b = quantize_q4_k(&ones);
    assert_eq!(b.dmin.to_f32(), 0.0);
    dequantize_q4_k(&b, &mut y);
    assert!(y.iter().all(|&v| (v - 0.75).abs() < 1e-3), "{:?}", &y[..4]);
    let b = quantize_q6_k(&ones.map(|v| -v));
    dequantize_q6_k(&b, &mut y);
    assert!(y.iter().all(|&v| (v + 0.75).abs() < 1e-3), "{:?}", &y[..4]);
}

/// RMS round-trip error of every format on the same uniform [-1, 1] data.
fn round_trip_rms(format: Format, rows: usize, cols: usize, x: &[f32]) -> f64 {
    let q = quantize(format, rows, cols, x).unwrap();
    assert_eq!(q.data().len() as f64 * 8.0 / (rows * cols) as f64, format.bits_per_weight());
    let y = dequantize(q.as_ref());
    (x.iter().zip(&y).map(|(a, b)| ((a - b) as f64).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
}

#[test]
fn k_quant_round_trip_error() {
    let (rows, cols) = (7, 4352); // 17 super-blocks a row
    let x = Rng::new(42).vec(rows * cols);
    let rms = Format::ALL.map(|f| (f, round_trip_rms(f, rows, cols, &x)));
    for (format, e) in rms {
        eprintln!("{format}: RMS round-trip error {e:.6}");
    }
    let of = |f: Format| rms.iter().find(|r| r.0 == f).unwrap().1;
    let (q4_1, q4_k, q6_k, q8_0) = (of(Format::Q4_1), of(Format::Q4_K), of(Format::Q6_K), of(Format::Q8_0));
    assert!(q4_k <= MAX_TOTAL_ERROR_4BIT, "Q4_K: {q4_k}");
    // Q4_K costs 4.5 bits to Q4_1's 5 and searches its scales: within 5% of Q4_1.
    assert!(q4_k <= 1.05 * q4_1, "Q4_K {q4_k} vs Q4_1 {q4_1}");
    // Two more bits: about a quarter of the 4-bit error, and between Q4_K and Q8_0.
    assert!(q6_k <= 0.3 * q4_k, "Q6_K {q6_k} vs Q4_K {q4_k}");
    assert!(q6_k > q8_0 && q6_k <= 0.012, "Q6_K {q6_k}, Q8_0 {q8_0}");
}

#[test]
fn k_quant_repack_keeps_gguf_bytes() {
    let (rows, k) = (3, 512);
    let x = Rng::new(5).vec(rows * k);
    // Q4_K: whole blocks, 36 words each, no scales buffer.
    let q = quantize(Format::Q4_K, rows, k, &x).unwrap();
    let layout = repack(q.as_ref(), 1, 3);
    assert_eq!((layout.quants.len(), layout.scales.len()), (2 * quant_words_per_row(Format::Q4_K, k), 0));
    assert_eq!(quant_words_per_row(Format::Q4_K, k), 72);
    assert_eq!(bytemuck::cast_slice::<u32, u8>(&layout.quants), &q.data()[2 * 144..]);
    let b: BlockQ4_K = bytemuck::pod_read_unaligned(&q.data()[2 * 144..3 * 144]); // row 1, block 0
    assert_eq!(layout.quants[0], b.d.to_bits() as u32 | (b.dmin.to_bits() as u32) << 16);
    // Q6_K: 52 words (ql, qh, scales) per block; the f16 d's two per word in scales.
    let q = quantize(Format::Q6_K, rows, k, &x).unwrap();
    let layout = repack(q.as_ref(), 0, 3);
    assert_eq!(quant_words_per_row(Format::Q6_K, k), 104);
    assert_eq!((layout.quants.len(), layout.scales.len()), (3 * 104, 3));
    assert_eq!(scale_words(Format::Q6_K, 3, k), 3);
    let quant_bytes: &[u8] = bytemuck::cast_slice(&layout.quants);
    for (i, raw) in q.data().chunks_exact(210).enumerate() {
        let b: BlockQ6_K = bytemuck::pod_read_unaligned(raw);
        assert_eq!(&quant_bytes[208 * i..208 * (i + 1)], &raw[..208], "block {i}");
        let half = layout.scales[i / 2] >> (16 * (i % 2)) & 0xFFFF;
        assert_eq!(half, b.d.to_bits() as u32, "block {i} d");
    }
    // Six blocks: the halves fill the three words exactly, so GPU bytes equal GGUF bytes.
    assert_eq!((layout.quants.len() + layout.scales.len()) * 4, q.data().len());
}

#[test]
fn lower_and_higher_bit_formats_round_trip_in_order_of_their_bits() {
    let (rows, cols) = (5, 768);
    let x = Rng::new(43).vec(rows * cols);
    let e = |f: Format| round_trip_rms(f, rows, cols, &x);
    let bits = [(Format::Q2_K, 2.625), (Format::Q3_K, 3.4375), (Format::IQ4_XS, 4.25), (Format::MXFP4, 4.25), (Format::Q5_0, 5.5), (Format::Q5_K, 5.5), (Format::Q5_1, 6.0)];
    for (f, b) in bits {
        assert_eq!(f.bits_per_weight(), b, "{f}");
    }
    let (q2, q3, q4, q5) = (e(Format::Q2_K), e(Format::Q3_K), e(Format::Q4_0), e(Format::Q5_0));
    // Each bit halves the step: roughly half the error per bit on uniform data.
    assert!(q2 > 1.6 * q3 && q3 > 1.6 * q4 && q4 > 1.6 * q5, "Q2_K {q2}, Q3_K {q3}, Q4_0 {q4}, Q5_0 {q5}");
    assert!(e(Format::Q5_1) < 0.6 * e(Format::Q4_1) && e(Format::Q5_K) < 0.6 * e(Format::Q4_K));
    // IQ4_XS's 6-bit sub-block scales cost little against IQ4_NL's f16 ones.
    assert!(e(Format::IQ4_XS) <= 1.05 * e(Format::IQ4_NL));
    // MXFP4 loses more than a fitted 4-bit scale (2.2× on this data): E2M1's grid is coarsest at
    // the top, and ggml's power-of-two exponent leaves the top code at 0.75-1.5× the block's max.
    let mx = e(Format::MXFP4);
    assert!(mx > q4 && mx < 2.5 * q4, "MXFP4 {mx}, Q4_0 {q4}");
    assert_eq!(e(Format::BF16), {
        let y: Vec<f32> = x.iter().map(|&v| half::bf16::from_f32(v).to_f32()).collect();
        (x.iter().zip(&y).map(|(a, b)| ((a - b) as f64).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
    });
}
