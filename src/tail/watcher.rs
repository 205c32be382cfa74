//! watcher: inotify on the path's directory and, for a symlinked path, its target's (the
//! file itself may not exist yet, and rotation replaces it).
//!
//! Only events about the log file and its rotated siblings count: the app's other
//! files, and firetail's own checkpoint and dead-letter writes beside it, do not.
//! Failure is not fatal: the slow poll still finds everything.
//!
//! The descriptor is read by the runtime thread itself, and is in its epoll set only
//! while the tail waits for a change: while the tail reads or waits for its next read
//! (`read_every`), events stay in the kernel's queue, where a write's event merges into
//! an identical one already queued (inotify(7)) and wakes nobody. An app that writes a
//! line at a time, hundreds of times a second, then costs one wake-up per read rather
//! than one per write (measured: a thread reading every event cost a fifth of
//! firetail's CPU at 5,000 lines/s).

use std::io;
use std::os::fd::AsRawFd;
use std::path::PathBuf;

use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask};
use tokio::io::unix::AsyncFd;

/// What can change a file or which file a name holds: writes and truncations, a file
/// closed, created, deleted or renamed, the directory itself deleted or renamed. Not
/// opens or reads (firetail's own included).
fn mask() -> WatchMask {
    WatchMask::MODIFY
        | WatchMask::ATTRIB
        | WatchMask::CLOSE_WRITE
        | WatchMask::CREATE
        | WatchMask::DELETE
        | WatchMask::MOVED_FROM
        | WatchMask::MOVED_TO
        | WatchMask::DELETE_SELF
        | WatchMask::MOVE_SELF
}

pub(super) struct Watch {
    inotify: Option<Inotify>,
    dirs: Vec<(PathBuf, String)>,
    watches: Vec<(PathBuf, WatchDescriptor)>,
    /// The file names whose events matter (the path's, the symlink target's); rotated
    /// siblings start with them.
    names: Vec<String>,
    /// A glob source's file-name patterns: events about names they match matter too.
    patterns: Vec<glob::Pattern>,
    /// A file was created or moved in under a name that matters, or events were lost,
    /// since [`Watch::take_created`]: a glob may match a new file.
    created: bool,
    failed: bool,
    buf: Vec<u8>,
}

impl Watch {
    pub(super) fn new() -> Watch {
        Watch {
            inotify: None,
            dirs: Vec::new(),
            watches: Vec::new(),
            names: Vec::new(),
            patterns: Vec::new(),
            created: false,
            failed: false,
            buf: vec![0; 4096],
        }
    }

    pub(super) fn active(&self) -> bool {
        self.inotify.is_some() && !self.failed
    }

    /// Watches `dirs` (a re-pointed symlink can bring a new one).
    pub(super) fn update(&mut self, dirs: &[(PathBuf, String)]) {
        if self.dirs == dirs {
            return;
        }
        // A name with a wildcard is a glob source's pattern (the configuration allows
        // wildcards in the last component only, so a file name never holds one).
        let (patterns, names): (Vec<&String>, Vec<&String>) =
            dirs.iter().map(|(_, n)| n).partition(|n| is_pattern(n));
        self.names = names.into_iter().cloned().collect();
        self.patterns = patterns
            .into_iter()
            .filter_map(|p| glob::Pattern::new(p).ok())
            .collect();
        self.dirs = dirs.to_vec();
        if self.inotify.is_none() {
            match Inotify::init() {
                Ok(i) => self.inotify = Some(i),
                Err(e) => {
                    tracing::warn!(error = %e, "Cannot use inotify; falling back to polling every second.");
                    self.failed = true;
                    return;
                }
            }
        }
        let mut watches = self.inotify.as_ref().expect("created above").watches();
        let new: Vec<&PathBuf> = dirs.iter().map(|(d, _)| d).collect();
        self.watches.retain(|(d, wd)| {
            let keep = new.contains(&d);
            if !keep {
                let _ = watches.remove(wd.clone());
            }
            keep
        });
        self.failed = false;
        for d in new {
            if self.watches.iter().any(|(w, _)| w == d) {
                continue;
            }
            match watches.add(d, mask()) {
                Ok(wd) => self.watches.push((d.clone(), wd)),
                Err(e) => {
                    tracing::warn!(dir = %d.display(), error = %e, "Cannot watch the directory with inotify; falling back to polling every second.");
                    self.failed = true;
                }
            }
        }
    }

    /// Waits for an event about the watched names (forever without inotify). Events
    /// already queued count at once.
    pub(super) async fn changed(&mut self) {
        let Some(fd) = self.inotify.as_ref().map(AsRawFd::as_raw_fd) else {
            return std::future::pending().await;
        };
        loop {
            match self.read_queued() {
                Ok(true) => return,
                Ok(false) => {}
                Err(e) => return self.give_up(&e).await,
            }
            // Nothing of ours queued: in the epoll set until the next event only.
            // SAFETY: a bare descriptor number, open for as long as `registered` lives
            // (the `Inotify` that owns it is only dropped in `give_up`, after it);
            // leaving the epoll set does not close it.
            let waited =
                match unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
                {
                    Ok(registered) => registered
                        .readable()
                        .await
                        .map(|mut ready| ready.clear_ready()),
                    Err(e) => Err(e.into_parts().1),
                };
            if let Err(e) = waited {
                return self.give_up(&e).await;
            }
        }
    }

    /// Empties the queue. True when an event was about a watched name, about a
    /// directory itself, or an overflow (events were lost: look at everything).
    fn read_queued(&mut self) -> io::Result<bool> {
        let Some(inotify) = self.inotify.as_mut() else {
            return Ok(false);
        };
        let mut ours = false;
        loop {
            let events = match inotify.read_events(&mut self.buf) {
                Ok(events) => events,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(ours),
                Err(e) => return Err(e),
            };
            for event in events {
                let overflow = event.mask.contains(EventMask::Q_OVERFLOW);
                let matters = overflow
                    || event.name.is_none_or(|f| {
                        let matched = f.to_str().is_some_and(|f| {
                            self.patterns
                                .iter()
                                .any(|p| p.matches_with(f, crate::config::MATCH))
                        });
                        let f = f.as_encoded_bytes();
                        matched || self.names.iter().any(|n| f.starts_with(n.as_bytes()))
                    });
                ours |= matters;
                self.created |= overflow
                    || (matters
                        && event
                            .mask
                            .intersects(EventMask::CREATE | EventMask::MOVED_TO));
            }
        }
    }

    /// True once after a file was created or moved in under a name that matters (or
    /// events were lost): a glob source may have a new file to follow.
    pub(super) fn take_created(&mut self) -> bool {
        std::mem::take(&mut self.created)
    }

    /// Reading inotify failed: the slow poll, every second, takes over.
    async fn give_up(&mut self, e: &io::Error) {
        tracing::warn!(error = %e, "Cannot read inotify events; falling back to polling every second.");
        self.failed = true;
        self.inotify = None;
        self.watches.clear();
        std::future::pending().await
    }
}

fn is_pattern(name: &str) -> bool {
    name.bytes().any(|b| matches!(b, b'*' | b'?' | b'['))
}
