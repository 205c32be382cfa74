//! handover: what one stage hands the next over its channel — a [`Line`] from the tail
//! to the batch stage, a [`Batch`] of records from the batch stage to the ship stage.
//! Below the stages, so that none of them imports another (docs/design.md#pipeline).

use bytes::Bytes;

use crate::firehose::MAX_RECORD_BYTES;
use crate::progress::{FileKey, Span};

/// A source: its index in the configuration's list of sources (a name, a path or glob,
/// a stream). Lines and records carry it so that every count can be told per source.
pub type SourceId = u16;

/// One line of the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub source: SourceId,
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

/// For the batch stage's unit tests: a line of `body_len` bytes of `x` and its `\n`,
/// at `start` in `file`.
#[cfg(test)]
pub(crate) fn test_line(file: FileKey, start: u64, body_len: usize) -> Line {
    let mut data = vec![b'x'; body_len];
    data.push(b'\n');
    Line {
        source: 0,
        file,
        start,
        end: start + data.len() as u64,
        size: data.len() as u64,
        data: Bytes::from(data),
    }
}

/// Where a record's (first) line came from, and how many lines it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordMeta {
    pub source: SourceId,
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
