// Matrix-vector products with a subgroup reduction:
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

// Weight rows one subgroup computes in matvec_subgroup_rows.
const SUBGROUP_ROWS: u32 = 4u;

// Four weight rows per subgroup, for GPUs: each lane keeps four independent sums in flight
// (more loads outstanding per lane), and the activations it reads for a span are the same
// addresses for all four rows, so they are loaded once and reused from registers. A quarter of
// the subgroups of matvec_subgroup cover the matrix. Rows past N (in the last subgroup) read
// the last row again and their sums are dropped, so every lane stays in the reduction.
@compute @workgroup_size(WORKGROUP)
fn matvec_subgroup_rows(@builtin(workgroup_id) wid: vec3<u32>,
                        @builtin(num_workgroups) groups: vec3<u32>,
                        @builtin(subgroup_id) subgroup: u32,
                        @builtin(num_subgroups) subgroups: u32,
                        @builtin(subgroup_invocation_id) lane: u32,
                        @builtin(subgroup_size) width: u32) {
    let row0 = ((wid.x + wid.y * groups.x) * subgroups + subgroup) * SUBGROUP_ROWS;
    // Uniform within the subgroup, so the reductions below run on full subgroups.
    if row0 >= params.n {
        return;
    }
    let last = params.n - 1u;
    var acc: array<array<f32, MAX_ROWS>, SUBGROUP_ROWS>;
    let spans = params.k / (8u * span_groups());
    for (var i = lane; i < spans; i += width) {
        // One call site, in a loop the driver unrolls after FORMAT has folded accumulate_span's
        // switch to one branch: four call sites made the driver's front end inline every
        // format's code four times, which doubled a model's pipeline compile time on lavapipe.
        for (var q = 0u; q < SUBGROUP_ROWS; q++) {
            // A whole variable, since accumulate_span takes a pointer to one.
            var sums = acc[q];
            accumulate_span(&sums, min(row0 + q, last), i);
            acc[q] = sums;
        }
    }
    for (var q = 0u; q < SUBGROUP_ROWS; q++) {
        reduce_store(acc[q], row0 + q, lane);
    }
}

// Sums each activation row's partial sums over the subgroup; lane 0 stores them if `row` is a
// row of the matrix. Called by every lane of the subgroup.
fn reduce_store(acc: array<f32, MAX_ROWS>, row: u32, lane: u32) {
    for (var r = 0u; r < ROWS; r++) {
        let sum = subgroupAdd(acc[r]);
        if lane == 0u && row < params.n {
            store_row(row, r, sum);
        }
    }
}
