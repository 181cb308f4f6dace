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
// Heads are read as vec4s: head_dim is a multiple of 8.

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

@group(0) @binding(0) var<storage, read> q: array<vec4<f32>>;         // [tokens][heads][head_dim / 4]
@group(0) @binding(1) var<storage, read> k_cache: array<u32>;         // [slot][kv_heads][row_words]
@group(0) @binding(2) var<storage, read> v_cache: array<u32>;
@group(0) @binding(3) var<storage, read_write> part_acc: array<f32>;  // [split][tokens][heads][head_dim]
@group(0) @binding(4) var<storage, read_write> part_ml: array<vec2<f32>>; // [split][tokens][heads]
@group(0) @binding(5) var<uniform> params: AttnParams;
@group(0) @binding(6) var<uniform> step: Step;

const ROWS: u32 = 8u;
// Invocations that share one row's output: lane l owns the vec4 columns l, l + 8, ... (≤ 8 of
// them, head_dim ≤ 256), held in eight vec4 registers, since llvmpipe keeps an indexed private
// array in memory.
const LANES: u32 = 8u;
// vec4s of K, and of V, a tile holds (1920 f32).
const TILE: u32 = 480u;
const MAX_TILE_KEYS: u32 = 32u;
// Below any real score; a masked key.
const MASKED: f32 = -3.0e38;

var<workgroup> kt: array<vec4<f32>, TILE>;
var<workgroup> vt: array<vec4<f32>, TILE>;
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

// Values 4c..4c+3 of the head row that starts at word b (a vec4 never straddles a block).
fn load4(is_v: bool, b: u32, c: u32) -> vec4<f32> {
    let hd = params.head_dim;
    switch KV_TYPE {
        case 0u: {
            let w = b + 4u * c;
            return bitcast<vec4<f32>>(vec4<u32>(cache_word(is_v, w), cache_word(is_v, w + 1u), cache_word(is_v, w + 2u), cache_word(is_v, w + 3u)));
        }
        case 1u: {
            return vec4<f32>(unpack2x16float(cache_word(is_v, b + 2u * c)), unpack2x16float(cache_word(is_v, b + 2u * c + 1u)));
        }
        case 2u: {
            let w = bitcast<i32>(cache_word(is_v, b + c));
            let qv = vec4<f32>(vec4<i32>(extractBits(w, 0u, 8u), extractBits(w, 8u, 8u), extractBits(w, 16u, 8u), extractBits(w, 24u, 8u)));
            let s = unpack2x16float(cache_word(is_v, b + hd / 4u + c / 16u));
            return qv * select(s.x, s.y, (c / 8u) % 2u == 1u);
        }
        default: {
            let w = cache_word(is_v, b + c / 2u) >> (16u * (c % 2u));
            let qv = vec4<f32>(vec4<u32>(w & 15u, (w >> 4u) & 15u, (w >> 8u) & 15u, (w >> 12u) & 15u)) - 8.0;
            let s = unpack2x16float(cache_word(is_v, b + hd / 8u + c / 16u));
            return qv * select(s.x, s.y, (c / 8u) % 2u == 1u);
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

// e · V's vec4 column `col` of tile key kk, or 0 past the head.
fn term(e: f32, kk: u32, col: u32, hd4: u32) -> vec4<f32> {
    if col < hd4 {
        return e * vt[kk * hd4 + col];
    }
    return vec4<f32>(0.0);
}

fn store4(row: u32, col: u32, hd4: u32, a: vec4<f32>) {
    if col < hd4 {
        let at = (row * hd4 + col) * 4u;
        part_acc[at] = a.x;
        part_acc[at + 1u] = a.y;
        part_acc[at + 2u] = a.z;
        part_acc[at + 3u] = a.w;
    }
}

@compute @workgroup_size(64)
fn flash_split(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let hd4 = params.head_dim / 4u;
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
    let tile_keys = min(MAX_TILE_KEYS, TILE / hd4);

    // This invocation's row and its lane of the output.
    let slot = lid / LANES;
    let lane = lid % LANES;
    let r = r0 + slot;
    let live = r < block_rows;
    let t = r / group;
    let h = kv * group + r % group;
    var m = MASKED;
    var l = 0.0;
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    var a4 = vec4<f32>(0.0);
    var a5 = vec4<f32>(0.0);
    var a6 = vec4<f32>(0.0);
    var a7 = vec4<f32>(0.0);

    for (var kb = k0; kb < k1; kb += tile_keys) {
        let n = min(tile_keys, k1 - kb);
        // Load the tile: K and V of keys kb..kb+n, dequantized.
        for (var i = lid; i < n * hd4; i += 64u) {
            let key = kb + i / hd4;
            let b = ((key % params.rows) * params.kv_heads + kv) * params.row_words;
            kt[i] = load4(false, b, i % hd4);
            vt[i] = load4(true, b, i % hd4);
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
                let qa = (tt * params.heads + kv * group + row % group) * hd4;
                var acc = vec4<f32>(0.0);
                for (var c = 0u; c < hd4; c++) {
                    acc = fma(q[qa + c], kt[kk * hd4 + c], acc);
                }
                s = soft_cap((acc.x + acc.y + acc.z + acc.w) * params.scale);
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
                a0 *= corr;
                a1 *= corr;
                a2 *= corr;
                a3 *= corr;
                a4 *= corr;
                a5 *= corr;
                a6 *= corr;
                a7 *= corr;
                for (var kk = 0u; kk < n; kk++) {
                    let s = st[slot * MAX_TILE_KEYS + kk];
                    if s > MASKED {
                        let e = exp(s - m_new);
                        l += e;
                        a0 += term(e, kk, lane, hd4);
                        a1 += term(e, kk, lane + 8u, hd4);
                        a2 += term(e, kk, lane + 16u, hd4);
                        a3 += term(e, kk, lane + 24u, hd4);
                        a4 += term(e, kk, lane + 32u, hd4);
                        a5 += term(e, kk, lane + 40u, hd4);
                        a6 += term(e, kk, lane + 48u, hd4);
                        a7 += term(e, kk, lane + 56u, hd4);
                    }
                }
                m = m_new;
            }
        }
        workgroupBarrier();
    }
    if live {
        let row = (split * params.tokens + t) * params.heads + h;
        store4(row, lane, hd4, a0);
        store4(row, lane + 8u, hd4, a1);
        store4(row, lane + 16u, hd4, a2);
        store4(row, lane + 24u, hd4, a3);
        store4(row, lane + 32u, hd4, a4);
        store4(row, lane + 40u, hd4, a5);
        store4(row, lane + 48u, hd4, a6);
        store4(row, lane + 56u, hd4, a7);
        if lane == 0u {
            part_ml[row] = vec2<f32>(m, l);
        }
    }
}
