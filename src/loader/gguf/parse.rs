//! The GGUF byte-level parser.

use std::collections::HashMap;

use super::{
    tensor_layout, GgmlType, GgufError, GgufHeader, Metadata, MetadataArray, MetadataValue,
    MetadataValueType, TensorInfo, ALIGNMENT_KEY, DEFAULT_ALIGNMENT, GGUF_MAGIC, MAX_ALIGNMENT, MAX_ARRAY_DEPTH,
    MAX_DIMS,
};

/// Smallest metadata entry: key length (8) + value type (4) + a 1-byte value.
const MIN_KV_SIZE: u64 = 8 + 4 + 1;
/// Smallest tensor info: name length (8) + n_dims (4) + one dim (8) + type (4) + offset (8).
const MIN_TENSOR_INFO_SIZE: u64 = 8 + 4 + 8 + 4 + 8;

/// Most slots reserved up front for a list whose items are parsed one by one.
/// Counts are already bounded by the file size, but nested arrays could each
/// reserve for the same remaining bytes; beyond this, vectors grow only as
/// items actually parse, keeping memory proportional to what was read.
const PREALLOC_LIMIT: usize = 1 << 16;

type Result<T> = std::result::Result<T, GgufError>;

/// A bounds-checked little-endian cursor over the start of a file of `file_len` bytes.
///
/// Counts and lengths are checked against what is left of the file, reads against what is in
/// `buf`: when `buf` is only a prefix (a header arriving over the network), running past its
/// end is [`GgufError::Truncated`], which a stream answers by waiting for more bytes.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    file_len: u64,
}

impl<'a> Reader<'a> {
    fn offset(&self) -> u64 {
        self.pos as u64
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Bytes of the file after the cursor, whether they are in `buf` yet or not.
    fn left_in_file(&self) -> u64 {
        self.file_len.saturating_sub(self.offset())
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8]> {
        let available = self.remaining();
        if n > available {
            return Err(GgufError::Truncated {
                what,
                offset: self.offset(),
                needed: n as u64,
                available: available as u64,
            });
        }
        let bytes = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8> {
        Ok(self.array::<1>(what)?[0])
    }

    fn u32(&mut self, what: &'static str) -> Result<u32> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &'static str) -> Result<u64> {
        self.array(what).map(u64::from_le_bytes)
    }

    fn bool(&mut self, key: &str) -> Result<bool> {
        let offset = self.offset();
        match self.u8("bool value")? {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(GgufError::InvalidBool { key: key.to_owned(), value, offset }),
        }
    }

    fn string(&mut self, what: &'static str) -> Result<String> {
        let offset = self.offset();
        let len = self.u64(what)?;
        let available = self.left_in_file();
        if len > available {
            return Err(GgufError::StringTooLong { what, offset, len, available });
        }
        // Saturating: a length past usize fails as truncation.
        let bytes = self.take(usize::try_from(len).unwrap_or(usize::MAX), what)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_owned()),
            Err(e) => Err(GgufError::InvalidUtf8 { what, offset, valid_up_to: e.valid_up_to() }),
        }
    }

    /// Checks that `count` items of at least `min_item_size` bytes each can
    /// still fit, so that allocating `count` slots is bounded by the file size.
    fn check_count(&self, what: &'static str, offset: u64, count: u64, min_item_size: u64) -> Result<usize> {
        let available = self.left_in_file();
        count
            .checked_mul(min_item_size)
            .filter(|&bytes| bytes <= available)
            .and_then(|_| usize::try_from(count).ok())
            .ok_or(GgufError::CountTooLarge { what, offset, count, min_item_size, available })
    }

    fn count(&mut self, what: &'static str, min_item_size: u64) -> Result<usize> {
        let offset = self.offset();
        let count = self.u64(what)?;
        self.check_count(what, offset, count, min_item_size)
    }

    fn fixed<T, const N: usize>(&mut self, n: usize, f: fn([u8; N]) -> T) -> Result<Vec<T>> {
        // Saturating: an impossible length then fails as truncation.
        let len = n.saturating_mul(N);
        let bytes = self.take(len, "array data")?;
        Ok(bytes
            .chunks_exact(N)
            .map(|c| {
                let mut a = [0u8; N];
                a.copy_from_slice(c);
                f(a)
            })
            .collect())
    }

    fn value_type(&mut self, key: &str, what: &'static str) -> Result<MetadataValueType> {
        let offset = self.offset();
        let type_id = self.u32(what)?;
        MetadataValueType::from_id(type_id).ok_or_else(|| GgufError::UnknownValueType {
            key: key.to_owned(),
            type_id,
            offset,
        })
    }

    fn value(&mut self, key: &str, ty: MetadataValueType) -> Result<MetadataValue> {
        use MetadataValue as V;
        use MetadataValueType as T;
        const W: &str = "metadata value";
        Ok(match ty {
            T::U8 => V::U8(self.u8(W)?),
            T::I8 => V::I8(i8::from_le_bytes(self.array(W)?)),
            T::U16 => V::U16(u16::from_le_bytes(self.array(W)?)),
            T::I16 => V::I16(i16::from_le_bytes(self.array(W)?)),
            T::U32 => V::U32(u32::from_le_bytes(self.array(W)?)),
            T::I32 => V::I32(i32::from_le_bytes(self.array(W)?)),
            T::F32 => V::F32(f32::from_le_bytes(self.array(W)?)),
            T::Bool => V::Bool(self.bool(key)?),
            T::String => V::String(self.string("string value")?),
            T::Array => V::Array(self.metadata_array(key, 1)?),
            T::U64 => V::U64(u64::from_le_bytes(self.array(W)?)),
            T::I64 => V::I64(i64::from_le_bytes(self.array(W)?)),
            T::F64 => V::F64(f64::from_le_bytes(self.array(W)?)),
        })
    }

    /// Reads an array at nesting level `depth` (1 = a top-level value).
    fn metadata_array(&mut self, key: &str, depth: usize) -> Result<MetadataArray> {
        use MetadataArray as A;
        use MetadataValueType as T;
        let ty = self.value_type(key, "array element type")?;
        if ty == T::Array && depth >= MAX_ARRAY_DEPTH {
            return Err(GgufError::ArrayTooDeep {
                key: key.to_owned(),
                depth: depth + 1,
                max: MAX_ARRAY_DEPTH,
            });
        }
        let n = self.count("array length", ty.min_encoded_size())?;
        Ok(match ty {
            T::U8 => A::U8(self.take(n, "array data")?.to_vec()),
            T::I8 => A::I8(self.fixed(n, i8::from_le_bytes)?),
            T::U16 => A::U16(self.fixed(n, u16::from_le_bytes)?),
            T::I16 => A::I16(self.fixed(n, i16::from_le_bytes)?),
            T::U32 => A::U32(self.fixed(n, u32::from_le_bytes)?),
            T::I32 => A::I32(self.fixed(n, i32::from_le_bytes)?),
            T::F32 => A::F32(self.fixed(n, f32::from_le_bytes)?),
            T::U64 => A::U64(self.fixed(n, u64::from_le_bytes)?),
            T::I64 => A::I64(self.fixed(n, i64::from_le_bytes)?),
            T::F64 => A::F64(self.fixed(n, f64::from_le_bytes)?),
            T::Bool => {
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(self.bool(key)?);
                }
                A::Bool(v)
            }
            T::String => {
                let mut v = Vec::with_capacity(n.min(PREALLOC_LIMIT));
                for _ in 0..n {
                    v.push(self.string("string array element")?);
                }
                A::String(v)
            }
            T::Array => {
                let mut v = Vec::with_capacity(n.min(PREALLOC_LIMIT));
                for _ in 0..n {
                    v.push(self.metadata_array(key, depth + 1)?);
                }
                A::Array(v)
            }
        })
    }
}

/// Reads `general.alignment`, which the spec requires to be a `u32` power of two.
fn alignment(metadata: &Metadata) -> Result<u64> {
    match metadata.get(ALIGNMENT_KEY) {
        None => Ok(DEFAULT_ALIGNMENT),
        Some(&MetadataValue::U32(alignment)) if alignment > MAX_ALIGNMENT => Err(GgufError::AlignmentTooLarge { alignment, max: MAX_ALIGNMENT }),
        Some(&MetadataValue::U32(a)) if a.is_power_of_two() => Ok(u64::from(a)),
        Some(&MetadataValue::U32(alignment)) => Err(GgufError::InvalidAlignment { alignment }),
        Some(other) => Err(GgufError::WrongType {
            key: ALIGNMENT_KEY.to_owned(),
            expected: "u32",
            found: other.type_name(),
        }),
    }
}

/// Reads one tensor info; its `offset` is still relative to the data section.
fn tensor_info(r: &mut Reader<'_>, alignment: u64) -> Result<TensorInfo> {
    let name = r.string("tensor name")?;
    let n_dims = r.u32("tensor dimension count")?;
    if n_dims == 0 || n_dims as usize > MAX_DIMS {
        return Err(GgufError::InvalidDimCount { tensor: name, n_dims: n_dims.into(), max: MAX_DIMS });
    }
    let mut dims = Vec::with_capacity(n_dims as usize);
    for _ in 0..n_dims {
        dims.push(r.u64("tensor dimension")?);
    }
    let type_id = r.u32("tensor type")?;
    let offset = r.u64("tensor data offset")?;
    let Some(ggml_type) = GgmlType::from_id(type_id) else {
        return Err(GgufError::UnknownTensorType { tensor: name, type_id });
    };
    let (n_elements, size_bytes) = tensor_layout(&name, &dims, ggml_type)?;
    if !offset.is_multiple_of(alignment) {
        return Err(GgufError::MisalignedTensor { tensor: name, offset, alignment });
    }
    Ok(TensorInfo { name, dims, ggml_type, offset, n_elements, size_bytes })
}

/// Rejects tensors whose data ranges intersect. Empty tensors occupy no bytes
/// and cannot overlap anything.
fn check_overlaps(tensors: &[TensorInfo]) -> Result<()> {
    let mut order: Vec<&TensorInfo> = tensors.iter().filter(|t| t.size_bytes > 0).collect();
    order.sort_by_key(|t| t.offset);
    for pair in order.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        // Both ends were bounds-checked against the file, so no overflow here.
        let a_end = a.offset + a.size_bytes;
        if a_end > b.offset {
            return Err(GgufError::OverlappingTensors {
                first: a.name.clone(),
                first_end: a_end,
                second: b.name.clone(),
                second_start: b.offset,
            });
        }
    }
    Ok(())
}

impl GgufHeader {
    /// Parses and validates a complete GGUF file held in `bytes`.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        Self::parse_prefix(bytes, Some(bytes.len() as u64))
    }

    /// Parses the header from the first bytes of a file of `file_len` bytes (`None` when the
    /// length is not known, as for a download without Content-Length). Counts and tensor
    /// extents are checked against `file_len`; `prefix` must hold the whole header, or this
    /// fails with [`GgufError::Truncated`] saying how far it needs to reach.
    pub fn parse_prefix(prefix: &[u8], file_len: Option<u64>) -> Result<Self> {
        let mut r = Reader { buf: prefix, pos: 0, file_len: file_len.unwrap_or(u64::MAX) };
        let found = r.array::<4>("magic")?;
        if found != GGUF_MAGIC {
            return Err(GgufError::BadMagic { found });
        }
        let version = r.u32("version")?;
        if !(2..=3).contains(&version) {
            return Err(GgufError::UnsupportedVersion { version });
        }
        let tensor_count_offset = r.offset();
        let tensor_count = r.u64("tensor count")?;
        let kv_count = r.count("metadata entry count", MIN_KV_SIZE)?;
        // Checked up front too, so an absurd count fails before any metadata work.
        r.check_count("tensor count", tensor_count_offset, tensor_count, MIN_TENSOR_INFO_SIZE)?;

        let mut metadata = Metadata::new();
        for _ in 0..kv_count {
            let key = r.string("metadata key")?;
            let ty = r.value_type(&key, "metadata value type")?;
            let value = r.value(&key, ty)?;
            metadata.insert(key, value)?;
        }
        let alignment = alignment(&metadata)?;

        let n_tensors =
            r.check_count("tensor count", tensor_count_offset, tensor_count, MIN_TENSOR_INFO_SIZE)?;
        let mut tensors = Vec::with_capacity(n_tensors.min(PREALLOC_LIMIT));
        let mut tensor_index = HashMap::with_capacity(n_tensors.min(PREALLOC_LIMIT));
        for i in 0..n_tensors {
            let info = tensor_info(&mut r, alignment)?;
            if tensor_index.contains_key(&info.name) {
                return Err(GgufError::DuplicateTensor { tensor: info.name });
            }
            tensor_index.insert(info.name.clone(), i);
            tensors.push(info);
        }

        // pos <= len and alignment <= 2^31, so this cannot overflow u64.
        let data_offset = r.offset().div_ceil(alignment) * alignment;
        let file_len = r.file_len;
        for t in &mut tensors {
            let start = data_offset.checked_add(t.offset);
            let end = start.and_then(|s| s.checked_add(t.size_bytes));
            match (start, end) {
                (Some(start), Some(end)) if end <= file_len => t.offset = start,
                _ => {
                    return Err(GgufError::TensorOutOfBounds {
                        tensor: t.name.clone(),
                        start: start.unwrap_or(u64::MAX),
                        end: end.unwrap_or(u64::MAX),
                        file_len,
                    })
                }
            }
        }
        check_overlaps(&tensors)?;

        Ok(Self { version, alignment, data_offset, metadata, tensors, tensor_index })
    }
}
