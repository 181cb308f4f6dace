// Sentence embeddings: the mean of each sentence's token rows, divided by its L2 norm (with
// sentence-transformers' floor of 1e-12 on the norm). One workgroup per sentence.
// reduce.wgsl + this file.

struct PoolParams {
    sentences: u32,
    dim: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;            // [tokens][dim]
@group(0) @binding(1) var<storage, read> sentence_spans: array<vec2<u32>>; // [sentences]: rows [start, end)
@group(0) @binding(2) var<storage, read_write> pooled: array<f32>;  // [sentences][dim]
@group(0) @binding(3) var<uniform> params: PoolParams;

@compute @workgroup_size(64)
fn mean_pool_normalize(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let s = wid.x;
    if s >= params.sentences {
        return;
    }
    let span = sentence_spans[s];
    let n = f32(span.y - span.x);
    var sq = 0.0;
    for (var c = lid; c < params.dim; c += WIDTH) {
        var sum = 0.0;
        for (var j = span.x; j < span.y; j++) {
            sum += x[j * params.dim + c];
        }
        let mean = sum / n;
        pooled[s * params.dim + c] = mean;
        sq += mean * mean;
    }
    let inv = 1.0 / max(sqrt(reduce_sum(lid, sq)), 1e-12);
    for (var c = lid; c < params.dim; c += WIDTH) {
        pooled[s * params.dim + c] *= inv;
    }
}
