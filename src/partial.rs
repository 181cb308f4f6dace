//! Temporary ("partial") files that `qgpu quantize` and `qgpu fetch` write before renaming
//! them into place. Native only.
//!
//! A partial file is named `.{stem}.{pid}.{random}.part` (16 hex digits of random) in the
//! directory of its final file, so the rename stays on one file system. It is opened with
//! `create_new`: a planted symlink or an existing file under that name is never followed or
//! overwritten, and the random part makes the name unpredictable. Creating one first sweeps
//! stale partial files of the same scheme from the directory ([`sweep`]).

use std::collections::hash_map::RandomState;
use std::fs::{self, File, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// Suffix of every partial file.
pub const SUFFIX: &str = ".part";

/// Where the owning process cannot be checked (no `/proc`), a partial file untouched for this
/// long is taken as abandoned.
pub const STALE_AGE: Duration = Duration::from_secs(24 * 3600);

/// Even with its process gone, a file modified this recently is kept: a process in another PID
/// namespace (a container sharing the cache) may still be writing it.
const MIN_AGE: Duration = Duration::from_secs(10 * 60);

/// Names tried before giving up (each collision is astronomically unlikely unless planted).
const ATTEMPTS: u32 = 16;

/// A partial file, removed on drop unless persisted.
#[derive(Debug)]
pub struct PartialFile {
    path: PathBuf,
    keep: bool,
}

/// 64 unpredictable bits: `RandomState` is seeded from the OS once per process, and the
/// time, pid and a counter make each call distinct.
fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    h.write_u128(nanos);
    h.write_u32(std::process::id());
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.finish()
}

impl PartialFile {
    /// Creates a new partial file for `stem` in `dir` (after sweeping stale ones there).
    /// On error, returns the path that could not be created.
    pub fn create(dir: &Path, stem: &str) -> Result<(Self, File), (PathBuf, io::Error)> {
        sweep(dir);
        let mut last = None;
        for _ in 0..ATTEMPTS {
            let path = dir.join(format!(".{stem}.{}.{:016x}{SUFFIX}", std::process::id(), random_u64()));
            match open_new(&path) {
                Ok(file) => return Ok((PartialFile { path, keep: false }, file)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some((path, e)),
                Err(e) => return Err((path, e)),
            }
        }
        Err(last.unwrap_or_else(|| (dir.to_path_buf(), io::Error::other("no partial file name was free"))))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Renames the file to `dest` (replacing a regular file there); afterwards it is not removed.
    pub fn persist(mut self, dest: &Path) -> io::Result<()> {
        fs::rename(&self.path, dest)?;
        self.keep = true;
        Ok(())
    }
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Opens `path` only if nothing is there: never through a symlink, never an existing file.
fn open_new(path: &Path) -> io::Result<File> {
    OpenOptions::new().write(true).create_new(true).open(path)
}

/// The pid in a partial file's name, `None` if the name is not of the scheme.
pub fn owner_pid(name: &str) -> Option<u32> {
    let inner = name.strip_prefix('.')?.strip_suffix(SUFFIX)?;
    let (rest, random) = inner.rsplit_once('.')?;
    let (stem, pid) = rest.rsplit_once('.')?;
    let hex = random.len() == 16 && random.bytes().all(|b| b.is_ascii_hexdigit());
    let digits = !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit());
    (hex && digits && !stem.is_empty()).then(|| pid.parse().ok()).flatten()
}

/// Whether process `pid` may still exist: on Linux its `/proc` entry (when `/proc` is
/// mounted); elsewhere unknown (`None`).
fn process_alive(pid: u32) -> Option<bool> {
    if cfg!(target_os = "linux") && Path::new("/proc/self").exists() {
        Some(Path::new("/proc").join(pid.to_string()).exists())
    } else {
        None
    }
}

/// Removes stale partial files from `dir`: files (or symlinks; never their targets) of the
/// naming scheme whose process is gone and that were not modified in the last 10 minutes, or,
/// where processes cannot be checked, untouched for [`STALE_AGE`]. This process's own files are
/// kept. Best effort: returns how many were removed.
pub fn sweep(dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(dir) else { return 0 };
    let now = SystemTime::now();
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(owner_pid) else { continue };
        if pid == std::process::id() {
            continue;
        }
        // symlink_metadata: a link is judged (and removed) as itself.
        let Ok(meta) = fs::symlink_metadata(entry.path()) else { continue };
        if meta.is_dir() {
            continue;
        }
        let age = meta.modified().ok().and_then(|m| now.duration_since(m).ok()).unwrap_or_default();
        let stale = match process_alive(pid) {
            Some(alive) => !alive && age >= MIN_AGE,
            None => age >= STALE_AGE,
        };
        if stale && fs::remove_file(entry.path()).is_ok() {
            log::info!("removed stale partial file {}", entry.path().display());
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("qgpu-partial-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn age(path: &Path, by: Duration) {
        let f = File::options().write(true).open(path).unwrap();
        f.set_modified(SystemTime::now() - by).unwrap();
    }

    /// A pid above Linux's `pid_max` ceiling (2^22): never a live process.
    const DEAD: u32 = 4_000_000_000;

    #[test]
    fn names_parse_only_in_the_scheme() {
        assert_eq!(owner_pid(".m.gguf.123.0123456789abcdef.part"), Some(123));
        assert_eq!(owner_pid(".m.gguf.123.0123456789abcdeg.part"), None);
        assert_eq!(owner_pid(".m.gguf.12x.0123456789abcdef.part"), None);
        assert_eq!(owner_pid("m.gguf.123.0123456789abcdef.part"), None);
        assert_eq!(owner_pid("..123.0123456789abcdef.part"), None);
        assert_eq!(owner_pid(".m.gguf.123.0123456789abcdef"), None);
    }

    #[test]
    fn names_are_fresh_and_never_reuse_a_file() {
        let dir = scratch("fresh");
        let (a, _fa) = PartialFile::create(&dir, "x").unwrap();
        let (b, _fb) = PartialFile::create(&dir, "x").unwrap();
        assert_ne!(a.path(), b.path());
        let name = a.path().file_name().unwrap().to_str().unwrap().to_owned();
        assert_eq!(owner_pid(&name), Some(std::process::id()));
        drop((a, b));
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 0, "dropped partial files were left behind");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn a_planted_symlink_or_file_is_never_opened() {
        let dir = scratch("planted");
        let target = dir.join("target");
        fs::write(&target, b"victim").unwrap();
        let link = dir.join(".out.gguf.1.0000000000000001.part");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert_eq!(open_new(&link).unwrap_err().kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(open_new(&target).unwrap_err().kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&target).unwrap(), b"victim");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn sweep_removes_dead_owners_files_and_links_but_not_targets() {
        let dir = scratch("sweep");
        let target = dir.join("precious");
        fs::write(&target, b"keep me").unwrap();
        let dead = dir.join(format!(".m.gguf.{DEAD}.00000000000000aa.part"));
        fs::write(&dead, b"old").unwrap();
        age(&dead, Duration::from_secs(3600));
        let link = dir.join(format!(".m.gguf.{DEAD}.00000000000000bb.part"));
        std::os::unix::fs::symlink(&target, &link).unwrap();
        // The link's own mtime is "now"; a fresh file of a dead process is kept for a while.
        let fresh = dir.join(format!(".m.gguf.{DEAD}.00000000000000cc.part"));
        fs::write(&fresh, b"fresh").unwrap();
        // pid 1 is alive: its file stays however old.
        let alive = dir.join(".m.gguf.1.00000000000000dd.part");
        fs::write(&alive, b"alive").unwrap();
        age(&alive, Duration::from_secs(3 * 24 * 3600));
        let other = dir.join(".m.gguf.part");
        fs::write(&other, b"not ours").unwrap();
        age(&other, Duration::from_secs(3 * 24 * 3600));

        assert_eq!(sweep(&dir), 1);
        assert!(!dead.exists());
        assert!(fresh.exists() && alive.exists() && other.exists());
        assert!(fs::symlink_metadata(&link).is_ok(), "a fresh link is kept too");
        // Backdate the link itself (std has no lutimes; `touch -h` changes the link, not the
        // target): now it is stale, and only the link goes.
        let status = std::process::Command::new("touch").args(["-h", "-d", "2000-01-01"]).arg(&link).status().unwrap();
        assert!(status.success());
        assert_eq!(sweep(&dir), 1);
        assert!(fs::symlink_metadata(&link).is_err(), "the stale link was not removed");
        assert_eq!(fs::read(&target).unwrap(), b"keep me");
        fs::remove_dir_all(&dir).unwrap();
    }
}
