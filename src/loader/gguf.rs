//! GGUF (v2/v3) model file parser.
//!
//! Format: <https://github.com/ggml-org/ggml/blob/master/docs/gguf.md>.
//! [`GgufHeader::parse`] reads metadata and tensor infos from a byte slice and
//! validates every tensor's extent against it, so tensor data can then be
//! sliced without further checks. [`GgufFile`] owns the bytes (a memory map
//! natively, a `Vec`/`Arc` in the browser) together with the parsed header.
//!
//! Files are treated as hostile: every count and length read from the file is
//! checked against the bytes that remain before anything is allocated for it,
//! all size arithmetic is checked, and each kind of malformation has its own
//! [`GgufError`] variant.

use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::Deref;
use std::path::PathBuf;
use std::sync::Arc;

mod ggml_type;
mod metadata;
mod parse;
pub mod stream;

pub use ggml_type::GgmlType;
pub use metadata::{Metadata, MetadataArray, MetadataValue, MetadataValueType, OptionalKey};

/// The four bytes every GGUF file starts with.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// Version written by [`GgufWriter`](super::gguf_write::GgufWriter).
pub const GGUF_VERSION: u32 = 3;
/// Data-section alignment when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Metadata key that overrides [`DEFAULT_ALIGNMENT`]; must hold a `u32`.
pub const ALIGNMENT_KEY: &str = "general.alignment";
/// Largest `general.alignment` accepted: writing a file pads its header to the alignment, so
/// a 60-byte file asking for 512 MiB cost a 512 MiB allocation (found by the `gguf` fuzz
/// target). Real files use 32; page alignment would be 4096 or 65536.
pub const MAX_ALIGNMENT: u32 = 1 << 20;
/// `GGML_MAX_DIMS`.
pub const MAX_DIMS: usize = 4;
/// Deepest array-of-array nesting accepted; bounds parser recursion.
pub const MAX_ARRAY_DEPTH: usize = 8;

/// Everything that can go wrong reading, querying or writing a GGUF file.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// Opening, mapping or reading the file at `path` failed.
    #[error("GGUF: cannot read `{}`: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A streamed file's header reaches past what a stream buffers
    /// ([`MAX_STREAM_HEADER`](stream::MAX_STREAM_HEADER)).
    #[error("GGUF: the header needs {needed} bytes, more than the {max} a stream buffers")]
    HeaderTooLarge { needed: u64, max: u64 },
    /// A streamed file sent more bytes than its stated length.
    #[error("GGUF: the stream is longer than its stated {file_len} bytes")]
    LongerThanStated { file_len: u64 },
    /// Writing a GGUF stream failed.
    #[error("GGUF: write failed: {source}")]
    Write {
        #[source]
        source: std::io::Error,
    },
    /// The file does not start with `GGUF`.
    #[error("GGUF: bad magic {found:02x?}, expected \"GGUF\"")]
    BadMagic { found: [u8; 4] },
    /// Only versions 2 and 3 are supported (1 used 32-bit counts).
    #[error("GGUF: unsupported version {version} (supported: 2, 3)")]
    UnsupportedVersion { version: u32 },
    /// The file ends inside the fixed-size field `what` at `offset`.
    #[error("GGUF: truncated {what} at offset {offset}: needs {needed} bytes, {available} left")]
    Truncated {
        what: &'static str,
        offset: u64,
        needed: u64,
        available: u64,
    },
    /// A string's length prefix (at `offset`) exceeds the bytes left after it.
    #[error("GGUF: {what} at offset {offset} claims {len} bytes, only {available} left")]
    StringTooLong {
        what: &'static str,
        offset: u64,
        len: u64,
        available: u64,
    },
    /// A string (whose length prefix is at `offset`) is not valid UTF-8.
    #[error("GGUF: {what} at offset {offset} is not UTF-8 (valid up to byte {valid_up_to})")]
    InvalidUtf8 {
        what: &'static str,
        offset: u64,
        valid_up_to: usize,
    },
    /// A count (at `offset`) times the smallest possible item size exceeds the bytes left.
    #[error(
        "GGUF: {what} {count} at offset {offset} cannot fit: needs at least \
         {count} x {min_item_size} bytes, {available} left"
    )]
    CountTooLarge {
        what: &'static str,
        offset: u64,
        count: u64,
        min_item_size: u64,
        available: u64,
    },
    /// A metadata value (or array element) type id outside `0..=12`.
    #[error("GGUF: metadata key `{key}`: unknown value type {type_id} at offset {offset}")]
    UnknownValueType { key: String, type_id: u32, offset: u64 },
    /// Arrays nested deeper than `max` levels.
    #[error("GGUF: metadata key `{key}`: arrays nested {depth} deep (max {max})")]
    ArrayTooDeep { key: String, depth: usize, max: usize },
    /// A bool byte other than 0 or 1.
    #[error("GGUF: metadata key `{key}`: invalid bool byte {value} at offset {offset}")]
    InvalidBool { key: String, value: u8, offset: u64 },
    /// The same metadata key appears twice.
    #[error("GGUF: duplicate metadata key `{key}`")]
    DuplicateKey { key: String },
    /// `general.alignment` is zero or not a power of two.
    #[error("GGUF: general.alignment {alignment} is not a nonzero power of two")]
    InvalidAlignment { alignment: u32 },
    /// `general.alignment` is above [`MAX_ALIGNMENT`].
    #[error("GGUF: general.alignment {alignment} is above qgpu's limit of {max}")]
    AlignmentTooLarge { alignment: u32, max: u32 },
    /// A metadata key holds a type the caller (or the format) cannot use.
    #[error("GGUF: metadata key `{key}` is {found}, expected {expected}")]
    WrongType {
        key: String,
        expected: &'static str,
        found: &'static str,
    },
    /// An integer metadata value (or array element) does not fit the requested type.
    #[error("GGUF: metadata key `{key}`: value {value} does not fit in {expected}")]
    IntOutOfRange {
        key: String,
        expected: &'static str,
        value: i128,
    },
    /// A required metadata key is absent.
    #[error("GGUF: missing metadata key `{key}`")]
    MissingKey { key: String },
    /// A tensor with zero or more than [`MAX_DIMS`] dimensions.
    #[error("GGUF: tensor `{tensor}` has {n_dims} dimensions (allowed 1..={max})")]
    InvalidDimCount { tensor: String, n_dims: u64, max: usize },
    /// A dimension or the element count exceeds `i64::MAX` (ggml's limit).
    #[error("GGUF: tensor `{tensor}`: element count of dims {dims:?} overflows")]
    ElementCountOverflow { tensor: String, dims: Vec<u64> },
    /// A ggml type id this parser does not know.
    #[error("GGUF: tensor `{tensor}` has unknown ggml type {type_id}")]
    UnknownTensorType { tensor: String, type_id: u32 },
    /// A tensor handed to the writer in one of qgpu's own element types (NF4, FP4), which
    /// llama.cpp could not read: it must be re-quantized to a ggml type first.
    #[error("GGUF: tensor `{tensor}` is {ggml_type}, which GGUF has no type for; re-quantize it to a ggml type")]
    NotAGgufType { tensor: String, ggml_type: GgmlType },
    /// The first dimension is not a whole number of quantization blocks.
    #[error(
        "GGUF: tensor `{tensor}`: first dimension {ne0} is not a multiple of \
         the {ggml_type} block size {block_size}"
    )]
    BlockSizeMismatch {
        tensor: String,
        ggml_type: GgmlType,
        ne0: u64,
        block_size: u64,
    },
    /// The tensor's byte size overflows `u64`.
    #[error("GGUF: tensor `{tensor}`: byte size of {n_elements} {ggml_type} elements overflows")]
    TensorSizeOverflow {
        tensor: String,
        ggml_type: GgmlType,
        n_elements: u64,
    },
    /// A tensor's data offset (relative to the data section) is not aligned.
    #[error("GGUF: tensor `{tensor}`: data offset {offset} is not a multiple of the alignment {alignment}")]
    MisalignedTensor {
        tensor: String,
        offset: u64,
        alignment: u64,
    },
    /// A tensor's data extends past the end of the file (or its end overflows).
    #[error("GGUF: tensor `{tensor}` data [{start}..{end}) lies past the end of the file ({file_len} bytes)")]
    TensorOutOfBounds {
        tensor: String,
        start: u64,
        end: u64,
        file_len: u64,
    },
    /// Two tensors' data ranges overlap.
    #[error(
        "GGUF: tensor `{first}` (ends at {first_end}) overlaps tensor `{second}` \
         (starts at {second_start})"
    )]
    OverlappingTensors {
        first: String,
        first_end: u64,
        second: String,
        second_start: u64,
    },
    /// The same tensor name appears twice.
    #[error("GGUF: duplicate tensor `{tensor}`")]
    DuplicateTensor { tensor: String },
    /// A tensor looked up by name is absent.
    #[error("GGUF: missing tensor `{tensor}`")]
    MissingTensor { tensor: String },
    /// Data handed to the writer does not match the size implied by dims and type.
    #[error("GGUF: tensor `{tensor}`: expected {expected} data bytes, got {actual}")]
    TensorDataSizeMismatch {
        tensor: String,
        expected: u64,
        actual: u64,
    },
    /// A tensor declared without data ([`GgufWriter::declare_tensor`](super::GgufWriter::declare_tensor))
    /// must be written through a [`TensorStream`](super::gguf_write::TensorStream).
    #[error("GGUF: tensor `{tensor}` was declared without data; write it through a TensorStream")]
    DeferredTensor { tensor: String },
    /// A [`TensorStream`](super::gguf_write::TensorStream) got tensors out of declaration order,
    /// too many, or too few (`got` is `None` when the stream was finished early).
    #[error("GGUF: tensor stream expected `{}`, got `{}`", expected.as_deref().unwrap_or("(end)"), got.as_deref().unwrap_or("(end)"))]
    StreamOrder { expected: Option<String>, got: Option<String> },
}

/// One tensor's description, validated against the file it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    /// Tensor name, unique within the file.
    pub name: String,
    /// Dimensions in GGUF order: `dims[0]` (ne0) varies fastest.
    pub dims: Vec<u64>,
    /// Element type.
    pub ggml_type: GgmlType,
    /// Absolute byte offset of the data in the file.
    pub offset: u64,
    /// Product of `dims`.
    pub n_elements: u64,
    /// Bytes of data.
    pub size_bytes: u64,
}

impl TensorInfo {
    /// The tensor's data within `bytes` (the whole file it was parsed from).
    /// Fails only if `bytes` is not that file.
    pub fn data<'a>(&self, bytes: &'a [u8]) -> Result<&'a [u8], GgufError> {
        let start = self.offset;
        let end = start.checked_add(self.size_bytes);
        let slice = end.and_then(|end| {
            let range = usize::try_from(start).ok()?..usize::try_from(end).ok()?;
            bytes.get(range)
        });
        slice.ok_or_else(|| GgufError::TensorOutOfBounds {
            tensor: self.name.clone(),
            start,
            end: end.unwrap_or(u64::MAX),
            file_len: bytes.len() as u64,
        })
    }
}

/// Element count and byte size of a tensor, with every GGUF/ggml shape rule
/// checked. Shared by the parser and the writer.
pub(crate) fn tensor_layout(name: &str, dims: &[u64], ty: GgmlType) -> Result<(u64, u64), GgufError> {
    if !ty.in_gguf() {
        return Err(GgufError::NotAGgufType { tensor: name.to_owned(), ggml_type: ty });
    }
    if dims.is_empty() || dims.len() > MAX_DIMS {
        return Err(GgufError::InvalidDimCount {
            tensor: name.to_owned(),
            n_dims: dims.len() as u64,
            max: MAX_DIMS,
        });
    }
    // ggml stores dims as i64, so anything above i64::MAX is negative there.
    let n_elements = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= i64::MAX as u64 && dims.iter().all(|&d| d <= i64::MAX as u64))
        .ok_or_else(|| GgufError::ElementCountOverflow {
            tensor: name.to_owned(),
            dims: dims.to_vec(),
        })?;
    let ne0 = dims[0];
    if !ne0.is_multiple_of(ty.block_size()) {
        return Err(GgufError::BlockSizeMismatch {
            tensor: name.to_owned(),
            ggml_type: ty,
            ne0,
            block_size: ty.block_size(),
        });
    }
    let size = ty.size_of(n_elements).ok_or_else(|| GgufError::TensorSizeOverflow {
        tensor: name.to_owned(),
        ggml_type: ty,
        n_elements,
    })?;
    Ok((n_elements, size))
}

/// Parsed metadata and tensor infos; holds no tensor data.
#[derive(Clone, Debug, PartialEq)]
pub struct GgufHeader {
    version: u32,
    alignment: u64,
    data_offset: u64,
    metadata: Metadata,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
}

macro_rules! metadata_getters {
    ($($(#[$doc:meta])* $name:ident -> $ret:ty;)*) => {$(
        $(#[$doc])*
        pub fn $name(&self, key: &str) -> Result<$ret, GgufError> {
            self.metadata().$name(key)
        }
    )*};
}

macro_rules! header_accessors {
    () => {
        metadata_getters! {
            /// See [`Metadata::require`].
            require -> &MetadataValue;
            /// See [`Metadata::get_u32`].
            get_u32 -> u32;
            /// See [`Metadata::get_i32`].
            get_i32 -> i32;
            /// See [`Metadata::get_u64`].
            get_u64 -> u64;
            /// See [`Metadata::get_i64`].
            get_i64 -> i64;
            /// See [`Metadata::get_usize`].
            get_usize -> usize;
            /// See [`Metadata::get_f32`].
            get_f32 -> f32;
            /// See [`Metadata::get_f64`].
            get_f64 -> f64;
            /// See [`Metadata::get_bool`].
            get_bool -> bool;
            /// See [`Metadata::get_str`].
            get_str -> &str;
            /// See [`Metadata::get_array`].
            get_array -> &MetadataArray;
            /// See [`Metadata::get_string_array`].
            get_string_array -> &[String];
            /// See [`Metadata::get_u32_array`].
            get_u32_array -> Cow<'_, [u32]>;
            /// See [`Metadata::get_i32_array`].
            get_i32_array -> Cow<'_, [i32]>;
            /// See [`Metadata::get_u64_array`].
            get_u64_array -> Cow<'_, [u64]>;
            /// See [`Metadata::get_i64_array`].
            get_i64_array -> Cow<'_, [i64]>;
            /// See [`Metadata::get_f32_array`].
            get_f32_array -> Cow<'_, [f32]>;
        }

        /// A tensor's info by name, or [`GgufError::MissingTensor`].
        pub fn require_tensor(&self, name: &str) -> Result<&TensorInfo, GgufError> {
            self.tensor(name).ok_or_else(|| GgufError::MissingTensor { tensor: name.to_owned() })
        }
    };
}

impl GgufHeader {
    /// File format version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Data-section alignment in bytes.
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Absolute offset of the data section.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// All metadata, in file order.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// All tensor infos, in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// A tensor's info by name.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).and_then(|&i| self.tensors.get(i))
    }

    /// The data of `info` within `bytes`, the file this header was parsed from.
    pub fn tensor_data<'a>(&self, bytes: &'a [u8], info: &TensorInfo) -> Result<&'a [u8], GgufError> {
        info.data(bytes)
    }

    header_accessors!();
}

/// Storage for a whole GGUF file.
pub enum GgufBytes {
    /// A read-only memory map of the file.
    #[cfg(not(target_arch = "wasm32"))]
    Mapped(memmap2::Mmap),
    /// Bytes owned by this value.
    Owned(Vec<u8>),
    /// Bytes shared with other owners (e.g. a fetched browser buffer).
    Shared(Arc<[u8]>),
}

impl Deref for GgufBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            #[cfg(not(target_arch = "wasm32"))]
            GgufBytes::Mapped(m) => m,
            GgufBytes::Owned(v) => v,
            GgufBytes::Shared(a) => a,
        }
    }
}

impl std::fmt::Debug for GgufBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self {
            #[cfg(not(target_arch = "wasm32"))]
            GgufBytes::Mapped(_) => "Mapped",
            GgufBytes::Owned(_) => "Owned",
            GgufBytes::Shared(_) => "Shared",
        };
        write!(f, "GgufBytes::{kind}({} bytes)", self.len())
    }
}

impl From<Vec<u8>> for GgufBytes {
    fn from(v: Vec<u8>) -> Self {
        GgufBytes::Owned(v)
    }
}

impl From<Arc<[u8]>> for GgufBytes {
    fn from(v: Arc<[u8]>) -> Self {
        GgufBytes::Shared(v)
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl From<memmap2::Mmap> for GgufBytes {
    fn from(m: memmap2::Mmap) -> Self {
        GgufBytes::Mapped(m)
    }
}

/// A parsed GGUF file together with its bytes; hands out tensor data as
/// borrowed slices.
#[derive(Debug)]
pub struct GgufFile {
    bytes: GgufBytes,
    header: GgufHeader,
}

impl GgufFile {
    /// Parses bytes already in memory.
    pub fn from_bytes(bytes: impl Into<GgufBytes>) -> Result<Self, GgufError> {
        let bytes = bytes.into();
        let header = GgufHeader::parse(&bytes)?;
        Ok(Self { bytes, header })
    }

    /// Memory-maps and parses the file at `path`.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open(path: impl AsRef<std::path::Path>) -> Result<Self, GgufError> {
        let path = path.as_ref();
        let io = |source| GgufError::Io { path: path.to_owned(), source };
        let file = std::fs::File::open(path).map_err(io)?;
        // SAFETY: the map is read-only and private to this value. Like every
        // mmap-based loader we assume the file is not truncated or rewritten
        // while mapped; that is outside what safe Rust can guard against.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        Self::from_bytes(map)
    }

    /// Reads the whole file at `path` into memory and parses it.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn read(path: impl AsRef<std::path::Path>) -> Result<Self, GgufError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| GgufError::Io { path: path.to_owned(), source })?;
        Self::from_bytes(bytes)
    }

    /// The whole file.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The parsed header.
    pub fn header(&self) -> &GgufHeader {
        &self.header
    }

    /// Splits into the storage and the header.
    pub fn into_parts(self) -> (GgufBytes, GgufHeader) {
        (self.bytes, self.header)
    }

    /// File format version (2 or 3).
    pub fn version(&self) -> u32 {
        self.header.version
    }

    /// Data-section alignment in bytes.
    pub fn alignment(&self) -> u64 {
        self.header.alignment
    }

    /// All metadata, in file order.
    pub fn metadata(&self) -> &Metadata {
        &self.header.metadata
    }

    /// All tensor infos, in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.header.tensors
    }

    /// A tensor's info by name.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.header.tensor(name)
    }

    /// The data of `info`, which must come from this file's header.
    pub fn tensor_data(&self, info: &TensorInfo) -> Result<&[u8], GgufError> {
        info.data(&self.bytes)
    }

    /// The data of the tensor called `name`.
    pub fn tensor_bytes(&self, name: &str) -> Result<&[u8], GgufError> {
        self.tensor_data(self.require_tensor(name)?)
    }

    header_accessors!();
}
