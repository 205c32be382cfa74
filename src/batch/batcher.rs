//! batcher: lines → batches within Firehose's limits ([`crate::firehose`]). Pure: the
//! caller supplies the clock and each line's [`Disposition`], and property tests
//! check the limits and that every line is covered exactly once.

use bytes::BytesMut;
use tokio::time::Instant;

use super::Disposition;
use crate::firehose::{BATCH_BYTES, MAX_BATCH_RECORDS, MAX_RECORD_BYTES};
use crate::handover::{Batch, Line, RecordMeta};
use crate::progress::Span;

/// Packs lines into batches. Pure: the caller supplies the clock.
pub struct Batcher {
    aggregate: bool,
    /// With `--aggregate`: the most lines one record holds (`--aggregate-max-lines`).
    max_lines: u32,
    batch: Batch,
    /// With `--aggregate`: the record being filled with consecutive JSON lines.
    open: Option<(BytesMut, RecordMeta)>,
    oldest: Option<Instant>,
}

impl Batcher {
    pub fn new(aggregate: bool, max_lines: usize) -> Batcher {
        Batcher {
            aggregate,
            max_lines: u32::try_from(max_lines).unwrap_or(u32::MAX).max(1),
            batch: Batch::default(),
            open: None,
            oldest: None,
        }
    }

    /// When the oldest line in the batch arrived (the flush timer's base).
    pub fn oldest(&self) -> Option<Instant> {
        self.oldest
    }

    fn record_count(&self) -> usize {
        self.batch.records.len() + usize::from(self.open.is_some())
    }

    fn fits(&self, len: usize) -> bool {
        self.record_count() < MAX_BATCH_RECORDS && self.batch.bytes + len <= BATCH_BYTES
    }

    /// Adds one line. Returns a batch when one was cut (the previous one, because this
    /// line did not fit; or this one, because it is full).
    pub fn add(&mut self, line: &Line, d: Disposition, now: Instant) -> Option<Batch> {
        let mut cut = None;
        if let Disposition::Record { json } = d {
            let len = line.data.len();
            debug_assert!(len <= MAX_RECORD_BYTES);
            let joined = self.aggregate && json && self.try_join(line);
            if !joined {
                self.close_open();
                if !self.fits(len) {
                    cut = self.take();
                }
                let meta = RecordMeta {
                    source: line.source,
                    file: line.file,
                    offset: line.start,
                    lines: 1,
                };
                if self.aggregate && json {
                    self.open = Some((BytesMut::from(&line.data[..]), meta));
                } else {
                    self.batch.records.push(line.data.clone());
                    self.batch.meta.push(meta);
                }
                self.batch.bytes += len;
            }
        }
        self.cover(line);
        self.oldest.get_or_insert(now);
        if cut.is_none() && self.record_count() == MAX_BATCH_RECORDS && self.open.is_none() {
            cut = self.take();
        }
        cut
    }

    /// Appends a JSON line to the open aggregate record if the record and the batch both
    /// stay within their limits.
    fn try_join(&mut self, line: &Line) -> bool {
        let len = line.data.len();
        let batch_ok = self.batch.bytes + len <= BATCH_BYTES;
        match self.open.as_mut() {
            Some((buf, meta))
                if batch_ok
                    // One source per record: its lines are counted, and get their
                    // fields, as that source's.
                    && meta.source == line.source
                    && buf.len() + len <= MAX_RECORD_BYTES
                    && meta.lines < self.max_lines =>
            {
                buf.extend_from_slice(&line.data);
                meta.lines += 1;
                self.batch.bytes += len;
                true
            }
            _ => false,
        }
    }

    fn close_open(&mut self) {
        if let Some((buf, meta)) = self.open.take() {
            self.batch.records.push(buf.freeze());
            self.batch.meta.push(meta);
        }
    }

    /// Extends the batch's span over the line (records, skipped and dead-lettered alike).
    fn cover(&mut self, line: &Line) {
        match self.batch.spans.last_mut() {
            Some(s) if s.file == line.file && s.end == line.start => {
                s.end = line.end;
                s.lines += 1;
            }
            _ => self.batch.spans.push(Span {
                file: line.file,
                start: line.start,
                end: line.end,
                lines: 1,
            }),
        }
    }

    /// Cuts the batch as it is (flush timer, or end of input). `None` when empty.
    pub fn take(&mut self) -> Option<Batch> {
        self.close_open();
        self.oldest = None;
        if self.batch.spans.is_empty() {
            return None;
        }
        Some(std::mem::take(&mut self.batch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::{DeadLetterReason, SkipReason};
    use bytes::Bytes;
    use proptest::prelude::*;

    use crate::handover::test_line as line;
    use crate::progress::FileKey;

    fn record() -> Disposition {
        Disposition::Record { json: true }
    }

    #[test]
    fn full_batch_is_cut_at_500_records() {
        let mut b = Batcher::new(false, 500);
        let now = Instant::now();
        let mut cut = Vec::new();
        for i in 0..1000u64 {
            if let Some(batch) = b.add(&line(0, i * 11, 10), record(), now) {
                cut.push(batch);
            }
        }
        assert_eq!(cut.len(), 2);
        assert!(cut.iter().all(|c| c.records.len() == 500));
        assert!(b.take().is_none());
    }

    #[test]
    fn a_batch_fills_to_exactly_its_byte_limit() {
        let mut b = Batcher::new(false, 500);
        let now = Instant::now();
        let quarter = BATCH_BYTES / 4;
        for i in 0..4 {
            let l = line(0, (i * quarter) as u64, quarter - 1);
            assert!(b.add(&l, record(), now).is_none(), "line {i} fits");
        }
        let cut = b
            .add(&line(0, BATCH_BYTES as u64, 0), record(), now)
            .unwrap();
        assert_eq!((cut.records.len(), cut.bytes), (4, BATCH_BYTES));
    }

    /// Lines of two sources that share a stream never share a record: each record's
    /// lines are counted, and get their fields, as one source's.
    #[test]
    fn an_aggregate_record_holds_one_source() {
        let mut b = Batcher::new(true, 500);
        let now = Instant::now();
        let sources = [0, 0, 1, 1, 0];
        for (i, source) in sources.into_iter().enumerate() {
            let mut l = line(source as FileKey, i as u64 * 11, 10);
            l.source = source;
            assert!(b.add(&l, record(), now).is_none());
        }
        let batch = b.take().unwrap();
        let per_record: Vec<(u16, u32)> = batch.meta.iter().map(|m| (m.source, m.lines)).collect();
        assert_eq!(per_record, [(0, 2), (1, 2), (0, 1)]);
    }

    /// The open aggregate record counts too: closing it must not make a 501st record.
    #[test]
    fn aggregated_batches_are_cut_at_500_records_too() {
        let mut b = Batcher::new(true, 1);
        let now = Instant::now();
        let mut cut = Vec::new();
        for i in 0..501u64 {
            cut.extend(b.add(&line(0, i * 11, 10), record(), now));
        }
        assert_eq!(cut.len(), 1);
        assert_eq!(cut[0].records.len(), 500);
        assert_eq!(b.take().unwrap().records.len(), 1);
    }

    #[test]
    fn skipped_lines_are_covered_by_spans() {
        let mut b = Batcher::new(false, 500);
        let now = Instant::now();
        assert!(b.add(&line(0, 0, 10), record(), now).is_none());
        assert!(b
            .add(&line(0, 11, 0), Disposition::Skip(SkipReason::Empty), now)
            .is_none());
        let batch = b.take().unwrap();
        assert_eq!(batch.records.len(), 1);
        assert_eq!(
            batch.spans,
            vec![Span {
                file: 0,
                start: 0,
                end: 12,
                lines: 2,
            }]
        );
    }

    #[test]
    fn aggregation_packs_json_and_isolates_invalid_lines() {
        let mut b = Batcher::new(true, 500);
        let now = Instant::now();
        b.add(&line(0, 0, 10), record(), now);
        b.add(&line(0, 11, 10), record(), now);
        b.add(&line(0, 22, 10), Disposition::Record { json: false }, now);
        b.add(&line(0, 33, 10), record(), now);
        let batch = b.take().unwrap();
        let lines: Vec<u32> = batch.meta.iter().map(|m| m.lines).collect();
        assert_eq!(lines, vec![2, 1, 1]);
        assert_eq!(batch.records[0].len(), 22);
    }

    #[test]
    fn the_flush_timer_counts_from_the_first_line_of_the_batch() {
        let mut b = Batcher::new(false, 500);
        let t0 = Instant::now();
        assert_eq!(b.oldest(), None);
        b.add(&line(0, 0, 10), record(), t0);
        b.add(
            &line(0, 11, 10),
            record(),
            t0 + std::time::Duration::from_secs(1),
        );
        assert_eq!(b.oldest(), Some(t0));
        b.take();
        assert_eq!(b.oldest(), None, "a cut batch restarts the timer");
    }

    /// Records fill to Firehose's limits, not to some smaller product of sizes.
    #[test]
    fn aggregation_fills_one_record_with_many_kilobyte_lines() {
        let mut b = Batcher::new(true, 500);
        let now = Instant::now();
        for i in 0..10 {
            assert!(b.add(&line(0, i * 1000, 999), record(), now).is_none());
        }
        let batch = b.take().unwrap();
        assert_eq!(batch.meta.iter().map(|m| m.lines).collect::<Vec<_>>(), [10]);
        assert_eq!((batch.bytes, batch.records[0].len()), (10_000, 10_000));
    }

    #[test]
    fn a_span_never_crosses_from_one_file_to_another() {
        let mut b = Batcher::new(false, 500);
        let now = Instant::now();
        b.add(&line(0, 0, 10), record(), now);
        b.add(&line(1, 11, 10), record(), now);
        let files: Vec<FileKey> = b.take().unwrap().spans.iter().map(|s| s.file).collect();
        assert_eq!(files, [0, 1]);
    }

    /// A line as the property tests draw it: its body length and fate.
    fn arb_line() -> impl Strategy<Value = (usize, u8)> {
        let len = prop_oneof![
            40 => 0usize..400,
            3 => 400usize..200_000,
            1 => (MAX_RECORD_BYTES - 3)..(MAX_RECORD_BYTES + 2),
        ];
        (len, 0u8..10)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// For any sequence of line sizes: no batch breaks a limit, no record holds more
        /// than `--aggregate-max-lines`, every shippable line appears exactly once and in order, oversize lines never appear in a batch, and
        /// the spans cover every line exactly once.
        #[test]
        fn batches_respect_limits_and_keep_every_line(
            lines in prop::collection::vec(arb_line(), 1..1200),
            aggregate in any::<bool>(),
            max_lines in prop_oneof![1usize..4, 4usize..=500],
        ) {
            let mut b = Batcher::new(aggregate, max_lines);
            let now = Instant::now();
            let mut batches = Vec::new();
            let mut expected = Vec::new();
            let mut offset = 0u64;
            for (i, (len, kind)) in lines.iter().enumerate() {
                // Tag each line with its index so order can be checked.
                let mut data = format!("{i}:").into_bytes();
                data.resize(data.len().max(*len), b'x');
                data.push(b'\n');
                let l = Line { source: 0, file: 0, start: offset, end: offset + data.len() as u64,
                               size: data.len() as u64, data: Bytes::from(data) };
                offset = l.end;
                let d = if l.is_oversize() {
                    Disposition::DeadLetter(DeadLetterReason::Oversize)
                } else if *kind == 0 {
                    Disposition::Skip(SkipReason::Empty)
                } else {
                    Disposition::Record { json: *kind != 1 }
                };
                if matches!(d, Disposition::Record { .. }) {
                    expected.push(l.data.clone());
                }
                batches.extend(b.add(&l, d, now));
            }
            batches.extend(b.take());
            let mut got = Vec::new();
            let mut covered = 0u64;
            for batch in &batches {
                prop_assert!(batch.records.len() <= MAX_BATCH_RECORDS);
                prop_assert!(batch.records.iter().map(Bytes::len).sum::<usize>() <= BATCH_BYTES);
                prop_assert_eq!(batch.records.len(), batch.meta.len());
                for (r, m) in batch.records.iter().zip(&batch.meta) {
                    prop_assert!(r.len() <= MAX_RECORD_BYTES);
                    prop_assert_eq!(r.iter().filter(|c| **c == b'\n').count(), m.lines as usize);
                    prop_assert!(m.lines as usize <= max_lines);
                    got.extend(r.split_inclusive(|c| *c == b'\n').map(Bytes::copy_from_slice));
                }
                for s in &batch.spans {
                    prop_assert_eq!(s.start, covered);
                    covered = s.end;
                }
            }
            prop_assert_eq!(covered, offset);
            prop_assert_eq!(got, expected);
        }
    }
}
