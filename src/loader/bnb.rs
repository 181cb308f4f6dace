//! Hugging Face checkpoints quantized by bitsandbytes to 4 bits (`*-bnb-4bit`), read as they
//! are: each quantized weight becomes one NF4 or FP4 tensor in qgpu's block layout
//! ([`crate::quant::block::BlockBnb4`]), with bitsandbytes' own values.
//!
//! transformers saves a quantized `X.weight` as:
//! - `X.weight`: the packed nibbles, `ceil(n / 2)` bytes (uint8 `[n / 2, 1]`, or another dtype
//!   viewing the same bytes when `bnb_4bit_quant_storage` is not uint8);
//! - `X.weight.absmax`: one f32 per block of `blocksize` values, or with double quantization one
//!   uint8 code per block, with `X.weight.nested_absmax` (f32 per `nested_blocksize` codes),
//!   `X.weight.nested_quant_map` (256 f32) and the `nested_offset` added to every absmax;
//! - `X.weight.quant_map`: the 16-entry codebook;
//! - `X.weight.quant_state.bitsandbytes__nf4` (or `__fp4`): JSON bytes with `quant_type`,
//!   `blocksize`, `dtype`, `shape` and the nested fields.
//!
//! Every count is checked against the stored tensors before anything is sized by it. The
//! absmax of each 64-value block is computed in f32 exactly as bitsandbytes'
//! `dequantize_4bit` computes it (`nested_quant_map[code] · nested_absmax + offset`), so the
//! GPU multiplies by bitsandbytes' own f32 values (before their cast to `dtype`).

use serde_json::Value;

use super::safetensors::{SafetensorsSet, SafetensorsTensor};
use super::source::LoadError;
use super::GgmlType;
use crate::quant::block::BlockBnb4;
use crate::quant::bnb4::{Bnb4Kind, BNB_BLOCK};
use crate::quant::Format;

/// The largest `blocksize` bitsandbytes writes.
const MAX_BLOCKSIZE: u64 = 4096;

/// One bitsandbytes 4-bit weight, described from its quant state and checked against the
/// stored tensors.
#[derive(Clone, Debug, PartialEq)]
pub struct Bnb4Weight {
    /// Hugging Face name of the packed weight (`X.weight`).
    pub name: String,
    pub kind: Bnb4Kind,
    /// `[out, in]`, as the quant state's `shape`.
    pub rows: usize,
    pub cols: usize,
    blocksize: usize,
    nested: Option<Nested>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Nested {
    blocksize: usize,
    offset: f32,
}

impl Bnb4Weight {
    /// qgpu's format for it.
    pub fn format(&self) -> Format {
        match self.kind {
            Bnb4Kind::Nf4 => Format::NF4,
            Bnb4Kind::Fp4 => Format::FP4,
        }
    }

    /// The element type a [`super::TensorSource`] lists it with.
    pub fn ggml_type(&self) -> GgmlType {
        match self.kind {
            Bnb4Kind::Nf4 => GgmlType::NF4,
            Bnb4Kind::Fp4 => GgmlType::FP4,
        }
    }

    /// Bits a weight as stored in the checkpoint (packed nibbles, absmax and nested state;
    /// the quant maps and JSON left out): 4.5 for f32 absmax per 64, about 4.127 doubly quantized.
    pub fn stored_bits_per_weight(&self) -> f64 {
        let per_block = match self.nested {
            None => 32.0,
            Some(n) => 8.0 + 32.0 / n.blocksize as f64,
        };
        4.0 + per_block / self.blocksize as f64
    }
}

/// The quant-state key of weight `name`, if it is a bitsandbytes 4-bit weight.
fn state_of<'a>(set: &'a SafetensorsSet, name: &str) -> Option<(Bnb4Kind, &'a SafetensorsTensor, &'a [u8])> {
    [Bnb4Kind::Nf4, Bnb4Kind::Fp4].into_iter().find_map(|kind| {
        let (t, bytes) = set.get(&format!("{name}.quant_state.bitsandbytes__{}", kind.name()))?;
        Some((kind, t, bytes))
    })
}

/// Describes weight `name` of `set` if a bitsandbytes quant state goes with it (`Ok(None)` when
/// none does), checking the state and every companion tensor's size.
pub fn describe(set: &SafetensorsSet, name: &str) -> Result<Option<Bnb4Weight>, LoadError> {
    let Some((kind, _, state_bytes)) = state_of(set, name) else { return Ok(None) };
    let state_key = format!("{name}.quant_state.bitsandbytes__{}", kind.name());
    let bad = |key: &str, reason: String| LoadError::BadQuantization { tensor: name.to_owned(), key: key.to_owned(), reason };
    let state: Value = serde_json::from_slice(state_bytes).map_err(|e| bad(&state_key, format!("not JSON: {e}")))?;
    let field = |key: &str| state.get(key).ok_or_else(|| bad(&format!("{state_key}.{key}"), "missing".into()));
    let positive = |key: &str, max: u64| -> Result<usize, LoadError> {
        let v = field(key)?;
        v.as_u64().filter(|&n| n > 0 && n <= max).map(|n| n as usize).ok_or_else(|| bad(&format!("{state_key}.{key}"), format!("{v} is not an integer in 1..={max}")))
    };
    if field("quant_type")?.as_str() != Some(kind.name()) {
        return Err(bad(&format!("{state_key}.quant_type"), format!("{} under a `bitsandbytes__{}` key", field("quant_type")?, kind.name())));
    }
    let dtype = field("dtype")?;
    if !matches!(dtype.as_str(), Some("float32" | "float16" | "bfloat16")) {
        return Err(bad(&format!("{state_key}.dtype"), format!("{dtype} is not float32, float16 or bfloat16")));
    }
    let blocksize = positive("blocksize", MAX_BLOCKSIZE)?;
    if !blocksize.is_multiple_of(BNB_BLOCK) {
        return Err(bad(&format!("{state_key}.blocksize"), format!("{blocksize}: qgpu needs blocks of a multiple of {BNB_BLOCK} values")));
    }
    let shape = field("shape")?;
    let dims: Vec<u64> = shape.as_array().map(|a| a.iter().filter_map(Value::as_u64).collect()).unwrap_or_default();
    let (rows, cols) = match dims[..] {
        [rows, cols] if rows > 0 && cols > 0 && shape.as_array().map(Vec::len) == Some(2) => (rows, cols),
        _ => return Err(bad(&format!("{state_key}.shape"), format!("{shape} is not [out, in] with both positive"))),
    };
    let n = rows.checked_mul(cols).filter(|&n| n <= usize::MAX as u64 / 2).ok_or_else(|| bad(&format!("{state_key}.shape"), format!("{shape} overflows")))?;
    if cols % BNB_BLOCK as u64 != 0 {
        return Err(bad(&format!("{state_key}.shape"), format!("rows of {cols} values: qgpu needs a multiple of {BNB_BLOCK}")));
    }
    // The packed weight must hold exactly the values the state claims: every later size
    // follows from `n`, so nothing is allocated from the state before this check.
    let (_, packed) = set.get(name).ok_or_else(|| bad(name, "missing".into()))?;
    if packed.len() as u64 != n.div_ceil(2) {
        return Err(bad(name, format!("{} bytes of nibbles for shape {shape}, which needs {}", packed.len(), n.div_ceil(2))));
    }
    let n = n as usize;
    let blocks = n.div_ceil(blocksize);
    let nested = if state.get("nested_blocksize").is_some() || state.get("nested_offset").is_some() {
        let nested_blocksize = positive("nested_blocksize", u32::MAX as u64)?;
        let offset = field("nested_offset")?;
        let offset = offset.as_f64().filter(|v| v.is_finite()).ok_or_else(|| bad(&format!("{state_key}.nested_offset"), format!("{offset} is not a finite number")))?;
        expect(set, name, "absmax", GgmlType::I8, blocks)?;
        expect(set, name, "nested_absmax", GgmlType::F32, blocks.div_ceil(nested_blocksize))?;
        expect(set, name, "nested_quant_map", GgmlType::F32, 256)?;
        Some(Nested { blocksize: nested_blocksize, offset: offset as f32 })
    } else {
        expect(set, name, "absmax", GgmlType::F32, blocks)?;
        None
    };
    let map = expect(set, name, "quant_map", GgmlType::F32, 16)?;
    let book = kind.codebook();
    if let Some(i) = (0..16).find(|&i| f32_at(map, i) != book[i]) {
        return Err(bad(
            &format!("{name}.quant_map"),
            format!("entry {i} is {}, bitsandbytes' {} codebook has {}: qgpu runs the standard codebooks only", f32_at(map, i), kind.name(), book[i]),
        ));
    }
    Ok(Some(Bnb4Weight { name: name.to_owned(), kind, rows: rows as usize, cols: cols as usize, blocksize, nested }))
}

/// Companion `{name}.{suffix}` of `count` values of `ty`; its bytes.
fn expect<'a>(set: &'a SafetensorsSet, name: &str, suffix: &str, ty: GgmlType, count: usize) -> Result<&'a [u8], LoadError> {
    let key = format!("{name}.{suffix}");
    let bad = |reason: String| LoadError::BadQuantization { tensor: name.to_owned(), key: key.clone(), reason };
    let (t, bytes) = set.get(&key).ok_or_else(|| bad("missing".into()))?;
    let want = ty.size_of(count as u64).unwrap_or(u64::MAX);
    // uint8 codes are listed as I8 (safetensors' U8 has no ggml type).
    let stored = if t.dtype == GgmlType::I8 { "U8" } else { t.dtype.name() };
    if t.dtype != ty || bytes.len() as u64 != want {
        let wanted = if ty == GgmlType::I8 { "U8" } else { ty.name() };
        return Err(bad(format!("{} bytes of {stored}, {count} values of {wanted} expected", bytes.len())));
    }
    Ok(bytes)
}

fn f32_at(bytes: &[u8], i: usize) -> f32 {
    f32::from_le_bytes([bytes[4 * i], bytes[4 * i + 1], bytes[4 * i + 2], bytes[4 * i + 3]])
}

/// The weight as qgpu blocks: per 64 values, the f32 absmax then the 32 packed bytes as
/// stored. The tensors were checked by [`describe`]; a set that changed since is an error.
pub fn blocks(set: &SafetensorsSet, w: &Bnb4Weight) -> Result<Vec<u8>, LoadError> {
    let n = w.rows * w.cols;
    let blocks = n.div_ceil(w.blocksize);
    let packed = set.get(&w.name).map(|(_, b)| b).filter(|b| b.len() == n / 2);
    let absmax = set.get(&format!("{}.absmax", w.name)).map(|(_, b)| b);
    let (Some(packed), Some(absmax)) = (packed, absmax) else {
        return Err(LoadError::BadQuantization { tensor: w.name.clone(), key: w.name.clone(), reason: "changed since it was described".into() });
    };
    let scale: Vec<f32> = match w.nested {
        None => (0..blocks).map(|b| f32_at(absmax, b)).collect(),
        Some(nested) => {
            let outer = set.get(&format!("{}.nested_absmax", w.name)).map(|(_, b)| b).unwrap_or_default();
            let map = set.get(&format!("{}.nested_quant_map", w.name)).map(|(_, b)| b).unwrap_or_default();
            if absmax.len() != blocks || map.len() != 1024 || outer.len() != 4 * blocks.div_ceil(nested.blocksize) {
                return Err(LoadError::BadQuantization { tensor: w.name.clone(), key: format!("{}.absmax", w.name), reason: "changed since it was described".into() });
            }
            // bitsandbytes: dequantize_blockwise (code · absmax, in f32), then += offset.
            (0..blocks).map(|b| f32_at(map, absmax[b] as usize) * f32_at(outer, b / nested.blocksize) + nested.offset).collect()
        }
    };
    let per_block = w.blocksize / BNB_BLOCK;
    let mut out = Vec::with_capacity(n / BNB_BLOCK * std::mem::size_of::<BlockBnb4>());
    for (i, qs) in packed.chunks_exact(BNB_BLOCK / 2).enumerate() {
        let block = BlockBnb4 { absmax: scale[i / per_block], qs: qs.try_into().expect("32 bytes") };
        out.extend_from_slice(bytemuck::bytes_of(&block));
    }
    Ok(out)
}
