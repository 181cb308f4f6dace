//! Reader for Hugging Face safetensors files: one file, or a sharded set named by
//! `model.safetensors.index.json`.
//!
//! Layout: an 8-byte little-endian header length `n`, `n` bytes of JSON mapping each tensor name to
//! `{dtype, shape, data_offsets: [begin, end]}` (offsets relative to the end of the header), then
//! the data. Every length and offset is checked against the file before anything is sliced, and
//! nothing is allocated from a size the header claims.

use std::collections::BTreeMap;

use super::{GgmlType, GgufBytes};

/// Headers larger than this are refused before parsing (the format's own reference limit).
pub const MAX_HEADER_BYTES: u64 = 100 << 20;

/// Everything that can go wrong reading a safetensors file or set.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum SafetensorsError {
    /// Opening, mapping or reading `path` failed.
    #[error("safetensors: cannot read `{path}`: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The file is shorter than the 8-byte header length.
    #[error("safetensors: file of {len} bytes has no header length")]
    TooShort { len: u64 },
    /// The header length exceeds the file or [`MAX_HEADER_BYTES`].
    #[error("safetensors: header claims {claimed} bytes, {available} available (limit {MAX_HEADER_BYTES})")]
    HeaderTooLarge { claimed: u64, available: u64 },
    /// The header is not the JSON the format prescribes.
    #[error("safetensors: malformed header: {reason}")]
    BadHeader { reason: String },
    /// A dtype without a ggml equivalent (qgpu lists F32, F16, BF16, F64 and I8-I64 tensors;
    /// only the float ones convert to f32).
    #[error("safetensors: tensor `{tensor}` has dtype {dtype} (qgpu reads F32, F16, BF16, F64, U8, I8, I16, I32, I64)")]
    UnsupportedDtype { tensor: String, dtype: String },
    /// `data_offsets` outside the data section or reversed.
    #[error("safetensors: tensor `{tensor}` spans {begin}..{end}, data section holds {data_len} bytes")]
    OutOfBounds { tensor: String, begin: u64, end: u64, data_len: u64 },
    /// The byte span does not match shape × dtype size.
    #[error("safetensors: tensor `{tensor}` holds {actual} bytes, its shape needs {expected}")]
    SizeMismatch { tensor: String, expected: u64, actual: u64 },
    /// Two tensors share bytes.
    #[error("safetensors: tensors `{first}` and `{second}` overlap")]
    Overlap { first: String, second: String },
    /// The same tensor name appears in two shards.
    #[error("safetensors: tensor `{tensor}` appears in more than one shard")]
    DuplicateTensor { tensor: String },
    /// The shard index is malformed or names a tensor its shard lacks.
    #[error("safetensors: bad shard index `{path}`: {reason}")]
    BadIndex { path: String, reason: String },
}

/// One tensor entry of a safetensors header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SafetensorsTensor {
    pub name: String,
    /// Element type (F32, F16, BF16, F64 or I8-I64; U8 is listed as I8).
    pub dtype: GgmlType,
    /// The dtype as the file names it (`"U8"`, `"F32"`, ...), for writing it back unchanged.
    pub dtype_name: &'static str,
    /// Shape in PyTorch order (last dim fastest), as stored.
    pub shape: Vec<u64>,
    /// Absolute byte range in the file.
    pub start: u64,
    pub end: u64,
}

impl SafetensorsTensor {
    /// Dimensions in GGUF order (fastest first): the stored shape reversed.
    pub fn gguf_dims(&self) -> Vec<u64> {
        self.shape.iter().rev().copied().collect()
    }
}

/// A parsed safetensors file with its bytes.
#[derive(Debug)]
pub struct SafetensorsFile {
    bytes: GgufBytes,
    tensors: Vec<SafetensorsTensor>,
    metadata: BTreeMap<String, String>,
}

impl SafetensorsFile {
    /// Parses a file already in memory.
    pub fn from_bytes(bytes: impl Into<GgufBytes>) -> Result<Self, SafetensorsError> {
        let bytes = bytes.into();
        let (tensors, metadata) = parse_header(&bytes)?;
        Ok(Self { bytes, tensors, metadata })
    }

    /// Memory-maps and parses the file at `path`.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open(path: impl AsRef<std::path::Path>) -> Result<Self, SafetensorsError> {
        let path = path.as_ref();
        let io = |source| SafetensorsError::Io { path: path.display().to_string(), source };
        let file = std::fs::File::open(path).map_err(io)?;
        // SAFETY: read-only private map; like every mmap loader we assume the file is not
        // truncated while mapped.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        Self::from_bytes(map)
    }

    /// Tensors in header order.
    pub fn tensors(&self) -> &[SafetensorsTensor] {
        &self.tensors
    }

    /// The tensor called `name`.
    pub fn tensor(&self, name: &str) -> Option<&SafetensorsTensor> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The bytes of `tensor` (which must come from this file; bounds were checked when parsing).
    pub fn data(&self, tensor: &SafetensorsTensor) -> &[u8] {
        &self.bytes[tensor.start as usize..tensor.end as usize]
    }

    /// The free-form `__metadata__` map.
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }
}

fn bad(reason: impl Into<String>) -> SafetensorsError {
    SafetensorsError::BadHeader { reason: reason.into() }
}

type Header = (Vec<SafetensorsTensor>, BTreeMap<String, String>);

fn parse_header(bytes: &[u8]) -> Result<Header, SafetensorsError> {
    let len = bytes.len() as u64;
    let prefix: [u8; 8] = bytes.get(..8).and_then(|b| b.try_into().ok()).ok_or(SafetensorsError::TooShort { len })?;
    let n = u64::from_le_bytes(prefix);
    let available = len - 8;
    if n > available || n > MAX_HEADER_BYTES {
        return Err(SafetensorsError::HeaderTooLarge { claimed: n, available });
    }
    let data_start = 8 + n;
    let data_len = len - data_start;
    let json: serde_json::Value =
        serde_json::from_slice(&bytes[8..data_start as usize]).map_err(|e| bad(e.to_string()))?;
    let serde_json::Value::Object(map) = json else {
        return Err(bad("the header is not a JSON object"));
    };

    let mut tensors = Vec::with_capacity(map.len());
    let mut metadata = BTreeMap::new();
    for (name, entry) in map {
        if name == "__metadata__" {
            let serde_json::Value::Object(m) = entry else { return Err(bad("__metadata__ is not an object")) };
            for (k, v) in m {
                let serde_json::Value::String(v) = v else { return Err(bad(format!("__metadata__.{k} is not a string"))) };
                metadata.insert(k, v);
            }
            continue;
        }
        tensors.push(parse_entry(name, &entry, data_start, data_len)?);
    }

    // Sorted by offset, neighbours must not share bytes.
    tensors.sort_by_key(|t| (t.start, t.end));
    for pair in tensors.windows(2) {
        if pair[1].start < pair[0].end {
            return Err(SafetensorsError::Overlap { first: pair[0].name.clone(), second: pair[1].name.clone() });
        }
    }
    Ok((tensors, metadata))
}

fn parse_entry(name: String, entry: &serde_json::Value, data_start: u64, data_len: u64) -> Result<SafetensorsTensor, SafetensorsError> {
    let field = |key: &str| entry.get(key).ok_or_else(|| bad(format!("tensor `{name}` has no `{key}`")));
    let dtype_name = field("dtype")?.as_str().ok_or_else(|| bad(format!("tensor `{name}`: dtype is not a string")))?;
    let (dtype, dtype_name) = match dtype_name {
        "F32" => (GgmlType::F32, "F32"),
        "F16" => (GgmlType::F16, "F16"),
        "BF16" => (GgmlType::BF16, "BF16"),
        // Integer buffers (BERT's `position_ids`) are listed, so a model holding one opens; they
        // never convert to f32.
        "F64" => (GgmlType::F64, "F64"),
        "I8" => (GgmlType::I8, "I8"),
        // bitsandbytes' packed nibbles and absmax codes. Listed as I8, which has the same size
        // (ggml has no U8): qgpu only ever reads their bytes.
        "U8" => (GgmlType::I8, "U8"),
        "I16" => (GgmlType::I16, "I16"),
        "I32" => (GgmlType::I32, "I32"),
        "I64" => (GgmlType::I64, "I64"),
        other => return Err(SafetensorsError::UnsupportedDtype { tensor: name, dtype: other.to_owned() }),
    };
    let numbers = |key: &str| -> Result<Vec<u64>, SafetensorsError> {
        field(key)?
            .as_array()
            .ok_or_else(|| bad(format!("tensor `{name}`: {key} is not an array")))?
            .iter()
            .map(|v| v.as_u64().ok_or_else(|| bad(format!("tensor `{name}`: {key} holds a non-integer"))))
            .collect()
    };
    let shape = numbers("shape")?;
    let offsets = numbers("data_offsets")?;
    let [begin, end] = offsets[..] else {
        return Err(bad(format!("tensor `{name}`: data_offsets must hold two numbers")));
    };
    if begin > end || end > data_len {
        return Err(SafetensorsError::OutOfBounds { tensor: name, begin, end, data_len });
    }
    let elements = shape.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d));
    let expected = elements.and_then(|n| dtype.size_of(n)).unwrap_or(u64::MAX);
    if expected != end - begin {
        return Err(SafetensorsError::SizeMismatch { tensor: name, expected, actual: end - begin });
    }
    Ok(SafetensorsTensor { name, dtype, dtype_name, shape, start: data_start + begin, end: data_start + end })
}

/// The safetensors of one model: a single `model.safetensors`, or the shards listed in
/// `model.safetensors.index.json`.
#[derive(Debug)]
pub struct SafetensorsSet {
    files: Vec<SafetensorsFile>,
    /// Tensor name → (index into `files`, index into that file's tensors): one lookup per
    /// tensor, not a scan (a file may hold tens of thousands).
    index: BTreeMap<String, (usize, usize)>,
}

impl SafetensorsSet {
    /// Combines already-parsed files; tensor names must be unique across them.
    pub fn from_files(files: Vec<SafetensorsFile>) -> Result<Self, SafetensorsError> {
        let mut index = BTreeMap::new();
        for (i, file) in files.iter().enumerate() {
            for (j, t) in file.tensors().iter().enumerate() {
                if index.insert(t.name.clone(), (i, j)).is_some() {
                    return Err(SafetensorsError::DuplicateTensor { tensor: t.name.clone() });
                }
            }
        }
        Ok(Self { files, index })
    }

    /// Opens the weights in directory `dir` (or a single `.safetensors` file).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open(path: impl AsRef<std::path::Path>) -> Result<Self, SafetensorsError> {
        let path = path.as_ref();
        if path.is_file() {
            return Self::from_files(vec![SafetensorsFile::open(path)?]);
        }
        let index_path = path.join("model.safetensors.index.json");
        if !index_path.exists() {
            return Self::from_files(vec![SafetensorsFile::open(path.join("model.safetensors"))?]);
        }
        let shown = index_path.display().to_string();
        let text = std::fs::read(&index_path).map_err(|source| SafetensorsError::Io { path: shown.clone(), source })?;
        let index_err = |reason: String| SafetensorsError::BadIndex { path: shown.clone(), reason };
        let json: serde_json::Value = serde_json::from_slice(&text).map_err(|e| index_err(e.to_string()))?;
        let map = json
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| index_err("no `weight_map` object".into()))?;
        let mut shards: Vec<&str> = Vec::new();
        for (tensor, file) in map {
            let file = file.as_str().ok_or_else(|| index_err(format!("`{tensor}` maps to a non-string")))?;
            // Shard names are plain file names beside the index; anything else could escape the directory.
            if file.contains('/') || file.contains('\\') || file.starts_with('.') {
                return Err(index_err(format!("shard name `{file}` is not a plain file name")));
            }
            if !shards.contains(&file) {
                shards.push(file);
            }
        }
        let files = shards.iter().map(|f| SafetensorsFile::open(path.join(f))).collect::<Result<Vec<_>, _>>()?;
        let set = Self::from_files(files)?;
        for tensor in map.keys() {
            if !set.index.contains_key(tensor) {
                return Err(index_err(format!("tensor `{tensor}` is not in its shard")));
            }
        }
        Ok(set)
    }

    /// Every tensor, shard by shard.
    pub fn tensors(&self) -> impl Iterator<Item = &SafetensorsTensor> {
        self.files.iter().flat_map(|f| f.tensors())
    }

    /// Tensor `name` and its bytes.
    pub fn get(&self, name: &str) -> Option<(&SafetensorsTensor, &[u8])> {
        let &(i, j) = self.index.get(name)?;
        let file = self.files.get(i)?;
        let t = file.tensors().get(j)?;
        Some((t, file.data(t)))
    }

    /// The `__metadata__` of the first shard.
    pub fn metadata(&self) -> Option<&BTreeMap<String, String>> {
        self.files.first().map(|f| f.metadata())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file with the given header JSON followed by `data`.
    fn file(header: &str, data: &[u8]) -> Vec<u8> {
        let mut out = (header.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn reads_tensors_and_reverses_dims() {
        let data: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let bytes = file(r#"{"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}}"#, &data);
        let f = SafetensorsFile::from_bytes(bytes).unwrap();
        let t = f.tensor("w").unwrap();
        assert_eq!(t.gguf_dims(), vec![3, 2]);
        assert_eq!(f.data(t), &data[..]);
        assert_eq!(f.metadata()["format"], "pt");
    }

    #[test]
    fn rejects_crafted_headers() {
        let e = |b: Vec<u8>| SafetensorsFile::from_bytes(b).unwrap_err();
        assert!(matches!(e(vec![1, 2, 3]), SafetensorsError::TooShort { len: 3 }));
        let mut huge = u64::MAX.to_le_bytes().to_vec();
        huge.extend_from_slice(b"{}");
        assert!(matches!(e(huge), SafetensorsError::HeaderTooLarge { claimed: u64::MAX, available: 2 }));
        assert!(matches!(e(file("[1]", &[])), SafetensorsError::BadHeader { .. }));
        assert!(matches!(e(file("{not json", &[])), SafetensorsError::BadHeader { .. }));
        let bool_dtype = r#"{"w":{"dtype":"BOOL","shape":[1],"data_offsets":[0,1]}}"#;
        assert!(matches!(e(file(bool_dtype, &[0])), SafetensorsError::UnsupportedDtype { .. }));
        let past_end = r#"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#;
        assert!(matches!(e(file(past_end, &[0; 8])), SafetensorsError::OutOfBounds { end: 16, data_len: 8, .. }));
        let wrong_size = r#"{"w":{"dtype":"F16","shape":[3],"data_offsets":[0,8]}}"#;
        assert!(matches!(e(file(wrong_size, &[0; 8])), SafetensorsError::SizeMismatch { expected: 6, actual: 8, .. }));
        let overflow = r#"{"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}}"#;
        assert!(matches!(e(file(overflow, &[0; 8])), SafetensorsError::SizeMismatch { expected: u64::MAX, .. }));
        let overlap = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#;
        assert!(matches!(e(file(overlap, &[0; 12])), SafetensorsError::Overlap { .. }));
        let reversed = r#"{"w":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}}"#;
        assert!(matches!(e(file(reversed, &[0; 8])), SafetensorsError::OutOfBounds { .. }));
    }

    #[test]
    fn duplicate_names_across_shards_are_refused() {
        let one = || {
            SafetensorsFile::from_bytes(file(r#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, &[0; 4])).unwrap()
        };
        let err = SafetensorsSet::from_files(vec![one(), one()]).unwrap_err();
        assert!(matches!(err, SafetensorsError::DuplicateTensor { tensor } if tensor == "w"));
    }

    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn sharded_directories_follow_their_index() {
        let dir = std::env::temp_dir().join(format!("qgpu-shards-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let shard = |name: &str, tensor: &str, value: f32| {
            let header = format!(r#"{{"{tensor}":{{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}}}"#);
            std::fs::write(dir.join(name), file(&header, &value.to_le_bytes())).unwrap();
        };
        shard("model-00001-of-00002.safetensors", "a", 1.5);
        shard("model-00002-of-00002.safetensors", "b", -2.0);
        let index = |map: &str| std::fs::write(dir.join("model.safetensors.index.json"), format!(r#"{{"weight_map":{map}}}"#)).unwrap();
        index(r#"{"a":"model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors"}"#);
        let set = SafetensorsSet::open(&dir).unwrap();
        let (t, bytes) = set.get("b").unwrap();
        assert_eq!((t.name.as_str(), bytes), ("b", &(-2.0f32).to_le_bytes()[..]));
        assert_eq!(set.tensors().count(), 2);

        // An index that names a tensor its shard lacks, or a path outside the directory.
        index(r#"{"a":"model-00001-of-00002.safetensors","c":"model-00001-of-00002.safetensors"}"#);
        assert!(matches!(SafetensorsSet::open(&dir).unwrap_err(), SafetensorsError::BadIndex { reason, .. } if reason.contains("`c`")));
        index(r#"{"a":"../model-00001-of-00002.safetensors"}"#);
        assert!(matches!(SafetensorsSet::open(&dir).unwrap_err(), SafetensorsError::BadIndex { reason, .. } if reason.contains("plain file name")));
        index(r#"{"a":"missing.safetensors"}"#);
        assert!(matches!(SafetensorsSet::open(&dir).unwrap_err(), SafetensorsError::Io { .. }));
        std::fs::remove_dir_all(&dir).ok();
    }
}
