// Compares two models' next-token distributions position by position, without reading the
// logits back: KL(reference ‖ candidate), each model's negative log-likelihood of the actual next
// token (for perplexity), and each model's top-1 token. One workgroup per position.
// reduce.wgsl + this file.

struct MetricParams {
    rows: u32,
    vocab: u32,
}

// Five words per row, in the order of the host's `RowMetrics` (src/ops/metrics.rs): kl,
// nll_reference, nll_candidate (f32 bits), top1_reference, top1_candidate. A flat u32 array
// rather than an array of structs keeps the binding's minimum size at 4 bytes.
const METRIC_WORDS: u32 = 5u;

// No next token at this position (the last one of a window): the NLLs are written as 0.
const NO_TARGET: u32 = 0xffffffffu;

@group(0) @binding(0) var<storage, read> logits_ref: array<f32>;
@group(0) @binding(1) var<storage, read> logits_cand: array<f32>;
@group(0) @binding(2) var<storage, read> targets: array<u32>;
@group(0) @binding(3) var<storage, read_write> metrics: array<u32>;
@group(0) @binding(4) var<uniform> params: MetricParams;

// The lowest index holding the workgroup's maximum: every invocation offers its own best index,
// the rest offer +inf, and the max of the negated indices is the smallest one. Indices stay exact
// in f32 below 2^24, far above any vocabulary.
fn reduce_argmax(lid: u32, best: f32, best_index: u32) -> u32 {
    let top = reduce_max(lid, best);
    let offer = select(-3.0e38, -f32(best_index), best == top);
    return u32(-reduce_max(lid, offer));
}

@compute @workgroup_size(64)
fn logit_metrics(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    // Long windows spill over into y (65,535 workgroups per dimension).
    let row = wid.x + wid.y * groups.x;
    if row >= params.rows {
        return;
    }
    let base = row * params.vocab;

    // Pass 1: each model's maximum (for a stable softmax) and its first index.
    var max_r = -3.0e38;
    var max_c = -3.0e38;
    var arg_r = 0u;
    var arg_c = 0u;
    for (var i = lid; i < params.vocab; i += WIDTH) {
        let r = logits_ref[base + i];
        let c = logits_cand[base + i];
        if r > max_r {
            max_r = r;
            arg_r = i;
        }
        if c > max_c {
            max_c = c;
            arg_c = i;
        }
    }
    let top_r = reduce_argmax(lid, max_r, arg_r);
    let top_c = reduce_argmax(lid, max_c, arg_c);
    let m_r = logits_ref[base + top_r];
    let m_c = logits_cand[base + top_c];

    // Pass 2: both partition functions and Σ e^(r - m_r)·(r - c), from which
    // KL = Σ p_r (log p_r - log p_c) = A / S_r - (m_r + ln S_r) + (m_c + ln S_c).
    var s_r = 0.0;
    var s_c = 0.0;
    var a = 0.0;
    for (var i = lid; i < params.vocab; i += WIDTH) {
        let r = logits_ref[base + i];
        let c = logits_cand[base + i];
        let e = exp(r - m_r);
        s_r += e;
        s_c += exp(c - m_c);
        a += e * (r - c);
    }
    let sum_r = reduce_sum(lid, s_r);
    let sum_c = reduce_sum(lid, s_c);
    let sum_a = reduce_sum(lid, a);

    if lid == 0u {
        let log_z_r = m_r + log(sum_r);
        let log_z_c = m_c + log(sum_c);
        let next_id = targets[row];
        var nll_r = 0.0;
        var nll_c = 0.0;
        if next_id != NO_TARGET && next_id < params.vocab {
            nll_r = log_z_r - logits_ref[base + next_id];
            nll_c = log_z_c - logits_cand[base + next_id];
        }
        // Rounding can leave a tiny negative KL for identical distributions; KL is never negative.
        let kl = max(sum_a / sum_r - log_z_r + log_z_c, 0.0);
        let out = row * METRIC_WORDS;
        metrics[out] = bitcast<u32>(kl);
        metrics[out + 1u] = bitcast<u32>(nll_r);
        metrics[out + 2u] = bitcast<u32>(nll_c);
        metrics[out + 3u] = top_r;
        metrics[out + 4u] = top_c;
    }
}
