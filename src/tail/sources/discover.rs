//! discover: which paths a glob matches that no follower follows yet, and which of
//! them get one.
//!
//! A matched name is skipped when it is firetail's own, compressed, or a rotation of
//! another matched or followed name, or of any source's literal path (`access.log.1`,
//! `app-20261207.log` of `app.log`: that file is its follower's). A file is followed once, by identity: one open in any
//! follower (a rotated file renamed to a name the glob matches), or read and let go,
//! is not shipped again — a file let go that grew since is followed from where reading
//! stopped. Beyond `--max-files` open files a new path is not opened: a WARN names the
//! source, the count and the first such file, and it is followed once files are let go.

use std::collections::HashSet;
use std::io;
use std::os::unix::fs::{DirEntryExt, MetadataExt};
use std::path::{Path, PathBuf};

use tokio::time::Instant;

use super::{Followed, Glob, Tail};
use crate::config::{parent_dir, ReadFrom, MATCH};
use crate::progress::FileEntry;
use crate::tail::discovery::{
    is_compressed, is_fd_exhaustion, is_rotation_of, is_sibling_name, mtime_ns, open_regular, Scope,
};
use crate::tail::follower::{FollowSettings, Follower};

/// What a matched file is to this tail, by identity.
enum Seen {
    New,
    /// Open in a follower, or let go and unchanged since: not followed again.
    Followed,
    /// Let go, and grown since: followed on from this entry's offset.
    ReadTo(FileEntry),
}

impl Tail {
    pub(super) fn push(&mut self, source: usize, follower: Follower) {
        self.followers.push(Followed {
            source,
            follower,
            finished: false,
        });
    }

    pub(super) fn new_follower(
        &self,
        source: usize,
        path: &Path,
        entries: &[FileEntry],
        read_from: ReadFrom,
    ) -> io::Result<Follower> {
        let spec = &self.sources[source].spec;
        let settings = FollowSettings {
            path: path.to_path_buf(),
            read_from,
            rotate_wait: self.rotate_wait,
            own_files: self.own_files.clone(),
            source: spec.id,
            source_name: spec.name.clone(),
        };
        Follower::new(
            &settings,
            entries,
            self.progress.clone(),
            self.metrics.clone(),
            self.health.clone(),
        )
    }

    /// Follows every new path each glob matches, starting files with no entry per
    /// `read_from`.
    pub(super) fn discover_all(&mut self, read_from: ReadFrom) {
        self.discover = false;
        self.last_discovery = Instant::now();
        for i in 0..self.sources.len() {
            if self.sources[i].glob.is_some() {
                self.discover_glob(i, read_from);
            }
        }
    }

    fn discover_glob(&mut self, source: usize, read_from: ReadFrom) {
        let name = self.sources[source].spec.name.clone();
        let Some(names) = self.list(source) else {
            return;
        };
        let dir = self.sources[source]
            .glob
            .as_ref()
            .expect("a glob")
            .dir
            .clone();
        let followed: HashSet<PathBuf> = self
            .followers
            .iter()
            .filter(|f| f.source == source)
            .map(|f| f.follower.path().to_path_buf())
            .collect();
        let mut bases: Vec<String> = names.clone();
        let literals = self.literals.iter().filter(|p| parent_dir(p) == dir);
        bases.extend(
            followed
                .iter()
                .chain(literals)
                .filter_map(|p| p.file_name()?.to_str().map(str::to_string)),
        );
        let mut open: HashSet<(u64, u64)> = self
            .followers
            .iter()
            .flat_map(|f| f.follower.open_inodes())
            .collect();
        let mut over_cap: Vec<PathBuf> = Vec::new();
        self.not_followed.retain(|_, s| *s != source);
        self.overlaps.retain(|p| {
            p.parent() != Some(&dir)
                || p.file_name()
                    .is_some_and(|n| names.iter().any(|m| n == m.as_str()))
        });
        for file_name in &names {
            let path = dir.join(file_name);
            if followed.contains(&path)
                || self.claimed_earlier(source, &dir, file_name, &path)
                || bases
                    .iter()
                    .any(|b| b != file_name && is_rotation_of(file_name, b))
            {
                continue;
            }
            let Ok(meta) = std::fs::metadata(&path) else {
                continue; // gone since listed: nothing to follow
            };
            if !meta.is_file() || open.contains(&(meta.dev(), meta.ino())) {
                continue;
            }
            let entries = match self.seen(source, &path, &meta) {
                Seen::Followed => continue,
                Seen::ReadTo(e) => vec![e],
                Seen::New => Vec::new(),
            };
            if self.at_cap() {
                over_cap.push(path);
                continue;
            }
            self.let_go.remove(&(meta.dev(), meta.ino()));
            match self.new_follower(source, &path, &entries, read_from) {
                Ok(mut f) => {
                    if entries.is_empty() && !self.first_look {
                        // Rotated before the path was first listed: new, unless
                        // another follower has it open or read it and let it go.
                        let let_go = self.let_go.iter().map(|(i, l)| (*i, l.known.clone()));
                        let read = self.followers.iter().flat_map(|o| {
                            o.follower
                                .known
                                .iter()
                                .filter(|(_, k)| k.read_to.is_some())
                                .map(|(i, k)| (*i, k.clone()))
                        });
                        let known: Vec<_> = let_go.chain(read).collect();
                        f.siblings_are_new(&open, known);
                    } else if entries.is_empty() && self.resumed {
                        self.warn_old_siblings(&name, &path, &f);
                    }
                    // Another name of the same file (a hard link) is not a second file.
                    open.extend(f.open_inodes());
                    self.push(source, f);
                    self.publish_open_files();
                }
                Err(e) => {
                    tracing::warn!(source = %name, file = %path.display(), error = %e, "Cannot start following a file the glob matches; retrying at the next scan.");
                }
            }
        }
        if let Some(first) = over_cap.first() {
            let count = over_cap.len();
            if let Some(times) = self.over_cap_log.note(1) {
                tracing::warn!(source = %name, not_followed = count, first = %first.display(), max_files = self.max_files, open_files = self.open_files(), warnings_since_last = times, "More files match than --max-files allows open at once; these are not followed until files are let go.");
            }
        }
        for path in over_cap {
            self.not_followed.insert(path, source);
        }
    }

    /// True when a source before this one (in the configuration's order, any lane)
    /// matches the file too: that one follows it. An ERROR names both, once per file.
    fn claimed_earlier(&mut self, source: usize, dir: &Path, file_name: &str, path: &Path) -> bool {
        let me = &self.sources[source].spec;
        let Some(first) = self
            .claims
            .iter()
            .find(|c| c.id < me.id && c.dir == dir && c.pattern.matches_with(file_name, MATCH))
        else {
            return false;
        };
        if self.overlaps.insert(path.to_path_buf()) {
            tracing::error!(file = %path.display(), source = %first.name, also = %me.name, "A new file matches the globs of two sources; only the first in the configuration's order follows it.");
        }
        true
    }

    /// A path without a checkpoint entry at a restart whose follower found rotated
    /// siblings no follower knows: they may have been created and rotated while
    /// firetail was down, but a restart cannot tell them from files shipped before
    /// and dropped from the checkpoint, so the follower takes them for older files.
    /// Not silent: a WARN names the path and counts them.
    fn warn_old_siblings(&self, source: &str, path: &Path, f: &Follower) {
        let mut old: Vec<(u64, u64)> = f
            .known
            .keys()
            .filter(|inode| {
                !self.let_go.contains_key(*inode)
                    && !self.followers.iter().any(|o| {
                        o.follower.known.contains_key(*inode)
                            || o.follower.open_inodes().any(|i| i == **inode)
                    })
            })
            .copied()
            .collect();
        old.sort();
        if !old.is_empty() {
            tracing::warn!(source, file = %path.display(), rotated_files = old.len(), "A file the glob matches was first seen with rotated files beside it that no follower read; they are taken for files older than firetail and not shipped.");
        }
    }

    /// The names in the glob's directory it matches, not firetail's own nor
    /// compressed, sorted; forgets let-go files no longer in the directory. None (a
    /// WARN, and a problem for readiness) when the directory cannot be listed.
    fn list(&mut self, source: usize) -> Option<Vec<String>> {
        let src = &self.sources[source];
        let g = src.glob.as_ref().expect("a glob");
        let listed = std::fs::read_dir(&g.dir).and_then(|rd| {
            rd.map(|e| e.map(|e| (e.file_name(), e.ino())))
                .collect::<io::Result<Vec<_>>>()
        });
        let entries = match listed {
            Ok(l) => {
                self.health.set_problem(&src.spec.name, &g.dir, None);
                l
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.health.set_problem(&src.spec.name, &g.dir, None);
                Vec::new()
            }
            Err(e) if is_fd_exhaustion(&e) => {
                // Not the directory's fault: retried at the next poll, like any open.
                self.discover = true;
                self.metrics.file_open_failures.inc();
                if let Some(times) = self.fd_log.note(1) {
                    tracing::warn!(source = %src.spec.name, dir = %g.dir.display(), error = %e, failures_since_last = times, "No file descriptor free to list the directory of a glob source; retrying.");
                }
                return None;
            }
            Err(e) => {
                let why = format!("cannot be listed: {e}");
                if !self.health.set_problem(&src.spec.name, &g.dir, Some(why)) {
                    tracing::error!(source = %src.spec.name, dir = %g.dir.display(), error = %e, "Cannot list the directory of a glob source; not ready until it can be listed.");
                }
                return None;
            }
        };
        let real_dir = std::fs::canonicalize(&g.dir).unwrap_or_else(|_| g.dir.clone());
        let inodes: HashSet<u64> = entries.iter().map(|(_, ino)| *ino).collect();
        let mut names: Vec<String> = entries
            .into_iter()
            .filter_map(|(n, _)| n.into_string().ok())
            .filter(|n| {
                g.pattern.matches_with(n, MATCH)
                    && !is_compressed(n)
                    && !g.scope.is_own(&real_dir, n)
            })
            .collect();
        names.sort();
        let dir = g.dir.clone();
        self.let_go
            .retain(|(_, ino), l| l.dir != dir || inodes.contains(ino));
        Some(names)
    }

    /// Whether the file at `path` was followed before, by identity (see [`Seen`]).
    fn seen(&self, source: usize, path: &Path, meta: &std::fs::Metadata) -> Seen {
        let inode = (meta.dev(), meta.ino());
        let known = self
            .followers
            .iter()
            .filter_map(|f| f.follower.known.get(&inode))
            .chain(self.let_go.get(&inode).map(|l| &l.known));
        let mut read_to = None;
        for k in known {
            if k.size == meta.len() && k.mtime_ns == mtime_ns(meta) {
                return Seen::Followed;
            }
            read_to = read_to.or(k.read_to.clone());
        }
        let Some((identity, offset)) = read_to else {
            return Seen::New;
        };
        // The inode may hold another file now: only the same first bytes make it the
        // file let go.
        let same = match open_regular(path) {
            Ok(Ok((file, meta))) => {
                meta.len() >= offset && identity.matches(&file, &meta).unwrap_or(false)
            }
            _ => false,
        };
        if !same {
            return Seen::New;
        }
        Seen::ReadTo(FileEntry {
            source: self.sources[source].spec.name.clone(),
            followed: path.to_path_buf(),
            path: path.to_path_buf(),
            identity,
            offset,
            mtime_ns: Some(mtime_ns(meta)),
        })
    }
}

/// An entry of a checkpoint written before sources had names (one `--path`): the
/// literal path's file or one of its rotated siblings.
pub(super) fn unnamed_of(e: &FileEntry, path: &Path) -> bool {
    let sibling = |p: &Path| {
        parent_dir(p) == parent_dir(path)
            && match (p.file_name(), path.file_name()) {
                (Some(n), Some(base)) => {
                    n == base || is_sibling_name(&n.to_string_lossy(), &base.to_string_lossy())
                }
                _ => false,
            }
    };
    e.source.is_empty() && (e.followed == path || sibling(&e.path))
}

/// The directory and pattern of a glob path; None for a literal one.
pub(super) fn glob_of(path: &Path, own_files: &[PathBuf]) -> Option<Glob> {
    let name = path.file_name()?.to_str()?;
    if !name.bytes().any(|b| matches!(b, b'*' | b'?' | b'[')) {
        return None;
    }
    let pattern = glob::Pattern::new(name).ok()?;
    Some(Glob {
        dir: parent_dir(path).to_path_buf(),
        pattern,
        scope: Scope::new(path, own_files),
    })
}
