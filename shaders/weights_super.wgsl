// The 256-value super-block formats (Q2_K..Q6_K, IQ4_XS) and load_group8, which decodes any
// format: weights.wgsl + this file, then matvec*.wgsl, matmul.wgsl or embed.wgsl.

// Words per K-quant block in w_quants (src/quant/repack.rs: Q4_K_WORDS, Q6_K_WORDS).
const Q4_K_WORDS: u32 = 36u;
const Q6_K_WORDS: u32 = 52u;
const Q5_K_WORDS: u32 = 44u;
const Q3_K_WORDS: u32 = 27u;
const Q2_K_WORDS: u32 = 21u;
const IQ4_XS_WORDS: u32 = 34u;

// One 32-value Q4_K sub-block, decoded: value = d·q − m for its nibbles q, which are the low
// (shift 0) or high (shift 4) nibbles of the 8 words from `q`.
struct Q4kSubBlock {
    d: f32,
    m: f32,
    q: u32,
    shift: u32,
}

// Q4_K: 256 values in 8 sub-blocks of 32; value = d·sc·q − dmin·m. In the 64-value chunk
// c = v / 64, qs byte 32c + l holds value 64c + l (low nibble) and 64c + 32 + l (high nibble),
// so sub-block 2c + h is the 32 consecutive qs bytes from 32c, low (h = 0) or high nibbles.
// `sb` counts sub-blocks along the row.
fn q4_k_sub_block(row: u32, sb: u32, k: u32) -> Q4kSubBlock {
    let base = (row * (k / 256u) + sb / 8u) * Q4_K_WORDS;
    let sub = sb % 8u;
    let chunk = sub / 2u;
    let dm = unpack2x16float(w_quants[base]) * vec2<f32>(scale_min_k4(base + 1u, sub));
    // qs starts at word 4.
    return Q4kSubBlock(dm.x, dm.y, base + 4u + 8u * chunk, 4u * (sub & 1u));
}

// ggml's get_scale_min_k4(sub): the 6-bit scale and min of sub-block `sub` (0..7) from the 12
// packed bytes at word `s` (Q4_K, Q5_K).
fn scale_min_k4(s: u32, sub: u32) -> vec2<u32> {
    let low = quant_byte(s, sub & 3u);          // scales[sub] or scales[sub - 4]
    let mid = quant_byte(s, (sub & 3u) + 4u);   // scales[sub + 4] or scales[sub]
    let top = quant_byte(s, (sub & 3u) + 8u);   // scales[sub + 4] for sub >= 4
    let small = sub < 4u;
    let sc = select((top & 15u) | ((low >> 6u) << 4u), low & 63u, small);
    let m = select((top >> 4u) | ((mid >> 6u) << 4u), mid & 63u, small);
    return vec2<u32>(sc, m);
}

// Group j (0..3) of a decoded Q4_K sub-block: its words q + 2j and q + 2j + 1.
fn q4_k_group8(s: Q4kSubBlock, j: u32) -> Group8 {
    let q = s.q + 2u * j;
    return Group8(s.d * vec4<f32>(byte_fields(w_quants[q], s.shift, 15u)) - s.m,
                  s.d * vec4<f32>(byte_fields(w_quants[q + 1u], s.shift, 15u)) - s.m);
}

// One 16-value Q6_K sub-block, decoded: value = d·(q − 32) for its 6-bit q, whose low 4 bits
// are a nibble (at `ql_shift`) of the 4 bytes from word `ql` and top 2 bits the bits at
// `qh_shift` of the 4 bytes from word `qh`.
struct Q6kSubBlock {
    d: f32,
    ql: u32,
    qh: u32,
    ql_shift: u32,
    qh_shift: u32,
}

// Q6_K: 256 values in 16 sub-blocks of 16; value = d·scale·(q − 32), q 6 bits. In half
// h = v / 128, value 32·quadrant + l has its low 4 bits in ql[64h + 32·(quadrant & 1) + l]
// (high nibble for quadrants 2, 3), its top 2 bits at bit 2·quadrant of qh[32h + l], and its
// int8 scale in scales[8h + l / 16 + 2·quadrant]. `sb` counts sub-blocks along the row.
fn q6_k_sub_block(row: u32, sb: u32, k: u32) -> Q6kSubBlock {
    let block = row * (k / 256u) + sb / 16u;
    let base = block * Q6_K_WORDS;
    let v = (sb % 16u) * 16u;
    let half = v / 128u;
    let quadrant = (v % 128u) / 32u;
    let l = v % 32u;
    let sc_index = 8u * half + l / 16u + 2u * quadrant;
    let sc_word = w_quants[base + 48u + sc_index / 4u];
    let sc = bitcast<i32>(sc_word << (24u - 8u * (sc_index % 4u))) >> 24u;
    return Q6kSubBlock(half_scale(block) * f32(sc),
                       base + (64u * half + 32u * (quadrant & 1u) + l) / 4u,   // words 0..31
                       base + 32u + (32u * half + l) / 4u,                     // words 32..47
                       4u * (quadrant >> 1u), 2u * quadrant);
}

// Group j (0..1) of a decoded Q6_K sub-block.
fn q6_k_group8(s: Q6kSubBlock, j: u32) -> Group8 {
    let ql = s.ql + 2u * j;
    let qh = s.qh + 2u * j;
    let q_lo = byte_fields(w_quants[ql], s.ql_shift, 15u) | (byte_fields(w_quants[qh], s.qh_shift, 3u) << vec4<u32>(4u));
    let q_hi = byte_fields(w_quants[ql + 1u], s.ql_shift, 15u) | (byte_fields(w_quants[qh + 1u], s.qh_shift, 3u) << vec4<u32>(4u));
    return Group8(s.d * (vec4<f32>(q_lo) - 32.0), s.d * (vec4<f32>(q_hi) - 32.0));
}

// One sub-block of Q5_K (32 values), Q3_K or Q2_K (16), decoded: value = d·level − m (Q3_K:
// d·(level − 4), m unused). The level's low bits are the field at `shift` of the bytes from
// word `q`; Q5_K's and Q3_K's high bit is bit `bit` of the bytes from word `h`.
struct KSubBlock {
    d: f32,
    m: f32,
    q: u32,
    h: u32,
    shift: u32,
    bit: u32,
}

// Q5_K: Q4_K's layout with qh (words 4..11) before qs (words 12..43); the high bit of the
// value in qs byte l of chunk c is bit 2c (low nibble) or 2c + 1 (high) of qh[l], i.e. bit
// `sub` for sub-block sub.
fn q5_k_sub_block(row: u32, sb: u32, k: u32) -> KSubBlock {
    let base = (row * (k / 256u) + sb / 8u) * Q5_K_WORDS;
    let sub = sb % 8u;
    let dm = unpack2x16float(w_quants[base]) * vec2<f32>(scale_min_k4(base + 1u, sub));
    return KSubBlock(dm.x, dm.y, base + 12u + 8u * (sub / 2u), base + 4u, 4u * (sub & 1u), sub);
}

// Group j (0..3) of a decoded Q5_K sub-block.
fn q5_k_group8(s: KSubBlock, j: u32) -> Group8 {
    let q = s.q + 2u * j;
    let h = s.h + 2u * j;
    let lo = byte_fields(w_quants[q], s.shift, 15u) | (byte_fields(w_quants[h], s.bit, 1u) << vec4<u32>(4u));
    let hi = byte_fields(w_quants[q + 1u], s.shift, 15u) | (byte_fields(w_quants[h + 1u], s.bit, 1u) << vec4<u32>(4u));
    return Group8(s.d * vec4<f32>(lo) - s.m, s.d * vec4<f32>(hi) - s.m);
}

// Where Q3_K's and Q2_K's 16-value sub-block `is` (0..15) keeps its 2-bit levels: value
// 128n + 32j + l sits at bits 2j of qs byte 32n + l, and sub-block is = 8n + 2j + l / 16.
// Returns (byte offset of its first level in qs, bit shift, n, j).
fn k2_position(is: u32) -> vec4<u32> {
    let n = is / 8u;
    let j = (is % 8u) / 2u;
    return vec4<u32>(32u * n + 16u * (is % 2u), 2u * j, n, j);
}

// Q3_K: value = d·(sc − 32)·(q − 4 + 4h), h bit 4n + j of hmask[l] (words 0..7), q in qs
// (words 8..23), the 6-bit scale's low 4 bits a nibble of scales[0..8] and top 2 bits a pair of
// scales[8..12] (words 24..26); d in w_scales.
fn q3_k_sub_block(row: u32, sb: u32, k: u32) -> KSubBlock {
    let block = row * (k / 256u) + sb / 16u;
    let base = block * Q3_K_WORDS;
    let is = sb % 16u;
    let p = k2_position(is);
    let low = (quant_byte(base + 24u, is % 8u) >> (4u * (is / 8u))) & 15u;
    let high = (quant_byte(base + 24u, 8u + is % 4u) >> (2u * (is / 4u))) & 3u;
    let d = half_scale(block) * f32(i32(low | (high << 4u)) - 32);
    // hmask byte l = p.x % 32: the same l as the qs byte.
    return KSubBlock(d, 0.0, base + 8u + p.x / 4u, base + (p.x % 32u) / 4u, p.y, 4u * p.z + p.w);
}

// Group j (0..1) of a decoded Q3_K sub-block.
fn q3_k_group8(s: KSubBlock, j: u32) -> Group8 {
    let q = s.q + 2u * j;
    let h = s.h + 2u * j;
    let lo = byte_fields(w_quants[q], s.shift, 3u) | (byte_fields(w_quants[h], s.bit, 1u) << vec4<u32>(2u));
    let hi = byte_fields(w_quants[q + 1u], s.shift, 3u) | (byte_fields(w_quants[h + 1u], s.bit, 1u) << vec4<u32>(2u));
    return Group8(s.d * (vec4<f32>(lo) - 4.0), s.d * (vec4<f32>(hi) - 4.0));
}

// Q2_K: value = d·sc·q − dmin·m, sc and m the nibbles of scales[is] (words 0..3), q in qs
// (words 4..19), d and dmin in word 20.
fn q2_k_sub_block(row: u32, sb: u32, k: u32) -> KSubBlock {
    let base = (row * (k / 256u) + sb / 16u) * Q2_K_WORDS;
    let is = sb % 16u;
    let p = k2_position(is);
    let sc = quant_byte(base, is);
    let dm = unpack2x16float(w_quants[base + 20u]) * vec2<f32>(f32(sc & 15u), f32(sc >> 4u));
    return KSubBlock(dm.x, dm.y, base + 4u + p.x / 4u, 0u, p.y, 0u);
}

// Group j (0..1) of a decoded Q2_K sub-block.
fn q2_k_group8(s: KSubBlock, j: u32) -> Group8 {
    let q = s.q + 2u * j;
    return Group8(s.d * vec4<f32>(byte_fields(w_quants[q], s.shift, 3u)) - s.m,
                  s.d * vec4<f32>(byte_fields(w_quants[q + 1u], s.shift, 3u)) - s.m);
}

// IQ4_XS sub-block `sb` (32 values): its scale d·(ls − 32) (the 6-bit ls from scales_l, word 1,
// and scales_h, the high half of word 0) and the word where its 4 words of nibbles start.
struct Iq4xsSubBlock {
    d: f32,
    q: u32,
}

fn iq4_xs_sub_block(row: u32, sb: u32, k: u32) -> Iq4xsSubBlock {
    let base = (row * (k / 256u) + sb / 8u) * IQ4_XS_WORDS;
    let ib = sb % 8u;
    let head = w_quants[base];
    let ls = ((quant_byte(base + 1u, ib / 2u) >> (4u * (ib % 2u))) & 15u) | (((head >> (16u + 2u * ib)) & 3u) << 4u);
    return Iq4xsSubBlock(unpack2x16float(head).x * f32(i32(ls) - 32), base + 2u + 4u * ib);
}

// Weights [8g, 8g + 8) of `row`, whose length is `k` values.
fn load_group8(row: u32, g: u32, k: u32) -> Group8 {
    switch FORMAT {
        case FORMAT_F32: {
            let base = row * k + g * 8u;
            return Group8(
                bitcast<vec4<f32>>(vec4<u32>(w_quants[base], w_quants[base + 1u], w_quants[base + 2u], w_quants[base + 3u])),
                bitcast<vec4<f32>>(vec4<u32>(w_quants[base + 4u], w_quants[base + 5u], w_quants[base + 6u], w_quants[base + 7u])));
        }
        case FORMAT_F16: {
            let base = row * (k / 2u) + g * 4u;
            return Group8(vec4<f32>(unpack2x16float(w_quants[base]), unpack2x16float(w_quants[base + 1u])),
                          vec4<f32>(unpack2x16float(w_quants[base + 2u]), unpack2x16float(w_quants[base + 3u])));
        }
        case FORMAT_BF16: {
            // A bf16 is the top half of an f32: shifting it there is the conversion.
            let base = row * (k / 2u) + g * 4u;
            let q = vec4<u32>(w_quants[base], w_quants[base + 1u], w_quants[base + 2u], w_quants[base + 3u]);
            let lo = bitcast<vec4<f32>>(q << vec4<u32>(16u));
            let hi = bitcast<vec4<f32>>(q & vec4<u32>(0xffff0000u));
            return Group8(vec4<f32>(lo.x, hi.x, lo.y, hi.y), vec4<f32>(lo.z, hi.z, lo.w, hi.w));
        }
        case FORMAT_Q5_0: {
            let q = q5_values(row, g, k);
            let d = half_scale(row * (k / 32u) + g / 4u);
            return Group8((q.lo - 16.0) * d, (q.hi - 16.0) * d);
        }
        case FORMAT_Q5_1: {
            let q = q5_values(row, g, k);
            let dm = unpack2x16float(w_scales[row * (k / 32u) + g / 4u]);
            return Group8(q.lo * dm.x + dm.y, q.hi * dm.x + dm.y);
        }
        case FORMAT_Q8_0: {
            let base = row * (k / 4u) + g * 2u;
            let d = half_scale(row * (k / 32u) + g / 4u);
            return Group8(signed_bytes(w_quants[base]) * d, signed_bytes(w_quants[base + 1u]) * d);
        }
        case FORMAT_Q4_K: {
            return q4_k_group8(q4_k_sub_block(row, g / 4u, k), g % 4u);
        }
        case FORMAT_Q6_K: {
            return q6_k_group8(q6_k_sub_block(row, g / 2u, k), g % 2u);
        }
        case FORMAT_Q5_K: {
            return q5_k_group8(q5_k_sub_block(row, g / 4u, k), g % 4u);
        }
        case FORMAT_Q3_K: {
            return q3_k_group8(q3_k_sub_block(row, g / 2u, k), g % 2u);
        }
        case FORMAT_Q2_K: {
            return q2_k_group8(q2_k_sub_block(row, g / 2u, k), g % 2u);
        }
        case FORMAT_IQ4_XS: {
            let s = iq4_xs_sub_block(row, g / 4u, k);
            return iq4_nl_group8(w_quants[s.q + g % 4u], s.d);
        }
        case FORMAT_MXFP4: {
            return codebook_group8(MXFP4_BOOK, w_quants[row * (k / 8u) + g], mxfp4_scale(row * (k / 32u) + g / 4u));
        }
        case FORMAT_NF4, FORMAT_FP4: {
            return bnb4_group8(w_quants[row * (k / 8u) + g], bitcast<f32>(w_scales[row * (k / 64u) + g / 8u]));
        }
        case FORMAT_IQ4_NL: {
            return iq4_nl_group8(w_quants[row * (k / 8u) + g], half_scale(row * (k / 32u) + g / 4u));
        }
        case FORMAT_Q4_1: {
            let n = nibbles(w_quants[row * (k / 8u) + g]);
            let dm = unpack2x16float(w_scales[row * (k / 32u) + g / 4u]);
            return Group8(n.lo * dm.x + dm.y, n.hi * dm.x + dm.y);
        }
        default: { // FORMAT_Q4_0
            let n = nibbles(w_quants[row * (k / 8u) + g]);
            let d = half_scale(row * (k / 32u) + g / 4u);
            return Group8((n.lo - 8.0) * d, (n.hi - 8.0) * d);
        }
    }
}
