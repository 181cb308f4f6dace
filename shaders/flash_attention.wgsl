// Causal grouped-query attention over the KV cache with an online softmax: no score buffer of
// any context-sized shape. Query t sits at position pos0 + t and sees positions
// first_key(t)..=pos0 + t: all of them, or in a sliding-window layer the last `window`.
//
// flash_split: one workgroup per (split of the keys, KV head, block of ROWS query rows), a row
// being one (token, query head of this KV head's group). It walks its keys in tiles of 256, in
// four phases between barriers:
//   scores:  invocation i takes keys i, i + 64, i + 128, i + 192 of the tile, reads their K rows
//            from the cache once and dots them with every row's query; each query value it
//            loads serves four keys (loads cost far more than arithmetic on CPU adapters);
//   max:     one invocation per row takes the tile's max, the new running max m and the factor
//            e^(m_old - m_new) for what the row summed before;
//   weights: each invocation turns its keys' scores into e^(s - m);
//   values:  invocation c, for each vec4 column c of the head, reads the tile's V column once
//            and adds weight × V into every row's accumulator.
// So every K/V value is read once for all the query rows of the block (all the query heads of
// a GQA group, in decode).
// ROWS (a pipeline constant, at most 4) is the group size × tokens in decode up to 4, so the
// unrolled row code carries no idle rows there; prefill uses 4. Not more: SwiftShader's shader
// compiler (Subzero, the browser's software WebGPU) took 2 s over 4 unrolled rows, 22 s over 5
// and minutes over 6, and the page's model load timed out.
// flash_combine: one invocation per output value merges the splits' (m, l, acc).
//
// Workgroup memory: 4.1 KiB, 64 invocations, no subgroups: within browser limits.
// Heads are read as vec4s: head_dim is a multiple of 8, at most 256 (64 columns).

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
    // Activation row of this call's first token: a batched decode step runs one sequence's
    // rows at a time from a batch of several.
    row0: u32,
}

struct Step {
    pos0: u32,
}

// 0 f32, 1 f16 (two a word), 2 q8_0, 3 q4_0 (KvType::shader_code).
override KV_TYPE: u32 = 1u;

@group(0) @binding(0) var<storage, read> q: array<vec4<f32>>;         // [tokens][heads][head_dim / 4]
@group(0) @binding(1) var<storage, read> k_cache: array<u32>;         // [slot][kv_heads][row_words]
@group(0) @binding(2) var<storage, read> v_cache: array<u32>;
@group(0) @binding(3) var<storage, read_write> part_acc: array<vec4<f32>>; // [split][tokens][heads][head_dim / 4]
@group(0) @binding(4) var<storage, read_write> part_ml: array<vec2<f32>>; // [split][tokens][heads]
@group(0) @binding(5) var<uniform> params: AttnParams;
@group(0) @binding(6) var<uniform> step: Step;

// Query rows a workgroup holds: 1-4 (the unrolled row code below has four).
override ROWS: u32 = 4u;
// Keys a tile holds: four per invocation in the score phase.
const TILE_KEYS: u32 = 256u;
// Below any real score; a masked key.
const MASKED: f32 = -3.0e38;

// [row][key]: the tile's scores, then its weights e^(s - m).
var<workgroup> st: array<f32, 1024>;
// Per row: the running max, and the factor for what was summed before this tile.
var<workgroup> row_max: array<f32, 4>;
var<workgroup> row_corr: array<f32, 4>;

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

// First word of key j's head row for KV head kv.
fn row_base(j: u32, kv: u32) -> u32 {
    return ((j % params.rows) * params.kv_heads + kv) * params.row_words;
}

// Row r of a block is its `ROWS * block + r`-th (token, group head) pair; rows past the last
// real one repeat it, so their loads stay in bounds (their results are never stored).
struct Row {
    t: u32,
    h: u32,
}

fn block_row(kv: u32, r0: u32, r: u32, block_rows: u32) -> Row {
    let group = params.heads / params.kv_heads;
    let row = min(r0 + r, block_rows - 1u);
    return Row(row / group, kv * group + row % group);
}

// Row `row`'s scaled, capped score of key j, or MASKED where it may not see j or j is past
// the keys this block reads.
fn finish_score(dot4: f32, row: Row, j: u32, k1: u32) -> f32 {
    if j >= k1 || j < first_key(row.t) || j > step.pos0 + row.t {
        return MASKED;
    }
    var s = dot4 * params.scale;
    if params.softcap > 0.0 {
        // Clamped as in elementwise.wgsl: tanh through exp overflows for large arguments.
        s = params.softcap * tanh(clamp(s / params.softcap, -10.0, 10.0));
    }
    return s;
}

// The scores of the invocation's four keys j, j + 64, j + 128, j + 192 for one row.
fn finish4(d: vec4<f32>, row: Row, j: u32, k1: u32) -> vec4<f32> {
    return vec4<f32>(finish_score(d.x, row, j, k1), finish_score(d.y, row, j + 64u, k1), finish_score(d.z, row, j + 128u, k1), finish_score(d.w, row, j + 192u, k1));
}

fn q_at(row: Row, c: u32) -> vec4<f32> {
    return q[((params.row0 + row.t) * params.heads + row.h) * (params.head_dim / 4u) + c];
}

// One query vec4 against the same vec4 of four keys.
fn dots(qv: vec4<f32>, ka: vec4<f32>, kb: vec4<f32>, kc: vec4<f32>, kd: vec4<f32>) -> vec4<f32> {
    return vec4<f32>(dot(qv, ka), dot(qv, kb), dot(qv, kc), dot(qv, kd));
}

fn weight(s: f32, m: f32) -> f32 {
    return select(0.0, exp(s - m), s > MASKED);
}

// Writes a row's four weights (row r of the tile) from its scores.
fn store_weights(r: u32, lid: u32, s: vec4<f32>) {
    let m = row_max[r];
    st[r * TILE_KEYS + lid] = weight(s.x, m);
    st[r * TILE_KEYS + lid + 64u] = weight(s.y, m);
    st[r * TILE_KEYS + lid + 128u] = weight(s.z, m);
    st[r * TILE_KEYS + lid + 192u] = weight(s.w, m);
}

fn store_scores(r: u32, lid: u32, s: vec4<f32>) {
    st[r * TILE_KEYS + lid] = s.x;
    st[r * TILE_KEYS + lid + 64u] = s.y;
    st[r * TILE_KEYS + lid + 128u] = s.z;
    st[r * TILE_KEYS + lid + 192u] = s.w;
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
    let live_rows = min(ROWS, block_rows - r0);
    let last = block_row(kv, r0, live_rows - 1u, block_rows);
    // Keys this block needs within the split: from the first row's first key to the last
    // row's own position (rows are token-major, so those are its extreme tokens).
    let s0 = split_base() + split * params.split;
    let k0 = max(s0, first_key(r0 / group));
    let k1 = min(s0 + params.split, step.pos0 + last.t + 1u);

    let w0 = block_row(kv, r0, 0u, block_rows);
    let w1 = block_row(kv, r0, 1u, block_rows);
    let w2 = block_row(kv, r0, 2u, block_rows);
    let w3 = block_row(kv, r0, 3u, block_rows);

    // This invocation's vec4 column of every row's output; column 0 also keeps the sums.
    let col = lid;
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    var l = array<f32, 4>();

    if lid < ROWS {
        row_max[lid] = MASKED;
    }
    workgroupBarrier();
    for (var kb = k0; kb < k1; kb += TILE_KEYS) {
        let n = min(TILE_KEYS, k1 - kb);
        // Scores: this invocation's four keys against every row. Keys past k1 read the last
        // key's row (in bounds) and are masked.
        let j = kb + lid;
        let ba = row_base(min(j, k1 - 1u), kv);
        let bb = row_base(min(j + 64u, k1 - 1u), kv);
        let bc = row_base(min(j + 128u, k1 - 1u), kv);
        let bd = row_base(min(j + 192u, k1 - 1u), kv);
        var d0 = vec4<f32>(0.0);
        var d1 = vec4<f32>(0.0);
        var d2 = vec4<f32>(0.0);
        var d3 = vec4<f32>(0.0);
        for (var c = 0u; c < hd4; c++) {
            let ka = load4(false, ba, c);
            let kb4 = load4(false, bb, c);
            let kc = load4(false, bc, c);
            let kd = load4(false, bd, c);
            d0 += dots(q_at(w0, c), ka, kb4, kc, kd);
            if ROWS > 1u { d1 += dots(q_at(w1, c), ka, kb4, kc, kd); }
            if ROWS > 2u { d2 += dots(q_at(w2, c), ka, kb4, kc, kd); }
            if ROWS > 3u { d3 += dots(q_at(w3, c), ka, kb4, kc, kd); }
        }
        let s0v = finish4(d0, w0, j, k1);
        let s1v = finish4(d1, w1, j, k1);
        let s2v = finish4(d2, w2, j, k1);
        let s3v = finish4(d3, w3, j, k1);
        store_scores(0u, lid, s0v);
        if ROWS > 1u { store_scores(1u, lid, s1v); }
        if ROWS > 2u { store_scores(2u, lid, s2v); }
        if ROWS > 3u { store_scores(3u, lid, s3v); }
        workgroupBarrier();
        // The rows' maxima.
        if lid < ROWS {
            var mt = MASKED;
            for (var kk = 0u; kk < n; kk++) {
                mt = max(mt, st[lid * TILE_KEYS + kk]);
            }
            let m_old = row_max[lid];
            let m_new = max(m_old, mt);
            row_max[lid] = m_new;
            row_corr[lid] = exp(m_old - m_new);
        }
        workgroupBarrier();
        // Weights of this invocation's keys.
        store_weights(0u, lid, s0v);
        if ROWS > 1u { store_weights(1u, lid, s1v); }
        if ROWS > 2u { store_weights(2u, lid, s2v); }
        if ROWS > 3u { store_weights(3u, lid, s3v); }
        workgroupBarrier();
        // Values: rescale what was summed, add weight × V of the tile's keys.
        if col < hd4 {
            a0 *= row_corr[0];
            if ROWS > 1u { a1 *= row_corr[1]; }
            if ROWS > 2u { a2 *= row_corr[2]; }
            if ROWS > 3u { a3 *= row_corr[3]; }
            for (var kk = 0u; kk < n; kk++) {
                let v4 = load4(true, row_base(kb + kk, kv), col);
                a0 = fma(vec4<f32>(st[kk]), v4, a0);
                if ROWS > 1u { a1 = fma(vec4<f32>(st[TILE_KEYS + kk]), v4, a1); }
                if ROWS > 2u { a2 = fma(vec4<f32>(st[2u * TILE_KEYS + kk]), v4, a2); }
                if ROWS > 3u { a3 = fma(vec4<f32>(st[3u * TILE_KEYS + kk]), v4, a3); }
            }
            // The sums, from column 0 alone.
            if col == 0u {
                for (var r = 0u; r < ROWS; r++) {
                    l[r] *= row_corr[r];
                    for (var kk = 0u; kk < n; kk++) {
                        l[r] += st[r * TILE_KEYS + kk];
                    }
                }
            }
        }
        // The next tile's scores overwrite these weights.
        workgroupBarrier();
    }
    if col < hd4 {
        store_row(split, w0, col, a0, row_max[0], l[0], 0u < live_rows);
        store_row(split, w1, col, a1, row_max[1], l[1], 1u < live_rows);
        store_row(split, w2, col, a2, row_max[2], l[2], 2u < live_rows);
        store_row(split, w3, col, a3, row_max[3], l[3], 3u < live_rows);
    }
}

// Writes a row's column `col` of this split's result, and from column 0 its (m, l).
fn store_row(split: u32, row: Row, col: u32, a: vec4<f32>, m: f32, l: f32, live: bool) {
    if !live {
        return;
    }
    let at = (split * params.tokens + row.t) * params.heads + row.h;
    part_acc[at * (params.head_dim / 4u) + col] = a;
    if col == 0u {
        part_ml[at] = vec2<f32>(m, l);
    }
}
