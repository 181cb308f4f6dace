// Matrix-vector products for decode:
// weights.wgsl + weights_super.wgsl + matvec_io.wgsl + this file.
// Two entry points that need no subgroups, so both run in every browser.

// Invocations per workgroup; the host reads it back from the same constant.
override WORKGROUP: u32 = 64u;

// One invocation per output row, no cross-invocation traffic at all. On CPU adapters
// (lavapipe, SwiftShader) barriers are what costs, and caches hide the strided reads.
@compute @workgroup_size(WORKGROUP)
fn matvec_lane(@builtin(global_invocation_id) gid: vec3<u32>,
               @builtin(num_workgroups) groups: vec3<u32>) {
    let row = gid.x + gid.y * groups.x * WORKGROUP;
    if row >= params.n {
        return;
    }
    var acc: array<f32, MAX_ROWS>;
    // The bound computed once rather than in every loop test.
    let spans = params.k / (8u * span_groups());
    for (var i = 0u; i < spans; i++) {
        accumulate_span(&acc, row, i);
    }
    for (var r = 0u; r < ROWS; r++) {
        store_row(row, r, acc[r]);
    }
}

// Fixed at 64 because it sizes the reduction buffer below.
const REDUCE_WIDTH: u32 = 64u;
var<workgroup> partial: array<f32, 512>; // REDUCE_WIDTH * MAX_ROWS

// One workgroup per output row: neighbouring invocations read neighbouring words (coalesced
// on GPUs), then a tree reduction in workgroup memory.
@compute @workgroup_size(64)
fn matvec_workgroup(@builtin(workgroup_id) wid: vec3<u32>,
                    @builtin(num_workgroups) groups: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    // Uniform across the workgroup, so the early return keeps barriers uniform.
    let row = wid.x + wid.y * groups.x;
    if row >= params.n {
        return;
    }
    var acc: array<f32, MAX_ROWS>;
    let spans = params.k / (8u * span_groups());
    for (var i = lid; i < spans; i += REDUCE_WIDTH) {
        accumulate_span(&acc, row, i);
    }
    for (var r = 0u; r < ROWS; r++) {
        partial[r * REDUCE_WIDTH + lid] = acc[r];
    }
    workgroupBarrier();
    for (var stride = REDUCE_WIDTH / 2u; stride > 0u; stride >>= 1u) {
        if lid < stride {
            for (var r = 0u; r < ROWS; r++) {
                partial[r * REDUCE_WIDTH + lid] += partial[r * REDUCE_WIDTH + lid + stride];
            }
        }
        workgroupBarrier();
    }
    if lid < ROWS {
        store_row(row, lid, partial[lid * REDUCE_WIDTH]);
    }
}
