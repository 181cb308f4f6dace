//! The BERT kernels against f64 CPU references on odd shapes: residual + LayerNorm, bias and
//! bias + erf GELU, bidirectional attention confined to each packed sentence, mean pooling with
//! L2 normalisation.

mod common;

use common::bert_ref::{gelu, layer_norm};
use common::compare;
use qgpu::gpu::{Context, Dispatch};
use qgpu::ops::*;
use qgpu::quant::reference::TestRng;
use qgpu::tensor::ShapeError;
use qgpu::Error;

const TOLERANCE: f64 = 1e-5;

fn run(ctx: &Context, d: Dispatch) {
    pollster::block_on(ctx.run(&[&d])).unwrap();
}

fn read(ctx: &Context, t: &GpuTensor) -> Vec<f32> {
    pollster::block_on(t.read(ctx)).unwrap()
}

fn upload(ctx: &Context, rows: usize, cols: usize, data: &[f32]) -> GpuTensor {
    GpuTensor::from_slice(ctx, rows, cols, data).unwrap()
}

#[test]
fn add_layer_norm_matches_f64() {
    let Some(ctx) = common::context() else { return };
    let mut rng = TestRng::new(1);
    for (rows, dim) in [(1, 7), (3, 96), (17, 385), (2, 1536)] {
        // An offset mean, as residual streams have, so the variance pass matters.
        let x: Vec<f32> = rng.vec(rows * dim).iter().map(|v| 3.0 + 2.0 * v).collect();
        let y = rng.vec(rows * dim);
        let (yb, w, b) = (rng.vec(dim), rng.vec(dim), rng.vec(dim));
        let gx = upload(&ctx, rows, dim, &x);
        let args = [upload(&ctx, rows, dim, &y), upload(&ctx, 1, dim, &yb), upload(&ctx, 1, dim, &w), upload(&ctx, 1, dim, &b)];
        run(&ctx, pollster::block_on(plan_add_layer_norm(&ctx, &gx, &args[0], &args[1], &args[2], &args[3], 1e-12)).unwrap());
        let mut want = Vec::new();
        for r in 0..rows {
            let mut row: Vec<f64> = (0..dim).map(|c| x[r * dim + c] as f64 + y[r * dim + c] as f64 + yb[c] as f64).collect();
            layer_norm(&mut row, &w, &b, 1e-12);
            want.extend(row);
        }
        let (rel, first) = compare(&read(&ctx, &gx), &want, 1e-3);
        assert!(rel <= TOLERANCE && first.is_none(), "{rows}×{dim}: relative error {rel:e}, first bad {first:?}");
    }
}

#[test]
fn bias_and_erf_gelu_match_f64() {
    let Some(ctx) = common::context() else { return };
    let mut rng = TestRng::new(2);
    let (rows, cols) = (5, 67);
    let y: Vec<f32> = rng.vec(rows * cols).iter().map(|v| 12.0 * v).collect();
    let b = rng.vec(cols);
    let gb = upload(&ctx, 1, cols, &b);
    let plain = upload(&ctx, rows, cols, &y);
    run(&ctx, pollster::block_on(plan_add_bias(&ctx, &plain, &gb)).unwrap());
    let activated = upload(&ctx, rows, cols, &y);
    run(&ctx, pollster::block_on(plan_add_bias_gelu(&ctx, &activated, &gb)).unwrap());
    let (plain, activated) = (read(&ctx, &plain), read(&ctx, &activated));
    let mut worst = 0.0f64;
    for i in 0..rows * cols {
        let x = y[i] + b[i % cols];
        assert_eq!(plain[i], x, "bias at {i}");
        // The kernel's erfc is within 1.5e-7; f32 rounding of the result adds half an ulp.
        let err = (activated[i] as f64 - gelu(x as f64)).abs() / (x.abs() as f64).max(1.0);
        worst = worst.max(err);
        assert!(err <= 1e-6, "gelu({x}) = {}, want {}", activated[i], gelu(x as f64));
    }
    eprintln!("worst GELU error relative to max(1, |x|): {worst:.2e}");
}

#[test]
fn gelu_is_accurate_near_zero_and_in_the_negative_tail() {
    let Some(ctx) = common::context() else { return };
    let xs: Vec<f32> = (-80..=80).map(|i| i as f32 * 0.1).chain([1e-6, -1e-6, 1e-3, -1e-3]).collect();
    let n = xs.len();
    let t = upload(&ctx, 1, n, &xs);
    run(&ctx, pollster::block_on(plan_add_bias_gelu(&ctx, &t, &upload(&ctx, 1, n, &vec![0.0; n]))).unwrap());
    for (x, got) in xs.iter().zip(read(&ctx, &t)) {
        let want = gelu(*x as f64);
        assert!((got as f64 - want).abs() <= 1e-6 * (x.abs() as f64).max(1.0) && (got as f64 - want).abs() <= 2e-7 * x.abs() as f64 + 1e-12, "gelu({x}) = {got}, want {want}");
    }
}

type Spans = Vec<(u32, u32)>;

/// Key spans (one per token) and sentence spans of packed sentences of the given lengths.
fn spans(lengths: &[usize]) -> (Spans, Spans) {
    let (mut keys, mut sentences, mut start) = (Vec::new(), Vec::new(), 0u32);
    for &n in lengths {
        let end = start + n as u32;
        keys.extend(std::iter::repeat_n((start, end), n));
        sentences.push((start, end));
        start = end;
    }
    (keys, sentences)
}

#[test]
fn encoder_attention_stays_within_each_sentence() {
    let Some(ctx) = common::context() else { return };
    let mut rng = TestRng::new(3);
    for (heads, head_dim, lengths) in [(3, 32, vec![1, 4, 9]), (1, 4, vec![7]), (2, 128, vec![5, 1, 2]), (5, 12, vec![17, 3])] {
        let width = heads * head_dim;
        let t: usize = lengths.iter().sum();
        let (q, k, v) = (rng.vec(t * width), rng.vec(t * width), rng.vec(t * width));
        let (key_spans, _) = spans(&lengths);
        let gs = GpuSpans::new(&ctx, t).unwrap();
        gs.write(&ctx, &key_spans).unwrap();
        let out = GpuTensor::zeros(&ctx, t, width).unwrap();
        let (gq, gk, gv) = (upload(&ctx, t, width, &q), upload(&ctx, t, width, &k), upload(&ctx, t, width, &v));
        run(&ctx, pollster::block_on(plan_encoder_attention(&ctx, heads, t, &gq, &gk, &gv, &gs, &out)).unwrap());
        let mut want = vec![0.0f64; t * width];
        for (a, &(s, e)) in key_spans.iter().enumerate() {
            for h in 0..heads {
                let off = h * head_dim;
                let scores: Vec<f64> = (s..e)
                    .map(|j| (0..head_dim).map(|d| q[a * width + off + d] as f64 * k[j as usize * width + off + d] as f64).sum::<f64>() / (head_dim as f64).sqrt())
                    .collect();
                let max = scores.iter().cloned().fold(f64::MIN, f64::max);
                let p: Vec<f64> = scores.iter().map(|x| (x - max).exp()).collect();
                let sum: f64 = p.iter().sum();
                for d in 0..head_dim {
                    want[a * width + off + d] = (s..e).zip(&p).map(|(j, p)| p / sum * v[j as usize * width + off + d] as f64).sum();
                }
            }
        }
        let (rel, first) = compare(&read(&ctx, &out), &want, 1e-3);
        assert!(rel <= TOLERANCE && first.is_none(), "{heads}×{head_dim}, sentences {lengths:?}: relative error {rel:e}, first bad {first:?}");
    }
}

#[test]
fn encoder_attention_rejects_what_it_cannot_run() {
    let Some(ctx) = common::context() else { return };
    let spans = GpuSpans::new(&ctx, 4).unwrap();
    assert!(matches!(spans.write(&ctx, &[(0, 2), (2, 2)]), Err(Error::Shape(ShapeError::Empty { .. }))));
    assert!(matches!(spans.write(&ctx, &[(0, 1); 5]), Err(Error::Shape(ShapeError::TooLarge { .. }))));
    let t = |cols| GpuTensor::zeros(&ctx, 4, cols).unwrap();
    let plan = |heads, cols: usize, tokens| pollster::block_on(plan_encoder_attention(&ctx, heads, tokens, &t(cols), &t(cols), &t(cols), &spans, &t(cols))).err();
    assert!(matches!(plan(1, 132, 4), Some(Error::Shape(ShapeError::TooLarge { what: "head_dim", .. }))));
    assert!(matches!(plan(2, 12, 4), Some(Error::Shape(ShapeError::NotMultiple { what: "head_dim", .. }))));
    assert!(matches!(plan(3, 64, 4), Some(Error::Shape(ShapeError::NotMultiple { what: "width", .. }))));
    assert!(matches!(plan(1, 8, 5), Some(Error::Shape(ShapeError::TooLarge { what: "tokens", .. }))));
}

#[test]
fn mean_pool_normalizes_each_sentence() {
    let Some(ctx) = common::context() else { return };
    let mut rng = TestRng::new(4);
    for (dim, lengths) in [(67, vec![1, 3, 10]), (384, vec![12]), (5, vec![2, 2, 2, 1])] {
        let t: usize = lengths.iter().sum();
        let x = rng.vec(t * dim);
        let (_, sentence_spans) = spans(&lengths);
        let gs = GpuSpans::new(&ctx, lengths.len()).unwrap();
        gs.write(&ctx, &sentence_spans).unwrap();
        let pooled = GpuTensor::zeros(&ctx, lengths.len(), dim).unwrap();
        run(&ctx, pollster::block_on(plan_mean_pool_normalize(&ctx, &upload(&ctx, t, dim, &x), &gs, lengths.len(), &pooled)).unwrap());
        let mut want = Vec::new();
        for &(s, e) in &sentence_spans {
            let mean: Vec<f64> = (0..dim).map(|c| (s..e).map(|j| x[j as usize * dim + c] as f64).sum::<f64>() / (e - s) as f64).collect();
            let norm = mean.iter().map(|v| v * v).sum::<f64>().sqrt();
            want.extend(mean.iter().map(|v| v / norm));
        }
        let (rel, first) = compare(&read(&ctx, &pooled), &want, 1e-3);
        assert!(rel <= TOLERANCE && first.is_none(), "dim {dim}, sentences {lengths:?}: relative error {rel:e}, first bad {first:?}");
    }
}
