// Tree reductions across a 64-invocation workgroup; the result reaches every invocation.
// Shared by norm.wgsl and attention.wgsl, which are concatenated after this file.

const WIDTH: u32 = 64u;
var<workgroup> partial: array<f32, 64>;

fn reduce_sum(lid: u32, value: f32) -> f32 {
    partial[lid] = value;
    workgroupBarrier();
    for (var stride = WIDTH / 2u; stride > 0u; stride >>= 1u) {
        if lid < stride {
            partial[lid] += partial[lid + stride];
        }
        workgroupBarrier();
    }
    let result = partial[0];
    // Nobody may overwrite `partial` for a next reduction before everyone has read it.
    workgroupBarrier();
    return result;
}

fn reduce_max(lid: u32, value: f32) -> f32 {
    partial[lid] = value;
    workgroupBarrier();
    for (var stride = WIDTH / 2u; stride > 0u; stride >>= 1u) {
        if lid < stride {
            partial[lid] = max(partial[lid], partial[lid + stride]);
        }
        workgroupBarrier();
    }
    let result = partial[0];
    workgroupBarrier();
    return result;
}
