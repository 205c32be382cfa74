//! firetail's side of the follower model: the real tail reading the world's files,
//! the pipeline acknowledging what it read in any order (some of it stuck), the real
//! checkpoint writer, `kill -9` at any point and a restart from the checkpoint on disk.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use firetail::checkpoint::Checkpointer;
use firetail::config::ReadFrom;
use firetail::health::Health;
use firetail::metrics::Metrics;
use firetail::progress::{FileEntry, Progress, Span};
use firetail::tail::{Line, SourceSpec, Tail, TailSettings};

use super::world::{text_of, SourceDef, World};

/// The tail of every source: one [`Tail`] per lane (the sources shipping to one
/// stream), sharing one ledger, as the pipeline runs them.
pub struct Reader {
    lanes: Vec<Tail>,
}

impl Reader {
    /// `lanes`: the sources of each lane, by index into `sources`.
    pub(crate) fn new(
        sources: &[SourceDef],
        lanes: &[Vec<usize>],
        checkpoint: &Path,
        entries: &[FileEntry],
        progress: &Arc<Progress>,
    ) -> Reader {
        let spec = |i: usize| SourceSpec {
            id: i as u16,
            name: sources[i].name.clone(),
            path: sources[i].path.clone(),
        };
        let names: Vec<String> = sources.iter().map(|s| s.name.clone()).collect();
        let streams: Vec<String> = (0..lanes.len()).map(|i| format!("stream-{i}")).collect();
        // One set of series for every lane, as the pipeline has.
        let metrics = Arc::new(Metrics::new(&names, &streams));
        let open_files = Arc::default();
        let lanes = lanes
            .iter()
            .map(|lane| {
                let settings = TailSettings {
                    sources: lane.iter().map(|i| spec(*i)).collect(),
                    read_from: ReadFrom::Beginning,
                    // Nothing retires by time inside a test case: late writers are never
                    // cut off.
                    rotate_wait: Duration::from_secs(3600),
                    own_files: vec![checkpoint.to_path_buf()],
                    max_files: 1024,
                    others: (0..sources.len())
                        .filter(|i| !lane.contains(i))
                        .map(spec)
                        .collect(),
                    open_files: Arc::clone(&open_files),
                };
                Tail::new(
                    settings,
                    entries,
                    progress.clone(),
                    metrics.clone(),
                    Arc::new(Health::default()),
                )
                .unwrap()
            })
            .collect();
        Reader { lanes }
    }

    /// One poll of every lane. True when there may be more at once.
    pub(crate) fn poll(&mut self, out: &mut Vec<Line>) -> bool {
        let mut more = false;
        for t in &mut self.lanes {
            more |= t.poll(out).unwrap();
        }
        more
    }

    /// inotify reported a file created in a watched directory.
    pub(crate) fn created(&mut self) {
        for t in &mut self.lanes {
            t.discover_soon();
        }
    }

    /// One step of the drain's end. True while there is more to do.
    pub(crate) fn finish(&mut self, out: &mut Vec<Line>) -> bool {
        let mut more = false;
        for t in &mut self.lanes {
            more |= t.finish(out).unwrap();
        }
        more
    }
}

impl World {
    pub(super) fn start_reader(&mut self, entries: &[FileEntry]) {
        self.progress = Arc::new(Progress::default());
        self.reader = Some(Reader::new(
            &self.sources,
            &self.lanes,
            &self.checkpoint,
            entries,
            &self.progress,
        ));
    }

    fn take(&mut self, out: Vec<Line>) {
        for l in out {
            self.emitted.push(text_of(&l));
            self.runs.push(self.run);
            self.read_since_up.push(l.clone());
            self.lines_out.push(l.clone());
            self.unacked.push(l);
        }
    }

    pub fn poll(&mut self) -> bool {
        let Some(r) = self.reader.as_mut() else {
            return false;
        };
        let mut out = Vec::new();
        let more = r.poll(&mut out);
        self.take(out);
        more
    }

    /// inotify's event for a file created arrives (it may come late, or never: the
    /// periodic scan, no clock here, would find the file then).
    pub fn notify(&mut self) {
        if let Some(r) = self.reader.as_mut() {
            r.created();
        }
    }

    /// Polls until every file is read to its end, inotify's events delivered first:
    /// then firetail has every file open.
    pub fn poll_all(&mut self) {
        if self.reader.is_none() {
            return;
        }
        self.notify();
        for _ in 0..10_000 {
            if !self.poll() {
                for f in self.at.values() {
                    self.files[*f].opened = true;
                }
                for a in &mut self.apps {
                    a.seen |= self.at.contains_key(&a.path);
                }
                return;
            }
        }
        panic!("the follower never reached the end of its files");
    }

    /// The pipeline registers what was read, in file order, and acknowledges it in an
    /// order of the seed's choosing; about a third stays unacknowledged, and so does
    /// every line of the stuck source (its stream throttled), if any.
    pub fn ack(&mut self, seed: u64) {
        self.ack_but(seed, None);
    }

    pub fn ack_but(&mut self, seed: u64, stuck: Option<u16>) {
        let spans: Vec<Span> = self
            .unacked
            .iter()
            .map(|l| Span {
                file: l.file,
                start: l.start,
                end: l.end,
                lines: 1,
            })
            .collect();
        self.progress.register(&spans);
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut order: Vec<usize> = (0..spans.len()).collect();
        rng.shuffle(&mut order);
        let keep = order.len() / 3;
        let stays = |i: usize| order[..keep].contains(&i) || Some(self.unacked[i].source) == stuck;
        let acked: Vec<Span> = (0..spans.len())
            .filter(|i| !stays(*i))
            .map(|i| spans[i])
            .collect();
        let left: Vec<Line> = (0..spans.len())
            .filter(|i| stays(*i))
            .map(|i| self.unacked[i].clone())
            .collect();
        self.progress.ack(&acked);
        // What stays is registered again with the next acknowledgement, as a batch
        // retried is: the ledger keys spans by start, so that is the same span.
        self.unacked = left;
    }

    /// The checkpoint writer's turn: what is acknowledged now becomes durable.
    pub fn write_checkpoint(&mut self) {
        if self.reader.is_none() {
            return;
        }
        let snap = self.progress.snapshot();
        self.check_entries(&snap.entries);
        Checkpointer::new(&self.checkpoint, Arc::new(Metrics::default()))
            .write(&self.progress)
            .unwrap();
        let offsets = snap
            .keys
            .iter()
            .zip(&snap.entries)
            .map(|(k, e)| (*k, e.offset));
        // A key let go stays let go (keys are never reused within a process).
        self.last_checkpoint.0 = offsets.collect();
        self.last_checkpoint.1.extend(snap.dropped);
        for a in &mut self.apps {
            a.anchored |= a.seen;
        }
    }

    /// Each checkpoint entry of a file the model knows names the source and the path
    /// of the app that wrote it: a restart resumes it there, under that source.
    fn check_entries(&self, entries: &[FileEntry]) {
        for e in entries {
            let Some(id) = self.at.get(&e.path) else {
                continue; // deleted, or renamed since the tail last looked
            };
            let Some(piece) = self.files[*id].pieces.first() else {
                continue;
            };
            let app = &self.apps[self.written[piece.0].app];
            let source = &self.sources[usize::from(app.source)].name;
            assert_eq!(
                &e.source,
                source,
                "checkpoint entry of {}",
                e.path.display()
            );
            // A glob may match a rotated name whose path is gone (renamed, the app
            // not reopened yet) and follow it as a path of its own.
            let stem = app.path.file_stem().unwrap().to_string_lossy().into_owned();
            let glob = self.sources[usize::from(app.source)]
                .path
                .to_string_lossy()
                .contains('*');
            let name = e.followed.file_name().unwrap().to_string_lossy();
            assert!(
                e.followed == app.path || glob && name.starts_with(&stem),
                "checkpoint entry of {} follows {}",
                e.path.display(),
                e.followed.display()
            );
        }
    }

    /// `kill -9`: a restart reads again every line at or after its file's offset in the
    /// last checkpoint written (acknowledged out of order after a gap, not at all, or
    /// after that write), and every line of a file opened after it.
    pub fn down(&mut self) {
        if self.reader.take().is_none() {
            return;
        }
        for id in std::mem::take(&mut self.held_deleted) {
            let pieces = self.files[id].pieces.clone();
            self.destroyed(pieces, false);
        }
        let (offsets, dropped) = &self.last_checkpoint;
        for l in self.read_since_up.drain(..) {
            let again = match offsets.get(&l.file) {
                Some(o) => l.start >= *o,
                None => !dropped.contains(&l.file),
            };
            if again {
                self.may_duplicate.insert(text_of(&l));
            }
        }
        self.unacked.clear();
    }

    pub fn up(&mut self) {
        if self.reader.is_some() {
            return;
        }
        let entries = Checkpointer::new(&self.checkpoint, Arc::new(Metrics::default()))
            .try_load()
            .unwrap();
        self.run += 1;
        self.start_reader(&entries);
        self.last_checkpoint = Default::default();
        // The writer writes as soon as files are opened (Progress::open wakes it).
        self.write_checkpoint();
    }

    /// The apps stop (each finishing its line wherever its descriptor points);
    /// firetail is up and drains.
    pub fn finish(&mut self) {
        self.apps_stop();
        self.up();
        self.poll_all();
        let r = self.reader.as_mut().unwrap();
        let mut out = Vec::new();
        let mut steps = 0;
        while r.finish(&mut out) {
            steps += 1;
            assert!(steps < 10_000, "the drain never finished");
        }
        self.take(out);
    }
}
