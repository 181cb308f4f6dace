// Rotary position embedding of Q and K, both in place; kv_store.wgsl then stores K and V
// into the KV cache in its element type.
// GGUF llama files hold Q and K permuted for rotation of adjacent pairs (x[2i], x[2i+1]);
// Qwen, Gemma and Phi-3 files rotate halves (x[i], x[i + rope_dims/2]), NeoX style.
// cos and sin come from a table computed on the host in f64: GPU sin/cos of large angles are
// only loosely specified.

struct RopeParams {
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
    // Leading dimensions of each head that rotate; the rest pass through.
    rope_dims: u32,
    tokens: u32,
    // 0: adjacent pairs; 1: halves.
    halves: u32,
    // Activation row of this call's first token: a batched decode step runs one sequence's
    // rows at a time from a batch of several.
    row0: u32,
}

struct Step {
    // Position of the first token of this call.
    pos0: u32,
}

@group(0) @binding(0) var<storage, read_write> q: array<f32>;       // [tokens][heads][head_dim]
@group(0) @binding(1) var<storage, read_write> k: array<f32>;       // [tokens][kv_heads][head_dim]
@group(0) @binding(2) var<storage, read> rope_table: array<vec2<f32>>; // [position][rope_dims / 2] (cos, sin)
@group(0) @binding(3) var<uniform> params: RopeParams;
@group(0) @binding(4) var<uniform> step: Step;

fn rotate(pair: vec2<f32>, pos: u32, i: u32) -> vec2<f32> {
    if 2u * i >= params.rope_dims {
        return pair;
    }
    let cs = rope_table[pos * (params.rope_dims / 2u) + i];
    return vec2<f32>(pair.x * cs.x - pair.y * cs.y, pair.x * cs.y + pair.y * cs.x);
}

// Offsets within a head of the two values pair `i` (of head_dim / 2) rotates. Pairs past
// rope_dims / 2 pass through unrotated; in halves mode they are the adjacent pairs after the
// rotated dimensions.
fn pair_offsets(i: u32) -> vec2<u32> {
    let rot = params.rope_dims / 2u;
    if params.halves == 0u {
        return vec2<u32>(2u * i, 2u * i + 1u);
    }
    if i < rot {
        return vec2<u32>(i, i + rot);
    }
    let o = params.rope_dims + 2u * (i - rot);
    return vec2<u32>(o, o + 1u);
}

// One invocation per (token, head of Q or K, pair).
@compute @workgroup_size(64)
fn rope(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let index = gid.x + gid.y * groups.x * 64u;
    let half = params.head_dim / 2u;
    let per_token = (params.heads + params.kv_heads) * half;
    if index >= params.tokens * per_token {
        return;
    }
    let t = index / per_token;
    let head = (index % per_token) / half;
    let i = index % half;
    let pos = step.pos0 + t;
    let o = pair_offsets(i);
    if head < params.heads {
        let at = ((params.row0 + t) * params.heads + head) * params.head_dim;
        let r = rotate(vec2<f32>(q[at + o.x], q[at + o.y]), pos, i);
        q[at + o.x] = r.x;
        q[at + o.y] = r.y;
    } else {
        let kv = head - params.heads;
        let at = ((params.row0 + t) * params.kv_heads + kv) * params.head_dim;
        let r = rotate(vec2<f32>(k[at + o.x], k[at + o.y]), pos, i);
        k[at + o.x] = r.x;
        k[at + o.y] = r.y;
    }
}
