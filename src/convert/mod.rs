//! Model conversion: any [`TensorSource`] (GGUF, Hugging Face safetensors) → a GGUF whose
//! weight matrices are quantized as a [`QuantPlan`] says. Uses `loader` and `quant` only.
//!
//! The output is written to a temporary file beside the final one, synced, and renamed at the
//! end, so an error, a cancel or a crash never leaves a half-written model under the final name
//! (an older file there stays intact until the rename).

mod bnb_write;
mod plan;
mod preset;
mod write;

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::PathBuf;

pub use plan::{fallback, is_quantizable, Decision, DecisionKind, MixRule, NamePattern, PlanError, QuantPlan};
pub use preset::{layer_index, llama_fallback, use_more_bits, ModelFacts, Preset, TensorFacts, TensorRole};
pub use bnb_write::{write_bnb4, BnbReport, BnbTensorReport};
pub use write::{check_out, quantize_model};

use crate::loader::{GgmlType, GgufError, LoadError};
use crate::quant::{Format, QuantError};

/// Everything that can go wrong converting a model.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// The plan does not fit the source (unknown format, a rule that matches nothing, ...).
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// Reading a tensor from the source failed.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// Building or writing the GGUF failed (bad metadata, size mismatch, write error).
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// Quantizing tensor `tensor` failed.
    #[error("tensor `{tensor}`: {source}")]
    Quant {
        tensor: String,
        #[source]
        source: QuantError,
    },
    /// Creating, syncing or renaming a file at `path` failed.
    #[error("`{}`: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `--out` exists and is not a regular file (`kind`: directory, FIFO, character device,
    /// block device, socket, symbolic link); it is never replaced.
    #[error("`{}` is a {kind}, not a regular file; refusing to replace it", path.display())]
    OutNotAFile { path: PathBuf, kind: &'static str },
    /// The directory `dir` that would hold `path` does not exist.
    #[error("`{}`: its directory `{}` does not exist", path.display(), dir.display())]
    OutDirMissing { path: PathBuf, dir: PathBuf },
    /// `--format NF4`/`FP4` writes a bitsandbytes directory from an unquantized Hugging Face
    /// directory; `path` is not one.
    #[error("`{}`: cannot write a bitsandbytes checkpoint from it: {reason}", path.display())]
    BnbSource { path: PathBuf, reason: String },
    /// The progress callback asked to stop after `done` of `total` tensors; nothing was kept.
    #[error("cancelled after {done} of {total} tensors; no output written")]
    Cancelled { done: usize, total: usize },
}

/// Per-input-channel importance of weight matrices: for weight `name` (a `rows × cols` matrix),
/// `E[x_j²]` of its input channel j over calibration text, `cols` values.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Importance {
    per_weight: HashMap<String, Vec<f32>>,
    /// Calibration tokens the statistics were gathered over.
    pub tokens: usize,
}

impl Importance {
    pub fn new(per_weight: HashMap<String, Vec<f32>>, tokens: usize) -> Self {
        Importance { per_weight, tokens }
    }
    pub fn get(&self, weight: &str) -> Option<&[f32]> {
        self.per_weight.get(weight).map(Vec::as_slice)
    }
    pub fn len(&self) -> usize {
        self.per_weight.len()
    }
    pub fn is_empty(&self) -> bool {
        self.per_weight.is_empty()
    }
}

/// Where the conversion is, handed to the progress callback after each tensor.
#[derive(Clone, Copy, Debug)]
pub struct Progress<'a> {
    /// Tensors written so far, and in all.
    pub done: usize,
    pub total: usize,
    /// The tensor just written.
    pub tensor: &'a str,
    /// Source values processed so far, and in all (a tensor's cost is about its size).
    pub values_done: u64,
    pub values_total: u64,
}

/// Options beyond the plan.
#[derive(Clone, Debug, Default)]
pub struct ConvertOptions<'a> {
    /// Importance for the weighted search (with [`QuantPlan::calibrated`]).
    pub importance: Option<&'a Importance>,
    /// Worker threads for quantizing rows (0: one per core).
    pub threads: usize,
    /// Free text recorded under `qgpu.quantization` (e.g. the calibration file).
    pub note: Option<String>,
}

/// What happened to one tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorReport {
    pub name: String,
    /// GGUF order, `dims[0]` fastest.
    pub dims: Vec<u64>,
    pub source_type: GgmlType,
    /// The plan's format for a weight matrix; `None` for a tensor kept in float.
    pub requested: Option<Format>,
    pub written: Format,
    /// Quantized with importance weights from calibration.
    pub calibrated: bool,
    /// Bytes copied unchanged (the source already held this format).
    pub copied: bool,
    pub bytes: u64,
}

impl TensorReport {
    /// The plan's format could not be used for this row length (see [`fallback`]).
    pub fn fell_back(&self) -> bool {
        self.requested.is_some_and(|r| r != self.written)
    }
    /// Saturating (the dims are a header's, though the bytes were checked against them).
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().try_fold(1u64, |a, &d| a.checked_mul(d)).unwrap_or(u64::MAX)
    }
}

/// The result of a conversion.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub tensors: Vec<TensorReport>,
    /// Size of the written file.
    pub file_bytes: u64,
}

impl Report {
    /// Bytes the same tensors take in f32 and in f16.
    pub fn float_bytes(&self) -> (u64, u64) {
        let n = self.tensors.iter().fold(0u64, |a, t| a.saturating_add(t.n_elements()));
        (n.saturating_mul(4), n.saturating_mul(2))
    }

    /// (format, tensors, values, bytes) per written format, in `Format::ALL` order.
    pub fn by_format(&self) -> Vec<(Format, usize, u64, u64)> {
        Format::ALL
            .into_iter()
            .filter_map(|f| {
                let of: Vec<&TensorReport> = self.tensors.iter().filter(|t| t.written == f).collect();
                (!of.is_empty()).then(|| {
                    (f, of.len(), of.iter().map(|t| t.n_elements()).sum(), of.iter().map(|t| t.bytes).sum())
                })
            })
            .collect()
    }
}

/// llama.cpp's `general.file_type` (`enum llama_ftype`) for a model mostly in `format`
/// (a plan with a [`Preset`] writes the preset's own value).
pub fn llama_file_type(format: Format) -> u32 {
    match format {
        Format::F32 => 0,
        Format::F16 => 1,
        Format::Q4_0 => 2,
        Format::Q4_1 => 3,
        Format::Q8_0 => 7,
        Format::Q4_K => 15,
        Format::Q6_K => 18,
        Format::IQ4_NL => 25,
        Format::Q5_0 => 8,
        Format::Q5_1 => 9,
        Format::BF16 => 32,
        // The _M mixes of llama.cpp, whose main type these are.
        Format::Q5_K => 17,
        Format::Q3_K => 12,
        Format::Q2_K => 10,
        Format::IQ4_XS => 30,
        Format::MXFP4 => 38,
        // No llama.cpp file type holds them (they never go into a GGUF): its "guessed".
        Format::NF4 | Format::FP4 => 1024,
    }
}

/// A callback that never stops the conversion.
pub fn no_progress(_: &Progress<'_>) -> ControlFlow<()> {
    ControlFlow::Continue(())
}
