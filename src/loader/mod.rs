//! Model file loaders.

pub mod bnb;
pub mod gguf;
pub mod gguf_split;
pub mod gguf_write;
pub mod hf;
pub mod hf_decoder;
pub mod int4;
mod quant_config;
pub mod safetensors;
pub mod source;

pub use gguf::{
    GgmlType, GgufBytes, GgufError, GgufFile, GgufHeader, Metadata, MetadataArray, MetadataValue,
    MetadataValueType, OptionalKey, TensorInfo,
};
pub use gguf_split::GgufSplit;
pub use gguf_write::{GgufWriter, TensorStream};
pub use hf::{HfFiles, HfModel};
pub use safetensors::{SafetensorsError, SafetensorsFile, SafetensorsSet, SafetensorsTensor};
pub use source::{to_f32, LoadError, SourceTensor, TensorSource};
