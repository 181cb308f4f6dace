// Q8_0, Q4_0 and Q4_1 matrix-vector products on int8 activations: weights.wgsl + this file.
// quantize_x.wgsl writes `xq`; each block of 32 is eight dot4I8Packed into an i32, then scaled
// in f32: sum += f32(isum) * d_w * d_x. Q4_0 and Q4_1 spread their nibbles to bytes (0-15, which
// are the same as signed and unsigned bytes), and their offsets multiply the activation block's
// sum of quants: Q4_0 subtracts 8 · Σq_x inside the i32 (exact), Q4_1 adds m · d_x · Σq_x.
// Needs the WGSL language feature packed_4x8_integer_dot_product (native naga polyfills it where
// the driver lacks the SPIR-V instruction).

struct Dot4Params {
    // Rows of this weight chunk.
    n: u32,
    // Row length of W and x, a multiple of 32.
    k: u32,
    // Output features of the whole matrix (all its chunks).
    y_stride: u32,
    // The output feature this chunk's first row computes.
    y_offset: u32,
    // Where y's planar parts start and how many rows each holds (output_parts.wgsl).
    part1: u32,
    part2: u32,
    block_rows: u32,
    pad: u32,
}

// Quantized activations, laid out as quantize_x.wgsl writes them.
@group(0) @binding(2) var<storage, read> xq: array<u32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> dot4_params: Dot4Params;

// Activation rows, 1..=8; a constant so the row loop unrolls and accumulators stay in registers.
override ROWS: u32 = 1u;
override WORKGROUP: u32 = 64u;

// One invocation per output row, like matvec_lane: no barriers, which CPU adapters favour.
@compute @workgroup_size(WORKGROUP)
fn matvec_dot4(@builtin(global_invocation_id) gid: vec3<u32>,
               @builtin(num_workgroups) groups: vec3<u32>) {
    let row = gid.x + gid.y * groups.x * WORKGROUP;
    if row >= dot4_params.n {
        return;
    }
    let k = dot4_params.k;
    let blocks = k / 32u;
    let x_stride = k / 4u + 2u * blocks;
    var acc: array<f32, 8>;
    var w: array<u32, 8>;
    for (var b = 0u; b < blocks; b++) {
        // The block's 32 weights as eight words of four bytes (byte j = value j), and its scale
        // and offset.
        var d_w: f32;
        var m_w = 0.0;
        switch FORMAT {
            case FORMAT_Q4_0, FORMAT_Q4_1: {
                // Four words of value-order nibbles, eight values each.
                let base = row * (k / 8u) + b * 4u;
                for (var j = 0u; j < 4u; j++) {
                    let q = w_quants[base + j];
                    w[2u * j] = nibbles_to_bytes(q & 0xffffu);
                    w[2u * j + 1u] = nibbles_to_bytes(q >> 16u);
                }
                if FORMAT == FORMAT_Q4_1 {
                    let dm = unpack2x16float(w_scales[row * blocks + b]);
                    d_w = dm.x;
                    m_w = dm.y;
                } else {
                    d_w = half_scale(row * blocks + b);
                }
            }
            default: { // FORMAT_Q8_0
                let base = row * (k / 4u) + b * 8u;
                for (var j = 0u; j < 8u; j++) {
                    w[j] = w_quants[base + j];
                }
                d_w = half_scale(row * blocks + b);
            }
        }
        for (var r = 0u; r < ROWS; r++) {
            let xb = r * x_stride + b * 8u;
            var isum = 0i;
            for (var j = 0u; j < 8u; j++) {
                isum += dot4I8Packed(w[j], xq[xb + j]);
            }
            let d_x = bitcast<f32>(xq[r * x_stride + k / 4u + b]);
            let sum_x = bitcast<i32>(xq[r * x_stride + k / 4u + blocks + b]);
            switch FORMAT {
                case FORMAT_Q4_0: {
                    acc[r] += f32(isum - 8i * sum_x) * d_w * d_x;
                }
                case FORMAT_Q4_1: {
                    acc[r] += f32(isum) * d_w * d_x + m_w * d_x * f32(sum_x);
                }
                default: {
                    acc[r] += f32(isum) * d_w * d_x;
                }
            }
        }
    }
    for (var r = 0u; r < ROWS; r++) {
        let p = dot4_params;
        y[output_index(r, p.y_offset + row, p.y_stride, p.part1, p.part2, p.block_rows)] = acc[r];
    }
}

// The four nibbles of `q` (bits 0-15) as the four bytes of a word, nibble j in byte j.
fn nibbles_to_bytes(q: u32) -> u32 {
    let pairs = (q | (q << 8u)) & 0x00ff00ffu;
    return (pairs | (pairs << 4u)) & 0x0f0f0f0fu;
}
