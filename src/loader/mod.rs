//! Model file loaders.

pub mod gguf;
pub mod gguf_write;

pub use gguf::{
    GgmlType, GgufBytes, GgufError, GgufFile, GgufHeader, Metadata, MetadataArray, MetadataValue,
    MetadataValueType, OptionalKey, TensorInfo,
};
pub use gguf_write::GgufWriter;
