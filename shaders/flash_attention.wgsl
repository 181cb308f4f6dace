// Causal grouped-query attention over the KV cache with an online softmax: no score buffer of
// any context-sized shape. Query t sits at position pos0 + t and sees positions
// first_key(t)..=pos0 + t: all of them, or in a sliding-window layer the last `window`.
//
// flash_split: one workgroup per (split of the keys, KV head, block of 8 query rows), a row
// being one (token, query head of this KV head's group). It walks its keys in tiles: the tile's
// K and V are read from the cache once, dequantized into workgroup memory, and used by every
// row of the block, so each K/V value is read once for all the query heads that share it.
// Each row keeps a running max m, sum l and unnormalized output. Decode (1-8 tokens) is one
// row block per KV head and many splits; prefill many row blocks and few splits.
// flash_combine: one invocation per output value merges the splits' (m, l, acc).
//
// Workgroup memory: 2 × 1920 + 256 f32 = 16 KiB, 64 invocations, no subgroups: browser limits.

struct AttnParams {
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
    tokens: u32,
    // Slots of the cache; position j lives in slot j % rows (a ring for window layers).
    rows: u32,
    scale: f32,
    // Keys a query sees in a sliding-window layer (its own included); 0 for no window.
    window: u32,
    // Scores are soft-capped to ±softcap (Gemma 2); 0 for none.
    softcap: f32,
    // Keys a split covers.
    split: u32,
    // Words of one (slot, KV head) row of the cache.
    row_words: u32,
}

struct Step {
    pos0: u32,
}

// 0 f32, 1 f16 (two a word), 2 q8_0, 3 q4_0 (KvType::shader_code).
override KV_TYPE: u32 = 1u;

@group(0) @binding(0) var<storage, read> q: array<f32>;               // [tokens][heads][head_dim]
@group(0) @binding(1) var<storage, read> k_cache: array<u32>;         // [slot][kv_heads][row_words]
@group(0) @binding(2) var<storage, read> v_cache: array<u32>;
@group(0) @binding(3) var<storage, read_write> part_acc: array<f32>;  // [split][tokens][heads][head_dim]
@group(0) @binding(4) var<storage, read_write> part_ml: array<vec2<f32>>; // [split][tokens][heads]
@group(0) @binding(5) var<uniform> params: AttnParams;
@group(0) @binding(6) var<uniform> step: Step;

const ROWS: u32 = 8u;
// Invocations that share one row's output dimensions.
const LANES: u32 = 8u;
const TILE: u32 = 1920u;
const MAX_TILE_KEYS: u32 = 32u;
// Head dimensions one lane accumulates (head_dim ≤ 256).
const MAX_DIMS: u32 = 32u;
// Below any real score; a masked key.
const MASKED: f32 = -3.0e38;

var<workgroup> kt: array<f32, TILE>;
var<workgroup> vt: array<f32, TILE>;
var<workgroup> st: array<f32, 256>; // [ROWS][MAX_TILE_KEYS]

// The first cache position query t attends to.
fn first_key(t: u32) -> u32 {
    let pos = step.pos0 + t;
    if params.window == 0u || pos < params.window {
        return 0u;
    }
    return pos + 1u - params.window;
}

// Where the splits start: the first key any query of this call sees.
fn split_base() -> u32 {
    return first_key(0u);
}

fn splits() -> u32 {
    return (step.pos0 + params.tokens - split_base() + params.split - 1u) / params.split;
}

fn cache_word(is_v: bool, i: u32) -> u32 {
    if is_v {
        return v_cache[i];
    }
    return k_cache[i];
}

// Value d of the head row that starts at word b.
fn load_value(is_v: bool, b: u32, d: u32) -> f32 {
    let hd = params.head_dim;
    switch KV_TYPE {
        case 0u: {
            return bitcast<f32>(cache_word(is_v, b + d));
        }
        case 1u: {
            let pair = unpack2x16float(cache_word(is_v, b + d / 2u));
            return select(pair.x, pair.y, d % 2u == 1u);
        }
        case 2u: {
            let w = cache_word(is_v, b + d / 4u);
            let qv = f32(extractBits(bitcast<i32>(w), 8u * (d % 4u), 8u));
            let s = unpack2x16float(cache_word(is_v, b + hd / 4u + d / 64u));
            return qv * select(s.x, s.y, (d / 32u) % 2u == 1u);
        }
        default: {
            let w = cache_word(is_v, b + d / 8u);
            let qv = f32(extractBits(w, 4u * (d % 8u), 4u)) - 8.0;
            let s = unpack2x16float(cache_word(is_v, b + hd / 8u + d / 64u));
            return qv * select(s.x, s.y, (d / 32u) % 2u == 1u);
        }
    }
}

fn soft_cap(s: f32) -> f32 {
    if params.softcap > 0.0 {
        // Clamped as in elementwise.wgsl: tanh through exp overflows for large arguments.
        return params.softcap * tanh(clamp(s / params.softcap, -10.0, 10.0));
    }
    return s;
}

@compute @workgroup_size(64)
fn flash_split(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let hd = params.head_dim;
    let group = params.heads / params.kv_heads;
    let kv = wid.y;
    let split = wid.x;
    let block_rows = params.tokens * group;
    let r0 = wid.z * ROWS;
    if split >= splits() || r0 >= block_rows {
        return;
    }
    let r_last = min(r0 + ROWS, block_rows) - 1u;
    // Keys this block needs within the split: from the first row's first key to the last
    // row's own position (rows are token-major, so those are its extreme tokens).
    let s0 = split_base() + split * params.split;
    let k0 = max(s0, first_key(r0 / group));
    let k1 = min(s0 + params.split, step.pos0 + r_last / group + 1u);
    let tile_keys = min(MAX_TILE_KEYS, TILE / hd);

    // This invocation's row and its share of the output dimensions.
    let slot = lid / LANES;
    let lane = lid % LANES;
    let r = r0 + slot;
    let live = r < block_rows;
    let t = r / group;
    let h = kv * group + r % group;
    let dims = hd / LANES;
    var m = MASKED;
    var l = 0.0;
    var acc: array<f32, MAX_DIMS>;
    for (var i = 0u; i < MAX_DIMS; i++) {
        acc[i] = 0.0;
    }

    for (var kb = k0; kb < k1; kb += tile_keys) {
        let n = min(tile_keys, k1 - kb);
        // Load the tile: K and V of keys kb..kb+n, dequantized.
        for (var i = lid; i < n * hd; i += 64u) {
            let key = kb + i / hd;
            let b = ((key % params.rows) * params.kv_heads + kv) * params.row_words;
            kt[i] = load_value(false, b, i % hd);
            vt[i] = load_value(true, b, i % hd);
        }
        workgroupBarrier();
        // Scores of every (row, key) pair of the tile.
        for (var p = lid; p < ROWS * n; p += 64u) {
            let sr = p / n;
            let kk = p % n;
            let row = r0 + sr;
            var s = MASKED;
            let tt = row / group;
            let key = kb + kk;
            if row < block_rows && key >= first_key(tt) && key <= step.pos0 + tt {
                let qa = (tt * params.heads + kv * group + row % group) * hd;
                var dot = 0.0;
                for (var d = 0u; d < hd; d++) {
                    dot = fma(q[qa + d], kt[kk * hd + d], dot);
                }
                s = soft_cap(dot * params.scale);
            }
            st[sr * MAX_TILE_KEYS + kk] = s;
        }
        workgroupBarrier();
        // Online softmax: rescale what was summed by e^(m_old - m_new), add this tile.
        if live {
            var mt = MASKED;
            for (var kk = 0u; kk < n; kk++) {
                mt = max(mt, st[slot * MAX_TILE_KEYS + kk]);
            }
            if mt > MASKED {
                let m_new = max(m, mt);
                let corr = exp(m - m_new);
                l *= corr;
                for (var i = 0u; i < dims; i++) {
                    acc[i] *= corr;
                }
                for (var kk = 0u; kk < n; kk++) {
                    let s = st[slot * MAX_TILE_KEYS + kk];
                    if s > MASKED {
                        let e = exp(s - m_new);
                        l += e;
                        for (var i = 0u; i < dims; i++) {
                            acc[i] = fma(e, vt[kk * hd + lane + i * LANES], acc[i]);
                        }
                    }
                }
                m = m_new;
            }
        }
        workgroupBarrier();
    }
    if live {
        let row = (split * params.tokens + t) * params.heads + h;
        for (var i = 0u; i < dims; i++) {
            part_acc[row * hd + lane + i * LANES] = acc[i];
        }
        if lane == 0u {
            part_ml[row] = vec2<f32>(m, l);
        }
    }
}
