//! disposition: what becomes of one line — a record, skipped by design, or the
//! dead-letter file (docs/design.md#files-and-lines). Pure.

use crate::config::InvalidJson;
use crate::handover::Line;
use crate::outcome::{DeadLetterReason, SkipReason};

/// What becomes of one line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disposition {
    /// Shipped; `json` tells whether it may share a record with others (`--aggregate`).
    Record { json: bool },
    /// Not shipped by design, with the reason.
    Skip(SkipReason),
    /// Written to the dead-letter file, with the reason.
    DeadLetter(DeadLetterReason),
}

/// Ruby's `Logger` writes this first line unless `skip_header` is set.
const LOGGER_HEADER: &[u8] = b"# Logfile created on ";

impl Disposition {
    /// Decides a line's fate (docs/design.md#files-and-lines).
    pub fn of(line: &Line, invalid_json: InvalidJson) -> Disposition {
        if line.is_oversize() {
            return Disposition::DeadLetter(DeadLetterReason::Oversize);
        }
        let body = line.data.strip_suffix(b"\n").unwrap_or(&line.data);
        if body.iter().all(u8::is_ascii_whitespace) {
            return Disposition::Skip(SkipReason::Empty);
        }
        if body.starts_with(LOGGER_HEADER) {
            return Disposition::Skip(SkipReason::Header);
        }
        // JSON text is UTF-8 (RFC 8259 §8.1); `from_slice` into `IgnoredAny` skips strings
        // without validating them, so check the encoding first.
        let json = std::str::from_utf8(body)
            .is_ok_and(|s| serde_json::from_str::<serde::de::IgnoredAny>(s).is_ok());
        if !json && invalid_json == InvalidJson::DeadLetter {
            return Disposition::DeadLetter(DeadLetterReason::InvalidJson);
        }
        Disposition::Record { json }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firehose::MAX_RECORD_BYTES;
    use bytes::Bytes;

    use crate::handover::test_line as line;

    #[test]
    fn classify_follows_design() {
        let mk = |s: &[u8]| Line {
            source: 0,
            file: 0,
            start: 0,
            end: s.len() as u64,
            size: s.len() as u64,
            data: Bytes::copy_from_slice(s),
        };
        let ship = InvalidJson::Ship;
        assert_eq!(
            Disposition::of(&mk(b"{\"a\":1}\n"), ship),
            Disposition::Record { json: true }
        );
        assert_eq!(
            Disposition::of(&mk(b"\n"), ship),
            Disposition::Skip(SkipReason::Empty)
        );
        assert_eq!(
            Disposition::of(&mk(b"  \r\n"), ship),
            Disposition::Skip(SkipReason::Empty)
        );
        assert_eq!(
            Disposition::of(
                &mk(b"# Logfile created on 2026-11-26 by logger.rb/v1.6.0\n"),
                ship
            ),
            Disposition::Skip(SkipReason::Header)
        );
        assert_eq!(
            Disposition::of(&mk(b"{\"a\":\n"), ship),
            Disposition::Record { json: false }
        );
        assert_eq!(
            Disposition::of(&mk(b"\xff\xfe\x00\n"), ship),
            Disposition::Record { json: false }
        );
        // Well-formed JSON around a string that is not UTF-8 is not JSON.
        assert_eq!(
            Disposition::of(&mk(b"{\"a\":\"caf\xe9\"}\n"), ship),
            Disposition::Record { json: false }
        );
        assert_eq!(
            Disposition::of(&mk(b"not json\n"), InvalidJson::DeadLetter),
            Disposition::DeadLetter(DeadLetterReason::InvalidJson)
        );
        let big = line(0, 0, MAX_RECORD_BYTES);
        assert_eq!(
            Disposition::of(&big, ship),
            Disposition::DeadLetter(DeadLetterReason::Oversize)
        );
        let just_fits = line(0, 0, MAX_RECORD_BYTES - 1);
        assert!(!just_fits.is_oversize());
    }
}
