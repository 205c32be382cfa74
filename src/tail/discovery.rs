//! discovery: which files exist — the path, its rotated siblings, nothing of firetail's
//! own — looked at with `stat` only.
//!
//! A scan holds no file open: it stats the path and every sibling whose name can be a
//! rotation of it (`access.log.0`, `access.log.1`, `access.log-20261126`), skips
//! compressed ones (they cannot be read as lines) and firetail's own checkpoint, temp
//! and dead-letter files whatever their names, and returns each inode once. The
//! follower opens only the few candidates that can matter, one at a time. A symlinked
//! path is followed: its target's directory is scanned (and watched) too.

use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::config::parent_dir;

/// A file that may matter: the path or a rotated sibling, as `stat` saw it.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub path: PathBuf,
    pub meta: Metadata,
}

impl Candidate {
    pub fn inode(&self) -> (u64, u64) {
        (self.meta.dev(), self.meta.ino())
    }

    /// Older first: by modification time (the last write), then by the rotation suffix
    /// (`access.log.1` is older than `access.log.0`; `-20261125` older than `-20261126`).
    pub fn rotation_order(&self) -> (i64, i64, i64, String) {
        let name = self.path.file_name().unwrap_or_default().to_string_lossy();
        // The rotation number: the last dot-separated part that is one, so the
        // extension-last form (`app.1.log`) counts like `app.log.1`.
        let numeric = name
            .rsplit('.')
            .find_map(|s| s.parse::<i64>().ok())
            .map_or(0, |n| -n);
        (
            self.meta.mtime(),
            self.meta.mtime_nsec(),
            numeric,
            name.into_owned(),
        )
    }
}

/// Nanoseconds since the epoch of a file's last modification.
pub fn mtime_ns(meta: &Metadata) -> u64 {
    (meta.mtime().max(0) as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(meta.mtime_nsec().max(0) as u64)
}

/// What is at the path now.
#[derive(Debug)]
pub enum AtPath {
    Missing,
    Regular(Metadata),
    /// A FIFO, socket, device or directory: never opened (a FIFO would block).
    NotRegular(&'static str),
}

/// What kind of file `meta` describes, for messages.
pub fn kind(meta: &Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a named pipe (FIFO)"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else {
        "not a regular file"
    }
}

/// The path and where its siblings are; firetail's own files.
#[derive(Debug)]
pub struct Scope {
    path: PathBuf,
    /// firetail's own files (checkpoint, dead-letter), their directories resolved;
    /// anything named like them plus a suffix (`.tmp`, `.1`, `.corrupt-…`) is theirs too.
    own: Vec<PathBuf>,
}

impl Scope {
    pub fn new(path: &Path, own: &[PathBuf]) -> Scope {
        Scope {
            path: path.to_path_buf(),
            own: own.iter().map(|p| resolved(p)).collect(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stats the path (following a symlink), never opening it.
    pub fn look(&self) -> io::Result<AtPath> {
        match std::fs::metadata(&self.path) {
            Ok(m) if m.is_file() => Ok(AtPath::Regular(m)),
            Ok(m) => Ok(AtPath::NotRegular(kind(&m))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(AtPath::Missing),
            Err(e) => Err(e),
        }
    }

    /// The directories to scan and watch, with the file name rotations start from: the
    /// path's own, and its symlink target's when it is a link.
    pub fn dirs(&self) -> Vec<(PathBuf, String)> {
        let mut dirs = vec![split(&self.path)];
        // Called on every wake-up: one `lstat` when the path is no link, rather than
        // resolving every component of it twice.
        let is_link = std::fs::symlink_metadata(&self.path).is_ok_and(|m| m.is_symlink());
        if !is_link {
            return dirs;
        }
        if let Ok(target) = std::fs::canonicalize(&self.path) {
            let t = split(&target);
            if std::fs::canonicalize(&dirs[0].0).ok().as_ref() != Some(&t.0) || t.1 != dirs[0].1 {
                dirs.push(t);
            }
        }
        dirs
    }

    /// The path (first, when it is a regular file) and its rotated siblings, each inode
    /// once. Holds no file open.
    pub fn scan(&self) -> io::Result<Vec<Candidate>> {
        let mut out: Vec<Candidate> = Vec::new();
        if let Ok(AtPath::Regular(meta)) = self.look() {
            out.push(Candidate {
                path: self.path.clone(),
                meta,
            });
        }
        for (dir, name) in self.dirs() {
            let real_dir = std::fs::canonicalize(&dir).unwrap_or_else(|_| dir.clone());
            for entry in std::fs::read_dir(&dir)? {
                let file_name = entry?.file_name().to_string_lossy().into_owned();
                if !is_sibling_name(&file_name, &name) || self.is_own(&real_dir, &file_name) {
                    continue;
                }
                let path = dir.join(&file_name);
                // Gone since it was listed (renamed or deleted): the next scan sees it
                // under its new name.
                let Ok(meta) = std::fs::metadata(&path) else {
                    continue;
                };
                let c = Candidate { path, meta };
                if c.meta.is_file() && !out.iter().any(|o| o.inode() == c.inode()) {
                    out.push(c);
                }
            }
        }
        Ok(out)
    }

    /// True for firetail's own files, and names made of them plus a suffix, in
    /// `real_dir` (a resolved directory).
    pub fn is_own(&self, real_dir: &Path, name: &str) -> bool {
        self.own.iter().any(|own| {
            own.parent() == Some(real_dir)
                && own.file_name().is_some_and(|o| {
                    let o = o.to_string_lossy();
                    name == o || name.starts_with(&format!("{o}."))
                })
        })
    }
}

fn split(path: &Path) -> (PathBuf, String) {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    (parent_dir(path).to_path_buf(), name.into_owned())
}

/// `path` with its directory resolved (the file itself need not exist).
fn resolved(path: &Path) -> PathBuf {
    let (dir, name) = split(path);
    std::fs::canonicalize(&dir).unwrap_or(dir).join(name)
}

/// Any name the follower of `base` looks at as a possible rotation of it:
/// `access.log.1`, `access.log-20261126`, anything else after a `.` or `-`, and the
/// forms of [`is_rotation_of`]; never a compressed one.
pub fn is_sibling_name(file_name: &str, base: &str) -> bool {
    if is_compressed(file_name) {
        return false;
    }
    match file_name.strip_prefix(base) {
        Some(rest) => rest.starts_with('.') || rest.starts_with('-'),
        None => is_rotation_of(file_name, base),
    }
}

/// Exactly the names logrotate gives a rotation of `base`, for a glob that matches
/// both: `access.log.1`, `access.log-20261126`, and with `extension .log`
/// `app.1.log` and (`dateext`) `app-20261126.log` of `app.log`. A date is digits,
/// `-` and `_`; `app-worker.log` is another app's log, not a rotation of `app.log`.
pub fn is_rotation_of(file_name: &str, base: &str) -> bool {
    if is_compressed(file_name) {
        return false;
    }
    if let Some(rest) = file_name.strip_prefix(base) {
        return suffix_is(rest, '.', is_number) || suffix_is(rest, '-', is_date);
    }
    let Some(dot) = base.rfind('.').filter(|&i| i > 0) else {
        return false;
    };
    let (stem, ext) = base.split_at(dot);
    let Some(middle) = file_name
        .strip_prefix(stem)
        .and_then(|r| r.strip_suffix(ext))
    else {
        return false;
    };
    suffix_is(middle, '.', is_number) || suffix_is(middle, '-', is_date)
}

fn suffix_is(rest: &str, sep: char, what: fn(&str) -> bool) -> bool {
    rest.strip_prefix(sep).is_some_and(what)
}

fn is_number(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn is_date(s: &str) -> bool {
    s.bytes().any(|b| b.is_ascii_digit())
        && s.bytes()
            .all(|b| b.is_ascii_digit() || b == b'-' || b == b'_')
}

pub fn is_compressed(name: &str) -> bool {
    [".gz", ".bz2", ".xz", ".zst", ".zip", ".lz4", ".z", ".Z"]
        .iter()
        .any(|ext| name.ends_with(ext))
}

/// Opens a file for reading without ever blocking (a FIFO swapped in after the `stat`
/// would block `open` itself), and returns it only if it is a regular file.
pub fn open_regular(path: &Path) -> io::Result<Result<(File, Metadata), &'static str>> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    Ok(if meta.is_file() {
        Ok((file, meta))
    } else {
        Err(kind(&meta))
    })
}

/// True for "too many open files" (the process's or the system's limit).
pub fn is_fd_exhaustion(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}

/// Raises the soft limit on open files to the hard one and logs both: rotated files
/// kept open for late writers, and a storm of rotations, need descriptors, and the
/// usual soft limit (1,024) is far below what the hard limit allows.
pub fn raise_nofile_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        tracing::warn!(error = %io::Error::last_os_error(), "Cannot read the open-files limit.");
        return;
    }
    let soft = lim.rlim_cur;
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            tracing::warn!(soft, hard = lim.rlim_max, error = %io::Error::last_os_error(), "Cannot raise the soft open-files limit to the hard one.");
            return;
        }
    }
    tracing::info!(
        soft_before = soft,
        soft = lim.rlim_cur,
        hard = lim.rlim_max,
        "Open-files limit."
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn siblings_are_rotations_of_the_name_and_never_compressed() {
        assert!(is_sibling_name("access.log.1", "access.log"));
        assert!(is_sibling_name("access.log-20261126", "access.log"));
        assert!(!is_sibling_name("access.log.2.gz", "access.log"));
        assert!(!is_sibling_name("access.log", "access.log"));
        assert!(!is_sibling_name("access.logger", "access.log"));
    }

    #[test]
    fn dateext_with_the_extension_is_a_sibling_and_another_apps_log_is_not() {
        assert!(is_sibling_name("app-20261207.log", "app.log"));
        assert!(is_sibling_name("app-2026-12-07_13.log", "app.log"));
        assert!(!is_sibling_name("app-worker.log", "app.log"));
        assert!(!is_sibling_name("app-.log", "app.log"));
        assert!(!is_sibling_name("app-20261207.txt", "app.log"));
        assert!(!is_sibling_name("app-20261207.log.gz", "app.log"));
        assert!(!is_sibling_name("xapp-20261207.log", "app.log"));
        assert!(is_sibling_name("app.1.log", "app.log"));
    }

    #[test]
    fn a_rotation_is_only_what_logrotate_names_one() {
        for name in [
            "app.log.1",
            "app.log-20261207",
            "app-20261207.log",
            "app.2.log",
            "app-20261207",
        ] {
            let base = if name.contains(".log") {
                "app.log"
            } else {
                "app"
            };
            assert!(is_rotation_of(name, base), "{name} of {base}");
        }
        for (name, base) in [
            ("app-worker.log", "app.log"),
            ("app-worker", "app"),
            ("app.log.old", "app.log"),
            ("app.log.1.gz", "app.log"),
            ("app.log", "app.log"),
            ("app.logx.1", "app.log"),
        ] {
            assert!(!is_rotation_of(name, base), "{name} of {base}");
        }
    }

    #[test]
    fn own_files_are_never_candidates_whatever_their_names() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("access.log");
        for name in [
            "access.log",
            "access.log.1",
            "access.log.ckpt",
            "access.log.ckpt.tmp",
        ] {
            std::fs::write(dir.path().join(name), b"x\n").unwrap();
        }
        std::fs::write(dir.path().join("access.log.dead"), b"x\n").unwrap();
        std::fs::write(dir.path().join("access.log.dead.1"), b"x\n").unwrap();
        let own = [
            dir.path().join("access.log.ckpt"),
            dir.path().join("access.log.dead"),
        ];
        let scope = Scope::new(&log, &own);
        let mut names: Vec<String> = scope
            .scan()
            .unwrap()
            .iter()
            .map(|c| c.path.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["access.log", "access.log.1"]);
    }
}
