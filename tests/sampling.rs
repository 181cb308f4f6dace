//! Token sampling and stop strings: pure CPU, no GPU needed.

use qgpu::model::sampler::{
    apply_frequency_presence_penalties,
    apply_repetition_penalty, Sampler, SamplerConfig, SamplerError, StopChecker, StopStatus,
};

fn cfg(temperature: f32, top_k: usize, top_p: f32, seed: u64) -> SamplerConfig {
    SamplerConfig {
        temperature,
        top_k,
        top_p,
        min_p: 0.0,
        repetition_penalty: 1.0,
        repetition_window: 64,
        seed,
    }
}

/// Draws `n` tokens and counts how often each id came up.
fn histogram(s: &mut Sampler, logits: &[f32], n: usize) -> Vec<usize> {
    let mut counts = vec![0; logits.len()];
    for _ in 0..n {
        counts[s.sample(logits, &[]).unwrap() as usize] += 1;
    }
    counts
}

/// A vocab-sized row of smooth pseudo-random logits, the same on every run.
fn fake_logits(n: usize, salt: u32) -> Vec<f32> {
    (0..n as u32)
        .map(|i| {
            let h = (i ^ salt).wrapping_mul(2654435761).rotate_left(13);
            (h % 10_000) as f32 / 1000.0 - 5.0
        })
        .collect()
}

fn argmax_lowest(v: &[f32]) -> u32 {
    let mut best = 0;
    for i in 1..v.len() {
        if v[i] > v[best] {
            best = i;
        }
    }
    best as u32
}

#[test]
fn greedy_picks_argmax_with_ties_to_lowest_id() {
    let mut s = Sampler::new(SamplerConfig::greedy());
    assert_eq!(s.sample(&[0.1, 2.0, -1.0, 1.9], &[]).unwrap(), 1);
    assert_eq!(s.sample(&[0.0, 3.0, 1.0, 3.0], &[]).unwrap(), 1);
    let big = fake_logits(49_152, 7);
    assert_eq!(s.sample(&big, &[]).unwrap(), argmax_lowest(&big));
}

#[test]
fn greedy_ignores_top_k_and_top_p() {
    let logits = [0.5, 1.5, 3.0, -2.0];
    let mut s = Sampler::new(SamplerConfig {
        temperature: 0.0,
        top_k: 3,
        top_p: 0.1,
        repetition_penalty: 1.0,
        ..SamplerConfig::default()
    });
    assert_eq!(s.sample(&logits, &[]).unwrap(), 2);
}

#[test]
fn same_seed_same_sequence_different_seed_differs() {
    let logits = fake_logits(49_152, 1);
    let mut flat = logits.clone();
    // Flatten so many tokens are plausible and seeds visibly diverge.
    for l in &mut flat {
        *l *= 0.1;
    }
    let run = |seed: u64| {
        let mut s = Sampler::new(SamplerConfig::with_seed(seed));
        let mut hist = Vec::new();
        for _ in 0..50 {
            let t = s.sample(&flat, &hist).unwrap();
            hist.push(t);
        }
        hist
    };
    assert_eq!(run(42), run(42));
    assert_ne!(run(42), run(43));

    let mut a = Sampler::new(SamplerConfig::with_seed(9));
    let first: Vec<u32> = (0..20).map(|_| a.sample(&flat, &[]).unwrap()).collect();
    a.reseed(9);
    let again: Vec<u32> = (0..20).map(|_| a.sample(&flat, &[]).unwrap()).collect();
    assert_eq!(first, again);
}

#[test]
fn top_k_one_equals_greedy() {
    for salt in 0..5 {
        let logits = fake_logits(49_152, salt);
        let mut greedy = Sampler::new(SamplerConfig::greedy());
        let mut k1 = Sampler::new(cfg(1.5, 1, 1.0, salt as u64));
        let g = greedy.sample(&logits, &[]).unwrap();
        for _ in 0..10 {
            assert_eq!(k1.sample(&logits, &[]).unwrap(), g);
        }
    }
    // Ties: top-k=1 must take the lowest id, as greedy does.
    let mut k1 = Sampler::new(cfg(1.0, 1, 1.0, 3));
    assert_eq!(k1.sample(&[1.0, 5.0, 5.0, 5.0], &[]).unwrap(), 1);
}

#[test]
fn tiny_top_p_equals_greedy() {
    for salt in 0..5 {
        let logits = fake_logits(4096, salt);
        let want = argmax_lowest(&logits);
        let mut s = Sampler::new(cfg(1.0, 0, 1e-6, salt as u64));
        for _ in 0..10 {
            assert_eq!(s.sample(&logits, &[]).unwrap(), want);
        }
        // Also behind a top-k cut.
        let mut s = Sampler::new(cfg(1.0, 40, 1e-6, salt as u64));
        assert_eq!(s.sample(&logits, &[]).unwrap(), want);
    }
}

#[test]
fn temperature_one_matches_softmax() {
    let logits = [1.0f32, 2.0, 0.5, -1.0, 1.5, 0.0];
    let m = logits.iter().cloned().fold(f32::MIN, f32::max);
    let e: Vec<f64> = logits.iter().map(|&l| ((l - m) as f64).exp()).collect();
    let z: f64 = e.iter().sum();
    let mut s = Sampler::new(cfg(1.0, 0, 1.0, 1234));
    let n = 20_000;
    let mut counts = [0usize; 6];
    for _ in 0..n {
        counts[s.sample(&logits, &[]).unwrap() as usize] += 1;
    }
    for i in 0..logits.len() {
        let got = counts[i] as f64 / n as f64;
        let want = e[i] / z;
        assert!(
            (got - want).abs() < 0.01,
            "token {i}: empirical {got:.4} vs softmax {want:.4}"
        );
    }
}

#[test]
fn top_k_and_top_p_restrict_the_support() {
    let logits = [3.0f32, 2.9, 2.8, -5.0, -6.0, 0.0];
    let mut s = Sampler::new(cfg(1.0, 3, 1.0, 5));
    for _ in 0..500 {
        assert!(s.sample(&logits, &[]).unwrap() < 3);
    }
    // p(0), p(1) ≈ 0.35, 0.32 of the mass: top_p 0.5 needs exactly the first two.
    let mut s = Sampler::new(cfg(1.0, 0, 0.5, 6));
    let mut seen = [false; 6];
    for _ in 0..500 {
        seen[s.sample(&logits, &[]).unwrap() as usize] = true;
    }
    assert_eq!(seen, [true, true, false, false, false, false]);
}

#[test]
fn defaults_are_llama_cpp_s() {
    let d = SamplerConfig::default();
    assert_eq!(
        (d.temperature, d.top_k, d.top_p, d.min_p, d.repetition_penalty, d.repetition_window),
        (0.8, 40, 0.95, 0.05, 1.0, 64)
    );
    assert_eq!(d.seed, 42, "qgpu's fixed seed, so default output repeats");
    let g = SamplerConfig::greedy();
    assert_eq!((g.temperature, g.min_p, g.repetition_penalty), (0.0, 0.0, 1.0));
}

#[test]
fn greedy_with_default_settings_is_plain_argmax() {
    // A repeated token in the history must not be penalised by default any more: greedy
    // decoding now picks what llama.cpp's and transformers' greedy decoding pick.
    let logits = [1.0f32, 2.0, 1.9, -0.5];
    let mut s = Sampler::new(SamplerConfig { temperature: 0.0, ..SamplerConfig::default() });
    assert_eq!(s.sample(&logits, &[1, 1, 1]).unwrap(), 1);
}

#[test]
fn min_p_removes_exactly_the_unlikely_tokens() {
    // Relative to token 0, the temperature-1 probabilities are e^0, e^-0.5 = 0.61,
    // e^-1.5 = 0.22, e^-2.5 = 0.082, e^-4 = 0.018, e^-6 = 0.0025.
    let logits = [3.0f32, 2.5, 1.5, 0.5, -1.0, -3.0];
    let n = 4000;
    // min_p 0.1: ids 0-2 stay, id 3 (0.082) goes.
    let counts = histogram(&mut Sampler::new(SamplerConfig { min_p: 0.1, ..cfg(1.0, 0, 1.0, 11) }), &logits, n);
    assert!(counts[..3].iter().all(|&c| c > 0), "{counts:?}");
    assert_eq!(&counts[3..], &[0, 0, 0], "min_p 0.1 keeps exactly ids 0, 1, 2");
    // min_p 0.05: id 3 (0.082) comes back, id 4 (0.018) does not.
    let counts = histogram(&mut Sampler::new(SamplerConfig { min_p: 0.05, ..cfg(1.0, 0, 1.0, 12) }), &logits, n);
    assert!(counts[..4].iter().all(|&c| c > 0), "{counts:?}");
    assert_eq!(&counts[4..], &[0, 0], "min_p 0.05 keeps exactly ids 0-3");
    // The survivors keep their relative odds: p(1)/p(0) = e^-0.5 renormalised over 0-3.
    let z: f64 = [0.0f64, -0.5, -1.5, -2.5].iter().map(|d| d.exp()).sum();
    let got = counts[0] as f64 / n as f64;
    assert!((got - 1.0 / z).abs() < 0.03, "p(0) {got:.3} vs {:.3}", 1.0 / z);
    // min_p 1: only the top token.
    let counts = histogram(&mut Sampler::new(SamplerConfig { min_p: 1.0, ..cfg(1.0, 0, 1.0, 13) }), &logits, 200);
    assert_eq!(counts[0], 200);
}

#[test]
fn min_p_zero_keeps_every_token() {
    let logits = [3.0f32, 2.5, 1.5, 0.5, -1.0, -3.0];
    // Flattened by temperature 3 so even the last id (e^-2 relative) turns up in 20k draws.
    let counts = histogram(&mut Sampler::new(SamplerConfig { min_p: 0.0, ..cfg(3.0, 0, 1.0, 14) }), &logits, 20_000);
    assert!(counts.iter().all(|&c| c > 0), "min_p 0 drops nothing: {counts:?}");
}

#[test]
fn min_p_and_top_p_cut_at_temperature_one_as_llama_cpp_does() {
    // At temperature 1, id 2 is e^-2 = 0.135 of id 0: below min_p 0.2. At temperature 5 it
    // would be e^-0.4 = 0.67 of it. llama.cpp applies min-p before temperature, so id 2 must
    // never appear even at temperature 5, while ids 0 and 1 follow the temperature-5 odds.
    let logits = [2.0f32, 1.0, 0.0, -0.5];
    let n = 10_000;
    let counts = histogram(&mut Sampler::new(SamplerConfig { min_p: 0.2, ..cfg(5.0, 0, 1.0, 15) }), &logits, n);
    assert_eq!(&counts[2..], &[0, 0], "{counts:?}");
    let want = 1.0 / (1.0 + (-0.2f64).exp());
    let got = counts[0] as f64 / n as f64;
    assert!((got - want).abs() < 0.02, "p(0) {got:.3}, temperature-5 odds give {want:.3}");

    // top_p likewise: at temperature 1, p(0) = 0.60 and p(0) + p(1) = 0.82 >= 0.8, so top_p 0.8
    // keeps ids 0 and 1 only; at temperature 5 it would need three ids.
    let counts = histogram(&mut Sampler::new(cfg(5.0, 0, 0.8, 16)), &logits, n);
    assert!(counts[0] > 0 && counts[1] > 0 && counts[2..] == [0, 0], "{counts:?}");
}

#[test]
fn min_p_applies_after_top_k() {
    // top-k 2 leaves ids 0 and 1; min_p 0.5 (relative to the same max) then drops id 1
    // (e^-1 = 0.37), never reviving ids beyond the top-k cut.
    let logits = [2.0f32, 1.0, 1.0, 1.0];
    let counts = histogram(&mut Sampler::new(SamplerConfig { min_p: 0.5, ..cfg(1.0, 2, 1.0, 17) }), &logits, 300);
    assert_eq!(counts, vec![300, 0, 0, 0]);
    let counts = histogram(&mut Sampler::new(cfg(1.0, 2, 1.0, 18)), &logits, 2000);
    assert!(counts[0] > 0 && counts[1] > 0 && counts[2..] == [0, 0], "top-k 2 keeps ids 0 and 1 (ties to the lowest id): {counts:?}");
}

#[test]
fn masked_logits_are_never_drawn() {
    let logits = [f32::NEG_INFINITY, 0.0, f32::NEG_INFINITY, 0.0];
    let mut s = Sampler::new(cfg(1.0, 0, 1.0, 8));
    for _ in 0..200 {
        let t = s.sample(&logits, &[]).unwrap();
        assert!(t == 1 || t == 3);
    }
}

#[test]
fn repetition_penalty_lowers_a_repeated_token() {
    let logits = [1.0f32, 2.0, 1.8, -0.5];
    let mut p = logits;
    apply_repetition_penalty(&mut p, &[1, 1, 3], 2.0, 64);
    // Positive divided, negative multiplied, each id once however often it repeats.
    assert_eq!(p, [1.0, 1.0, 1.8, -1.0]);

    let pen = |window| SamplerConfig {
        repetition_penalty: 1.5,
        repetition_window: window,
        ..SamplerConfig::greedy()
    };
    let mut plain = Sampler::new(SamplerConfig::greedy());
    assert_eq!(plain.sample(&logits, &[1]).unwrap(), 1);
    // Token 1 falls from first to second place.
    let mut s = Sampler::new(pen(64));
    assert_eq!(s.sample(&logits, &[1]).unwrap(), 2);
    // Outside the window it is not penalised.
    let mut s = Sampler::new(pen(2));
    assert_eq!(s.sample(&logits, &[1, 0, 0]).unwrap(), 1);
    // Ids beyond the vocab are ignored, not an error.
    let mut s = Sampler::new(pen(64));
    assert_eq!(s.sample(&logits, &[1_000_000]).unwrap(), 1);
}

#[test]
fn extreme_penalty_keeps_logits_finite() {
    let mut p = [10.0f32, -10.0, f32::NEG_INFINITY];
    apply_repetition_penalty(&mut p, &[0, 2], 1e-38, 64);
    assert_eq!(p, [f32::MAX, -10.0, f32::NEG_INFINITY]);
    apply_repetition_penalty(&mut p, &[1], 1e38, 64);
    assert_eq!(p[1], f32::MIN);
    let mut s = Sampler::new(SamplerConfig {
        repetition_penalty: 1e-38,
        ..cfg(1.0, 0, 0.9, 1)
    });
    assert_eq!(s.sample(&[10.0, 9.0], &[0]).unwrap(), 0);
}

#[test]
fn errors_are_exact_variants() {
    let mut s = Sampler::new(SamplerConfig::default());
    assert_eq!(s.sample(&[], &[]), Err(SamplerError::EmptyLogits));
    assert_eq!(
        s.sample(&[0.0, 1.0, f32::NAN, f32::NAN], &[]),
        Err(SamplerError::NanLogit { index: 2 })
    );
    assert_eq!(
        s.sample(&[0.0, f32::INFINITY], &[]),
        Err(SamplerError::InfiniteLogit { index: 1 })
    );
    assert_eq!(
        s.sample(&[f32::NEG_INFINITY; 3], &[]),
        Err(SamplerError::AllMasked { len: 3 })
    );

    let bad = |c: SamplerConfig| Sampler::new(c).sample(&[0.0, 1.0], &[]).unwrap_err();
    let d = SamplerConfig::default();
    assert!(matches!(
        bad(SamplerConfig { temperature: -0.1, ..d }),
        SamplerError::InvalidConfig { field: "temperature", value, .. } if value == -0.1
    ));
    assert!(matches!(
        bad(SamplerConfig {
            temperature: f32::NAN,
            ..d
        }),
        SamplerError::InvalidConfig {
            field: "temperature",
            ..
        }
    ));
    for top_p in [0.0, -0.5, 1.01, f32::NAN] {
        assert!(matches!(
            bad(SamplerConfig { top_p, ..d }),
            SamplerError::InvalidConfig { field: "top_p", .. }
        ));
    }
    for min_p in [-0.01, 1.01, f32::NAN] {
        assert!(matches!(
            bad(SamplerConfig { min_p, ..d }),
            SamplerError::InvalidConfig { field: "min_p", .. }
        ));
    }
    for repetition_penalty in [0.0, -1.0] {
        assert!(matches!(
            bad(SamplerConfig { repetition_penalty, ..d }),
            SamplerError::InvalidConfig { field: "repetition_penalty", value, .. }
                if value == repetition_penalty
        ));
    }
    assert_eq!(d.validate(), Ok(()));
    let msg = SamplerError::NanLogit { index: 7 }.to_string();
    assert!(msg.contains('7'), "{msg}");
}

#[test]
fn failed_call_does_not_advance_the_rng() {
    let logits = fake_logits(1000, 3);
    let mut a = Sampler::new(cfg(1.0, 0, 1.0, 77));
    let mut b = Sampler::new(cfg(1.0, 0, 1.0, 77));
    assert!(a.sample(&[f32::NAN], &[]).is_err());
    for _ in 0..20 {
        assert_eq!(
            a.sample(&logits, &[]).unwrap(),
            b.sample(&logits, &[]).unwrap()
        );
    }
}

/// Feeds pieces and collects what would be streamed.
fn stream(stops: &[&str], pieces: &[&str]) -> (String, bool) {
    let mut sc = StopChecker::new(stops.iter().copied());
    let mut out = String::new();
    for p in pieces {
        match sc.push(p) {
            StopStatus::Continue(t) => out.push_str(&t),
            StopStatus::Stopped(t) => {
                out.push_str(&t);
                return (out, true);
            }
        }
    }
    out.push_str(&sc.finish());
    (out, false)
}

#[test]
fn stop_string_split_across_pieces_is_never_streamed() {
    let mut sc = StopChecker::new(["<|im_end|>"]);
    assert_eq!(sc.push("Hello"), StopStatus::Continue("Hello".into()));
    // "<|im" could start the stop string: held back, nothing streamed.
    assert_eq!(sc.push(" world<|im"), StopStatus::Continue(" world".into()));
    assert_eq!(sc.push("_en"), StopStatus::Continue(String::new()));
    assert_eq!(sc.push("d|>ignored"), StopStatus::Stopped(String::new()));
    assert!(sc.is_stopped());
    assert_eq!(sc.push("more"), StopStatus::Stopped(String::new()));

    assert_eq!(
        stream(&["<|im_end|>"], &["a<", "|", "im_", "end", "|>", "b"]),
        ("a".to_string(), true)
    );
    // A false start is released once it stops matching.
    assert_eq!(
        stream(&["<|im_end|>"], &["x <|i", "dea"]),
        ("x <|idea".to_string(), false)
    );
    // A held tail is flushed by finish().
    assert_eq!(stream(&["STOP"], &["go ST"]), ("go ST".to_string(), false));
    // Earliest of several stop strings wins; text before it is emitted.
    assert_eq!(
        stream(&["\n\n", "User:"], &["ok User", ":\n\n"]),
        ("ok ".to_string(), true)
    );
    // Multi-byte text around a partial match stays valid UTF-8.
    assert_eq!(
        stream(&["→end"], &["café →", "e", "nd"]),
        ("café ".to_string(), true)
    );
    // No stop strings: everything passes straight through.
    assert_eq!(stream(&[], &["a", "b"]), ("ab".to_string(), false));
}

/// OpenAI's penalties: n occurrences cost n × frequency + presence, once per distinct id;
/// ids outside the vocabulary and masked logits are left alone.
#[test]
fn frequency_and_presence_penalties_follow_openai() {
    let mut logits = vec![1.0, 2.0, -1.0, f32::NEG_INFINITY, 0.5];
    apply_frequency_presence_penalties(&mut logits, &[1, 1, 1, 2, 3, 99], 0.5, 0.25);
    assert_eq!(logits, vec![1.0, 2.0 - 1.5 - 0.25, -1.0 - 0.5 - 0.25, f32::NEG_INFINITY, 0.5]);
    let mut logits = vec![1.0, 2.0];
    apply_frequency_presence_penalties(&mut logits, &[0], -1.0, 0.0);
    assert_eq!(logits, vec![2.0, 2.0], "a negative penalty favours repeats");
    let mut same = vec![1.0, 2.0];
    apply_frequency_presence_penalties(&mut same, &[0, 1], 0.0, 0.0);
    assert_eq!(same, vec![1.0, 2.0]);
}
