//! framing: bytes of one file → complete [`Line`]s, without copying them.
//!
//! Pure, synchronous code: what comes in is the bytes read at increasing offsets of one
//! file's content; what goes out is every complete line with its offsets, and, at the
//! very end ([`Framer::finish`]), the partial last line with a `\n` appended. A line
//! longer than [`KEEP_OVERSIZE_BYTES`] keeps its first bytes and its true size and
//! offsets, so memory is bounded whatever the writer does, and nothing is cut silently.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use bytes::{Bytes, BytesMut};

use crate::handover::{Line, SourceId};
use crate::progress::FileKey;

/// How much of an oversize line is kept for the dead-letter file. Bounds memory
/// whatever the writer does (a 1 GiB line without a newline must not be 1 GiB of RSS):
/// 1 MiB is just above the record limit, so the dead-letter entry still shows more than
/// a record could hold, and a run of hostile lines keeps peak RSS low.
pub const KEEP_OVERSIZE_BYTES: usize = 1024 * 1024;

/// One `read(2)` per this many bytes: a backlog costs a syscall per ~200 lines, and
/// the buffer stays below glibc's mmap threshold (128 KiB), so it is recycled from the
/// heap rather than mapped and zeroed by the kernel each time. A read buffer lives as
/// long as any of its lines is in flight.
const READ_CHUNK: usize = 64 * 1024;

/// Splits a byte stream into lines without copying them: each [`Line::data`] is a
/// slice of the read buffer it arrived in.
#[derive(Debug)]
pub struct Framer {
    /// Bytes read but not yet part of a complete line.
    buf: BytesMut,
    /// File offset of `buf[0]`.
    offset: u64,
    /// How much of `buf` is known to hold no `\n` (so a long partial line is not
    /// scanned again on every read).
    scanned: usize,
    /// An oversize line in progress past [`KEEP_OVERSIZE_BYTES`]: its start, what was
    /// kept of it, and how many bytes were dropped after that.
    oversize: Option<(u64, Bytes, u64)>,
    /// The source the file belongs to, stamped on every line.
    pub source: SourceId,
}

impl Framer {
    pub fn new(offset: u64) -> Framer {
        Framer {
            buf: BytesMut::new(),
            offset,
            scanned: 0,
            oversize: None,
            source: 0,
        }
    }

    /// The framer of a file of `source`.
    pub fn with_source(mut self, source: SourceId) -> Framer {
        self.source = source;
        self
    }

    /// Offset just after the bytes read so far (the file position).
    pub fn read_offset(&self) -> u64 {
        self.offset + self.buf.len() as u64
    }

    /// Offset of the first byte not yet part of an emitted line.
    pub fn line_offset(&self) -> u64 {
        self.oversize.as_ref().map_or(self.offset, |o| o.0)
    }

    /// One `pread` of up to `want` bytes at the read offset, kept in the buffer but not
    /// framed yet: the caller checks the file is still the same one before
    /// [`Framer::frame`] hands its lines on, or takes them back with [`Framer::unfill`].
    /// Returns the bytes read (0 at end of file).
    pub fn fill(&mut self, file: &File, want: usize) -> io::Result<usize> {
        let len = self.buf.len();
        let at = self.read_offset();
        self.buf.resize(len + want.clamp(1, READ_CHUNK), 0);
        let n = loop {
            match file.read_at(&mut self.buf[len..], at) {
                Ok(n) => break n,
                // A signal during pread(2) is retried, never taken for a read error. No
                // unit test can deliver one mid-pread, so the mutant that drops the retry
                // is excluded in .cargo/mutants.toml; the one that retries every error
                // is caught (a_failed_fill_leaves_the_buffer_as_it_was would spin).
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.buf.truncate(len);
                    return Err(e);
                }
            }
        };
        self.buf.truncate(len + n);
        Ok(n)
    }

    /// The last `n` bytes filled (not framed yet).
    pub fn filled(&self, n: usize) -> &[u8] {
        &self.buf[self.buf.len() - n..]
    }

    /// Takes back the last `n` bytes filled: they may belong to another file's content
    /// (the file was truncated while they were read).
    pub fn unfill(&mut self, n: usize) {
        self.buf.truncate(self.buf.len() - n);
        self.scanned = self.scanned.min(self.buf.len());
    }

    /// Appends `data` as if read from the file (the framing tests feed it this way).
    pub fn push(&mut self, data: &[u8], key: FileKey, out: &mut Vec<Line>) {
        self.buf.extend_from_slice(data);
        self.frame(key, out);
    }

    /// Emits the complete lines in the buffer.
    pub fn frame(&mut self, key: FileKey, out: &mut Vec<Line>) {
        while let Some(i) = memchr::memchr(b'\n', &self.buf[self.scanned..]) {
            let take = self.scanned + i + 1;
            let data = self.buf.split_to(take).freeze();
            let end = self.offset + take as u64;
            self.offset = end;
            self.scanned = 0;
            out.push(match self.oversize.take() {
                None => Line {
                    source: self.source,
                    file: key,
                    start: end - take as u64,
                    end,
                    size: take as u64,
                    data,
                },
                Some((start, kept, _dropped)) => Line {
                    source: self.source,
                    file: key,
                    start,
                    end,
                    size: end - start,
                    data: kept,
                },
            });
        }
        self.scanned = self.buf.len();
        self.bound_partial();
    }

    /// Keeps the first [`KEEP_OVERSIZE_BYTES`] of a line that has no end in sight and
    /// drops the rest, remembering its true size.
    fn bound_partial(&mut self) {
        if self.oversize.is_some() {
            let n = self.buf.len() as u64;
            self.buf.clear();
            self.offset += n;
            self.scanned = 0;
            if let Some(o) = self.oversize.as_mut() {
                o.2 += n;
            }
        } else if self.buf.len() > KEEP_OVERSIZE_BYTES {
            let start = self.offset;
            let kept = self.buf.split_to(KEEP_OVERSIZE_BYTES).freeze();
            let dropped = self.buf.len() as u64;
            self.buf.clear();
            self.offset = start + KEEP_OVERSIZE_BYTES as u64 + dropped;
            self.scanned = 0;
            self.oversize = Some((start, kept, dropped));
        }
    }

    /// Emits the partial last line, if any, with a `\n` appended: the file will get no
    /// more bytes that we will read.
    pub fn finish(&mut self, key: FileKey, out: &mut Vec<Line>) {
        let partial = self.buf.split();
        let end = self.offset + partial.len() as u64;
        self.scanned = 0;
        match self.oversize.take() {
            Some((start, kept, _)) => out.push(Line {
                source: self.source,
                file: key,
                start,
                end,
                size: end - start + 1,
                data: kept,
            }),
            None if !partial.is_empty() => {
                let mut data = partial;
                data.extend_from_slice(b"\n");
                out.push(Line {
                    source: self.source,
                    file: key,
                    start: self.offset,
                    end,
                    size: data.len() as u64,
                    data: data.freeze(),
                });
            }
            None => {}
        }
        self.offset = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firehose::MAX_RECORD_BYTES;
    use proptest::prelude::*;

    fn frame_all(chunks: &[&[u8]]) -> (Vec<Line>, Framer) {
        let mut f = Framer::new(0);
        let mut out = Vec::new();
        for c in chunks {
            f.push(c, 7, &mut out);
        }
        (out, f)
    }

    #[test]
    fn a_partial_line_waits_for_its_newline() {
        let (out, mut f) = frame_all(&[b"{\"a\":1}\n{\"b\"", b":2"]);
        assert_eq!(out.len(), 1);
        assert_eq!(&out[0].data[..], b"{\"a\":1}\n");
        assert_eq!((out[0].start, out[0].end), (0, 8));
        assert_eq!(f.line_offset(), 8);
        let mut more = Vec::new();
        f.push(b"}\n", 7, &mut more);
        assert_eq!(&more[0].data[..], b"{\"b\":2}\n");
        assert_eq!((more[0].start, more[0].end), (8, 16));
    }

    #[test]
    fn finish_ships_the_partial_line_with_a_newline_appended() {
        let (_, mut f) = frame_all(&[b"abc"]);
        let mut out = Vec::new();
        f.finish(0, &mut out);
        assert_eq!(&out[0].data[..], b"abc\n");
        assert_eq!((out[0].start, out[0].end, out[0].size), (0, 3, 4));
        let mut none = Vec::new();
        f.finish(0, &mut none);
        assert!(none.is_empty(), "nothing left to finish");
    }

    #[test]
    fn a_huge_line_keeps_its_first_bytes_and_its_true_size() {
        let mut f = Framer::new(0);
        let mut out = Vec::new();
        let block = vec![b'x'; 1024 * 1024];
        for _ in 0..6 {
            f.push(&block, 0, &mut out);
        }
        f.push(b"\nnext\n", 0, &mut out);
        assert_eq!(out.len(), 2);
        assert!(out[0].is_oversize());
        assert_eq!(out[0].data.len(), KEEP_OVERSIZE_BYTES);
        assert!(
            out[0].data.len() > MAX_RECORD_BYTES,
            "the dead-letter entry shows more than a record could hold"
        );
        assert_eq!(out[0].size, 6 * 1024 * 1024 + 1);
        assert_eq!(
            (out[1].start, &out[1].data[..]),
            (6 * 1024 * 1024 + 1, &b"next\n"[..])
        );
    }

    #[test]
    fn an_oversize_line_keeps_its_offsets_anywhere_in_the_file() {
        let mut f = Framer::new(100);
        let mut out = Vec::new();
        let block = vec![b'x'; 1024 * 1024];
        f.push(&block, 0, &mut out);
        f.push(&block, 0, &mut out);
        f.push(b"\n", 0, &mut out);
        let size = 2 * 1024 * 1024 + 1;
        assert_eq!(
            (out[0].start, out[0].end, out[0].size),
            (100, 100 + size, size)
        );
    }

    #[test]
    fn a_line_is_oversize_only_above_the_record_limit() {
        let mut fits = vec![b'x'; MAX_RECORD_BYTES - 1];
        fits.push(b'\n');
        let mut over = vec![b'y'; MAX_RECORD_BYTES];
        over.push(b'\n');
        let (out, _) = frame_all(&[&fits, &over]);
        assert_eq!(
            (out[0].size, out[0].is_oversize()),
            (fits.len() as u64, false)
        );
        assert_eq!(
            (out[1].size, out[1].is_oversize()),
            (over.len() as u64, true)
        );
    }

    #[test]
    fn a_line_is_cut_only_beyond_the_bytes_kept() {
        let (out, _) = frame_all(&[&vec![b'x'; KEEP_OVERSIZE_BYTES], b"\n"]);
        assert_eq!(out[0].data.len(), KEEP_OVERSIZE_BYTES + 1);
        assert_eq!(out[0].data.last(), Some(&b'\n'));
    }

    #[test]
    fn finish_ships_an_oversize_partial_line_with_its_true_size() {
        let mut f = Framer::new(10);
        let mut out = Vec::new();
        let block = vec![b'x'; 1024 * 1024];
        for _ in 0..3 {
            f.push(&block, 0, &mut out);
        }
        assert!(out.is_empty());
        f.finish(0, &mut out);
        let total = 3 * 1024 * 1024;
        assert_eq!((out[0].start, out[0].end), (10, 10 + total));
        assert_eq!(out[0].size, total + 1, "with the newline it was given");
        assert_eq!(out[0].data.len(), KEEP_OVERSIZE_BYTES);
        assert_eq!(f.line_offset(), 10 + total);
    }

    fn file_with(bytes: &[u8]) -> (tempfile::NamedTempFile, File) {
        let mut t = tempfile::NamedTempFile::new().unwrap();
        io::Write::write_all(&mut t, bytes).unwrap();
        let f = File::open(t.path()).unwrap();
        (t, f)
    }

    #[test]
    fn fill_reads_at_the_read_offset_and_unfill_takes_bytes_back() {
        let (_t, file) = file_with(b"one\ntwo\nthree");
        let mut f = Framer::new(0);
        assert_eq!(f.fill(&file, 100).unwrap(), 13);
        assert_eq!(f.filled(13), b"one\ntwo\nthree");
        assert_eq!(f.read_offset(), 13);
        f.unfill(5);
        assert_eq!(f.read_offset(), 8);
        let mut out = Vec::new();
        f.frame(0, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(f.line_offset(), 8);
        assert_eq!(f.fill(&file, 100).unwrap(), 5);
        assert_eq!(f.filled(5), b"three");
        assert_eq!(f.fill(&file, 100).unwrap(), 0, "end of file");
    }

    #[test]
    fn one_fill_reads_a_large_chunk_of_a_backlog_but_not_all_of_it() {
        let (_t, file) = file_with(&vec![b'x'; 512 * 1024]);
        let mut f = Framer::new(0);
        let n = f.fill(&file, usize::MAX).unwrap();
        // Few syscalls for a backlog, and a buffer below glibc's mmap threshold.
        assert!((16 * 1024..128 * 1024).contains(&n), "{n}");
        assert_eq!(f.read_offset(), n as u64);
    }

    #[test]
    fn a_failed_fill_leaves_the_buffer_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let not_a_file = File::open(dir.path()).unwrap();
        let mut f = Framer::new(0);
        let mut out = Vec::new();
        f.push(b"partial", 0, &mut out);
        let e = f.fill(&not_a_file, 100).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EISDIR));
        assert_eq!(f.read_offset(), 7);
        assert_eq!(f.filled(7), b"partial");
    }

    proptest! {
        /// However the bytes arrive (any split into reads), the framer emits exactly
        /// the complete lines, in order, with contiguous offsets, and keeps the rest.
        #[test]
        fn any_chunking_yields_the_same_lines(
            lines in prop::collection::vec(prop::collection::vec(b'a'..=b'z', 0..300), 0..60),
            tail in prop::collection::vec(b'a'..=b'z', 0..50),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..20),
        ) {
            let mut stream: Vec<u8> = Vec::new();
            for l in &lines {
                stream.extend_from_slice(l);
                stream.push(b'\n');
            }
            let complete = stream.len();
            stream.extend_from_slice(&tail);
            let mut points: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
            points.push(0);
            points.push(stream.len());
            points.sort_unstable();
            let chunks: Vec<&[u8]> = points.windows(2).map(|w| &stream[w[0]..w[1]]).collect();
            let (out, f) = frame_all(&chunks);
            prop_assert_eq!(out.len(), lines.len());
            let mut offset = 0u64;
            for (line, want) in out.iter().zip(&lines) {
                prop_assert_eq!(line.start, offset);
                prop_assert_eq!(&line.data[..line.data.len() - 1], &want[..]);
                prop_assert_eq!(line.end - line.start, line.data.len() as u64);
                offset = line.end;
            }
            prop_assert_eq!(offset, complete as u64);
            prop_assert_eq!(f.line_offset(), complete as u64);
            prop_assert_eq!(f.read_offset(), stream.len() as u64);
        }
    }
}
