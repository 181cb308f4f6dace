//! The KV store and the flash attention (split over the keys, online softmax, combine) against
//! an f64 CPU reference that reads the same rounded K and V (`KvType::round_trip`), for every
//! KV type, odd lengths, head sizes, GQA ratios, windows (ring caches) and soft-caps.

mod common;

use common::{compare, context};
use qgpu::gpu::Context;
use qgpu::ops::{plan_attention, plan_kv_store, AttnArgs, AttnDims, AttnOptions, AttnWorkspace, GpuTensor, KvCache, KvType, StepParams};
use qgpu::quant::reference::TestRng;

#[derive(Clone, Copy, Debug)]
struct Case {
    ty: KvType,
    /// Positions in the cache after the store, the queries' included.
    len: usize,
    /// Queries: the last `tokens` positions.
    tokens: usize,
    kv_heads: usize,
    group: usize,
    head_dim: usize,
    window: Option<usize>,
    softcap: Option<f32>,
}

impl Case {
    fn dims(&self) -> AttnDims {
        AttnDims { heads: self.kv_heads * self.group, kv_heads: self.kv_heads, head_dim: self.head_dim }
    }
    /// The slots a cache needs: a ring of window + tokens - 1 for a window layer.
    fn rows(&self) -> usize {
        self.window.map_or(self.len, |w| (w + self.tokens - 1).min(self.len))
    }
}

/// Stores `k`/`v` (`len` positions) into `cache` in calls of at most `cache.rows()` positions,
/// in order, as a model would.
fn store_all(ctx: &Context, dims: AttnDims, cache: &KvCache, k: &[f32], v: &[f32], len: usize) {
    let width = dims.kv_heads * dims.head_dim;
    let step = StepParams::new(ctx);
    let chunk = cache.rows().min(500);
    for pos0 in (0..len).step_by(chunk) {
        let n = chunk.min(len - pos0);
        let gk = GpuTensor::from_slice(ctx, n, width, &k[pos0 * width..(pos0 + n) * width]).unwrap();
        let gv = GpuTensor::from_slice(ctx, n, width, &v[pos0 * width..(pos0 + n) * width]).unwrap();
        let d = pollster::block_on(plan_kv_store(ctx, dims, n, &gk, &gv, cache, &step)).unwrap();
        step.write(ctx, pos0 as u32);
        pollster::block_on(ctx.run(&[&d])).unwrap();
    }
}

/// Each head row of `x` (`[position][kv_head][head_dim]`) as the cache gives it back.
fn rounded(ty: KvType, x: &[f32], head_dim: usize) -> Vec<f32> {
    x.chunks(head_dim).flat_map(|row| ty.round_trip(row)).collect()
}

/// softmax(q·kᵀ·scale) v in f64, causal, windowed and soft-capped.
fn reference(c: &Case, q: &[f32], k: &[f32], v: &[f32], scale: f32) -> Vec<f64> {
    let (dims, hd) = (c.dims(), c.head_dim);
    let mut out = vec![0.0f64; c.tokens * dims.heads * hd];
    for t in 0..c.tokens {
        let pos = c.len - c.tokens + t;
        let first = c.window.map_or(0, |w| (pos + 1).saturating_sub(w));
        for h in 0..dims.heads {
            let kv = h / c.group;
            let qh = &q[(t * dims.heads + h) * hd..][..hd];
            let scores: Vec<f64> = (first..=pos)
                .map(|j| {
                    let kj = &k[(j * c.kv_heads + kv) * hd..][..hd];
                    let s = qh.iter().zip(kj).map(|(a, b)| *a as f64 * *b as f64).sum::<f64>() * scale as f64;
                    c.softcap.map_or(s, |cap| cap as f64 * (s / cap as f64).tanh())
                })
                .collect();
            let m = scores.iter().cloned().fold(f64::MIN, f64::max);
            let e: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
            let sum: f64 = e.iter().sum();
            let o = &mut out[(t * dims.heads + h) * hd..][..hd];
            for (j, p) in (first..=pos).zip(&e) {
                let vj = &v[(j * c.kv_heads + kv) * hd..][..hd];
                for d in 0..hd {
                    o[d] += p / sum * vj[d] as f64;
                }
            }
        }
    }
    out
}

fn check(ctx: &Context, c: Case, seed: u64) {
    let mut rng = TestRng::new(seed);
    let dims = c.dims();
    let width = c.kv_heads * c.head_dim;
    // Q scaled up so the softmax is peaked, not a plain average.
    let q: Vec<f32> = rng.vec(c.tokens * dims.heads * c.head_dim).iter().map(|x| 4.0 * x).collect();
    let k = rng.vec(c.len * width);
    let v = rng.vec(c.len * width);
    let cache = KvCache::new(ctx, c.ty, c.rows(), c.kv_heads, c.head_dim).unwrap();
    store_all(ctx, dims, &cache, &k, &v, c.len);

    let gq = GpuTensor::from_slice(ctx, c.tokens, dims.heads * c.head_dim, &q).unwrap();
    let out = GpuTensor::zeros(ctx, c.tokens, dims.heads * c.head_dim).unwrap();
    let step = StepParams::new(ctx);
    let args = AttnArgs::new(ctx, c.len);
    let work = AttnWorkspace::new(ctx, dims, c.len, c.tokens).unwrap();
    let options = AttnOptions { window: c.window, softcap: c.softcap, ..AttnOptions::causal(c.head_dim) };
    let plan = pollster::block_on(plan_attention(ctx, dims, c.tokens, &gq, &cache, &work, &out, &step, &args, options)).unwrap();
    let pos0 = c.len - c.tokens;
    step.write(ctx, pos0 as u32);
    args.write(ctx, dims, pos0, c.tokens);
    pollster::block_on(ctx.run(&plan.iter().collect::<Vec<_>>())).unwrap();
    let got = pollster::block_on(out.read(ctx)).unwrap();

    let want = reference(&c, &q, &rounded(c.ty, &k, c.head_dim), &rounded(c.ty, &v, c.head_dim), options.scale);
    let (rel, first) = compare(&got, &want, 1e-3);
    assert!(rel <= 1e-5 && first.is_none(), "{c:?}: relative L2 error {rel:e}, first bad index {first:?}");
    // The check can fail: the reference without the cache's rounding differs (except f32).
    if c.ty != KvType::F32 && c.ty != KvType::F16 {
        let exact = reference(&c, &q, &k, &v, options.scale);
        assert!(compare(&got, &exact, 1e-3).0 > 1e-5, "{c:?}: rounding made no difference");
    }
}

const LENGTHS: [usize; 5] = [1, 17, 255, 1000, 4097];
const HEAD_DIMS: [usize; 5] = [64, 80, 96, 128, 256];
const GROUPS: [usize; 4] = [1, 3, 4, 8];

/// Every length × head size once, with the GQA ratio, KV type, query count, window and
/// soft-cap varied across them so each value of each appears; then every type at the longest
/// length for decode and prefill.
fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for (i, &len) in LENGTHS.iter().enumerate() {
        for (j, &head_dim) in HEAD_DIMS.iter().enumerate() {
            let tokens = [1, 5, 8, 33][(i + j) % 4].min(len);
            let window = ((i + j) % 3 == 1).then_some(len / 3 + 1);
            cases.push(Case {
                ty: KvType::ALL[(i + 2 * j) % 4],
                len,
                tokens,
                kv_heads: 1 + (i + j) % 2,
                group: GROUPS[(i + 3 * j) % 4],
                head_dim,
                window,
                softcap: (j % 2 == 1).then_some(2.5),
            });
        }
    }
    for ty in KvType::ALL {
        for (tokens, window) in [(1, None), (1, Some(700)), (3, None), (40, Some(1000)), (64, None)] {
            cases.push(Case { ty, len: 4097, tokens, kv_heads: 2, group: 3, head_dim: 64, window, softcap: None });
        }
    }
    cases
}

#[test]
fn flash_attention_matches_the_reference() {
    let Some(ctx) = context() else { return };
    for (n, c) in cases().into_iter().enumerate() {
        check(&ctx, c, 1000 + n as u64);
    }
}

#[test]
fn every_kv_type_stores_what_its_reference_encodes() {
    let Some(ctx) = context() else { return };
    for ty in KvType::ALL {
        for head_dim in [8usize, 64, 80, 256] {
            // 37 positions through a ring of 16 slots, stored 16 at a time: the slots hold the
            // last 16 positions, position p in slot p % 16.
            let (len, rows, kv_heads) = (37, 16, 3);
            let dims = AttnDims { heads: kv_heads, kv_heads, head_dim };
            let mut rng = TestRng::new(7 + head_dim as u64);
            let k = rng.vec(len * kv_heads * head_dim);
            let v: Vec<f32> = rng.vec(len * kv_heads * head_dim).iter().map(|x| 100.0 * x).collect();
            let cache = KvCache::new(&ctx, ty, rows, kv_heads, head_dim).unwrap();
            store_all(&ctx, dims, &cache, &k, &v, len);
            for (is_v, x) in [(false, &k), (true, &v)] {
                let words = pollster::block_on(cache.read_words(&ctx, is_v)).unwrap();
                let row_words = ty.row_words(head_dim);
                let mut off_by_a_step = 0;
                for pos in len - rows..len {
                    for kv in 0..kv_heads {
                        let src = &x[(pos * kv_heads + kv) * head_dim..][..head_dim];
                        let at = ((pos % rows) * kv_heads + kv) * row_words;
                        let got = ty.decode(&words[at..at + row_words], head_dim);
                        let want = ty.round_trip(src);
                        for (d, (g, w)) in got.iter().zip(&want).enumerate() {
                            if g != w {
                                // A value exactly between two steps may round either way in f32.
                                let step = src.iter().fold(0.0f32, |m, x| m.max(x.abs())) / 7.0;
                                assert!((g - w).abs() <= step, "{ty} hd={head_dim} v={is_v} pos {pos} head {kv} value {d}: {g} vs {w}");
                                off_by_a_step += 1;
                            }
                        }
                    }
                }
                assert!(off_by_a_step <= 2, "{ty} hd={head_dim}: {off_by_a_step} values differ from the reference");
            }
        }
    }
}

#[test]
fn attention_rejects_heads_the_kernel_cannot_hold() {
    let Some(ctx) = context() else { return };
    assert!(KvCache::new(&ctx, KvType::F16, 4, 1, 512).is_err());
    assert!(KvCache::new(&ctx, KvType::Q4_0, 4, 1, 60).is_err());
    assert!(KvCache::new(&ctx, KvType::F32, 4, 1, 60).is_err());
    assert!(KvCache::new(&ctx, KvType::Q8_0, 4, 1, 72).is_ok());
}
