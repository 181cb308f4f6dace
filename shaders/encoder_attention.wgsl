// Bidirectional multi-head attention over a packed batch of sentences: the sentences' tokens lie
// one after another (no padding), and token t attends to the keys spans[t] = [start, end) of its
// own sentence: the padding mask, without computing the padding. One invocation per
// (token, head) runs an online softmax over the keys, so there is no barrier and no score buffer.

// Longest head qgpu runs, in vec4s (128 values).
const MAX_HEAD_VEC4: u32 = 32u;

struct EncoderAttnParams {
    tokens: u32,
    heads: u32,
    // head_dim / 4: heads are read as vec4s.
    head_vec4: u32,
    scale: f32,
}

@group(0) @binding(0) var<storage, read> q: array<vec4<f32>>;        // [tokens][heads][head_dim]
@group(0) @binding(1) var<storage, read> k: array<vec4<f32>>;        // [tokens][heads][head_dim]
@group(0) @binding(2) var<storage, read> v: array<vec4<f32>>;        // [tokens][heads][head_dim]
@group(0) @binding(3) var<storage, read> spans: array<vec2<u32>>;    // [tokens]: keys [start, end)
@group(0) @binding(4) var<storage, read_write> out: array<vec4<f32>>; // [tokens][heads][head_dim]
@group(0) @binding(5) var<uniform> params: EncoderAttnParams;

@compute @workgroup_size(64)
fn encoder_attention(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let index = gid.x + gid.y * groups.x * 64u;
    if index >= params.tokens * params.heads {
        return;
    }
    let t = index / params.heads;
    let h = index % params.heads;
    let hv = params.head_vec4;
    let row = params.heads * hv;
    let qa = t * row + h * hv;
    var qs: array<vec4<f32>, MAX_HEAD_VEC4>;
    var acc: array<vec4<f32>, MAX_HEAD_VEC4>;
    for (var d = 0u; d < hv; d++) {
        qs[d] = q[qa + d] * params.scale;
        acc[d] = vec4<f32>(0.0);
    }
    let span = spans[t];
    var m = -3.4e38;
    var l = 0.0;
    for (var j = span.x; j < span.y; j++) {
        let ka = j * row + h * hv;
        var s = 0.0;
        for (var d = 0u; d < hv; d++) {
            s += dot(qs[d], k[ka + d]);
        }
        // Running max keeps every exp() <= 1; earlier terms are rescaled when it grows.
        let m_new = max(m, s);
        let rescale = exp(m - m_new);
        let p = exp(s - m_new);
        l = l * rescale + p;
        for (var d = 0u; d < hv; d++) {
            acc[d] = acc[d] * rescale + p * v[ka + d];
        }
        m = m_new;
    }
    let inv = 1.0 / l;
    for (var d = 0u; d < hv; d++) {
        out[qa + d] = acc[d] * inv;
    }
}
