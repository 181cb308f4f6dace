// Merges the splits of flash_attention.wgsl: out = Σ_s e^(m_s - M) acc_s / Σ_s e^(m_s - M) l_s,
// M the largest m_s of a split that saw a key. One invocation per output value, no barriers.

struct AttnParams {
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
    tokens: u32,
    rows: u32,
    scale: f32,
    window: u32,
    softcap: f32,
    split: u32,
    row_words: u32,
    // Output row of this call's first token.
    row0: u32,
}

struct Step {
    pos0: u32,
}

@group(0) @binding(0) var<storage, read> part_acc: array<f32>;       // [split][tokens][heads][head_dim]
@group(0) @binding(1) var<storage, read> part_ml: array<vec2<f32>>;  // [split][tokens][heads]
@group(0) @binding(2) var<storage, read_write> out: array<f32>;      // [tokens][heads][head_dim]
@group(0) @binding(3) var<uniform> params: AttnParams;
@group(0) @binding(4) var<uniform> step: Step;

// As flash_attention.wgsl: the splits start at the first key query 0 sees.
fn splits() -> u32 {
    var base = 0u;
    if params.window != 0u && step.pos0 >= params.window {
        base = step.pos0 + 1u - params.window;
    }
    return (step.pos0 + params.tokens - base + params.split - 1u) / params.split;
}

@compute @workgroup_size(64)
fn flash_combine(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let index = gid.x + gid.y * groups.x * 64u;
    let rows = params.tokens * params.heads;
    if index >= rows * params.head_dim {
        return;
    }
    let row = index / params.head_dim;
    let d = index % params.head_dim;
    let n = splits();
    var big = -3.0e38;
    for (var s = 0u; s < n; s++) {
        let ml = part_ml[s * rows + row];
        if ml.y > 0.0 {
            big = max(big, ml.x);
        }
    }
    var l = 0.0;
    var acc = 0.0;
    for (var s = 0u; s < n; s++) {
        let ml = part_ml[s * rows + row];
        if ml.y > 0.0 {
            let w = exp(ml.x - big);
            l = fma(w, ml.y, l);
            acc = fma(w, part_acc[(s * rows + row) * params.head_dim + d], acc);
        }
    }
    // Every query sees at least itself, so l > 0.
    out[params.row0 * params.heads * params.head_dim + index] = acc / l;
}
