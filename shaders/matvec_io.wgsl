// Activations, outputs and shape of a matrix-vector product y = x · Wᵀ for a few rows of x.
// Shared by matvec.wgsl and matvec_subgroup.wgsl.

struct MatvecParams {
    // Rows of this weight chunk (outputs per activation row it writes).
    n: u32,
    // Row length of W and x, a multiple of 8.
    k: u32,
    // Distance between two activation rows of y, in values (the whole matrix's N).
    y_stride: u32,
    // Where this chunk's first output row lands in each row of y.
    y_offset: u32,
}

// Activation rows, `k / 4` vectors each. Rows beyond ROWS are never read.
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> params: MatvecParams;

// Number of activation rows, 1..=MAX_ROWS. A constant so the per-row loops unroll and the
// accumulators stay in registers.
override ROWS: u32 = 1u;
const MAX_ROWS: u32 = 8u;

// Adds W[row, 8g..8g+8] · x[r, 8g..8g+8] to acc[r] for every activation row r.
fn accumulate_group(acc: ptr<function, array<f32, MAX_ROWS>>, row: u32, g: u32) {
    let w = load_group8(row, g, params.k);
    let x_row = params.k / 4u;
    for (var r = 0u; r < ROWS; r++) {
        let xi = r * x_row + g * 2u;
        (*acc)[r] += dot(w.lo, x[xi]) + dot(w.hi, x[xi + 1u]);
    }
}

// Groups of 8 weights per accumulate_span call. Q4_K takes a whole 32-value sub-block, so its
// 6-bit scale and min are decoded once per 32 weights instead of once per 8 (on CPU adapters
// the decode costs about as much as the 8 multiply-adds). FORMAT is a pipeline constant: this
// folds to a constant, and accumulate_span to one branch.
fn span_groups() -> u32 {
    return select(1u, 4u, FORMAT == FORMAT_Q4_K);
}

// Adds span `i` (span_groups() groups of 8 from group i·span_groups()) of `row`.
fn accumulate_span(acc: ptr<function, array<f32, MAX_ROWS>>, row: u32, i: u32) {
    if FORMAT != FORMAT_Q4_K {
        accumulate_group(acc, row, i);
        return;
    }
    let s = q4_k_sub_block(row, i, params.k);
    let x_row = params.k / 4u;
    for (var j = 0u; j < 4u; j++) {
        let w = q4_k_group8(s, j);
        for (var r = 0u; r < ROWS; r++) {
            let xi = r * x_row + (4u * i + j) * 2u;
            (*acc)[r] += dot(w.lo, x[xi]) + dot(w.hi, x[xi + 1u]);
        }
    }
}

fn store_row(row: u32, r: u32, value: f32) {
    y[r * params.y_stride + params.y_offset + row] = value;
}
