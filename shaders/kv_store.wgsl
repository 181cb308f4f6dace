// Stores this call's K and V rows (RoPE already applied to K) into the KV cache, in the cache's
// element type (src/quant/kv.rs describes the layout; its CPU code is the reference).
// Position p goes to slot p % rows: a sliding-window layer's cache is a ring of `rows` slots.

struct StoreParams {
    kv_heads: u32,
    head_dim: u32,
    tokens: u32,
    // Slots of the cache; a position's slot is position % rows.
    rows: u32,
    // Words of one (slot, KV head) row.
    row_words: u32,
    // Activation row of this call's first token: a batched decode step runs one sequence's
    // rows at a time from a batch of several.
    row0: u32,
}

struct Step {
    pos0: u32,
}

// 0 f32, 1 f16 (two a word), 2 q8_0, 3 q4_0 (KvType::shader_code).
override KV_TYPE: u32 = 1u;

@group(0) @binding(0) var<storage, read> k: array<f32>;             // [tokens][kv_heads][head_dim]
@group(0) @binding(1) var<storage, read> v: array<f32>;             // [tokens][kv_heads][head_dim]
@group(0) @binding(2) var<storage, read_write> k_cache: array<u32>; // [slot][kv_heads][row_words]
@group(0) @binding(3) var<storage, read_write> v_cache: array<u32>;
@group(0) @binding(4) var<uniform> params: StoreParams;
@group(0) @binding(5) var<uniform> step: Step;

fn src(is_v: bool, i: u32) -> f32 {
    if is_v {
        return v[i];
    }
    return k[i];
}

fn put(is_v: bool, i: u32, w: u32) {
    if is_v {
        v_cache[i] = w;
    } else {
        k_cache[i] = w;
    }
}

// ggml's roundf (half away from zero); the CPU reference computes the same f32 expression.
fn round_away(x: f32) -> f32 {
    return sign(x) * floor(abs(x) + 0.5);
}

// The f16 scale of one run of up to 32 values starting at a, and its quant words written.
fn store_block(is_v: bool, a: u32, n: u32, dst: u32, first: u32) -> f32 {
    var amax = 0.0;
    var max_v = 0.0;
    for (var j = 0u; j < n; j++) {
        let x = src(is_v, a + j);
        // Strictly greater: the first value of largest magnitude, as ggml's Q4_0.
        if abs(x) > amax {
            amax = abs(x);
            max_v = x;
        }
    }
    if KV_TYPE == 2u {
        let d = amax / 127.0;
        var id = 0.0;
        if d != 0.0 {
            id = 1.0 / d;
        }
        for (var j = 0u; j < n; j += 4u) {
            var w = 0u;
            for (var b = 0u; b < 4u; b++) {
                let q = i32(round_away(src(is_v, a + j + b) * id));
                w |= (u32(q) & 0xffu) << (8u * b);
            }
            put(is_v, dst + (first + j) / 4u, w);
        }
        return d;
    }
    let d = max_v / -8.0;
    var id = 0.0;
    if d != 0.0 {
        id = 1.0 / d;
    }
    for (var j = 0u; j < n; j += 8u) {
        var w = 0u;
        for (var b = 0u; b < 8u; b++) {
            let q = min(15u, u32(floor(src(is_v, a + j + b) * id + 8.5)));
            w |= q << (4u * b);
        }
        put(is_v, dst + (first + j) / 8u, w);
    }
    return d;
}

// One invocation per (token, K or V, KV head, pair of 32-value runs): a pair shares a scale word.
@compute @workgroup_size(64)
fn kv_store(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let index = gid.x + gid.y * groups.x * 64u;
    let hd = params.head_dim;
    let pairs = (hd + 63u) / 64u;
    if index >= params.tokens * 2u * params.kv_heads * pairs {
        return;
    }
    let p = index % pairs;
    let kv = (index / pairs) % params.kv_heads;
    let is_v = (index / (pairs * params.kv_heads)) % 2u == 1u;
    let t = index / (pairs * params.kv_heads * 2u);
    let a = ((params.row0 + t) * params.kv_heads + kv) * hd;
    let slot = (step.pos0 + t) % params.rows;
    let dst = (slot * params.kv_heads + kv) * params.row_words;
    let first = 64u * p;
    let last = min(first + 64u, hd);
    if KV_TYPE == 0u {
        for (var i = first; i < last; i++) {
            put(is_v, dst + i, bitcast<u32>(src(is_v, a + i)));
        }
        return;
    }
    if KV_TYPE == 1u {
        for (var i = first; i < last; i += 2u) {
            put(is_v, dst + i / 2u, pack2x16float(vec2<f32>(src(is_v, a + i), src(is_v, a + i + 1u))));
        }
        return;
    }
    let d0 = store_block(is_v, a + first, min(32u, last - first), dst, first);
    var d1 = 0.0;
    if first + 32u < last {
        d1 = store_block(is_v, a + first + 32u, last - first - 32u, dst, first + 32u);
    }
    var quant_words = hd / 8u;
    if KV_TYPE == 2u {
        quant_words = hd / 4u;
    }
    put(is_v, dst + quant_words + p, pack2x16float(vec2<f32>(d0, d1)));
}
