//! The logit-comparison kernel of `qgpu eval` against an f64 CPU oracle, on odd vocabularies.

mod common;

use qgpu::ops::{GpuTensor, LogitMetrics, NO_TARGET};
use qgpu::quant::reference::TestRng;

/// f64 oracle: (KL(p‖q), −ln p[t], −ln q[t], argmax p, argmax q) for one row.
fn oracle(r: &[f32], c: &[f32], target: u32) -> (f64, f64, f64, u32, u32) {
    let log_softmax = |x: &[f32]| {
        let m = x.iter().fold(f64::MIN, |m, &v| m.max(v as f64));
        let z = m + x.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln();
        x.iter().map(|&v| v as f64 - z).collect::<Vec<f64>>()
    };
    let (lr, lc) = (log_softmax(r), log_softmax(c));
    let kl = lr.iter().zip(&lc).map(|(a, b)| a.exp() * (a - b)).sum::<f64>();
    // First index of the maximum, like the kernel.
    let argmax = |x: &[f32]| x.iter().enumerate().fold(0, |best, (i, &v)| if v > x[best] { i } else { best }) as u32;
    let (nr, nc) = if target == NO_TARGET { (0.0, 0.0) } else { (-lr[target as usize], -lc[target as usize]) };
    (kl, nr, nc, argmax(r), argmax(c))
}

#[test]
fn logit_metrics_match_the_oracle() {
    let Some(ctx) = common::context() else { return };
    let mut rng = TestRng::new(0x6b6c);
    for vocab in [3usize, 67, 1031, 49157] {
        let rows = 7;
        let mut reference = Vec::new();
        let mut candidate = Vec::new();
        for r in 0..rows {
            let row: Vec<f32> = rng.vec(vocab).iter().map(|v| v * 12.0).collect();
            let noisy: Vec<f32> = match r {
                // Identical rows: KL must come out 0, the top-1s equal.
                0 => row.clone(),
                // A tie for the maximum: the lowest index wins in both.
                1 => {
                    let mut t = row.clone();
                    let m = t.iter().cloned().fold(f32::MIN, f32::max);
                    t[vocab - 1] = m;
                    t
                }
                _ => row.iter().map(|&v| v + rng.uniform() * r as f32 * 0.5).collect(),
            };
            reference.extend(row);
            candidate.extend(noisy);
        }
        let targets: Vec<u32> = (0..rows as u32).map(|r| if r == 3 { NO_TARGET } else { (r * 7919 + 5) % vocab as u32 }).collect();
        let ref_t = GpuTensor::from_slice(&ctx, rows, vocab, &reference).unwrap();
        let cand_t = GpuTensor::from_slice(&ctx, rows, vocab, &candidate).unwrap();
        let metrics = LogitMetrics::new(&ctx, rows).unwrap();
        let got = pollster::block_on(metrics.compare(&ctx, &ref_t, &cand_t, &targets)).unwrap();
        for (r, m) in got.iter().enumerate() {
            let span = r * vocab..(r + 1) * vocab;
            let (kl, nr, nc, ar, ac) = oracle(&reference[span.clone()], &candidate[span], targets[r]);
            let close = |got: f32, want: f64| (got as f64 - want).abs() <= 2e-4 * (1.0 + want.abs());
            assert!(close(m.kl, kl), "vocab {vocab} row {r}: KL {} vs {kl}", m.kl);
            assert!(close(m.nll_reference, nr), "vocab {vocab} row {r}: NLL ref {} vs {nr}", m.nll_reference);
            assert!(close(m.nll_candidate, nc), "vocab {vocab} row {r}: NLL cand {} vs {nc}", m.nll_candidate);
            assert_eq!((m.top1_reference, m.top1_candidate), (ar, ac), "vocab {vocab} row {r}: top-1");
        }
        assert_eq!(got[0].kl, 0.0, "identical rows have zero KL");
    }
}

#[test]
fn logit_metrics_reject_bad_shapes() {
    let Some(ctx) = common::context() else { return };
    let a = GpuTensor::zeros(&ctx, 2, 10).unwrap();
    let b = GpuTensor::zeros(&ctx, 2, 11).unwrap();
    let metrics = LogitMetrics::new(&ctx, 4).unwrap();
    let err = pollster::block_on(metrics.compare(&ctx, &a, &b, &[0, 1])).unwrap_err();
    assert!(err.to_string().contains("vocabulary"), "{err}");
    let err = pollster::block_on(metrics.compare(&ctx, &a, &a, &[0, 1, 2])).unwrap_err();
    assert!(err.to_string().contains("rows"), "{err}");
}
