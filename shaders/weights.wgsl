// Quantized weights as `src/quant/repack.rs` lays them out, and their decoding.
// Shared by matvec*.wgsl and matmul.wgsl, which are concatenated after this file.
//
// FORMAT is a pipeline constant, so every `switch FORMAT` folds to one branch when the driver
// compiles the pipeline: one source, one specialised kernel per format.

override FORMAT: u32 = 3u;
const FORMAT_F32: u32 = 0u;
const FORMAT_F16: u32 = 1u;
const FORMAT_Q8_0: u32 = 2u;
const FORMAT_Q4_0: u32 = 3u;
const FORMAT_Q4_1: u32 = 4u;

// Row-major quants of the rows this dispatch covers (one chunk of a split matrix).
@group(0) @binding(0) var<storage, read> w_quants: array<u32>;
// Per-block scales: f16 pairs (Q8_0, Q4_0) or one (d, m) f16 pair per block (Q4_1).
@group(0) @binding(1) var<storage, read> w_scales: array<u32>;

// Eight consecutive weights of one row.
struct Group8 {
    lo: vec4<f32>,
    hi: vec4<f32>,
}

// The f16 scale of block `i`, two of them packed in a word.
fn half_scale(i: u32) -> f32 {
    let pair = unpack2x16float(w_scales[i >> 1u]);
    return select(pair.x, pair.y, (i & 1u) == 1u);
}

// Nibbles 0..3 and 4..7 of `q` as unsigned values.
fn nibbles(q: u32) -> Group8 {
    let shifts_lo = vec4<u32>(0u, 4u, 8u, 12u);
    let shifts_hi = vec4<u32>(16u, 20u, 24u, 28u);
    return Group8(vec4<f32>((vec4<u32>(q) >> shifts_lo) & vec4<u32>(15u)),
                  vec4<f32>((vec4<u32>(q) >> shifts_hi) & vec4<u32>(15u)));
}

// Four signed bytes of `q`, sign-extended by an arithmetic shift.
fn signed_bytes(q: u32) -> vec4<f32> {
    let v = bitcast<vec4<i32>>(vec4<u32>(q << 24u, q << 16u, q << 8u, q));
    return vec4<f32>(v >> vec4<u32>(24u));
}

// Weights [8g, 8g + 8) of `row`, whose length is `k` values.
fn load_group8(row: u32, g: u32, k: u32) -> Group8 {
    switch FORMAT {
        case FORMAT_F32: {
            let base = row * k + g * 8u;
            return Group8(
                bitcast<vec4<f32>>(vec4<u32>(w_quants[base], w_quants[base + 1u], w_quants[base + 2u], w_quants[base + 3u])),
                bitcast<vec4<f32>>(vec4<u32>(w_quants[base + 4u], w_quants[base + 5u], w_quants[base + 6u], w_quants[base + 7u])));
        }
        case FORMAT_F16: {
            let base = row * (k / 2u) + g * 4u;
            return Group8(vec4<f32>(unpack2x16float(w_quants[base]), unpack2x16float(w_quants[base + 1u])),
                          vec4<f32>(unpack2x16float(w_quants[base + 2u]), unpack2x16float(w_quants[base + 3u])));
        }
        case FORMAT_Q8_0: {
            let base = row * (k / 4u) + g * 2u;
            let d = half_scale(row * (k / 32u) + g / 4u);
            return Group8(signed_bytes(w_quants[base]) * d, signed_bytes(w_quants[base + 1u]) * d);
        }
        case FORMAT_Q4_1: {
            let n = nibbles(w_quants[row * (k / 8u) + g]);
            let dm = unpack2x16float(w_scales[row * (k / 32u) + g / 4u]);
            return Group8(n.lo * dm.x + dm.y, n.hi * dm.x + dm.y);
        }
        default: { // FORMAT_Q4_0
            let n = nibbles(w_quants[row * (k / 8u) + g]);
            let d = half_scale(row * (k / 32u) + g / 4u);
            return Group8((n.lo - 8.0) * d, (n.hi - 8.0) * d);
        }
    }
}
