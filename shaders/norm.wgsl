// RMSNorm: y = x / sqrt(mean(x²) + eps) · weight, one workgroup per row. reduce.wgsl + this file.

struct NormParams {
    rows: u32,
    dim: u32,
    eps: f32,
    // Row r of y normalises row x_row + r of x (the last position only, before the head).
    x_row: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> weight: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> params: NormParams;

@compute @workgroup_size(64)
fn rms_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = wid.x;
    if row >= params.rows {
        return;
    }
    let src = (params.x_row + row) * params.dim;
    var sum = 0.0;
    for (var i = lid; i < params.dim; i += WIDTH) {
        let v = x[src + i];
        sum += v * v;
    }
    let scale = inverseSqrt(reduce_sum(lid, sum) / f32(params.dim) + params.eps);
    for (var i = lid; i < params.dim; i += WIDTH) {
        y[row * params.dim + i] = x[src + i] * scale * weight[i];
    }
}
