//! sources: the tail of one lane — every file of the sources that ship to one stream,
//! each followed by its own [`Follower`] (docs/design.md#sources).
//!
//! A literal path is one follower, for as long as firetail runs. A glob (wildcards in
//! the last component) is one follower per path it matches, made when the path is first
//! seen (`discover`): at start, when inotify reports a file created or moved into the
//! directory, and on the periodic scan. One that has nothing left to do — nothing at its
//! path, every file it read read and let go — is dropped, so thousands of files coming
//! and going cost no memory; a file that comes to that path again is new.
//!
//! Fairness: a poll reads the followers round-robin, one budget each at most, and stops
//! once it has read about one budget in all ([`POLL_BUDGET`]), going on from the next
//! follower at the next poll. So a burst in one file delays another's lines by one poll
//! at most, and a poll's chunk stays about a budget, however many files there are.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::discovery::Scope;
use super::follower::{Follower, SCAN_EVERY};
use super::handle::POLL_BUDGET;
use crate::config::ReadFrom;
use crate::handover::{Line, SourceId};
use crate::health::Health;
use crate::log_throttle::LogThrottle;
use crate::metrics::Metrics;
use crate::progress::{FileEntry, FileKey, Progress};

mod counts;
mod discover;
mod let_go;

pub use counts::FileCounts;
use discover::{glob_of, unnamed_of};
use let_go::LetGo;

/// While the tail reads without a pause, globs' directories are listed this often.
const BUSY_DISCOVERY: Duration = Duration::from_secs(1);

/// The WARN about files over `--max-files` repeats at most this often.
const OVER_CAP_LOG_EVERY: Duration = Duration::from_secs(60);

/// One source of the lane.
#[derive(Debug, Clone)]
pub struct SourceSpec {
    pub id: SourceId,
    pub name: String,
    /// A literal path, or a glob in its last component.
    pub path: PathBuf,
}

/// What the tail of one lane needs to know besides the ledger.
#[derive(Debug, Clone)]
pub struct TailSettings {
    pub sources: Vec<SourceSpec>,
    pub read_from: ReadFrom,
    pub rotate_wait: Duration,
    /// firetail's own files (checkpoint, dead-letter): never shipped, whatever their
    /// names.
    pub own_files: Vec<PathBuf>,
    /// `--max-files`: files open at once over the whole tail.
    pub max_files: usize,
    /// The sources of the other lanes: a file that a glob of this tail and an earlier
    /// source (lower id) of another lane both match is that source's.
    pub others: Vec<SourceSpec>,
    /// Files open over every lane's tail (one counter shared by them all), which
    /// `max_files` bounds.
    pub open_files: Arc<AtomicUsize>,
}

/// A source as the tail follows it.
struct Source {
    spec: SourceSpec,
    /// The directory and pattern of a glob source.
    glob: Option<Glob>,
}

struct Glob {
    dir: PathBuf,
    pattern: glob::Pattern,
    /// For firetail's own files in the directory.
    scope: Scope,
}

/// A glob of any source of the process: of two that match a new file, the first in
/// the configuration's order (the lower id) follows it.
struct Claim {
    id: SourceId,
    name: String,
    dir: PathBuf,
    pattern: glob::Pattern,
}

/// A follower and the source it belongs to (an index into `Tail::sources`).
struct Followed {
    source: usize,
    follower: Follower,
    /// The drain read it to its end.
    finished: bool,
}

/// Every file of one lane's sources.
pub struct Tail {
    sources: Vec<Source>,
    followers: Vec<Followed>,
    /// The follower the next poll starts with.
    next: usize,
    read_from: ReadFrom,
    rotate_wait: Duration,
    own_files: Vec<PathBuf>,
    max_files: usize,
    /// Paths a glob matches that are not followed for `--max-files`, with their source.
    not_followed: BTreeMap<PathBuf, usize>,
    /// Files dropped followers read and let go, by (device, inode).
    let_go: HashMap<(u64, u64), LetGo>,
    /// A glob's directory is to be listed at the next poll.
    discover: bool,
    last_discovery: Instant,
    over_cap_log: LogThrottle,
    /// Files open over every lane's tail, and this tail's part of it.
    open_total: Arc<AtomicUsize>,
    published: usize,
    /// Every glob source of the process, this tail's and the other lanes'.
    claims: Vec<Claim>,
    /// The literal paths of every source of the process: a name a glob matches that is
    /// a rotation of one of them (`app-20261207.log` of `app.log`) is that source's
    /// file, followed by its follower, not a file of the glob's.
    literals: Vec<PathBuf>,
    /// Files two globs match, already reported (an ERROR once per file).
    overlaps: HashSet<PathBuf>,
    /// WARNs of directories that cannot be listed for want of descriptors: at most one
    /// per interval.
    fd_log: LogThrottle,
    counts: Arc<FileCounts>,
    /// Bytes read by dropped followers: `bytes_read` never goes back.
    bytes_dropped: u64,
    drain_discovered: bool,
    /// The last poll had more to read at once.
    busy: bool,
    /// The look at start: a path's rotated siblings present then are older than this
    /// run (a restart cannot tell those it shipped before from the others). Any path
    /// seen later had its siblings rotated while firetail ran.
    first_look: bool,
    /// Started from a checkpoint: rotated siblings of a path without an entry may be
    /// files rotated while firetail was down (see `warn_old_siblings`).
    resumed: bool,
    pub(super) progress: Arc<Progress>,
    pub(super) metrics: Arc<Metrics>,
    health: Arc<Health>,
}

impl Tail {
    /// Starts following every source in `settings`, each from its entries in
    /// `checkpoint` (the entries of every lane: those of other sources are left alone).
    /// A checkpoint with entries means firetail ran before: a file a glob matches with
    /// no entry was created while it was down and is read from 0; on a first start,
    /// every file is read per `--read-from`.
    pub fn new(
        settings: TailSettings,
        checkpoint: &[FileEntry],
        progress: Arc<Progress>,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
    ) -> io::Result<Tail> {
        let resumed = !checkpoint.is_empty();
        let mut tail = Tail {
            counts: Arc::new(FileCounts::new(&settings.sources)),
            sources: Vec::new(),
            followers: Vec::new(),
            next: 0,
            read_from: settings.read_from,
            rotate_wait: settings.rotate_wait,
            own_files: settings.own_files,
            max_files: settings.max_files.max(1),
            not_followed: BTreeMap::new(),
            let_go: HashMap::new(),
            discover: true,
            last_discovery: Instant::now(),
            over_cap_log: LogThrottle::new(OVER_CAP_LOG_EVERY),
            open_total: settings.open_files.clone(),
            published: 0,
            claims: settings
                .sources
                .iter()
                .chain(&settings.others)
                .filter_map(|s| {
                    let g = glob_of(&s.path, &[])?;
                    Some(Claim {
                        id: s.id,
                        name: s.name.clone(),
                        dir: g.dir,
                        pattern: g.pattern,
                    })
                })
                .collect(),
            literals: settings
                .sources
                .iter()
                .chain(&settings.others)
                .filter(|s| glob_of(&s.path, &[]).is_none())
                .map(|s| s.path.clone())
                .collect(),
            overlaps: HashSet::new(),
            fd_log: LogThrottle::new(OVER_CAP_LOG_EVERY),
            bytes_dropped: 0,
            drain_discovered: false,
            busy: false,
            first_look: true,
            resumed,
            progress,
            metrics,
            health,
        };
        for spec in settings.sources {
            let i = tail.sources.len();
            let glob = glob_of(&spec.path, &tail.own_files);
            let literal = glob.is_none();
            let mine: Vec<FileEntry> = checkpoint
                .iter()
                .filter(|e| e.source == spec.name || literal && unnamed_of(e, &spec.path))
                .cloned()
                .collect();
            let path = spec.path.clone();
            tail.sources.push(Source { spec, glob });
            if literal {
                // A literal path is followed whatever --max-files says: it was named.
                let f = tail.new_follower(i, &path, &mine, tail.read_from)?;
                tail.push(i, f);
                continue;
            }
            // Every chain of the checkpoint is resumed, whatever --max-files says: one
            // left out would leave the checkpoint at its next write, and be read again
            // from 0 after a restart. New paths wait while they exceed the limit.
            let mut chains: BTreeMap<PathBuf, Vec<FileEntry>> = BTreeMap::new();
            for e in mine {
                chains.entry(e.followed.clone()).or_default().push(e);
            }
            for (followed, entries) in chains {
                let f = tail.new_follower(i, &followed, &entries, ReadFrom::Beginning)?;
                tail.push(i, f);
            }
        }
        let start_from = if resumed {
            ReadFrom::Beginning
        } else {
            tail.read_from
        };
        tail.discover_all(start_from);
        tail.first_look = false;
        tail.update_counts();
        Ok(tail)
    }

    /// The counts of files followed and not followed, per source, kept current.
    pub fn counts(&self) -> Arc<FileCounts> {
        self.counts.clone()
    }

    /// Makes the next poll list the globs' directories (inotify saw a file created).
    pub fn discover_soon(&mut self) {
        self.discover = true;
    }

    /// Reads what is available: every follower once at most, round-robin, until about
    /// one budget is read. True when there may be more at once (call again).
    pub fn poll(&mut self, out: &mut Vec<Line>) -> io::Result<bool> {
        let since = self.last_discovery.elapsed();
        // While the tail reads without a pause, the shell looks at no inotify event: a
        // new file is then found by listing at most every second.
        if self.discover
            || since >= SCAN_EVERY
            || (self.busy && since >= BUSY_DISCOVERY)
            || (!self.not_followed.is_empty() && !self.at_cap())
        {
            self.discover_all(ReadFrom::Beginning);
        }
        let more = self.round(out, |f, out| f.poll(out))?;
        self.busy = more;
        self.drop_done();
        self.update_counts();
        Ok(more)
    }

    /// Drain end, one bounded step at a time: every file of every source read to its
    /// end, then partial last lines handed on. True while there is more to do.
    pub fn finish(&mut self, out: &mut Vec<Line>) -> io::Result<bool> {
        if !self.drain_discovered {
            self.drain_discovered = true;
            self.discover_all(ReadFrom::Beginning);
        }
        self.round(out, |f, out| f.finish(out))
    }

    /// One round-robin pass from `next`, skipping followers the drain finished.
    fn round(
        &mut self,
        out: &mut Vec<Line>,
        mut step: impl FnMut(&mut Follower, &mut Vec<Line>) -> io::Result<bool>,
    ) -> io::Result<bool> {
        let n = self.followers.len();
        let mut more = false;
        let mut read = 0;
        for visited in 0..n {
            let i = (self.next + visited) % n;
            if read >= POLL_BUDGET as u64 {
                self.next = i;
                return Ok(true);
            }
            let f = &mut self.followers[i];
            if f.finished {
                continue;
            }
            let before = f.follower.bytes_read();
            let again = step(&mut f.follower, out)?;
            read += f.follower.bytes_read() - before;
            more |= again;
            if self.drain_discovered && !again {
                f.finished = true;
            }
        }
        if n > 0 {
            self.next = (self.next + 1) % n;
        }
        Ok(more)
    }

    /// How many files the drain finished (every follower's, read to its end).
    pub fn files_finished(&self) -> usize {
        self.followers.iter().filter(|f| f.finished).count()
    }

    /// The files the last poll could not read for want of room in their share of the
    /// duplicate window.
    pub fn blocked(&self) -> Vec<FileKey> {
        self.followers
            .iter()
            .flat_map(|f| f.follower.blocked().iter().copied())
            .collect()
    }

    /// The keys of every file open now.
    pub fn keys(&self) -> Vec<FileKey> {
        self.followers
            .iter()
            .flat_map(|f| f.follower.keys())
            .collect()
    }

    /// Paths followed now (a follower each) over every source.
    pub fn followers(&self) -> usize {
        self.followers.len()
    }

    /// Files open now over every source.
    pub fn open_files(&self) -> usize {
        self.followers.iter().map(|f| f.follower.open_files()).sum()
    }

    /// The directories to watch, with the names (or a glob's pattern) that matter.
    pub fn watch_dirs(&self) -> Vec<(PathBuf, String)> {
        let mut dirs: Vec<(PathBuf, String)> = Vec::new();
        let globs = self.sources.iter().filter_map(|s| {
            let g = s.glob.as_ref()?;
            Some((g.dir.clone(), g.pattern.as_str().to_string()))
        });
        for d in globs.chain(self.followers.iter().flat_map(|f| f.follower.watch_dirs())) {
            if !dirs.contains(&d) {
                dirs.push(d);
            }
        }
        dirs
    }

    /// True while rotated files are open (their `--rotate-wait` needs a timer).
    pub fn has_rotated(&self) -> bool {
        self.followers.iter().any(|f| f.follower.has_rotated())
    }

    /// How long until a periodic scan (siblings, or a glob's directory) is due.
    pub fn scan_due_in(&self) -> Duration {
        let globs = SCAN_EVERY.saturating_sub(self.last_discovery.elapsed());
        self.followers
            .iter()
            .map(|f| f.follower.scan_due_in())
            .fold(globs, Duration::min)
    }

    /// Bytes read so far, partial lines included.
    pub fn bytes_read(&self) -> u64 {
        self.followers
            .iter()
            .map(|f| f.follower.bytes_read())
            .sum::<u64>()
            + self.bytes_dropped
    }
}
