//! The ledger's files with their sums kept as they change: the window's room is asked
//! for before every read of every file, and the gauges follow every read, so neither
//! may cost a walk over every file followed (up to `--max-files`).

use std::collections::BTreeMap;
use std::ops::Deref;

use super::{FileKey, FileProgress};

/// Sums over every file in the ledger.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Totals {
    /// Lines handed on and not covered by the durable checkpoint.
    pub ahead: u64,
    /// Bytes of lines in progress.
    pub held: u64,
    /// The files' ends minus their durable offsets.
    pub lag: u64,
    /// Files not finished: those the window is shared between.
    pub reading: u64,
}

impl Totals {
    fn of(f: &FileProgress) -> Totals {
        Totals {
            ahead: f.ahead(),
            held: f.held,
            lag: f.size.max(f.read_offset).saturating_sub(f.durable),
            reading: u64::from(!f.finished),
        }
    }

    fn add(&mut self, f: &FileProgress) {
        let t = Totals::of(f);
        self.ahead += t.ahead;
        self.held += t.held;
        self.lag += t.lag;
        self.reading += t.reading;
    }

    fn sub(&mut self, f: &FileProgress) {
        let t = Totals::of(f);
        self.ahead -= t.ahead;
        self.held -= t.held;
        self.lag -= t.lag;
        self.reading -= t.reading;
    }
}

/// The files by key, read through `Deref`; changed only through these methods, which
/// keep [`Totals`] current.
#[derive(Default)]
pub(super) struct Files {
    map: BTreeMap<FileKey, FileProgress>,
    totals: Totals,
}

impl Deref for Files {
    type Target = BTreeMap<FileKey, FileProgress>;
    fn deref(&self) -> &Self::Target {
        &self.map
    }
}

impl Files {
    pub fn totals(&self) -> Totals {
        self.totals
    }

    pub fn insert(&mut self, key: FileKey, f: FileProgress) {
        self.totals.add(&f);
        if let Some(old) = self.map.insert(key, f) {
            self.totals.sub(&old);
        }
    }

    pub fn remove(&mut self, key: &FileKey) {
        if let Some(old) = self.map.remove(key) {
            self.totals.sub(&old);
        }
    }

    /// Changes one file (nothing for an unknown key).
    pub fn update(&mut self, key: FileKey, change: impl FnOnce(&mut FileProgress)) {
        if let Some(f) = self.map.get_mut(&key) {
            self.totals.sub(f);
            change(f);
            self.totals.add(f);
        }
    }

    /// The sums walked over every file: what [`Files::totals`] must always equal.
    #[cfg(test)]
    pub fn summed(&self) -> Totals {
        let mut t = Totals::default();
        self.map.values().for_each(|f| t.add(f));
        t
    }
}
