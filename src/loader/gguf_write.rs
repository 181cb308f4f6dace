//! A minimal GGUF v3 writer: metadata in insertion order, then tensors, each
//! aligned to `general.alignment` (default 32). Used by tests and by
//! quantization tooling.

use std::borrow::Cow;
use std::collections::HashSet;
use std::io::Write;

use super::gguf::{
    tensor_layout, GgmlType, GgufError, Metadata, MetadataArray, MetadataValue, ALIGNMENT_KEY,
    DEFAULT_ALIGNMENT, GGUF_MAGIC, GGUF_VERSION, MAX_ALIGNMENT, MAX_ARRAY_DEPTH,
};

struct PendingTensor<'a> {
    name: String,
    dims: Vec<u64>,
    ggml_type: GgmlType,
    len: u64,
    /// `None` for a tensor declared now and streamed later ([`TensorStream`]).
    data: Option<Cow<'a, [u8]>>,
}

/// Builds a GGUF v3 file. Tensor data may be borrowed to avoid copying large
/// weights; everything is validated on insertion so writing only fails on I/O.
#[derive(Default)]
pub struct GgufWriter<'a> {
    metadata: Metadata,
    tensors: Vec<PendingTensor<'a>>,
    names: HashSet<String>,
}

impl std::fmt::Debug for GgufWriter<'_> {
    // Tensor data can be gigabytes; show only its shape.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tensors: Vec<_> =
            self.tensors.iter().map(|t| (&t.name, &t.dims, t.ggml_type, t.len)).collect();
        f.debug_struct("GgufWriter")
            .field("metadata", &self.metadata)
            .field("tensors", &tensors)
            .finish()
    }
}

fn pad_len(pos: u64, alignment: u64) -> u64 {
    (alignment - pos % alignment) % alignment
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_array(out: &mut Vec<u8>, a: &MetadataArray) {
    use MetadataArray as A;
    out.extend_from_slice(&a.element_type().id().to_le_bytes());
    out.extend_from_slice(&(a.len() as u64).to_le_bytes());
    macro_rules! le {
        ($v:expr) => {
            for x in $v {
                out.extend_from_slice(&x.to_le_bytes());
            }
        };
    }
    match a {
        A::U8(v) => out.extend_from_slice(v),
        A::I8(v) => le!(v),
        A::U16(v) => le!(v),
        A::I16(v) => le!(v),
        A::U32(v) => le!(v),
        A::I32(v) => le!(v),
        A::F32(v) => le!(v),
        A::U64(v) => le!(v),
        A::I64(v) => le!(v),
        A::F64(v) => le!(v),
        A::Bool(v) => out.extend(v.iter().map(|&b| u8::from(b))),
        A::String(v) => v.iter().for_each(|s| put_string(out, s)),
        A::Array(v) => v.iter().for_each(|inner| put_array(out, inner)),
    }
}

fn put_value(out: &mut Vec<u8>, v: &MetadataValue) {
    use MetadataValue as V;
    out.extend_from_slice(&v.value_type().id().to_le_bytes());
    match v {
        V::U8(x) => out.push(*x),
        V::I8(x) => out.extend_from_slice(&x.to_le_bytes()),
        V::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        V::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        V::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        V::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        V::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        V::Bool(x) => out.push(u8::from(*x)),
        V::String(s) => put_string(out, s),
        V::Array(a) => put_array(out, a),
        V::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        V::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        V::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
    }
}

impl<'a> GgufWriter<'a> {
    /// An empty file.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a metadata entry. Rejects duplicate keys, arrays nested deeper
    /// than the parser accepts, and an invalid `general.alignment`.
    pub fn add_metadata(
        &mut self,
        key: impl Into<String>,
        value: impl Into<MetadataValue>,
    ) -> Result<&mut Self, GgufError> {
        let key = key.into();
        let value = value.into();
        if let MetadataValue::Array(a) = &value {
            let depth = a.depth();
            if depth > MAX_ARRAY_DEPTH {
                return Err(GgufError::ArrayTooDeep { key, depth, max: MAX_ARRAY_DEPTH });
            }
        }
        if key == ALIGNMENT_KEY {
            match value {
                MetadataValue::U32(alignment) if alignment > MAX_ALIGNMENT => {
                    return Err(GgufError::AlignmentTooLarge { alignment, max: MAX_ALIGNMENT })
                }
                MetadataValue::U32(a) if a.is_power_of_two() => {}
                MetadataValue::U32(alignment) => return Err(GgufError::InvalidAlignment { alignment }),
                ref other => {
                    return Err(GgufError::WrongType { key, expected: "u32", found: other.type_name() })
                }
            }
        }
        self.metadata.insert(key, value)?;
        Ok(self)
    }

    /// Appends a tensor. `dims` are in GGUF order (fastest first) and `data`
    /// must be exactly the size they imply for `ggml_type`.
    pub fn add_tensor(
        &mut self,
        name: impl Into<String>,
        dims: &[u64],
        ggml_type: GgmlType,
        data: impl Into<Cow<'a, [u8]>>,
    ) -> Result<&mut Self, GgufError> {
        let name = name.into();
        let data = data.into();
        let (_, expected) = tensor_layout(&name, dims, ggml_type)?;
        if data.len() as u64 != expected {
            return Err(GgufError::TensorDataSizeMismatch { tensor: name, expected, actual: data.len() as u64 });
        }
        if !self.names.insert(name.clone()) {
            return Err(GgufError::DuplicateTensor { tensor: name });
        }
        self.tensors.push(PendingTensor { name, dims: dims.to_vec(), ggml_type, len: expected, data: Some(data) });
        Ok(self)
    }

    /// Declares a tensor whose data will be streamed after the header (see
    /// [`GgufWriter::stream`]), so a converter never holds every tensor in memory. Returns the
    /// byte size the data must have.
    pub fn declare_tensor(&mut self, name: impl Into<String>, dims: &[u64], ggml_type: GgmlType) -> Result<u64, GgufError> {
        let name = name.into();
        let (_, expected) = tensor_layout(&name, dims, ggml_type)?;
        if !self.names.insert(name.clone()) {
            return Err(GgufError::DuplicateTensor { tensor: name });
        }
        self.tensors.push(PendingTensor { name, dims: dims.to_vec(), ggml_type, len: expected, data: None });
        Ok(expected)
    }

    /// Writes the header to `w` and returns a stream that takes every tensor's data in
    /// declaration order. All tensors must have been declared with [`Self::declare_tensor`].
    pub fn stream<W: Write>(&self, mut w: W) -> Result<TensorStream<W>, GgufError> {
        if let Some(t) = self.tensors.iter().find(|t| t.data.is_some()) {
            return Err(GgufError::StreamOrder { expected: None, got: Some(t.name.clone()) });
        }
        let header = self.encode_header();
        w.write_all(&header).map_err(|source| GgufError::Write { source })?;
        Ok(TensorStream {
            w,
            pending: self.tensors.iter().rev().map(|t| (t.name.clone(), t.len)).collect(),
            alignment: self.alignment(),
            written: header.len() as u64,
        })
    }

    /// The metadata added so far.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// The data alignment that will be used.
    pub fn alignment(&self) -> u64 {
        match self.metadata.get(ALIGNMENT_KEY) {
            Some(&MetadataValue::U32(a)) => u64::from(a),
            _ => DEFAULT_ALIGNMENT,
        }
    }

    /// Everything before the data section, padding included.
    fn encode_header(&self) -> Vec<u8> {
        let alignment = self.alignment();
        let mut out = Vec::new();
        out.extend_from_slice(&GGUF_MAGIC);
        out.extend_from_slice(&GGUF_VERSION.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (key, value) in self.metadata.iter() {
            put_string(&mut out, key);
            put_value(&mut out, value);
        }
        let mut offset = 0u64;
        for t in &self.tensors {
            put_string(&mut out, &t.name);
            out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&t.ggml_type.id().to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
            offset += t.len + pad_len(t.len, alignment);
        }
        let pad = pad_len(out.len() as u64, alignment);
        out.resize(out.len() + pad as usize, 0);
        out
    }

    /// Writes the file to `w`; returns the number of bytes written.
    pub fn write_to<W: Write>(&self, mut w: W) -> Result<u64, GgufError> {
        let write = |source| GgufError::Write { source };
        let alignment = self.alignment();
        if let Some(t) = self.tensors.iter().find(|t| t.data.is_none()) {
            return Err(GgufError::DeferredTensor { tensor: t.name.clone() });
        }
        let header = self.encode_header();
        w.write_all(&header).map_err(write)?;
        let mut written = header.len() as u64;
        for t in &self.tensors {
            let data = t.data.as_deref().unwrap_or_default();
            w.write_all(data).map_err(write)?;
            written += data.len() as u64 + write_padding(&mut w, data.len() as u64, alignment)?;
        }
        w.flush().map_err(write)?;
        Ok(written)
    }

    /// The whole file in memory (empty if a tensor was declared without data).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Writing to a Vec cannot fail; a deferred tensor is the only error.
        if self.write_to(&mut out).is_err() {
            out.clear();
        }
        out
    }

    /// Writes the file to `path` (buffered), through a fresh partial file renamed into place
    /// (see [`crate::partial`]): a symlink at `path` is replaced, never followed.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn write_file(&self, path: impl AsRef<std::path::Path>) -> Result<u64, GgufError> {
        let path = path.as_ref();
        let io = |source| GgufError::Io { path: path.to_owned(), source };
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
        let stem = path.file_name().ok_or_else(|| io(std::io::Error::other("the path names no file")))?;
        let (temp, file) = crate::partial::PartialFile::create(dir, &stem.to_string_lossy())
            .map_err(|(path, source)| GgufError::Io { path, source })?;
        let mut w = std::io::BufWriter::new(file);
        let written = self.write_to(&mut w).map_err(|e| match e {
            GgufError::Write { source } => GgufError::Io { path: temp.path().to_owned(), source },
            other => other,
        })?;
        drop(w);
        temp.persist(path).map_err(io)?;
        Ok(written)
    }
}

/// Zero padding after `len` data bytes; returns the bytes written. Alignment may be up to 2^31,
/// so padding is written in small pieces.
fn write_padding<W: Write>(w: &mut W, len: u64, alignment: u64) -> Result<u64, GgufError> {
    let zeros = [0u8; 256];
    let pad = pad_len(len, alignment);
    let mut left = pad;
    while left > 0 {
        let n = left.min(zeros.len() as u64);
        w.write_all(&zeros[..n as usize]).map_err(|source| GgufError::Write { source })?;
        left -= n;
    }
    Ok(pad)
}

/// The data section of a GGUF file whose header [`GgufWriter::stream`] wrote: one
/// [`Self::write_tensor`] per declared tensor, in order, then [`Self::finish`].
pub struct TensorStream<W: Write> {
    w: W,
    /// Declared (name, byte size) still to write, the next one last.
    pending: Vec<(String, u64)>,
    alignment: u64,
    written: u64,
}

impl<W: Write> TensorStream<W> {
    /// Writes the data of the next declared tensor, which must be `name` and have its size.
    pub fn write_tensor(&mut self, name: &str, data: &[u8]) -> Result<(), GgufError> {
        let Some((expected_name, expected_len)) = self.pending.last() else {
            return Err(GgufError::StreamOrder { expected: None, got: Some(name.to_owned()) });
        };
        if expected_name != name {
            return Err(GgufError::StreamOrder { expected: Some(expected_name.clone()), got: Some(name.to_owned()) });
        }
        if *expected_len != data.len() as u64 {
            return Err(GgufError::TensorDataSizeMismatch {
                tensor: name.to_owned(),
                expected: *expected_len,
                actual: data.len() as u64,
            });
        }
        self.w.write_all(data).map_err(|source| GgufError::Write { source })?;
        self.written += data.len() as u64 + write_padding(&mut self.w, data.len() as u64, self.alignment)?;
        self.pending.pop();
        Ok(())
    }

    /// Checks that every declared tensor was written, flushes, and returns the writer and the
    /// file's total size.
    pub fn finish(mut self) -> Result<(W, u64), GgufError> {
        if let Some((name, _)) = self.pending.pop() {
            return Err(GgufError::StreamOrder { expected: Some(name), got: None });
        }
        self.w.flush().map_err(|source| GgufError::Write { source })?;
        Ok((self.w, self.written))
    }
}
