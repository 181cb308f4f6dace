// Matrix-vector product with a subgroup reduction:
// weights.wgsl + weights_super.wgsl + matvec_io.wgsl + this file.
// A separate module because subgroup builtins need the SUBGROUP feature to validate.

override WORKGROUP: u32 = 64u;

// One subgroup per output row; no workgroup memory and no barriers. The host sizes the
// dispatch for the largest subgroup size, so a smaller one only leaves rows past N idle.
@compute @workgroup_size(WORKGROUP)
fn matvec_subgroup(@builtin(workgroup_id) wid: vec3<u32>,
                   @builtin(num_workgroups) groups: vec3<u32>,
                   @builtin(subgroup_id) subgroup: u32,
                   @builtin(num_subgroups) subgroups: u32,
                   @builtin(subgroup_invocation_id) lane: u32,
                   @builtin(subgroup_size) width: u32) {
    let row = (wid.x + wid.y * groups.x) * subgroups + subgroup;
    // Uniform within the subgroup, so the reduction below runs on full subgroups.
    if row >= params.n {
        return;
    }
    var acc: array<f32, MAX_ROWS>;
    let spans = params.k / (8u * span_groups());
    for (var i = lane; i < spans; i += width) {
        accumulate_span(&acc, row, i);
    }
    for (var r = 0u; r < ROWS; r++) {
        let sum = subgroupAdd(acc[r]);
        if lane == 0u {
            store_row(row, r, sum);
        }
    }
}
