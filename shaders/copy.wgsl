// Bandwidth probe: copies one buffer into another, 16 bytes per invocation per step.
// Benchmarks divide their bytes moved by this kernel's rate to get a fraction of the adapter's
// real copy bandwidth, which compares across vendors where absolute times do not.

@group(0) @binding(0) var<storage, read> src: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<u32>>;

override WORKGROUP: u32 = 256u;

@compute @workgroup_size(WORKGROUP)
fn copy(@builtin(global_invocation_id) gid: vec3<u32>,
        @builtin(num_workgroups) groups: vec3<u32>) {
    // A grid-stride loop, so a dispatch within the workgroup-count limit covers any size.
    let stride = groups.x * WORKGROUP;
    for (var i = gid.x; i < arrayLength(&src); i += stride) {
        dst[i] = src[i];
    }
}
