//! The CPU reference dequantization of every format against llama.cpp's gguf-py, bit for bit.
//!
//! `scripts/make_format_fixtures.py` wrote `tests/fixtures/formats/<TYPE>.bin`: random blocks
//! and the f32 values `gguf.quants.dequantize` gives for them. gguf-py computes in f32 as ggml
//! does, so every value must match to the bit (zero tolerance, signed zeros included).

use qgpu::quant::{reference, Format};
use std::path::PathBuf;

/// Fixtures of types qgpu has no `Format` for yet, written ahead of their support.
const NOT_YET_FORMATS: [&str; 0] = [];

struct Fixture {
    ggml_type: u32,
    block_bytes: usize,
    block_size: usize,
    raw: Vec<u8>,
    values: Vec<f32>,
}

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/formats")
}

fn read(name: &str) -> Fixture {
    let path = dir().join(format!("{name}.bin"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} (run scripts/make_format_fixtures.py)", path.display()));
    let word = |i: usize| u32::from_le_bytes(bytes[4 * i..4 * i + 4].try_into().unwrap());
    let (ggml_type, count, block_bytes, block_size) = (word(0), word(1) as usize, word(2) as usize, word(3) as usize);
    let raw_end = 16 + count * block_bytes;
    assert_eq!(bytes.len(), raw_end + 4 * count * block_size, "{name}: file size");
    let values = bytes[raw_end..].chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    Fixture { ggml_type, block_bytes, block_size, raw: bytes[16..raw_end].to_vec(), values }
}

#[test]
fn every_format_dequantizes_as_gguf_py_does() {
    // NF4 and FP4 have no GGUF type: tests/bnb4.rs checks them against bitsandbytes.
    for format in Format::ALL.into_iter().filter(|f| f.in_gguf()) {
        let f = read(format.name());
        assert_eq!(f.ggml_type, format.ggml_type(), "{format}: ggml type id");
        assert_eq!((f.block_bytes, f.block_size), (format.block_bytes(), format.block_size()), "{format}: block layout");
        assert!(f.values.len() >= 256, "{format}: only {} values", f.values.len());
        let mut got = vec![f32::NAN; f.values.len()];
        reference::dequantize_into(format, &f.raw, &mut got);
        let bad: Vec<usize> = (0..got.len()).filter(|&i| got[i].to_bits() != f.values[i].to_bits()).collect();
        assert!(
            bad.is_empty(),
            "{format}: {} of {} values differ from gguf-py; first at {}: got {:e}, want {:e}",
            bad.len(),
            got.len(),
            bad[0],
            got[bad[0]],
            f.values[bad[0]]
        );
        // The fixture is not degenerate: the values vary and include both signs.
        assert!(f.values.iter().any(|&v| v > 0.0) && f.values.iter().any(|&v| v < 0.0), "{format}: one-signed fixture");
    }
}

#[test]
fn every_fixture_is_a_known_format() {
    let mut names: Vec<String> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().trim_end_matches(".bin").to_string())
        .collect();
    names.sort();
    for name in &names {
        assert!(
            name.parse::<Format>().is_ok() || NOT_YET_FORMATS.contains(&name.as_str()),
            "fixture {name} is for no format qgpu knows"
        );
    }
    assert!(names.len() >= Format::ALL.iter().filter(|f| f.in_gguf()).count());
}
