//! handover: what one stage hands the next over its channel — a [`Line`] from the tail
//! to the batch stage, a [`Batch`] of records from the batch stage to the ship stage.
//! Below the stages, so that none of them imports another (docs/design.md#pipeline).

use bytes::Bytes;

use crate::firehose::MAX_RECORD_BYTES;
use crate::progress::{FileKey, Span};

/// One line of the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub file: FileKey,
    /// File offset of the line's first byte.
    pub start: u64,
    /// File offset just after the line (after its `\n`, if the file has one).
    pub end: u64,
    /// The line with its trailing `\n` (appended when the file ended without one);
    /// for an oversize line, only its first bytes (the tail's `KEEP_OVERSIZE_BYTES`).
    pub data: Bytes,
    /// Size of the whole line with its `\n`; differs from `data.len()` only when oversize
    /// and cut.
    pub size: u64,
}

impl Line {
    /// True when the line can never be a Firehose record.
    pub fn is_oversize(&self) -> bool {
        self.size > MAX_RECORD_BYTES as u64
    }
}

/// Where a record's (first) line came from, and how many lines it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordMeta {
    pub file: FileKey,
    pub offset: u64,
    pub lines: u32,
}

/// One PutRecordBatch worth of records, plus the file ranges it settles.
#[derive(Debug, Default)]
pub struct Batch {
    pub records: Vec<Bytes>,
    pub meta: Vec<RecordMeta>,
    /// Sum of the records' lengths.
    pub bytes: usize,
    /// Every line the batch accounts for (records, skipped, dead-lettered), per file.
    pub spans: Vec<Span>,
}
