//! The window and its shares under random sequences of opens, reads (as the tail
//! makes them, on the room the ledger gives), batches cut, acknowledgements in any
//! order, durable checkpoints and finished files.

use std::path::Path;

use proptest::prelude::*;

use super::super::{Chain, Gauges, Identity, Span};
use super::*;

#[derive(Clone, Debug)]
enum Op {
    /// A new file in one of a few chains.
    Open(u8),
    /// The tail reads up to this many bytes of a file (picked by the number).
    Read(usize, u64),
    /// The batch stage cuts the lines read of a file and not yet in a batch.
    Cut(usize),
    /// One batch (picked) is acknowledged.
    Ack(usize),
    /// The checkpoint is written.
    Persist,
    /// The tail reads no more of a file.
    Finish(usize),
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (0u8..3).prop_map(Op::Open),
        8 => (any::<usize>(), 1u64..300_000).prop_map(|(f, n)| Op::Read(f, n)),
        4 => any::<usize>().prop_map(Op::Cut),
        4 => any::<usize>().prop_map(Op::Ack),
        3 => Just(Op::Persist),
        1 => any::<usize>().prop_map(Op::Finish),
    ]
}

/// A file as the app wrote it (lines of the given lengths, without end) and as the
/// tail has read it.
struct File {
    key: FileKey,
    /// Bytes read, the end of the last whole line among them, and that line's index.
    cursor: u64,
    line_start: u64,
    line: usize,
    registered: u64,
    finished: bool,
}

struct World {
    p: Progress,
    window: u64,
    lens: Vec<u64>,
    files: Vec<File>,
    batches: Vec<Span>,
}

impl World {
    fn line_len(&self, f: &File) -> u64 {
        self.lens[(f.key as usize * 7 + f.line) % self.lens.len()]
    }

    fn pick(&self, n: usize) -> Option<usize> {
        (!self.files.is_empty()).then(|| n % self.files.len())
    }

    /// A read as the tail's handle makes it: nothing without room; the line in
    /// progress alone ahead of the checkpoint is read to its end and no further.
    fn read(&mut self, i: usize, want: u64) {
        let f = &self.files[i];
        // The tail looks at the file's size before it reads: the app wrote more.
        self.p.seen(f.key, f.cursor + want, 1);
        let budget = self.p.room_for(f.key);
        if f.finished || budget == 0 {
            return;
        }
        let one_line = f.cursor > f.line_start && self.p.read_ahead() == 0;
        let cursor = if one_line {
            f.line_start + self.line_len(f)
        } else {
            f.cursor + want.min(budget)
        };
        self.files[i].cursor = cursor;
        while self.files[i].line_start + self.line_len(&self.files[i]) <= cursor {
            let len = self.line_len(&self.files[i]);
            let f = &mut self.files[i];
            f.line_start += len;
            f.line += 1;
        }
        let f = &self.files[i];
        self.p
            .read_to_holding(f.key, f.line_start, f.cursor - f.line_start);
    }

    fn cut(&mut self, i: usize) {
        let f = &mut self.files[i];
        if f.line_start > f.registered {
            let span = Span {
                file: f.key,
                start: f.registered,
                end: f.line_start,
                lines: 1,
            };
            f.registered = f.line_start;
            self.p.register(&[span]);
            self.batches.push(span);
        }
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::Open(c) => {
                let key = self.p.new_key();
                let chain = Chain::new("s", Path::new(&format!("/log/{c}")));
                self.p.open(key, &chain, &ID, Path::new("/log/x"), 0);
                self.files.push(File {
                    key,
                    cursor: 0,
                    line_start: 0,
                    line: 0,
                    registered: 0,
                    finished: false,
                });
            }
            Op::Read(n, want) => {
                if let Some(i) = self.pick(n) {
                    self.read(i, want);
                }
            }
            Op::Cut(n) => {
                if let Some(i) = self.pick(n) {
                    self.cut(i);
                }
            }
            Op::Ack(n) => {
                if !self.batches.is_empty() {
                    let span = self.batches.swap_remove(n % self.batches.len());
                    self.p.ack(&[span]);
                }
            }
            Op::Persist => self.p.persisted(&self.p.snapshot()),
            Op::Finish(n) => {
                if let Some(i) = self.pick(n) {
                    self.cut(i);
                    let f = &mut self.files[i];
                    f.finished = true;
                    f.cursor = f.line_start;
                    self.p.finish(f.key, f.line_start);
                }
            }
        }
    }

    /// What the tail holds of this file: its line in progress.
    fn held(&self, f: &File) -> u64 {
        f.cursor - f.line_start
    }

    fn check(&self) -> Result<(), TestCaseError> {
        let files = self.p.lock();
        prop_assert_eq!(
            files.totals(),
            files.summed(),
            "the sums kept as files change"
        );
        drop(files);
        let ahead = self.p.read_ahead();
        prop_assert!(
            ahead <= self.window,
            "{ahead} bytes ahead; window {}",
            self.window
        );
        let room = self.p.room();
        let reading = self.files.iter().filter(|f| !f.finished).count().max(1) as u64;
        let share = (self.window / reading).max(MIN_SHARE);
        for f in self.files.iter().filter(|f| !f.finished) {
            let own = self.p.read_ahead_of(f.key);
            let room_for = self.p.room_for(f.key);
            prop_assert!(room_for <= room, "a share never exceeds the window's room");
            // No file waits on its own reading: only on the whole window, or on its
            // own lines, which acknowledgements make durable.
            prop_assert!(
                room_for > 0 || room == 0 || own > 0,
                "file {} wedged: nothing of its own ahead, window room {room}",
                f.key
            );
            let others: u64 = self
                .files
                .iter()
                .filter(|g| g.key != f.key)
                .map(|g| self.p.read_ahead_of(g.key) + self.held(g))
                .sum();
            if own == 0 && self.held(f) == 0 && others + share <= self.window {
                prop_assert_eq!(room_for, share, "file {}: its whole share", f.key);
            }
        }
        Ok(())
    }
}

const ID: Identity = Identity {
    dev: 1,
    ino: 2,
    fp_len: 3,
    fp_hash: 4,
};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever the order of opens, reads, cuts, acknowledgements, checkpoints and
    /// finished files: the bytes read ahead of the durable checkpoint, summed over
    /// files, never exceed the window (lines up to a third of it, many longer than a
    /// share); no file ever waits on its own reading; a file with nothing ahead has
    /// its whole share whenever the others leave it.
    #[test]
    fn the_window_bounds_the_sum_and_every_file_gets_its_share(
        window in (256u64 * 1024)..(1024 * 1024),
        lens in prop::collection::vec(1u64..1_000, 1..20),
        long in prop::collection::vec(any::<prop::sample::Index>(), 0..4),
        ops in prop::collection::vec(arb_op(), 1..300),
    ) {
        let mut lens = lens;
        // Some lines longer than a share (the window over several files), none
        // longer than a third of the window.
        for i in long {
            let at = i.index(lens.len());
            lens[at] = window / 3 - at as u64;
        }
        let mut w = World {
            p: Progress::new(window, Gauges::default()),
            window,
            lens,
            files: Vec::new(),
            batches: Vec::new(),
        };
        for op in &ops {
            w.apply(op);
            w.check()?;
        }
    }
}
