//! The ledger as the drain report sees it: what is left unacknowledged, per file and
//! per source.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use serde::Serialize;

use super::{Chain, Progress};

/// One file with bytes read but not acknowledged, for the drain report.
#[derive(Debug, Clone, Serialize)]
pub struct Unacknowledged {
    /// The source the file belongs to, by name.
    pub source: String,
    pub path: PathBuf,
    pub from_offset: u64,
    pub to_offset: u64,
}

/// One source's part of the ledger, for the drain report ([`Progress::per_source`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SourceLedger {
    /// Files in the ledger: being read, or finished and not yet forgotten.
    pub files: u64,
    /// Bytes read and not acknowledged, summed over its files.
    pub unacknowledged_bytes: u64,
    /// Lines in its spans registered and not acknowledged.
    pub pending_lines: u64,
    /// The committed offset of its newest file, while it follows one path (a literal
    /// path); None for a glob that matched several.
    pub checkpoint_offset: Option<u64>,
}

impl Progress {
    /// Per file, the offset range read but not acknowledged.
    pub fn unacknowledged(&self) -> Vec<Unacknowledged> {
        self.lock()
            .values()
            .filter(|f| f.read_offset > f.committed())
            .map(|f| Unacknowledged {
                source: f.chain.source.to_string(),
                path: f.path.clone(),
                from_offset: f.committed(),
                to_offset: f.read_offset,
            })
            .collect()
    }

    /// The committed offset of the newest file (the one at the path), for the report.
    /// It means something only while every file is in one chain (one path followed):
    /// None when the ledger holds several.
    pub fn current_offset(&self) -> Option<u64> {
        let files = self.lock();
        let newest = files.values().next_back()?;
        if files.values().any(|f| f.chain != newest.chain) {
            return None;
        }
        Some(newest.committed())
    }

    /// Per source (by name, in name order), what the ledger holds: for the drain
    /// report's per-source figures.
    pub fn per_source(&self) -> BTreeMap<String, SourceLedger> {
        let files = self.lock();
        let mut out: BTreeMap<String, SourceLedger> = BTreeMap::new();
        let mut chains: HashMap<&str, &Chain> = HashMap::new();
        let mut several: Vec<&str> = Vec::new();
        for f in files.values() {
            let s = out.entry(f.chain.source.to_string()).or_default();
            s.files += 1;
            s.unacknowledged_bytes += f.read_offset.saturating_sub(f.committed());
            s.pending_lines += f.pending.values().map(|(_, lines, _)| *lines).sum::<u64>();
            // Files come in key order: the last one seen is the newest.
            s.checkpoint_offset = Some(f.committed());
            if **chains.entry(&f.chain.source).or_insert(&f.chain) != f.chain {
                several.push(&f.chain.source);
            }
        }
        for name in several {
            if let Some(s) = out.get_mut(name) {
                s.checkpoint_offset = None;
            }
        }
        out
    }
}
