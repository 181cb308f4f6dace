//! Subcommands of the `qgpu` binary.

pub mod bench;
pub mod calibrate;
pub mod embed;
pub mod eval;
pub mod info;
pub mod inspect;
pub mod quantize;
pub mod run;
pub mod serve;

use anyhow::{Context as _, Result};
use qgpu::loader::gguf_split::split_names;
use qgpu::loader::{GgufFile, GgufSplit, HfModel, TensorSource};
use std::path::Path;

/// A model as the user names it: a GGUF file, or a Hugging Face directory (config.json,
/// safetensors, tokenizer.json).
pub enum ModelSource {
    Gguf(GgufFile),
    /// A model `gguf-split` cut into `<name>-0000i-of-0000N.gguf` files, named by any of them.
    Split(GgufSplit),
    Hf(HfModel),
}

impl ModelSource {
    pub fn open(path: &Path) -> Result<Self> {
        if path.extension().is_some_and(|e| e == "safetensors") {
            // The weights alone lack the config and tokenizer a model needs.
            anyhow::bail!("{}: pass the model's directory (config.json, tokenizer.json and the safetensors), not the weights file", path.display());
        }
        let split = path.file_name().and_then(|n| n.to_str()).and_then(split_names).is_some_and(|names| names.len() > 1);
        Ok(if path.is_dir() {
            ModelSource::Hf(HfModel::open(path).with_context(|| format!("opening {}", path.display()))?)
        } else if split {
            ModelSource::Split(GgufSplit::open(path).with_context(|| format!("opening {}", path.display()))?)
        } else {
            ModelSource::Gguf(GgufFile::open(path).with_context(|| format!("opening {}", path.display()))?)
        })
    }

    pub fn source(&self) -> &dyn TensorSource {
        match self {
            ModelSource::Gguf(f) => f,
            ModelSource::Split(s) => s,
            ModelSource::Hf(m) => m,
        }
    }

    /// `general.architecture`, or `?`.
    pub fn architecture(&self) -> &str {
        self.source().metadata().get_str("general.architecture").unwrap_or("?")
    }
}
