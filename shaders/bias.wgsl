// Per-column bias of a linear layer, added in place to its [rows][cols] output, optionally
// followed by GELU.

struct BiasParams {
    count: u32,
    cols: u32,
}

@group(0) @binding(0) var<storage, read_write> y: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<uniform> params: BiasParams;

fn bias_index(gid: vec3<u32>, groups: vec3<u32>) -> u32 {
    return gid.x + gid.y * groups.x * 64u;
}

@compute @workgroup_size(64)
fn add_bias(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = bias_index(gid, groups);
    if i < params.count {
        y[i] += b[i % params.cols];
    }
}

// erfc(z) for z >= 0 by Abramowitz & Stegun 7.1.26: |error| <= 1.5e-7 over the whole range.
// WGSL has no erf.
fn erfc_nonnegative(z: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.3275911 * z);
    let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    return poly * exp(-z * z);
}

// The exact ("erf") GELU of Hugging Face's `gelu`: x · Φ(x) = x · (1 + erf(x / √2)) / 2.
// Written with erfc(|x| / √2) on both sides so that negative x, where 1 + erf(x / √2) is tiny,
// loses nothing to cancellation: |error| <= |x| · 7.5e-8.
fn gelu_erf(x: f32) -> f32 {
    let c = erfc_nonnegative(abs(x) * 0.70710678118654752);
    return select(0.5 * x * c, x - 0.5 * x * c, x >= 0.0);
}

@compute @workgroup_size(64)
fn add_bias_gelu(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = bias_index(gid, groups);
    if i < params.count {
        y[i] = gelu_erf(y[i] + b[i % params.cols]);
    }
}
