//! disposition: what becomes of one line — a record, skipped by design, or the
//! dead-letter file (docs/design.md#files-and-lines). Pure.

use super::fields::{Fields, Shape};
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
        Disposition::probed(line, invalid_json, None).0
    }

    /// Decides a line's fate and, when fields are added, what the splice needs to know
    /// of its JSON: one parse does both ([`Fields::probe`]). The shape is
    /// [`Shape::NotObject`] for every line that is not a JSON object record.
    pub fn probed(
        line: &Line,
        invalid_json: InvalidJson,
        fields: Option<&Fields>,
    ) -> (Disposition, Shape) {
        let not_object = |d| (d, Shape::NotObject);
        if line.is_oversize() {
            return not_object(Disposition::DeadLetter(DeadLetterReason::Oversize));
        }
        let body = line.data.strip_suffix(b"\n").unwrap_or(&line.data);
        if body.iter().all(u8::is_ascii_whitespace) {
            return not_object(Disposition::Skip(SkipReason::Empty));
        }
        if body.starts_with(LOGGER_HEADER) {
            return not_object(Disposition::Skip(SkipReason::Header));
        }
        let shape = match fields {
            Some(fields) => fields.probe(body),
            // JSON text is UTF-8 (RFC 8259 §8.1); `from_slice` into `IgnoredAny` skips
            // strings without validating them, so check the encoding first.
            None => std::str::from_utf8(body)
                .is_ok_and(|s| serde_json::from_str::<serde::de::IgnoredAny>(s).is_ok())
                .then_some(Shape::NotObject),
        };
        let json = shape.is_some();
        if !json && invalid_json == InvalidJson::DeadLetter {
            return not_object(Disposition::DeadLetter(DeadLetterReason::InvalidJson));
        }
        (
            Disposition::Record { json },
            shape.unwrap_or(Shape::NotObject),
        )
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

    /// With fields, classification also tells the splice what the line is; the fate of
    /// every line stays what it is without them.
    #[test]
    fn probing_for_fields_changes_no_line_fate() {
        let fields = Fields::new(&[("pod".into(), "p".into())], None, None);
        let lines: [&[u8]; 7] = [
            b"{\"pod\":1}\n",
            b"{\"a\":1}\n",
            b"[1]\n",
            b"{\"a\":\n",
            b"  \n",
            b"# Logfile created on 2026-11-26 by logger.rb/v1.6.0\n",
            b"{\"a\":\"caf\xe9\"}\n",
        ];
        let shapes = lines.map(|text| {
            let l = Line {
                data: Bytes::copy_from_slice(text),
                size: text.len() as u64,
                ..line(0, 0, 0)
            };
            for invalid in [InvalidJson::Ship, InvalidJson::DeadLetter] {
                let (d, _) = Disposition::probed(&l, invalid, Some(&fields));
                assert_eq!(d, Disposition::of(&l, invalid), "{text:?}");
            }
            Disposition::probed(&l, InvalidJson::Ship, Some(&fields)).1
        });
        let object = |app: Vec<u16>| Shape::Object { app };
        let not = Shape::NotObject;
        assert_eq!(
            shapes,
            [
                object(vec![0]),
                object(vec![]),
                not.clone(),
                not.clone(),
                not.clone(),
                not.clone(),
                not
            ]
        );
    }
}
