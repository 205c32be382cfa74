//! migrate: each checkpointed file placed in a configured source (docs/design.md#sources).
//!
//! Versions 1 and 2 knew one path; version 3 names each file's source and chain. On
//! start the entries are matched to the sources configured now:
//! - an old entry gets the only source when there is one; else the source whose path
//!   is the entry's path or a rotation of it (`app.log.1`, `app.log-20261126`), or
//!   whose pattern matches its file name (or the name it was rotated from);
//! - a version 3 entry keeps its source while that source still follows its chain; a
//!   source renamed or moved gives its files to the source that follows their path
//!   now, if any;
//! - an entry no source follows is dropped with a WARN naming the file and why: its
//!   offset means nothing to any follower, and a restart reads per `--read-from`.

use std::path::{Path, PathBuf};

use crate::progress::FileEntry;

/// A configured source as the checkpoint sees it: a name, and a path whose file name
/// may be a pattern (`*`, `?`, `[..]`, as a shell matches them).
struct Source<'a> {
    name: &'a str,
    path: &'a Path,
    /// The file name, when it is a pattern.
    pattern: Option<&'a str>,
}

impl<'a> Source<'a> {
    fn new(name: &'a str, path: &'a Path) -> Source<'a> {
        let pattern = path
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| n.contains(['*', '?', '[']));
        Source {
            name,
            path,
            pattern,
        }
    }

    /// The path this source's follower follows for a file at `path`, when the source
    /// matches it exactly: the literal path, or the file a pattern matched.
    fn follows(&self, path: &Path) -> bool {
        match self.pattern {
            None => self.path == path,
            Some(p) => same_dir(self.path, path) && name_of(path).is_some_and(|n| glob(p, n)),
        }
    }

    /// The chain a rotated file at `path` belongs to: the path it was rotated from
    /// (its name cut before a `.` or `-`), when this source follows that path.
    fn rotated_from(&self, path: &Path) -> Option<PathBuf> {
        let name = name_of(path)?;
        name.char_indices()
            .rev()
            .filter(|&(i, c)| i > 0 && (c == '.' || c == '-'))
            .map(|(i, _)| path.with_file_name(&name[..i]))
            .find(|base| self.follows(base))
    }

    /// The chain a file at `path` belongs to when this source is the only one: the
    /// literal path, or the file a pattern matched (or was rotated from), else the
    /// file's own path.
    fn only_chain(&self, path: &Path) -> PathBuf {
        match self.pattern {
            None => self.path.to_path_buf(),
            Some(_) => self
                .rotated_from(path)
                .filter(|_| !self.follows(path))
                .unwrap_or_else(|| path.to_path_buf()),
        }
    }
}

fn name_of(path: &Path) -> Option<&str> {
    path.file_name()?.to_str()
}

fn same_dir(a: &Path, b: &Path) -> bool {
    a.parent() == b.parent()
}

/// Places every entry in a configured source (see the module's doc); drops, with a
/// WARN, those no source follows. `sources`: each source's name and path (or glob), in
/// the configuration's order: the first source that matches a file wins, as it does
/// for a file two patterns match at run time.
pub fn migrate<S: AsRef<str>, P: AsRef<Path>>(
    entries: Vec<FileEntry>,
    sources: &[(S, P)],
) -> Vec<FileEntry> {
    let sources: Vec<Source> = sources
        .iter()
        .map(|(n, p)| Source::new(n.as_ref(), p.as_ref()))
        .collect();
    entries
        .into_iter()
        .filter_map(|e| place(e, &sources))
        .collect()
}

fn place(mut e: FileEntry, sources: &[Source]) -> Option<FileEntry> {
    if e.source.is_empty() {
        // Written before sources: one path, so the one source is its source.
        if let [only] = sources {
            e.followed = only.only_chain(&e.path);
            e.source = only.name.to_string();
            return Some(e);
        }
    } else if sources
        .iter()
        .any(|s| s.name == e.source && s.follows(&e.followed))
    {
        return Some(e);
    }
    let placed = by_path(&e.followed, sources).or_else(|| by_path(&e.path, sources));
    match placed {
        Some((source, followed)) => {
            if !e.source.is_empty() {
                tracing::warn!(file = %e.path.display(), source = %e.source, followed = %e.followed.display(), now_source = source.name, now_followed = %followed.display(), "Checkpointed file's source no longer follows it; resuming it in the source that does.");
            }
            e.source = source.name.to_string();
            e.followed = followed;
            Some(e)
        }
        None => {
            let why = if e.source.is_empty() {
                "it was written before sources existed and no configured source's path or pattern matches it".to_string()
            } else if sources.iter().any(|s| s.name == e.source) {
                format!(
                    "source {} no longer follows {}, and no other source matches it",
                    e.source,
                    e.followed.display()
                )
            } else {
                format!(
                    "source {} is no longer configured, and no other source matches it",
                    e.source
                )
            };
            tracing::warn!(file = %e.path.display(), source = %e.source, offset = e.offset, reason = %why, "Checkpointed file dropped: no source follows it. Its offset is forgotten; if a source follows it later, it is read per --read-from.");
            None
        }
    }
}

/// The first source that follows `path` itself, else the first that follows the path
/// it was rotated from; with the chain it belongs to.
fn by_path<'s, 'a>(path: &Path, sources: &'s [Source<'a>]) -> Option<(&'s Source<'a>, PathBuf)> {
    if let Some(s) = sources.iter().find(|s| s.follows(path)) {
        let followed = match s.pattern {
            None => s.path.to_path_buf(),
            Some(_) => path.to_path_buf(),
        };
        return Some((s, followed));
    }
    sources
        .iter()
        .find_map(|s| s.rotated_from(path).map(|base| (s, base)))
}

/// Whether a file name matches a source's pattern, as the configuration and the tail
/// match it ([`crate::config::MATCH`]: `*` skips hidden files, firetail's own among
/// them). A pattern the configuration would refuse matches nothing.
fn glob(pattern: &str, name: &str) -> bool {
    glob::Pattern::new(pattern).is_ok_and(|p| p.matches_with(name, crate::config::MATCH))
}

#[cfg(test)]
mod tests;
