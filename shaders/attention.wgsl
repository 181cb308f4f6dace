// Causal grouped-query attention over the KV cache, in three passes that need little
// workgroup memory at any context length: scores = Q·Kᵀ·scale, softmax per row, out = P·V.
// Query t sits at position pos0 + t and sees cache positions first_key(t)..=pos0 + t: all of
// them, or in a sliding-window layer the last `window`.
// reduce.wgsl + this file.

struct AttnParams {
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
    tokens: u32,
    // Row stride of the score buffer: the context length.
    context: u32,
    scale: f32,
    // Keys a query sees in a sliding-window layer (its own included); 0 for no window.
    window: u32,
    // Scores are soft-capped to ±softcap (Gemma 2); 0 for none.
    softcap: f32,
}

struct Step {
    pos0: u32,
}

@group(0) @binding(0) var<storage, read> q: array<f32>;           // [tokens][heads][head_dim]
@group(0) @binding(1) var<storage, read> kv_cache: array<f32>;    // [position][kv_heads][head_dim]
@group(0) @binding(2) var<storage, read_write> scores: array<f32>; // [heads][tokens][context]
@group(0) @binding(3) var<storage, read_write> out: array<f32>;    // [tokens][heads][head_dim]
@group(0) @binding(4) var<uniform> params: AttnParams;
@group(0) @binding(5) var<uniform> step: Step;

// The first cache position query t attends to.
fn first_key(t: u32) -> u32 {
    let pos = step.pos0 + t;
    if params.window == 0u || pos < params.window {
        return 0u;
    }
    return pos + 1u - params.window;
}

// x: key position, y: head * tokens + token.
@compute @workgroup_size(64)
fn attn_scores(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = gid.x;
    let row = gid.y;
    let h = row / params.tokens;
    let t = row % params.tokens;
    if h >= params.heads || j > step.pos0 + t || j < first_key(t) {
        return;
    }
    let kv = h / (params.heads / params.kv_heads);
    let qa = (t * params.heads + h) * params.head_dim;
    let ka = (j * params.kv_heads + kv) * params.head_dim;
    var dot = 0.0;
    for (var d = 0u; d < params.head_dim; d++) {
        dot = fma(q[qa + d], kv_cache[ka + d], dot);
    }
    var s = dot * params.scale;
    if params.softcap > 0.0 {
        // Clamped as in elementwise.wgsl: tanh through exp overflows for large arguments.
        s = params.softcap * tanh(clamp(s / params.softcap, -10.0, 10.0));
    }
    scores[row * params.context + j] = s;
}

// One workgroup per score row; normalises it in place.
@compute @workgroup_size(64)
fn attn_softmax(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = wid.x;
    if row >= params.heads * params.tokens {
        return;
    }
    let t = row % params.tokens;
    let len = step.pos0 + t + 1u;
    let first = first_key(t);
    let base = row * params.context;
    var m = -3.4e38;
    for (var j = first + lid; j < len; j += WIDTH) {
        m = max(m, scores[base + j]);
    }
    m = reduce_max(lid, m);
    var s = 0.0;
    for (var j = first + lid; j < len; j += WIDTH) {
        let e = exp(scores[base + j] - m);
        scores[base + j] = e;
        s += e;
    }
    let inv = 1.0 / reduce_sum(lid, s);
    for (var j = first + lid; j < len; j += WIDTH) {
        scores[base + j] *= inv;
    }
}

// One invocation per output value (token, head, d); kv_cache is the V cache here.
@compute @workgroup_size(64)
fn attn_values(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let index = gid.x + gid.y * groups.x * 64u;
    if index >= params.tokens * params.heads * params.head_dim {
        return;
    }
    let d = index % params.head_dim;
    let h = (index / params.head_dim) % params.heads;
    let t = index / (params.head_dim * params.heads);
    let kv = h / (params.heads / params.kv_heads);
    let len = step.pos0 + t + 1u;
    let base = (h * params.tokens + t) * params.context;
    var acc = 0.0;
    for (var j = first_key(t); j < len; j++) {
        acc = fma(scores[base + j], kv_cache[(j * params.kv_heads + kv) * params.head_dim + d], acc);
    }
    out[index] = acc;
}
