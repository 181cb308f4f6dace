// Elementwise updates in place by a constant: a ← f(a, c).

struct UnaryParams {
    n: u32,
    c: f32,
}

@group(0) @binding(0) var<storage, read_write> a: array<f32>;
@group(0) @binding(1) var<uniform> params: UnaryParams;

fn index_of(gid: vec3<u32>, groups: vec3<u32>) -> u32 {
    return gid.x + gid.y * groups.x * 64u;
}

// a *= c (Gemma's √width embedding scale).
@compute @workgroup_size(64)
fn scale(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = index_of(gid, groups);
    if i < params.n {
        a[i] *= params.c;
    }
}

// Soft-capping to ±c: a = c·tanh(a / c) (Gemma 2's logits). The argument is clamped as in
// elementwise.wgsl: tanh(±10) is ±1 in f32, and tanh through exp overflows for large ones.
@compute @workgroup_size(64)
fn softcap(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = index_of(gid, groups);
    if i < params.n {
        a[i] = params.c * tanh(clamp(a[i] / params.c, -10.0, 10.0));
    }
}
