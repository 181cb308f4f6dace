// BERT's post-norm residual: x ← LayerNorm(x + y + y_bias) · weight + bias, one workgroup per
// row, mean and variance in two passes (f32; the variance pass does not cancel catastrophically
// the way E[x²] − E[x]² can). reduce.wgsl + this file.

struct LayerNormParams {
    rows: u32,
    dim: u32,
    eps: f32,
}

@group(0) @binding(0) var<storage, read_write> x: array<f32>;   // [rows][dim], updated in place
@group(0) @binding(1) var<storage, read> y: array<f32>;         // [rows][dim], the sublayer output
@group(0) @binding(2) var<storage, read> y_bias: array<f32>;    // [dim], the sublayer's bias
@group(0) @binding(3) var<storage, read> weight: array<f32>;    // [dim]
@group(0) @binding(4) var<storage, read> bias: array<f32>;      // [dim]
@group(0) @binding(5) var<uniform> params: LayerNormParams;

@compute @workgroup_size(64)
fn add_layer_norm(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = wid.x + wid.y * groups.x;
    if row >= params.rows {
        return;
    }
    let base = row * params.dim;
    var sum = 0.0;
    // Each invocation reads back only the values it wrote itself: no barrier needed between passes.
    for (var i = lid; i < params.dim; i += WIDTH) {
        let v = x[base + i] + y[base + i] + y_bias[i];
        x[base + i] = v;
        sum += v;
    }
    let mean = reduce_sum(lid, sum) / f32(params.dim);
    var sq = 0.0;
    for (var i = lid; i < params.dim; i += WIDTH) {
        let d = x[base + i] - mean;
        sq += d * d;
    }
    let inv = inverseSqrt(reduce_sum(lid, sq) / f32(params.dim) + params.eps);
    for (var i = lid; i < params.dim; i += WIDTH) {
        x[base + i] = (x[base + i] - mean) * inv * weight[i] + bias[i];
    }
}
