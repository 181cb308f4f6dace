// Quantizes activation rows to int8 per block of 32 values, like Q8_0 but with an f32 scale:
// d = amax / 127, q = round(x / d) (ties to even), four q packed into a u32 (byte j = value j).
// Input of matvec_dot4.wgsl. Needs the WGSL language feature packed_4x8_integer_dot_product.
//
// Layout of `xq`, per activation row r (stride k / 4 + k / 16 words): k / 4 words of packed
// quants, k / 32 words holding each block's scale as f32 bits, then k / 32 words holding each
// block's sum of quants as i32 bits. Weights with an offset (Q4_0's -8, Q4_1's m) multiply that
// sum once per block instead of once per weight.

struct QuantizeParams {
    // Activation rows to quantize.
    rows: u32,
    // Row length, a multiple of 32.
    k: u32,
}

@group(0) @binding(0) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> xq: array<u32>;
@group(0) @binding(2) var<uniform> quantize_params: QuantizeParams;

override WORKGROUP: u32 = 64u;

// One invocation per block of 32 values; no communication.
@compute @workgroup_size(WORKGROUP)
fn quantize_x(@builtin(global_invocation_id) gid: vec3<u32>,
              @builtin(num_workgroups) groups: vec3<u32>) {
    let blocks = quantize_params.k / 32u;
    let index = gid.x + gid.y * groups.x * WORKGROUP;
    if index >= quantize_params.rows * blocks {
        return;
    }
    let r = index / blocks;
    let b = index % blocks;
    let src = (r * quantize_params.k + b * 32u) / 4u;
    var v: array<vec4<f32>, 8>;
    var amax = vec4<f32>(0.0);
    for (var i = 0u; i < 8u; i++) {
        v[i] = x[src + i];
        amax = max(amax, abs(v[i]));
    }
    let m = max(max(amax.x, amax.y), max(amax.z, amax.w));
    let d = m / 127.0;
    let inv = select(0.0, 127.0 / m, m > 0.0);
    let stride = quantize_params.k / 4u + 2u * blocks;
    let dst = r * stride + b * 8u;
    var sum = vec4<i32>(0);
    for (var i = 0u; i < 8u; i++) {
        // Rounded values lie within ±127, so the clamp never changes one and the sum is exact.
        let q = vec4<i32>(round(v[i] * inv));
        sum += q;
        xq[dst + i] = pack4xI8Clamp(q);
    }
    xq[r * stride + quantize_params.k / 4u + b] = bitcast<u32>(d);
    xq[r * stride + quantize_params.k / 4u + blocks + b] = bitcast<u32>(sum.x + sum.y + sum.z + sum.w);
}
