// Token embedding lookup from a quantized table: weights.wgsl + weights_super.wgsl + this file.
// Rows are dequantized straight into the activations; the table stays quantized in memory.

struct EmbedParams {
    tokens: u32,
    // Row length of the table (model width), a multiple of 8.
    dim: u32,
    // The table rows this dispatch's chunk holds: [row_start, row_start + rows).
    row_start: u32,
    rows: u32,
}

@group(0) @binding(2) var<storage, read> ids: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<vec4<f32>>;
@group(0) @binding(4) var<uniform> params: EmbedParams;

// One invocation per group of 8 values of one token.
@compute @workgroup_size(64)
fn embed(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let index = gid.x + gid.y * groups.x * 64u;
    let per_token = params.dim / 8u;
    if index >= params.tokens * per_token {
        return;
    }
    let t = index / per_token;
    let g = index % per_token;
    let id = ids[t];
    // A split table is looked up chunk by chunk; each chunk writes only its own rows.
    if id < params.row_start || id >= params.row_start + params.rows {
        return;
    }
    let w = load_group8(id - params.row_start, g, params.dim);
    out[t * params.dim / 4u + g * 2u] = w.lo;
    out[t * params.dim / 4u + g * 2u + 1u] = w.hi;
}
