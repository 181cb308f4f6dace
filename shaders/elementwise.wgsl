// Elementwise updates in place: a ← f(a, b).

struct Count {
    n: u32,
}

@group(0) @binding(0) var<storage, read_write> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<uniform> count: Count;

fn index_of(gid: vec3<u32>, groups: vec3<u32>) -> u32 {
    return gid.x + gid.y * groups.x * 64u;
}

// Residual connection: a += b.
@compute @workgroup_size(64)
fn add(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = index_of(gid, groups);
    if i < count.n {
        a[i] += b[i];
    }
}

// SwiGLU: a = silu(a) · b, with a the gate and b the up projection.
@compute @workgroup_size(64)
fn silu_mul(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = index_of(gid, groups);
    if i < count.n {
        let g = a[i];
        a[i] = g / (1.0 + exp(-g)) * b[i];
    }
}
