// Elementwise updates in place: a ← f(a, b).

struct Count {
    n: u32,
}

@group(0) @binding(0) var<storage, read_write> a: array<f32>;
// read_write though only read: a and b may be two parts of one buffer (a fused gate|up
// projection's output), and WebGPU forbids one buffer as writable and read-only storage in
// one dispatch.
@group(0) @binding(1) var<storage, read_write> b: array<f32>;
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

// tanh with its argument clamped: tanh(±10) is ±1 in f32 already, and some drivers compute
// tanh through exp(2x), which overflows to inf/inf = NaN for large arguments.
fn tanh_clamped(u: f32) -> f32 {
    return tanh(clamp(u, -10.0, 10.0));
}

// GeGLU (Gemma): a = gelu(a) · b with the tanh approximation of GELU, a the gate, b up.
@compute @workgroup_size(64)
fn gelu_tanh_mul(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = index_of(gid, groups);
    if i < count.n {
        let g = a[i];
        let u = 0.7978845608028654 * (g + 0.044715 * g * g * g); // √(2/π)·(g + 0.044715·g³)
        a[i] = 0.5 * g * (1.0 + tanh_clamped(u)) * b[i];
    }
}
