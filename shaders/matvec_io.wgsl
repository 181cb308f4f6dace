// Activations, outputs and shape of a matrix-vector product y = x · Wᵀ for a few rows of x.
// Shared by matvec.wgsl and matvec_subgroup.wgsl.

struct MatvecParams {
    // Rows of this weight chunk (outputs per activation row it writes).
    n: u32,
    // Row length of W and x, a multiple of 8.
    k: u32,
    // Output features of the whole matrix (all its chunks).
    y_stride: u32,
    // The output feature this chunk's first row computes.
    y_offset: u32,
    // First activation row of this pass: more than MAX_ROWS rows run as several passes.
    m0: u32,
    // Where y's planar parts start and how many rows each holds (output_parts.wgsl).
    part1: u32,
    part2: u32,
    block_rows: u32,
}

// Activation rows, `k / 4` vectors each. Only rows m0 .. m0 + ROWS are read.
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> params: MatvecParams;

// Number of activation rows, 1..=MAX_ROWS. A constant so the per-row loops unroll and the
// accumulators stay in registers.
override ROWS: u32 = 1u;
const MAX_ROWS: u32 = 8u;

// Adds w · x[r, 8g..8g+8] to acc[r] for every activation row r.
fn add_group(acc: ptr<function, array<f32, MAX_ROWS>>, w: Group8, g: u32) {
    let x_row = params.k / 4u;
    for (var r = 0u; r < ROWS; r++) {
        let xi = (params.m0 + r) * x_row + g * 2u;
        (*acc)[r] += dot(w.lo, x[xi]) + dot(w.hi, x[xi + 1u]);
    }
}

// Groups of 8 weights an invocation takes per loop step (1, 2 or 4 only: the vector width `qgpu
// tune` varies); K must be a multiple of 8·SPAN. The K-quants ignore it.
override SPAN: u32 = 1u;

// Groups of 8 weights per accumulate_span call. The super-block formats take a whole sub-block
// (Q4_K, Q5_K, IQ4_XS 32 weights; Q6_K, Q3_K, Q2_K 16), so its scale is decoded once per sub-block instead of once per 8 weights
// (on CPU adapters the decode costs about as much as the 8 multiply-adds). FORMAT is a pipeline
// constant: this folds to a constant, and accumulate_span's switch to one branch.
fn span_groups() -> u32 {
    switch FORMAT {
        case FORMAT_Q4_K, FORMAT_Q5_K, FORMAT_IQ4_XS: { return 4u; }
        case FORMAT_Q6_K, FORMAT_Q3_K, FORMAT_Q2_K: { return 2u; }
        default: { return SPAN; }
    }
}

// Adds W[row, ·] · x[r, ·] over span `i` (groups i·span_groups() onwards) for every row r.
fn accumulate_span(acc: ptr<function, array<f32, MAX_ROWS>>, row: u32, i: u32) {
    switch FORMAT {
        case FORMAT_Q4_K: {
            let s = q4_k_sub_block(row, i, params.k);
            for (var j = 0u; j < 4u; j++) {
                add_group(acc, q4_k_group8(s, j), 4u * i + j);
            }
        }
        case FORMAT_Q6_K: {
            let s = q6_k_sub_block(row, i, params.k);
            for (var j = 0u; j < 2u; j++) {
                add_group(acc, q6_k_group8(s, j), 2u * i + j);
            }
        }
        case FORMAT_Q5_K: {
            let s = q5_k_sub_block(row, i, params.k);
            for (var j = 0u; j < 4u; j++) {
                add_group(acc, q5_k_group8(s, j), 4u * i + j);
            }
        }
        case FORMAT_IQ4_XS: {
            let s = iq4_xs_sub_block(row, i, params.k);
            for (var j = 0u; j < 4u; j++) {
                add_group(acc, iq4_nl_group8(w_quants[s.q + j], s.d), 4u * i + j);
            }
        }
        case FORMAT_Q3_K: {
            let s = q3_k_sub_block(row, i, params.k);
            for (var j = 0u; j < 2u; j++) {
                add_group(acc, q3_k_group8(s, j), 2u * i + j);
            }
        }
        case FORMAT_Q2_K: {
            let s = q2_k_sub_block(row, i, params.k);
            for (var j = 0u; j < 2u; j++) {
                add_group(acc, q2_k_group8(s, j), 2u * i + j);
            }
        }
        default: {
            // Unrolled by hand behind constant conditions rather than a loop over SPAN: a
            // compiler that keeps the loop (SwiftShader) pays for it on every group.
            let g = SPAN * i;
            add_group(acc, load_group8(row, g, params.k), g);
            if SPAN >= 2u {
                add_group(acc, load_group8(row, g + 1u, params.k), g + 1u);
            }
            if SPAN >= 4u {
                add_group(acc, load_group8(row, g + 2u, params.k), g + 2u);
                add_group(acc, load_group8(row, g + 3u, params.k), g + 3u);
            }
        }
    }
}

fn store_row(row: u32, r: u32, value: f32) {
    y[output_index(params.m0 + r, params.y_offset + row, params.y_stride, params.part1, params.part2, params.block_rows)] = value;
}
