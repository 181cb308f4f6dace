// Arithmetic-throughput probe: every invocation runs four independent vec4 chains of fused
// multiply-adds. Benchmarks divide a kernel's FLOP/s by this kernel's to get a fraction of the
// adapter's FMA throughput, measured in the same run as the kernel.

// One vec4 per invocation, so the chains are live and cannot be removed.
@group(0) @binding(0) var<storage, read_write> sink: array<vec4<f32>>;

override WORKGROUP: u32 = 256u;
// Loop trips; each does 4 chains × 4 lanes × 2 FLOPs = 32 FLOPs (host: FMA_FLOPS_PER_ITERATION).
override ITERATIONS: u32 = 1024u;

@compute @workgroup_size(WORKGROUP)
fn fma_probe(@builtin(global_invocation_id) gid: vec3<u32>,
             @builtin(num_workgroups) groups: vec3<u32>) {
    let index = gid.x + gid.y * groups.x * WORKGROUP;
    // Operands depend on run-time values, so no compiler can fold the loop into a constant.
    let seed = f32(index & 1023u) * 1e-4;
    let scale = vec4<f32>(1.0 - 1.0 / f32(groups.x + 1024u));
    let bias = vec4<f32>(seed * 1e-3);
    var a = vec4<f32>(seed, seed + 0.1, seed + 0.2, seed + 0.3);
    var b = a + vec4<f32>(0.4);
    var c = a + vec4<f32>(0.8);
    var d = a + vec4<f32>(1.2);
    for (var i = 0u; i < ITERATIONS; i++) {
        a = fma(a, scale, bias);
        b = fma(b, scale, bias);
        c = fma(c, scale, bias);
        d = fma(d, scale, bias);
    }
    if index < arrayLength(&sink) {
        sink[index] = a + b + c + d;
    }
}
