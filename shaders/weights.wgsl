// Quantized weights as `src/quant/repack.rs` lays them out, and the decoding of the 32-value
// and float formats. weights_super.wgsl (the 256-value formats and load_group8) follows it in
// every module that multiplies by weights.
//
// FORMAT is a pipeline constant, so every `switch FORMAT` folds to one branch when the driver
// compiles the pipeline: one source, one specialised kernel per format.

override FORMAT: u32 = 3u;
const FORMAT_F32: u32 = 0u;
const FORMAT_F16: u32 = 1u;
const FORMAT_Q8_0: u32 = 2u;
const FORMAT_Q4_0: u32 = 3u;
const FORMAT_Q4_1: u32 = 4u;
const FORMAT_Q4_K: u32 = 5u;
const FORMAT_Q6_K: u32 = 6u;
const FORMAT_IQ4_NL: u32 = 7u;
const FORMAT_Q5_0: u32 = 8u;
const FORMAT_Q5_1: u32 = 9u;
const FORMAT_BF16: u32 = 10u;
const FORMAT_Q5_K: u32 = 11u;
const FORMAT_Q3_K: u32 = 12u;
const FORMAT_Q2_K: u32 = 13u;
const FORMAT_IQ4_XS: u32 = 14u;
const FORMAT_MXFP4: u32 = 15u;
const FORMAT_NF4: u32 = 16u;
const FORMAT_FP4: u32 = 17u;

// Row-major quants of the rows this dispatch covers (one chunk of a split matrix). Q4_K, Q5_K,
// Q2_K: whole GGUF blocks. Q6_K, Q3_K: each block without its trailing f16 d. IQ4_XS: d and
// scales, then nibbles in value order (src/quant/repack.rs).
@group(0) @binding(0) var<storage, read> w_quants: array<u32>;
// Per-block scales: f16 pairs (Q8_0, Q5_0, Q4_0, IQ4_NL, Q6_K's and Q3_K's d), one (d, m) f16
// pair per block (Q4_1, Q5_1), E8M0 exponent bytes, four a word (MXFP4), or the f32 absmax of
// each 64-value block (NF4, FP4). Empty for Q4_K,
// Q5_K, Q2_K and IQ4_XS, whose scales stay inside their blocks.
@group(0) @binding(1) var<storage, read> w_scales: array<u32>;

// Words per Q5_0 / Q5_1 block in w_quants: four of value-order nibbles, then the fifth bits.
const Q5_WORDS: u32 = 5u;

// IQ4_NL's codebook (src/quant/iq4nl.rs: IQ4_NL_VALUES) as 16 int8 bytes, 4 per word, little
// endian: -127 -104 -83 -65 | -49 -35 -22 -10 | 1 13 25 38 | 53 69 89 113. Indexing a const
// array with a runtime value makes some compilers (llvmpipe) copy the array to private memory on
// every lookup, 9x slower than Q4_0; selects and a bit extract stay in registers.
const IQ4_NL_BOOK: vec4<u32> = vec4<u32>(0xbfad9881u, 0xf6eaddcfu, 0x26190d01u, 0x71594535u);
// MXFP4's E2M1 values doubled (src/quant/mxfp4.rs: MXFP4_VALUES), packed the same way:
// 0 1 2 3 | 4 6 8 12 | 0 -1 -2 -3 | -4 -6 -8 -12.
const MXFP4_BOOK: vec4<u32> = vec4<u32>(0x03020100u, 0x0c080604u, 0xfdfeff00u, 0xf4f8fafcu);

// bitsandbytes' NF4 and FP4 codebooks (src/quant/bnb4.rs), four f32 entries a vector: their
// values are not integers, so they cannot share the int8 packing above. Selects and a vector
// component pick an entry without an indexed private array (see IQ4_NL_BOOK).
const NF4_BOOK_0: vec4<f32> = vec4<f32>(-1.0, -0.6961928, -0.52507305, -0.3949175);
const NF4_BOOK_1: vec4<f32> = vec4<f32>(-0.28444138, -0.18477343, -0.091050036, 0.0);
const NF4_BOOK_2: vec4<f32> = vec4<f32>(0.0795803, 0.1609302, 0.2461123, 0.33791524);
const NF4_BOOK_3: vec4<f32> = vec4<f32>(0.44070983, 0.562617, 0.72295684, 1.0);
// FP4: 0, 0.0625, 8, 12, 4, 6, 2, 3 over 12, then the same negated (bit 3 is the sign).
const FP4_BOOK_0: vec4<f32> = vec4<f32>(0.0, 0.0625 / 12.0, 8.0 / 12.0, 1.0);
const FP4_BOOK_1: vec4<f32> = vec4<f32>(4.0 / 12.0, 0.5, 2.0 / 12.0, 0.25);

// Entry `n` (0-15) of the NF4 or FP4 codebook, whichever FORMAT is.
fn bnb4_value(n: u32) -> f32 {
    let high = (n & 4u) != 0u;
    var v: vec4<f32>;
    if (FORMAT == FORMAT_FP4) {
        v = select(FP4_BOOK_0, FP4_BOOK_1, high) * select(1.0, -1.0, (n & 8u) != 0u);
    } else {
        v = select(select(NF4_BOOK_0, NF4_BOOK_1, high), select(NF4_BOOK_2, NF4_BOOK_3, high), (n & 8u) != 0u);
    }
    return v[n & 3u];
}

// Eight NF4 / FP4 values, one per nibble of `q` (nibble j = value j), times the block's absmax.
fn bnb4_group8(q: u32, absmax: f32) -> Group8 {
    return Group8(absmax * vec4<f32>(bnb4_value(q & 15u), bnb4_value((q >> 4u) & 15u),
                                     bnb4_value((q >> 8u) & 15u), bnb4_value((q >> 12u) & 15u)),
                  absmax * vec4<f32>(bnb4_value((q >> 16u) & 15u), bnb4_value((q >> 20u) & 15u),
                                     bnb4_value((q >> 24u) & 15u), bnb4_value(q >> 28u)));
}

// Entry `n` (0-15) of a 16-entry int8 codebook packed in four words.
fn codebook_value(book: vec4<u32>, n: u32) -> f32 {
    let low = select(book.x, book.y, (n & 4u) != 0u);
    let high = select(book.z, book.w, (n & 4u) != 0u);
    let word = select(low, high, (n & 8u) != 0u);
    // extractBits on i32 sign-extends the byte.
    return f32(extractBits(bitcast<i32>(word), (n & 3u) * 8u, 8u));
}

// Eight consecutive weights of one row.
struct Group8 {
    lo: vec4<f32>,
    hi: vec4<f32>,
}

// The f16 scale of block `i`, two of them packed in a word.
fn half_scale(i: u32) -> f32 {
    let pair = unpack2x16float(w_scales[i >> 1u]);
    return select(pair.x, pair.y, (i & 1u) == 1u);
}

// Nibbles 0..3 and 4..7 of `q` as unsigned values.
fn nibbles(q: u32) -> Group8 {
    let shifts_lo = vec4<u32>(0u, 4u, 8u, 12u);
    let shifts_hi = vec4<u32>(16u, 20u, 24u, 28u);
    return Group8(vec4<f32>((vec4<u32>(q) >> shifts_lo) & vec4<u32>(15u)),
                  vec4<f32>((vec4<u32>(q) >> shifts_hi) & vec4<u32>(15u)));
}

// Four signed bytes of `q`, sign-extended by an arithmetic shift.
fn signed_bytes(q: u32) -> vec4<f32> {
    let v = bitcast<vec4<i32>>(vec4<u32>(q << 24u, q << 16u, q << 8u, q));
    return vec4<f32>(v >> vec4<u32>(24u));
}

// Q5_0 / Q5_1: group g's 5-bit values, nibbles from its word plus the block's qh bits 8(g % 4)..
fn q5_values(row: u32, g: u32, k: u32) -> Group8 {
    let base = (row * (k / 32u) + g / 4u) * Q5_WORDS;
    let n = nibbles(w_quants[base + g % 4u]);
    let h = w_quants[base + 4u] >> (8u * (g % 4u));
    let hi_lo = vec4<f32>((vec4<u32>(h) >> vec4<u32>(0u, 1u, 2u, 3u)) & vec4<u32>(1u));
    let hi_hi = vec4<f32>((vec4<u32>(h) >> vec4<u32>(4u, 5u, 6u, 7u)) & vec4<u32>(1u));
    return Group8(n.lo + 16.0 * hi_lo, n.hi + 16.0 * hi_hi);
}

// Byte `i` of the little-endian byte string that starts at word `base` of w_quants.
fn quant_byte(base: u32, i: u32) -> u32 {
    return (w_quants[base + i / 4u] >> (8u * (i % 4u))) & 255u;
}

// Bits [shift + 8j, shift + 8j + width) of `q` for bytes j = 0..3: one field of each byte.
fn byte_fields(q: u32, shift: u32, mask: u32) -> vec4<u32> {
    return (vec4<u32>(q) >> (vec4<u32>(0u, 8u, 16u, 24u) + vec4<u32>(shift))) & vec4<u32>(mask);
}

// Eight codebook entries, one per nibble of `q` (nibble j = value j), times d.
fn codebook_group8(book: vec4<u32>, q: u32, d: f32) -> Group8 {
    return Group8(d * vec4<f32>(codebook_value(book, q & 15u), codebook_value(book, (q >> 4u) & 15u),
                                codebook_value(book, (q >> 8u) & 15u), codebook_value(book, (q >> 12u) & 15u)),
                  d * vec4<f32>(codebook_value(book, (q >> 16u) & 15u), codebook_value(book, (q >> 20u) & 15u),
                                codebook_value(book, (q >> 24u) & 15u), codebook_value(book, q >> 28u)));
}

// IQ4_NL and IQ4_XS: codebook entries times the (sub-)block scale.
fn iq4_nl_group8(q: u32, d: f32) -> Group8 {
    return codebook_group8(IQ4_NL_BOOK, q, d);
}

// MXFP4 block `i`'s scale, ggml's GGML_E8M0_TO_FP32_HALF of its exponent byte (four a word in
// w_scales): 2^(e - 128), and for e = 0, 1 the subnormals 2^-128, 2^-127.
fn mxfp4_scale(i: u32) -> f32 {
    let e = (w_scales[i / 4u] >> (8u * (i % 4u))) & 255u;
    return bitcast<f32>(select((e - 1u) << 23u, 0x00200000u << (e & 1u), e < 2u));
}
