// Tiled matrix product for prefill, Y = X · Wᵀ: weights.wgsl + weights_super.wgsl + this file.
// A workgroup computes a TILE_M × TILE_N block of Y. Each K step stages a TILE_M × 32 slice of
// X and a TILE_N × 32 slice of W, dequantized once into workgroup memory, then every invocation
// accumulates a 4 × 4 register block in f32.

struct MatmulParams {
    // Activation rows of X and Y.
    m: u32,
    // Rows of this weight chunk.
    n: u32,
    // Row length of X and W, a multiple of 8.
    k: u32,
    // Output features of the whole matrix (all its chunks).
    y_stride: u32,
    // The output feature this chunk's first row computes.
    y_offset: u32,
    // Where Y's planar parts start and how many rows each holds (output_parts.wgsl).
    part1: u32,
    part2: u32,
    block_rows: u32,
}

@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> params: MatmulParams;

const TILE_M: u32 = 64u;
const TILE_N: u32 = 64u;
// 32 values: one quant block, so a tile never splits a block's scale.
const TILE_K_VEC4: u32 = 8u;
// 16 × 16 invocations, each owning rows ty + 16i and columns tx + 16j, i, j < 4.
const THREADS: u32 = 16u;

// 2 × 64 × 32 f32 = 16 KiB, the WebGPU default limit for workgroup storage.
var<workgroup> tile_x: array<vec4<f32>, 512>; // TILE_M * TILE_K_VEC4
var<workgroup> tile_w: array<vec4<f32>, 512>; // TILE_N * TILE_K_VEC4, swizzled (tile_w_index)

// Where W's row r, vector c sits in tile_w. The inner loop has neighbouring invocations read
// rows 8 vectors (32 words) apart: in row-major order they would all hit the same four of 32
// memory banks (an 8-way conflict on GPUs). XOR-ing the vector index with the row's low bits
// spreads any 8 consecutive rows over all 32 banks, without the padding that would take the
// tiles past 16 KiB.
fn tile_w_index(r: u32, c: u32) -> u32 {
    return r * TILE_K_VEC4 + (c ^ (r & 7u));
}

@compute @workgroup_size(16, 16)
fn matmul(@builtin(workgroup_id) wid: vec3<u32>,
          @builtin(local_invocation_id) lid: vec3<u32>,
          @builtin(local_invocation_index) li: u32) {
    let n0 = wid.x * TILE_N;
    let m0 = wid.y * TILE_M;
    let k_vec4 = params.k / 4u;
    let groups = params.k / 8u;
    // Row i of the register block is acc_i, its columns the vector's components. Plain
    // variables, not arrays: some compilers (llvmpipe) keep indexed private arrays in memory.
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);

    for (var k0 = 0u; k0 < k_vec4; k0 += TILE_K_VEC4) {
        // X slice: 512 vectors, two per invocation; zeros past M or K.
        for (var t = 0u; t < 2u; t++) {
            let i = li + t * 256u;
            let r = m0 + i / TILE_K_VEC4;
            let c = k0 + i % TILE_K_VEC4;
            var v = vec4<f32>(0.0);
            if r < params.m && c < k_vec4 {
                v = x[r * k_vec4 + c];
            }
            tile_x[i] = v;
        }
        // W slice: 64 rows × 4 groups of 8, one group per invocation.
        let wr = li / 4u;
        let wg = k0 / 2u + li % 4u;
        var w = Group8(vec4<f32>(0.0), vec4<f32>(0.0));
        if n0 + wr < params.n && wg < groups {
            w = load_group8(n0 + wr, wg, params.k);
        }
        tile_w[tile_w_index(wr, (li % 4u) * 2u)] = w.lo;
        tile_w[tile_w_index(wr, (li % 4u) * 2u + 1u)] = w.hi;
        workgroupBarrier();

        // X rows are the same for the 16 invocations along x (one broadcast read); W rows
        // lid.x + 16j all share lid.x's low bits, so one swizzled column serves the four.
        let xr = lid.y * TILE_K_VEC4;
        let wr0 = lid.x * TILE_K_VEC4;
        let step = THREADS * TILE_K_VEC4;
        for (var c = 0u; c < TILE_K_VEC4; c++) {
            let x0 = tile_x[xr + c];
            let x1 = tile_x[xr + step + c];
            let x2 = tile_x[xr + 2u * step + c];
            let x3 = tile_x[xr + 3u * step + c];
            let wc = wr0 + (c ^ (lid.x & 7u));
            let w0 = tile_w[wc];
            let w1 = tile_w[wc + step];
            let w2 = tile_w[wc + 2u * step];
            let w3 = tile_w[wc + 3u * step];
            acc0 += vec4<f32>(dot(x0, w0), dot(x0, w1), dot(x0, w2), dot(x0, w3));
            acc1 += vec4<f32>(dot(x1, w0), dot(x1, w1), dot(x1, w2), dot(x1, w3));
            acc2 += vec4<f32>(dot(x2, w0), dot(x2, w1), dot(x2, w2), dot(x2, w3));
            acc3 += vec4<f32>(dot(x3, w0), dot(x3, w1), dot(x3, w2), dot(x3, w3));
        }
        workgroupBarrier();
    }

    store_row(m0 + lid.y, n0 + lid.x, acc0);
    store_row(m0 + lid.y + THREADS, n0 + lid.x, acc1);
    store_row(m0 + lid.y + 2u * THREADS, n0 + lid.x, acc2);
    store_row(m0 + lid.y + 3u * THREADS, n0 + lid.x, acc3);
}

// Writes one register-block row: columns c0, c0 + 16, c0 + 32, c0 + 48 of Y's row r.
fn store_row(r: u32, c0: u32, v: vec4<f32>) {
    if r >= params.m {
        return;
    }
    for (var j = 0u; j < 4u; j++) {
        let c = c0 + j * THREADS;
        if c < params.n {
            y[output_index(r, params.y_offset + c, params.y_stride, params.part1, params.part2, params.block_rows)] = v[j];
        }
    }
}
