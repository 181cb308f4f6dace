//! GGUF parser tests: well-formed v2/v3 files parse to the right values, and
//! every kind of hostile file is rejected with its own error variant.

use std::time::{Duration, Instant};

use qgpu::loader::gguf::{
    GgmlType, GgufError, GgufFile, GgufHeader, MetadataArray, MetadataValue, OptionalKey,
};
use qgpu::loader::gguf_write::GgufWriter;

// Metadata value type ids.
const U8: u32 = 0;
const I8: u32 = 1;
const U16: u32 = 2;
const I16: u32 = 3;
const U32: u32 = 4;
const I32: u32 = 5;
const F32: u32 = 6;
const BOOL: u32 = 7;
const STR: u32 = 8;
const ARR: u32 = 9;
const U64: u32 = 10;
const I64: u32 = 11;
const F64: u32 = 12;

// ggml type ids.
const T_F32: u32 = 0;
const T_F16: u32 = 1;
const T_Q4_0: u32 = 2;

/// Byte-by-byte file builder, independent of the crate's writer.
#[derive(Default)]
struct B(Vec<u8>);

impl B {
    fn header(version: u32, n_tensors: u64, n_kv: u64) -> B {
        let mut b = B::default();
        b.raw(b"GGUF").u32(version).u64(n_tensors).u64(n_kv);
        b
    }
    fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.extend_from_slice(bytes);
        self
    }
    fn u8(&mut self, v: u8) -> &mut Self {
        self.raw(&[v])
    }
    fn u16(&mut self, v: u16) -> &mut Self {
        self.raw(&v.to_le_bytes())
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.raw(&v.to_le_bytes())
    }
    fn i32(&mut self, v: i32) -> &mut Self {
        self.raw(&v.to_le_bytes())
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.raw(&v.to_le_bytes())
    }
    fn f32(&mut self, v: f32) -> &mut Self {
        self.raw(&v.to_le_bytes())
    }
    fn f64(&mut self, v: f64) -> &mut Self {
        self.raw(&v.to_le_bytes())
    }
    fn str(&mut self, s: &str) -> &mut Self {
        self.u64(s.len() as u64).raw(s.as_bytes())
    }
    /// Key followed by the value type id; the caller appends the value.
    fn key(&mut self, k: &str, ty: u32) -> &mut Self {
        self.str(k).u32(ty)
    }
    fn arr(&mut self, elem: u32, n: u64) -> &mut Self {
        self.u32(elem).u64(n)
    }
    fn tensor(&mut self, name: &str, dims: &[u64], ty: u32, offset: u64) -> &mut Self {
        self.str(name).u32(dims.len() as u32);
        for &d in dims {
            self.u64(d);
        }
        self.u32(ty).u64(offset)
    }
    fn pad(&mut self, align: usize) -> &mut Self {
        while !self.0.len().is_multiple_of(align) {
            self.0.push(0);
        }
        self
    }
    fn zeros(&mut self, n: usize) -> &mut Self {
        self.0.resize(self.0.len() + n, 0);
        self
    }
    fn done(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.0)
    }
}

fn parse(bytes: &[u8]) -> Result<GgufHeader, GgufError> {
    GgufHeader::parse(bytes)
}

fn err(bytes: &[u8]) -> GgufError {
    match parse(bytes) {
        Ok(h) => panic!("expected an error, parsed {h:?}"),
        Err(e) => {
            // Every error must render a message.
            assert!(!e.to_string().is_empty());
            e
        }
    }
}

fn w_data() -> Vec<u8> {
    (0..8).flat_map(|i| (i as f32).to_le_bytes()).collect()
}

fn q_data() -> Vec<u8> {
    (0..36u8).collect()
}

/// A file with every metadata value type, nested and string arrays, and
/// three tensors (F32, Q4_0, and an empty F16).
fn full_file(version: u32) -> Vec<u8> {
    let mut b = B::header(version, 3, 18);
    b.key("t.u8", U8).u8(200);
    b.key("t.i8", I8).u8((-5i8) as u8);
    b.key("t.u16", U16).u16(60000);
    b.key("t.i16", I16).raw(&(-30000i16).to_le_bytes());
    b.key("t.u32", U32).u32(4_000_000_000);
    b.key("t.i32", I32).i32(-2_000_000_000);
    b.key("t.f32", F32).f32(1.5);
    b.key("t.bool", BOOL).u8(1);
    b.key("t.str", STR).str("héllo");
    b.key("t.u64", U64).u64(1 << 40);
    b.key("t.i64", I64).raw(&(-(1i64 << 40)).to_le_bytes());
    b.key("t.f64", F64).f64(2.25);
    b.key("t.arr.i32", ARR).arr(I32, 3).i32(1).i32(-2).i32(3);
    b.key("t.arr.str", ARR).arr(STR, 3).str("a").str("bc").str("");
    b.key("t.arr.nested", ARR).arr(ARR, 3);
    b.arr(U8, 2).u8(1).u8(2);
    b.arr(STR, 1).str("x");
    b.arr(ARR, 1).arr(F32, 1).f32(0.5);
    b.key("t.arr.bool", ARR).arr(BOOL, 2).u8(1).u8(0);
    b.key("t.arr.f64", ARR).arr(F64, 2).f64(-1.0).f64(3.5);
    b.key("t.arr.empty", ARR).arr(U64, 0);
    b.tensor("w", &[4, 2], T_F32, 0);
    b.tensor("q", &[64], T_Q4_0, 32);
    b.tensor("e", &[0, 3], T_F16, 96);
    b.pad(32).raw(&w_data()).raw(&q_data()).zeros(28);
    b.done()
}

fn full_metadata() -> Vec<(&'static str, MetadataValue)> {
    use MetadataArray as A;
    use MetadataValue as V;
    vec![
        ("t.u8", V::U8(200)),
        ("t.i8", V::I8(-5)),
        ("t.u16", V::U16(60000)),
        ("t.i16", V::I16(-30000)),
        ("t.u32", V::U32(4_000_000_000)),
        ("t.i32", V::I32(-2_000_000_000)),
        ("t.f32", V::F32(1.5)),
        ("t.bool", V::Bool(true)),
        ("t.str", V::String("héllo".into())),
        ("t.u64", V::U64(1 << 40)),
        ("t.i64", V::I64(-(1 << 40))),
        ("t.f64", V::F64(2.25)),
        ("t.arr.i32", V::Array(A::I32(vec![1, -2, 3]))),
        ("t.arr.str", V::Array(A::String(vec!["a".into(), "bc".into(), String::new()]))),
        (
            "t.arr.nested",
            V::Array(A::Array(vec![
                A::U8(vec![1, 2]),
                A::String(vec!["x".into()]),
                A::Array(vec![A::F32(vec![0.5])]),
            ])),
        ),
        ("t.arr.bool", V::Array(A::Bool(vec![true, false]))),
        ("t.arr.f64", V::Array(A::F64(vec![-1.0, 3.5]))),
        ("t.arr.empty", V::Array(A::U64(vec![]))),
    ]
}

fn check_full(h: &GgufHeader, bytes: &[u8], version: u32) {
    assert_eq!(h.version(), version);
    assert_eq!(h.alignment(), 32);
    assert_eq!(h.data_offset() % 32, 0);
    let got: Vec<_> = h.metadata().iter().collect();
    let want = full_metadata();
    assert_eq!(got.len(), want.len());
    for ((gk, gv), (wk, wv)) in got.iter().zip(&want) {
        assert_eq!(gk, wk);
        assert_eq!(*gv, wv, "key {wk}");
    }
    assert_eq!(h.get_u32("t.u32").unwrap(), 4_000_000_000);
    assert_eq!(h.get_u32("t.u8").unwrap(), 200);
    assert_eq!(h.get_i32("t.i8").unwrap(), -5);
    assert_eq!(h.get_i64("t.i64").unwrap(), -(1 << 40));
    assert_eq!(h.get_u64("t.u64").unwrap(), 1 << 40);
    assert_eq!(h.get_usize("t.u16").unwrap(), 60000);
    assert_eq!(h.get_f32("t.f32").unwrap(), 1.5);
    assert_eq!(h.get_f32("t.f64").unwrap(), 2.25);
    assert_eq!(h.get_f64("t.f32").unwrap(), 1.5);
    assert!(h.get_bool("t.bool").unwrap());
    assert_eq!(h.get_str("t.str").unwrap(), "héllo");
    assert_eq!(h.get_string_array("t.arr.str").unwrap(), ["a", "bc", ""]);
    assert_eq!(&*h.get_i32_array("t.arr.i32").unwrap(), &[1, -2, 3]);
    assert_eq!(&*h.get_i64_array("t.arr.i32").unwrap(), &[1, -2, 3]);
    assert_eq!(&*h.get_f32_array("t.arr.f64").unwrap(), &[-1.0, 3.5]);
    assert!(h.get_u64_array("t.arr.empty").unwrap().is_empty());
    assert_eq!(h.get_array("t.arr.nested").unwrap().depth(), 3);

    let names: Vec<_> = h.tensors().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["w", "q", "e"]);
    let w = h.tensor("w").unwrap();
    assert_eq!((w.dims.as_slice(), w.ggml_type, w.n_elements, w.size_bytes), (&[4, 2][..], GgmlType::F32, 8, 32));
    assert_eq!(w.offset, h.data_offset());
    assert_eq!(h.tensor_data(bytes, w).unwrap(), w_data());
    let q = h.tensor("q").unwrap();
    assert_eq!((q.ggml_type, q.size_bytes, q.offset), (GgmlType::Q4_0, 36, h.data_offset() + 32));
    assert_eq!(h.tensor_data(bytes, q).unwrap(), q_data());
    let e = h.tensor("e").unwrap();
    assert_eq!((e.n_elements, e.size_bytes), (0, 0));
    assert!(h.tensor_data(bytes, e).unwrap().is_empty());
}

#[test]
fn valid_v3_every_value_type() {
    let bytes = full_file(3);
    check_full(&parse(&bytes).unwrap(), &bytes, 3);
}

#[test]
fn valid_v2_every_value_type() {
    let bytes = full_file(2);
    check_full(&parse(&bytes).unwrap(), &bytes, 2);
}

#[test]
fn writer_matches_hand_built_file() {
    let mut w = GgufWriter::new();
    for (k, v) in full_metadata() {
        w.add_metadata(k, v).unwrap();
    }
    let (wd, qd) = (w_data(), q_data());
    w.add_tensor("w", &[4, 2], GgmlType::F32, &wd[..]).unwrap();
    w.add_tensor("q", &[64], GgmlType::Q4_0, qd.clone()).unwrap();
    w.add_tensor("e", &[0, 3], GgmlType::F16, Vec::new()).unwrap();
    let bytes = w.to_bytes();
    assert_eq!(bytes, full_file(3));
    let file = GgufFile::from_bytes(bytes).unwrap();
    assert_eq!(file.tensor_bytes("q").unwrap(), qd);
    assert!(matches!(file.tensor_bytes("nope").unwrap_err(), GgufError::MissingTensor { .. }));
}

#[test]
fn custom_alignment_is_honoured() {
    // Alignment 8: a tensor at relative offset 8 is valid (it would not be at 32).
    let mut b = B::header(3, 2, 1);
    b.key("general.alignment", U32).u32(8);
    b.tensor("a", &[2], T_F32, 0).tensor("b", &[1], T_F32, 8);
    b.pad(8);
    let data_offset = b.0.len() as u64;
    b.f32(1.0).f32(2.0).f32(3.0).u32(0);
    let bytes = b.done();
    let h = parse(&bytes).unwrap();
    assert_eq!((h.alignment(), h.data_offset()), (8, data_offset));
    assert_eq!(h.tensor("b").unwrap().offset, data_offset + 8);
    assert_eq!(h.tensor_data(&bytes, h.tensor("b").unwrap()).unwrap(), 3.0f32.to_le_bytes());

    // Round trip through the writer with a large alignment.
    let mut w = GgufWriter::new();
    w.add_metadata("general.alignment", 256u32).unwrap();
    w.add_tensor("x", &[3], GgmlType::I8, vec![1, 2, 3]).unwrap();
    w.add_tensor("y", &[2], GgmlType::I16, vec![4, 5, 6, 7]).unwrap();
    let file = GgufFile::from_bytes(w.to_bytes()).unwrap();
    assert_eq!(file.alignment(), 256);
    for t in file.tensors() {
        assert_eq!(t.offset % 256, 0, "{}", t.name);
    }
    assert_eq!(file.tensor_bytes("x").unwrap(), [1, 2, 3]);
    assert_eq!(file.tensor_bytes("y").unwrap(), [4, 5, 6, 7]);
}

#[test]
fn no_tensors_and_no_data_section() {
    let mut b = B::header(3, 0, 1);
    b.key("general.name", STR).str("tiny");
    let h = parse(&b.done()).unwrap();
    assert!(h.tensors().is_empty());
    assert_eq!(h.get_str("general.name").unwrap(), "tiny");
}

#[test]
fn getters_check_types_and_ranges() {
    let bytes = full_file(3);
    let file = GgufFile::from_bytes(bytes).unwrap();
    assert!(matches!(file.get_u32("nope").unwrap_err(), GgufError::MissingKey { key } if key == "nope"));
    assert!(matches!(
        file.get_u32("t.str").unwrap_err(),
        GgufError::WrongType { key, expected: "u32", found: "string" } if key == "t.str"
    ));
    assert!(matches!(file.get_u32("t.i8").unwrap_err(), GgufError::IntOutOfRange { value: -5, .. }));
    assert!(matches!(file.get_i32("t.u32").unwrap_err(), GgufError::IntOutOfRange { .. }));
    assert!(matches!(file.get_u32_array("t.arr.i32").unwrap_err(), GgufError::IntOutOfRange { value: -2, .. }));
    assert!(matches!(
        file.get_string_array("t.arr.i32").unwrap_err(),
        GgufError::WrongType { found: "array<i32>", .. }
    ));
    assert!(matches!(file.get_f32("t.u8").unwrap_err(), GgufError::WrongType { .. }));
    assert!(matches!(file.get_str("t.arr.str").unwrap_err(), GgufError::WrongType { .. }));
    assert_eq!(file.get_f32("missing.rope").optional().unwrap(), None);
    assert_eq!(file.get_f32("t.f32").optional().unwrap(), Some(1.5));
    assert!(file.get_f32("t.str").optional().is_err());
}

// ---- hostile files: each gets its own variant ----

#[test]
fn bad_magic() {
    let mut bytes = full_file(3);
    bytes[0] = b'X';
    assert!(matches!(err(&bytes), GgufError::BadMagic { found } if &found == b"XGUF"));
}

#[test]
fn unsupported_versions() {
    for v in [0, 1, 4, u32::MAX] {
        let bytes = B::header(v, 0, 0).done();
        assert!(matches!(err(&bytes), GgufError::UnsupportedVersion { version } if version == v));
    }
}

#[test]
fn truncated_header() {
    let bytes = full_file(3);
    assert!(matches!(err(&bytes[..2]), GgufError::Truncated { what: "magic", .. }));
    assert!(matches!(err(&bytes[..6]), GgufError::Truncated { what: "version", offset: 4, needed: 4, available: 2 }));
    assert!(matches!(err(&bytes[..20]), GgufError::Truncated { what: "metadata entry count", .. }));
    // Cut inside a fixed-size metadata value: the u16 of "t.u16".
    let mut b = B::header(3, 0, 1);
    b.key("k", U16).u8(1);
    assert!(matches!(err(&b.done()), GgufError::Truncated { what: "metadata value", .. }));
    // Cut inside a tensor info.
    let mut b = B::header(3, 1, 0);
    b.str("t").u32(2).u64(4).u64(4).u32(T_F32).raw(&[0; 4]);
    assert!(matches!(err(&b.done()), GgufError::Truncated { what: "tensor data offset", .. }));
    // Every strict prefix of a valid file is rejected.
    for cut in 0..bytes.len() {
        assert!(parse(&bytes[..cut]).is_err(), "prefix of {cut} bytes parsed");
    }
}

#[test]
fn string_longer_than_file() {
    let mut b = B::header(3, 0, 1);
    b.u64(1000).raw(b"short");
    assert!(matches!(err(&b.done()), GgufError::StringTooLong { what: "metadata key", len: 1000, .. }));
    let mut b = B::header(3, 0, 1);
    b.key("k", STR).u64(u64::MAX).raw(b"abc");
    assert!(matches!(err(&b.done()), GgufError::StringTooLong { what: "string value", len: u64::MAX, .. }));
}

#[test]
fn invalid_utf8() {
    let mut b = B::header(3, 0, 1);
    b.u64(2).raw(&[0xC3, 0x28]).u32(U8).u8(0);
    assert!(matches!(err(&b.done()), GgufError::InvalidUtf8 { what: "metadata key", offset: 24, .. }));
    let mut b = B::header(3, 1, 0);
    b.u64(1).raw(&[0xFF]).u32(1).u64(1).u32(T_F32).u64(0);
    assert!(matches!(err(&b.done()), GgufError::InvalidUtf8 { what: "tensor name", .. }));
}

#[test]
fn counts_larger_than_file() {
    let bytes = B::header(3, 0, 1_000_000).done();
    assert!(matches!(err(&bytes), GgufError::CountTooLarge { what: "metadata entry count", count: 1_000_000, .. }));
    let bytes = B::header(3, 5, 0).zeros(100).done();
    assert!(matches!(err(&bytes), GgufError::CountTooLarge { what: "tensor count", count: 5, .. }));
    let mut b = B::header(3, 0, 1);
    b.key("k", ARR).arr(U32, 10).u32(1);
    assert!(matches!(err(&b.done()), GgufError::CountTooLarge { what: "array length", count: 10, .. }));
}

#[test]
fn huge_counts_fail_fast_without_allocating() {
    let start = Instant::now();
    let bytes = B::header(3, 1 << 60, 0).zeros(64).done();
    assert!(matches!(err(&bytes), GgufError::CountTooLarge { what: "tensor count", .. }));
    let bytes = B::header(3, 0, u64::MAX).done();
    assert!(matches!(err(&bytes), GgufError::CountTooLarge { .. }));
    let mut b = B::header(3, 0, 1);
    b.u64(1 << 62).raw(b"key").zeros(16);
    assert!(matches!(err(&b.done()), GgufError::StringTooLong { len, .. } if len == 1 << 62));
    let mut b = B::header(3, 0, 1);
    b.key("k", ARR).arr(STR, 1 << 62);
    assert!(matches!(err(&b.done()), GgufError::CountTooLarge { what: "array length", .. }));
    // count * item size overflowing u64 must not wrap to a small number.
    let mut b = B::header(3, 0, 1);
    b.key("k", ARR).arr(U64, (1 << 61) + 1).zeros(16);
    assert!(matches!(err(&b.done()), GgufError::CountTooLarge { .. }));
    assert!(start.elapsed() < Duration::from_secs(1));
}

fn one_tensor(dims: &[u64], ty: u32, offset: u64, data: usize) -> Vec<u8> {
    let mut b = B::header(3, 1, 0);
    b.tensor("t", dims, ty, offset).pad(32).zeros(data);
    b.done()
}

#[test]
fn tensor_out_of_bounds() {
    let e = err(&one_tensor(&[16], T_F32, 0, 63));
    assert!(matches!(e, GgufError::TensorOutOfBounds { ref tensor, end, file_len, .. } if tensor == "t" && end == file_len + 1));
    let e = err(&one_tensor(&[1], T_F32, 1 << 40, 64));
    assert!(matches!(e, GgufError::TensorOutOfBounds { .. }));
    // start + size overflows u64.
    let e = err(&one_tensor(&[1], T_F32, u64::MAX - 31, 64));
    assert!(matches!(e, GgufError::TensorOutOfBounds { end: u64::MAX, .. }));
}

#[test]
fn overlapping_tensors() {
    let mut b = B::header(3, 2, 0);
    b.tensor("a", &[16], T_F32, 0).tensor("b", &[8], T_F32, 32).pad(32).zeros(128);
    let e = err(&b.done());
    assert!(matches!(e, GgufError::OverlappingTensors { ref first, ref second, .. } if first == "a" && second == "b"));
}

/// The `gguf` fuzz target's one finding: 60 bytes whose `general.alignment` of 2^29 made
/// writing the file back allocate 512 MiB of padding.
#[test]
fn huge_alignment_is_refused() {
    let mut oom = b"GGUF\x03\0\0\0\0\0\0\0\0\0\0\0\x01\0\0\0\0\0\0\0\x11\0\0\0\0\0\0\0general.alignment".to_vec();
    oom.extend_from_slice(&[4, 0, 0, 0, 0, 0, 0, 0x20, 0, 0, 0]);
    assert_eq!(oom.len(), 60);
    let max = qgpu::loader::gguf::MAX_ALIGNMENT;
    assert!(matches!(err(&oom), GgufError::AlignmentTooLarge { alignment: 0x2000_0000, max: m } if m == max));
    for a in [max << 1, 1 << 31] {
        let mut b = B::header(3, 0, 1);
        b.key("general.alignment", U32).u32(a);
        assert!(matches!(err(&b.done()), GgufError::AlignmentTooLarge { alignment, .. } if alignment == a));
    }
    // The largest accepted alignment parses; the writer refuses what the parser refuses.
    let mut b = B::header(3, 0, 1);
    b.key("general.alignment", U32).u32(max);
    assert_eq!(GgufHeader::parse(&b.done()).unwrap().alignment(), max as u64);
    let mut w = GgufWriter::new();
    assert!(matches!(w.add_metadata("general.alignment", max << 1).unwrap_err(), GgufError::AlignmentTooLarge { .. }));
}

#[test]
fn bad_alignment() {
    for a in [0u32, 3, 48] {
        let mut b = B::header(3, 0, 1);
        b.key("general.alignment", U32).u32(a);
        assert!(matches!(err(&b.done()), GgufError::InvalidAlignment { alignment } if alignment == a));
    }
    let mut b = B::header(3, 0, 1);
    b.key("general.alignment", U64).u64(32);
    assert!(matches!(
        err(&b.done()),
        GgufError::WrongType { ref key, expected: "u32", found: "u64" } if key == "general.alignment"
    ));
}

#[test]
fn dims_product_overflows() {
    let e = err(&one_tensor(&[1 << 32, 1 << 32], T_F32, 0, 0));
    assert!(matches!(e, GgufError::ElementCountOverflow { ref dims, .. } if dims == &[1 << 32, 1 << 32]));
    // A dimension beyond i64::MAX is negative to ggml, even times zero.
    let e = err(&one_tensor(&[0, u64::MAX], T_F32, 0, 0));
    assert!(matches!(e, GgufError::ElementCountOverflow { .. }));
}

#[test]
fn byte_size_overflows() {
    let e = err(&one_tensor(&[1 << 62], 27 /* I64 */, 0, 0));
    assert!(matches!(e, GgufError::TensorSizeOverflow { ggml_type: GgmlType::I64, n_elements, .. } if n_elements == 1 << 62));
}

#[test]
fn nested_arrays_too_deep() {
    let nested = |levels: usize| {
        let mut b = B::header(3, 0, 1);
        b.key("deep", ARR);
        for _ in 1..levels {
            b.arr(ARR, 1);
        }
        b.arr(U8, 1).u8(7);
        b.done()
    };
    let h = parse(&nested(8)).unwrap();
    assert_eq!(h.get_array("deep").unwrap().depth(), 8);
    let e = err(&nested(9));
    assert!(matches!(e, GgufError::ArrayTooDeep { ref key, depth: 9, max: 8 } if key == "deep"));
    // A claimed depth of a million must not recurse a million times.
    assert!(matches!(err(&nested(1_000_000)), GgufError::ArrayTooDeep { .. }));
}

#[test]
fn unknown_value_types() {
    let mut b = B::header(3, 0, 1);
    b.key("k", 13).u32(0);
    assert!(matches!(err(&b.done()), GgufError::UnknownValueType { ref key, type_id: 13, offset: 33 } if key == "k"));
    let mut b = B::header(3, 0, 1);
    b.key("k", ARR).arr(99, 0);
    assert!(matches!(err(&b.done()), GgufError::UnknownValueType { type_id: 99, .. }));
}

#[test]
fn unknown_tensor_types() {
    for id in [4, 5, 31, 36, 40, u32::MAX] {
        let e = err(&one_tensor(&[32], id, 0, 64));
        assert!(matches!(e, GgufError::UnknownTensorType { ref tensor, type_id } if tensor == "t" && type_id == id));
    }
}

#[test]
fn bad_dim_counts() {
    for n in [0u32, 5, u32::MAX] {
        let mut b = B::header(3, 1, 0);
        b.str("t").u32(n).zeros(64);
        assert!(matches!(err(&b.done()), GgufError::InvalidDimCount { n_dims, max: 4, .. } if n_dims == u64::from(n)));
    }
}

#[test]
fn first_dim_not_whole_blocks() {
    let e = err(&one_tensor(&[33, 2], T_Q4_0, 0, 64));
    assert!(matches!(
        e,
        GgufError::BlockSizeMismatch { ggml_type: GgmlType::Q4_0, ne0: 33, block_size: 32, .. }
    ));
}

#[test]
fn misaligned_tensor_offset() {
    let e = err(&one_tensor(&[1], T_F32, 4, 64));
    assert!(matches!(e, GgufError::MisalignedTensor { offset: 4, alignment: 32, .. }));
}

#[test]
fn duplicate_names() {
    let mut b = B::header(3, 0, 2);
    b.key("k", U8).u8(1).key("k", U8).u8(2);
    assert!(matches!(err(&b.done()), GgufError::DuplicateKey { ref key } if key == "k"));
    let mut b = B::header(3, 2, 0);
    b.tensor("t", &[1], T_F32, 0).tensor("t", &[1], T_F32, 32).pad(32).zeros(64);
    assert!(matches!(err(&b.done()), GgufError::DuplicateTensor { ref tensor } if tensor == "t"));
}

#[test]
fn invalid_bool() {
    let mut b = B::header(3, 0, 1);
    b.key("k", BOOL).u8(2);
    assert!(matches!(err(&b.done()), GgufError::InvalidBool { value: 2, .. }));
    let mut b = B::header(3, 0, 1);
    b.key("k", ARR).arr(BOOL, 2).u8(1).u8(0xFF);
    assert!(matches!(err(&b.done()), GgufError::InvalidBool { value: 0xFF, .. }));
}

#[test]
fn writer_rejects_bad_input() {
    let mut w = GgufWriter::new();
    let e = w.add_tensor("t", &[4], GgmlType::F32, vec![0; 15]).unwrap_err();
    assert!(matches!(e, GgufError::TensorDataSizeMismatch { expected: 16, actual: 15, .. }));
    w.add_tensor("t", &[1], GgmlType::F32, vec![0; 4]).unwrap();
    assert!(matches!(w.add_tensor("t", &[1], GgmlType::F32, vec![0; 4]).unwrap_err(), GgufError::DuplicateTensor { .. }));
    assert!(matches!(w.add_metadata("general.alignment", 12u32).unwrap_err(), GgufError::InvalidAlignment { .. }));
    assert!(matches!(w.add_metadata("general.alignment", "32").unwrap_err(), GgufError::WrongType { .. }));
    w.add_metadata("a", 1u8).unwrap();
    assert!(matches!(w.add_metadata("a", 2u8).unwrap_err(), GgufError::DuplicateKey { .. }));
    let mut deep = MetadataArray::U8(vec![1]);
    for _ in 0..8 {
        deep = MetadataArray::Array(vec![deep]);
    }
    assert!(matches!(w.add_metadata("deep", deep).unwrap_err(), GgufError::ArrayTooDeep { depth: 9, .. }));
}

#[test]
fn open_from_disk() {
    let dir = std::env::temp_dir().join(format!("qgpu-gguf-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("full.gguf");
    std::fs::write(&path, full_file(3)).unwrap();
    let mapped = GgufFile::open(&path).unwrap();
    check_full(mapped.header(), mapped.bytes(), 3);
    let read = GgufFile::read(&path).unwrap();
    assert_eq!(read.header(), mapped.header());

    let empty = dir.join("empty.gguf");
    std::fs::write(&empty, b"").unwrap();
    assert!(matches!(GgufFile::open(&empty).unwrap_err(), GgufError::Truncated { what: "magic", .. }));
    let missing = dir.join("missing.gguf");
    assert!(matches!(GgufFile::open(&missing).unwrap_err(), GgufError::Io { ref path, .. } if path == &missing));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Deterministic xorshift64* so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Parses and, on success, exercises every accessor and re-encodes the file
/// through the writer; must never panic.
fn exercise(bytes: &[u8]) {
    let Ok(h) = parse(bytes) else { return };
    let mut w = GgufWriter::new();
    for (k, v) in h.metadata().iter() {
        let _ = (h.get_u32(k), h.get_f32(k), h.get_str(k), h.get_string_array(k));
        let _ = (h.get_i32_array(k), h.get_u32_array(k), h.get_f32_array(k), h.get_bool(k));
        w.add_metadata(k, v.clone()).expect("parsed metadata must be writable");
    }
    for t in h.tensors() {
        let data = h.tensor_data(bytes, t).expect("validated tensor must slice");
        assert_eq!(data.len() as u64, t.size_bytes);
        w.add_tensor(t.name.as_str(), &t.dims, t.ggml_type, data).expect("parsed tensor must be writable");
    }
    let out = w.to_bytes();
    let again = parse(&out).expect("re-encoded file must parse");
    assert_eq!(again.metadata().len(), h.metadata().len());
    for (a, b) in again.tensors().iter().zip(h.tensors()) {
        assert_eq!(again.tensor_data(&out, a).unwrap(), h.tensor_data(bytes, b).unwrap());
    }
}

#[test]
fn random_mutations_never_panic() {
    let base = full_file(3);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let interesting: [u64; 6] = [0, 1, 0xFF, 1 << 32, 1 << 62, u64::MAX];
    for round in 0..5000 {
        let mut bytes = base.clone();
        for _ in 0..1 + rng.below(4) {
            let pos = rng.below(bytes.len().max(1));
            match rng.below(5) {
                0 => bytes[pos] ^= 1 << rng.below(8),
                1 => bytes[pos] = rng.next() as u8,
                2 => bytes.truncate(pos),
                3 => {
                    let v = interesting[rng.below(interesting.len())].to_le_bytes();
                    let end = (pos + 8).min(bytes.len());
                    bytes[pos..end].copy_from_slice(&v[..end - pos]);
                }
                _ => {
                    let v = (rng.next() % 16) as u32;
                    let end = (pos + 4).min(bytes.len());
                    bytes[pos..end].copy_from_slice(&v.to_le_bytes()[..end - pos]);
                }
            }
            if bytes.is_empty() {
                break;
            }
        }
        let result = std::panic::catch_unwind(|| exercise(&bytes));
        assert!(result.is_ok(), "panic in mutation round {round}");
    }
}
