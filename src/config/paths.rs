//! Where firetail reads and writes: the log path must be (or become) a regular file,
//! and the checkpoint and dead-letter files must be writable, all checked at start.

use std::path::{Path, PathBuf};

use super::values::{Given, Origin};
use super::{ConfigError, SourceConfig};

/// The file itself may not exist yet (it is waited for), but its directory must, and
/// what is there must be a regular file. The type comes from `metadata` only: opening
/// a FIFO would block until a writer appears, and reading a device never ends.
pub(super) fn check_log_path(path: &Path, origin: &Origin) -> Result<PathBuf, ConfigError> {
    log_path_problem(path).map_err(|p| origin.bad(p))?;
    Ok(path.to_path_buf())
}

/// [`check_log_path`]'s rules, as the sentence saying which one `path` breaks.
pub(super) fn log_path_problem(path: &Path) -> Result<(), String> {
    if path.as_os_str().is_empty() {
        return Err("must not be empty".into());
    }
    if path.file_name().is_none() {
        return Err(format!("{} does not name a file", path.display()));
    }
    if let Ok(meta) = std::fs::metadata(path) {
        if let Some(kind) = not_a_regular_file(&meta.file_type()) {
            return Err(format!(
                "{} is {kind}, not a regular file; give the log file itself",
                path.display()
            ));
        }
    }
    dir_problem(parent_dir(path))
}

/// The directory a log file (or every file a pattern matches) lives in must exist now:
/// it is what inotify watches.
pub(super) fn dir_problem(dir: &Path) -> Result<(), String> {
    if dir.is_dir() {
        Ok(())
    } else {
        Err(format!("the directory {} does not exist", dir.display()))
    }
}

/// What a path is when it is not a regular file, in words for an error message.
pub fn not_a_regular_file(t: &std::fs::FileType) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    if t.is_file() {
        None
    } else if t.is_dir() {
        Some("a directory")
    } else if t.is_fifo() {
        Some("a FIFO (named pipe)")
    } else if t.is_socket() {
        Some("a socket")
    } else if t.is_char_device() || t.is_block_device() {
        Some("a device")
    } else {
        Some("not a regular file")
    }
}

/// The checkpoint and dead-letter paths, each proven writable, and none of them a file
/// a source follows. The defaults sit in the first source's directory: named after its
/// file (`.firetail-access.log.json`, as with one source), or after the source when
/// that is a pattern, whose text would put a `*` in a file name.
pub(super) fn side_files(
    given: &Given,
    sources: &[SourceConfig],
) -> Result<(PathBuf, PathBuf), ConfigError> {
    let pick = |id: &str, flag: &str, suffix: &str| match given.path(id) {
        Some(p) => p,
        None => (
            own_file(&sources[0], suffix),
            Origin::Flag(flag.to_string()),
        ),
    };
    let (checkpoint, cp_origin) = pick("checkpoint", "--checkpoint", ".json");
    check_writable_location(&cp_origin, &checkpoint)?;
    let (dead_letter, dl_origin) = pick("dead_letter", "--dead-letter", ".dead.jsonl");
    check_writable_location(&dl_origin, &dead_letter)?;
    let followed = |f: &Path| sources.iter().any(|s| s.path == f);
    let apart =
        "the log file, the checkpoint and the dead-letter file must be three different files";
    if checkpoint == dead_letter || followed(&checkpoint) {
        return Err(cp_origin.bad(apart));
    }
    if followed(&dead_letter) {
        return Err(dl_origin.bad(apart));
    }
    for (file, origin) in [(&checkpoint, &cp_origin), (&dead_letter, &dl_origin)] {
        if let Some(s) = sources.iter().find(|s| s.is_glob() && s.matches(file)) {
            return Err(origin.bad(format!(
                "{} matches the pattern {} of source {:?}; firetail's own files must not be followed",
                file.display(),
                s.path.display(),
                s.name
            )));
        }
    }
    Ok((checkpoint, dead_letter))
}

fn own_file(first: &SourceConfig, suffix: &str) -> PathBuf {
    if first.is_glob() {
        let name = format!(".firetail-{}{suffix}", first.name);
        parent_dir(&first.path).join(name)
    } else {
        beside(&first.path, ".firetail-", suffix)
    }
}

/// `.firetail-<file name><suffix>` in the log file's directory.
pub(super) fn beside(path: &Path, prefix: &str, suffix: &str) -> PathBuf {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    parent_dir(path).join(format!("{prefix}{name}{suffix}"))
}

/// The directory a relative bare file name lives in is the current one.
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Proves the location is writable now by creating and removing a probe file beside it,
/// so an unwritable emptyDir is exit 2 at start rather than data at risk at the first
/// checkpoint or dead letter.
pub(super) fn check_writable_location(origin: &Origin, file: &Path) -> Result<(), ConfigError> {
    if file.is_dir() {
        return Err(origin.bad(format!(
            "{} is a directory; give a file path",
            file.display()
        )));
    }
    let dir = parent_dir(file);
    if !dir.is_dir() {
        return Err(origin.bad(format!("the directory {} does not exist", dir.display())));
    }
    let probe = dir.join(format!(".firetail-probe-{}", std::process::id()));
    match std::fs::File::create(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(origin.bad(format!("cannot write in {}: {e}", dir.display()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_regular_file_is_a_log_file() {
        let dir = tempfile::tempdir().unwrap();
        let o = Origin::Env("FIRETAIL_PATH".into());
        let err = check_log_path(dir.path(), &o).unwrap_err();
        assert_eq!(err.name, "FIRETAIL_PATH");
        assert!(err.problem.contains("a directory"), "{err}");
        let err = check_log_path(Path::new("/dev/null"), &o).unwrap_err();
        assert!(err.problem.contains("a device"), "{err}");
        let fifo = dir.path().join("pipe");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: mkfifo on a NUL-terminated path we own.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let err = check_log_path(&fifo, &o).unwrap_err();
        assert!(err.problem.contains("FIFO"), "{err}");
    }

    #[test]
    fn a_missing_directory_is_an_error_but_a_missing_file_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let o = Origin::Flag("--path".into());
        assert!(check_log_path(&dir.path().join("later.log"), &o).is_ok());
        let err = check_log_path(&dir.path().join("nope/access.log"), &o).unwrap_err();
        assert!(err.problem.contains("does not exist"), "{err}");
    }
}
