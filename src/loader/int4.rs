//! GPTQ and AWQ checkpoints (4-bit integers with group-wise scales and zero points, packed
//! into int32), read as they are and laid out as ggml blocks on the way to the GPU.
//!
//! Per linear layer `X` (no `X.weight`):
//! - GPTQ (`quant_method: "gptq"`): `X.qweight` int32 `[in / 8, out]`, eight input rows a word
//!   (value `k` at bits `4 (k % 8)`); `X.qzeros` int32 `[groups, out / 8]`, eight outputs a
//!   word; `X.scales` f16 `[groups, out]`; `X.g_idx` int32 `[in]`, the group of each input.
//!   The original format (`checkpoint_format: "gptq"`) stores each zero minus one; `gptq_v2`
//!   stores it as it is.
//! - AWQ (`quant_method: "awq"`, `version: "gemm"`): `X.qweight` int32 `[in, out / 8]`, eight
//!   outputs a word in the interleaved order 0 2 4 6 1 3 5 7 (output `8c + ORDER[i]` at bits
//!   `4i`); `X.qzeros` likewise `[groups, out / 8]`; `X.scales` f16 `[groups, out]`; group
//!   `k / group_size`.
//!
//! In both, `w[j, k] = scale[g, j] · (q[k, j] − zero[g, j])`. Each 32 inputs of an output row
//! (one group, or a piece of one) become one block:
//! - every zero 8 (symmetric): Q4_0, `d = scale`, nibble `q`: exactly GPTQ's values;
//! - otherwise Q4_1, `d = scale`, `m = −scale · zero` rounded to f16: exact but for that
//!   rounding (at most 2^-11 of `m`).
//!
//! A `g_idx` that puts the inputs of one 32-value block in different groups (`desc_act`
//! reordering that is not group-contiguous) cannot be laid out so, and is an error.

use half::f16;
use serde_json::Value;

use super::safetensors::SafetensorsSet;
use super::source::LoadError;
use super::GgmlType;
use crate::quant::block::{BlockQ4_0, BlockQ4_1, QK};
use crate::quant::Format;

/// AWQ's packing order: bits `4i` of a word hold output `8c + AWQ_ORDER[i]`.
pub const AWQ_ORDER: [usize; 8] = [0, 2, 4, 6, 1, 3, 5, 7];

/// Its inverse: output `8c + j` sits at bits `4 · AWQ_NIBBLE[j]` (AutoAWQ's reverse order).
const AWQ_NIBBLE: [usize; 8] = {
    let mut inverse = [0; 8];
    let mut i = 0;
    while i < 8 {
        inverse[AWQ_ORDER[i]] = i;
        i += 1;
    }
    inverse
};

/// How a checkpoint packs its integers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Packing {
    /// GPTQ; `zero_minus_one`: the original format, zeros stored minus one.
    Gptq { zero_minus_one: bool },
    /// AWQ's GEMM layout.
    Awq,
}

/// A GPTQ or AWQ checkpoint's settings from `quantization_config`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Int4Config {
    pub packing: Packing,
    /// Inputs per group; `None` for one group over the whole row (GPTQ's `-1`).
    pub group_size: Option<usize>,
}

/// One GPTQ / AWQ linear layer, checked against its tensors.
#[derive(Clone, Debug, PartialEq)]
pub struct Int4Weight {
    /// The layer's name (`X` of `X.qweight`).
    pub prefix: String,
    /// Q4_0 when every zero is 8, else Q4_1.
    pub format: Format,
    /// Outputs (rows) and inputs (columns).
    pub rows: usize,
    pub cols: usize,
    config: Int4Config,
    groups: usize,
}

impl Int4Weight {
    pub fn ggml_type(&self) -> GgmlType {
        if self.format == Format::Q4_0 {
            GgmlType::Q4_0
        } else {
            GgmlType::Q4_1
        }
    }
}

fn unsupported(key: &str, value: &Value, why: &str) -> LoadError {
    LoadError::UnsupportedQuantization { key: format!("quantization_config.{key}"), value: value.to_string(), reason: why.to_owned() }
}

/// Reads a `gptq` or `awq` `quantization_config`.
pub(crate) fn config(q: &Value, method: &str) -> Result<Int4Config, LoadError> {
    let get = |key: &str| q.get(key).unwrap_or(&Value::Null);
    if get("bits").as_u64() != Some(4) {
        return Err(unsupported("bits", get("bits"), "qgpu reads 4-bit GPTQ and AWQ checkpoints"));
    }
    let group = get("group_size");
    let group_size = match group.as_i64() {
        Some(-1) if method == "gptq" => None,
        Some(g) if g > 0 && g % QK as i64 == 0 && g <= 1 << 20 => Some(g as usize),
        _ => return Err(unsupported("group_size", group, "qgpu needs groups of a multiple of 32 inputs (or -1 for GPTQ)")),
    };
    let packing = if method == "gptq" {
        match get("checkpoint_format").as_str().unwrap_or("gptq") {
            "gptq" => Packing::Gptq { zero_minus_one: true },
            "gptq_v2" => Packing::Gptq { zero_minus_one: false },
            _ => return Err(unsupported("checkpoint_format", get("checkpoint_format"), "qgpu reads the gptq and gptq_v2 packings (not marlin, bitblas or other kernel layouts)")),
        }
    } else {
        let version = get("version");
        if !version.as_str().is_some_and(|v| v.eq_ignore_ascii_case("gemm")) {
            return Err(unsupported("version", version, "qgpu reads AWQ's GEMM packing (not GEMV, exllama, marlin or ipex)"));
        }
        if get("zero_point").as_bool() == Some(false) {
            return Err(unsupported("zero_point", get("zero_point"), "qgpu reads AWQ with zero points"));
        }
        Packing::Awq
    };
    Ok(Int4Config { packing, group_size })
}

fn i32_at(bytes: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([bytes[4 * i], bytes[4 * i + 1], bytes[4 * i + 2], bytes[4 * i + 3]])
}

/// The stored tensor `{prefix}.{suffix}`: its shape and bytes, of dtype `dtype`.
fn tensor<'a>(set: &'a SafetensorsSet, prefix: &str, suffix: &str, dtype: GgmlType) -> Result<(&'a [u64], &'a [u8]), LoadError> {
    let key = format!("{prefix}.{suffix}");
    let bad = |reason: String| LoadError::BadQuantization { tensor: format!("{prefix}.qweight"), key: key.clone(), reason };
    let (t, bytes) = set.get(&key).ok_or_else(|| bad("missing".into()))?;
    if t.dtype != dtype || t.shape.len() > 2 {
        return Err(bad(format!("{} of shape {:?}, a {} matrix expected", t.dtype_name, t.shape, dtype.name())));
    }
    Ok((&t.shape, bytes))
}

/// Describes layer `prefix` (whose `{prefix}.qweight` exists), checking every companion's
/// shape, the group layout and `g_idx`.
pub fn describe(set: &SafetensorsSet, prefix: &str, config: Int4Config) -> Result<Int4Weight, LoadError> {
    let name = format!("{prefix}.qweight");
    let bad = |key: &str, reason: String| LoadError::BadQuantization { tensor: name.clone(), key: key.to_owned(), reason };
    let (qshape, _) = tensor(set, prefix, "qweight", GgmlType::I32)?;
    let [a, b] = qshape[..] else { return Err(bad(&name, format!("shape {qshape:?} is not 2-D"))) };
    let (cols, rows) = match config.packing {
        Packing::Gptq { .. } => (a.checked_mul(8), Some(b)),
        Packing::Awq => (Some(a), b.checked_mul(8)),
    };
    let (Some(cols), Some(rows)) = (cols, rows) else { return Err(bad(&name, format!("shape {qshape:?} overflows"))) };
    if rows == 0 || cols == 0 || cols % QK as u64 != 0 || rows % 8 != 0 || rows.checked_mul(cols).is_none_or(|n| n > u32::MAX as u64 * 8) {
        return Err(bad(&name, format!("{rows} outputs × {cols} inputs: qgpu needs inputs in multiples of 32 and outputs in multiples of 8")));
    }
    let (rows, cols) = (rows as usize, cols as usize);
    let group = config.group_size.unwrap_or(cols);
    let groups = cols.div_ceil(group);
    let (sshape, _) = tensor(set, prefix, "scales", GgmlType::F16)?;
    if sshape != [groups as u64, rows as u64] {
        return Err(bad(&format!("{prefix}.scales"), format!("shape {sshape:?}, [{groups}, {rows}] expected for groups of {group}")));
    }
    let (zshape, zeros) = tensor(set, prefix, "qzeros", GgmlType::I32)?;
    if zshape != [groups as u64, rows as u64 / 8] {
        return Err(bad(&format!("{prefix}.qzeros"), format!("shape {zshape:?}, [{groups}, {}] expected", rows / 8)));
    }
    if let Packing::Gptq { .. } = config.packing {
        if set.get(&format!("{prefix}.g_idx")).is_some() {
            let (gshape, g_idx) = tensor(set, prefix, "g_idx", GgmlType::I32)?;
            if gshape != [cols as u64] {
                return Err(bad(&format!("{prefix}.g_idx"), format!("shape {gshape:?}, [{cols}] expected")));
            }
            for block in 0..cols / QK {
                let g = i32_at(g_idx, block * QK);
                if g as usize >= groups {
                    return Err(bad(&format!("{prefix}.g_idx"), format!("input {} is in group {}, of {groups}", block * QK, g as i32)));
                }
                if let Some(k) = (block * QK..(block + 1) * QK).find(|&k| i32_at(g_idx, k) != g) {
                    return Err(bad(&format!("{prefix}.g_idx"), format!("inputs {} and {k} share a 32-value block but not a group (desc_act order): qgpu cannot lay it out", block * QK)));
                }
            }
        }
    }
    let w = Int4Weight { prefix: prefix.to_owned(), format: Format::Q4_1, rows, cols, config, groups };
    let symmetric = (0..groups).all(|g| (0..rows).all(|j| zero(&w, zeros, g, j) == 8));
    Ok(Int4Weight { format: if symmetric { Format::Q4_0 } else { Format::Q4_1 }, ..w })
}

/// The zero point of group `g`, output `j`.
fn zero(w: &Int4Weight, zeros: &[u8], g: usize, j: usize) -> i32 {
    let word = i32_at(zeros, g * (w.rows / 8) + j / 8);
    match w.config.packing {
        Packing::Gptq { zero_minus_one } => ((word >> (4 * (j % 8))) & 15) as i32 + zero_minus_one as i32,
        Packing::Awq => ((word >> (4 * AWQ_NIBBLE[j % 8])) & 15) as i32,
    }
}

/// The layer as Q4_0 or Q4_1 blocks, rows of outputs.
pub fn blocks(set: &SafetensorsSet, w: &Int4Weight) -> Result<Vec<u8>, LoadError> {
    let (_, qweight) = tensor(set, &w.prefix, "qweight", GgmlType::I32)?;
    let (_, scales) = tensor(set, &w.prefix, "scales", GgmlType::F16)?;
    let (_, zeros) = tensor(set, &w.prefix, "qzeros", GgmlType::I32)?;
    let g_idx = match w.config.packing {
        Packing::Gptq { .. } => set.get(&format!("{}.g_idx", w.prefix)).map(|(_, b)| b),
        Packing::Awq => None,
    };
    let group = w.config.group_size.unwrap_or(w.cols);
    if qweight.len() != w.rows * w.cols / 2 || scales.len() != 2 * w.groups * w.rows || zeros.len() != w.groups * w.rows / 2 {
        return Err(LoadError::BadQuantization { tensor: format!("{}.qweight", w.prefix), key: w.prefix.clone(), reason: "changed since it was described".into() });
    }
    let q = |k: usize, j: usize| -> u8 {
        let (word, shift) = match w.config.packing {
            Packing::Gptq { .. } => (i32_at(qweight, (k / 8) * w.rows + j), 4 * (k % 8)),
            Packing::Awq => (i32_at(qweight, k * (w.rows / 8) + j / 8), 4 * AWQ_NIBBLE[j % 8]),
        };
        ((word >> shift) & 15) as u8
    };
    let block_bytes = w.format.block_bytes();
    let mut out = Vec::with_capacity(w.rows * w.cols / QK * block_bytes);
    for j in 0..w.rows {
        for b in 0..w.cols / QK {
            let g = match g_idx {
                Some(g_idx) => i32_at(g_idx, b * QK) as usize,
                None => b * QK / group,
            };
            let d = f16::from_bits(u16::from_le_bytes([scales[2 * (g * w.rows + j)], scales[2 * (g * w.rows + j) + 1]]));
            let mut qs = [0u8; QK / 2];
            for (i, byte) in qs.iter_mut().enumerate() {
                *byte = q(b * QK + i, j) | q(b * QK + i + QK / 2, j) << 4;
            }
            if w.format == Format::Q4_0 {
                out.extend_from_slice(bytemuck::bytes_of(&BlockQ4_0 { d, qs }));
            } else {
                let m = f16::from_f32(-d.to_f32() * zero(w, zeros, g, j) as f32);
                out.extend_from_slice(bytemuck::bytes_of(&BlockQ4_1 { d, m, qs }));
            }
        }
    }
    Ok(out)
}
