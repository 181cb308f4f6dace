//! Models split by llama.cpp's `gguf-split` into `<name>-00001-of-0000N.gguf` files: the first
//! holds the metadata, each holds some of the tensors, and `split.*` keys number them. Read as
//! one [`TensorSource`].

use std::borrow::Cow;
use std::collections::HashMap;

use super::{GgufFile, LoadError, Metadata, OptionalKey, SourceTensor, TensorSource};

/// `split.no`: this file's index, from 0.
pub const SPLIT_NO: &str = "split.no";
/// `split.count`: how many files the model has.
pub const SPLIT_COUNT: &str = "split.count";
/// `split.tensors.count`: tensors in all the files together (in the first file).
pub const SPLIT_TENSORS_COUNT: &str = "split.tensors.count";

/// The file names of a split model, from the name of any one of them
/// (`model-00002-of-00003.gguf` gives `model-00001-of-00003.gguf` … `model-00003-of-00003.gguf`);
/// `None` for a name not in gguf-split's form.
pub fn split_names(name: &str) -> Option<Vec<String>> {
    let stem = name.strip_suffix(".gguf")?;
    let (rest, count) = stem.rsplit_once("-of-")?;
    let (prefix, no) = rest.rsplit_once('-')?;
    let digits = |s: &str| s.len() == 5 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(count) || !digits(no) {
        return None;
    }
    let count: usize = count.parse().ok()?;
    let no: usize = no.parse().ok()?;
    if no == 0 || no > count {
        return None;
    }
    Some((1..=count).map(|i| format!("{prefix}-{i:05}-of-{count:05}.gguf")).collect())
}

/// Checks that the header `metadata` of file `file` is split `index` (from 0) of `count`.
pub fn check_split(file: &str, metadata: &Metadata, index: usize, count: usize) -> Result<(), LoadError> {
    let bad = |reason: String| LoadError::BadSplit { file: file.to_owned(), reason };
    let no = metadata.get_usize(SPLIT_NO).optional().map_err(|e| bad(e.to_string()))?;
    let n = metadata.get_usize(SPLIT_COUNT).optional().map_err(|e| bad(e.to_string()))?;
    match (no, n) {
        (Some(no), Some(n)) if no == index && n == count => Ok(()),
        (Some(no), Some(n)) => Err(bad(format!("it is split {} of {n}, expected {} of {count}", no + 1, index + 1))),
        _ if count == 1 => Ok(()),
        _ => Err(bad(format!("it has no `{SPLIT_NO}`/`{SPLIT_COUNT}` keys, expected split {} of {count}", index + 1))),
    }
}

/// A split model's files, read as one source: the first file's metadata, every file's tensors.
pub struct GgufSplit {
    files: Vec<GgufFile>,
    /// Which file holds each tensor.
    index: HashMap<String, usize>,
}

impl GgufSplit {
    /// Opens (memory-maps) every file of the split model that `path` is one file of.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open(path: &std::path::Path) -> Result<Self, LoadError> {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let names = split_names(name).ok_or_else(|| LoadError::BadSplit { file: path.display().to_string(), reason: "not named <name>-NNNNN-of-NNNNN.gguf".into() })?;
        let files = names.iter().map(|n| GgufFile::open(path.with_file_name(n)).map(|f| (path.with_file_name(n).display().to_string(), f))).collect::<Result<Vec<_>, _>>()?;
        Self::from_files(files)
    }

    /// The files of a split model, in order, each with the name errors give it.
    pub fn from_files(files: Vec<(String, GgufFile)>) -> Result<Self, LoadError> {
        let count = files.len();
        let mut index = HashMap::new();
        for (i, (name, file)) in files.iter().enumerate() {
            check_split(name, file.metadata(), i, count)?;
            for t in file.tensors() {
                if index.insert(t.name.clone(), i).is_some() {
                    return Err(LoadError::BadSplit { file: name.clone(), reason: format!("tensor `{}` is also in an earlier split", t.name) });
                }
            }
        }
        let Some((first, head)) = files.first() else {
            return Err(LoadError::BadSplit { file: String::new(), reason: "no files".into() });
        };
        if let Some(total) = head.metadata().get_usize(SPLIT_TENSORS_COUNT).optional().map_err(|e| LoadError::BadSplit { file: first.clone(), reason: e.to_string() })? {
            if total != index.len() {
                return Err(LoadError::BadSplit { file: first.clone(), reason: format!("`{SPLIT_TENSORS_COUNT}` is {total}, the files hold {}", index.len()) });
            }
        }
        Ok(Self { files: files.into_iter().map(|(_, f)| f).collect(), index })
    }

    /// How many files.
    pub fn file_count(&self) -> usize {
        self.files.len()
    }
}

impl TensorSource for GgufSplit {
    fn metadata(&self) -> &Metadata {
        self.files[0].metadata()
    }

    fn tensors(&self) -> Vec<SourceTensor> {
        self.files.iter().flat_map(TensorSource::tensors).collect()
    }

    fn tensor(&self, name: &str) -> Option<SourceTensor> {
        let &i = self.index.get(name)?;
        TensorSource::tensor(&self.files[i], name)
    }

    fn tensor_bytes(&self, name: &str) -> Result<Cow<'_, [u8]>, LoadError> {
        let &i = self.index.get(name).ok_or_else(|| LoadError::MissingTensor { name: name.to_owned() })?;
        TensorSource::tensor_bytes(&self.files[i], name)
    }
}

#[cfg(test)]
mod tests {
    use super::split_names;

    #[test]
    fn names_of_a_split_model() {
        assert_eq!(split_names("m-00002-of-00003.gguf").unwrap(), ["m-00001-of-00003.gguf", "m-00002-of-00003.gguf", "m-00003-of-00003.gguf"]);
        assert_eq!(split_names("a-b-00001-of-00001.gguf").unwrap(), ["a-b-00001-of-00001.gguf"]);
        for name in ["m.gguf", "m-0001-of-00003.gguf", "m-00004-of-00003.gguf", "m-00000-of-00003.gguf", "m-00001-of-00003.bin", "m-0000x-of-00003.gguf"] {
            assert_eq!(split_names(name), None, "{name}");
        }
    }
}
