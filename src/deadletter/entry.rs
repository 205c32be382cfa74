//! One dead-letter entry and its JSON line, streamed: a 4 MiB line of control bytes
//! escapes to ~24 MiB of JSON (`\u0001` is six bytes), so the JSON is never built in
//! memory — it goes through a small buffer to the file.

use std::io::{self, Write};
use std::path::PathBuf;
use std::time::SystemTime;

use base64::display::Base64Display;
use bytes::Bytes;
use serde::{Serialize, Serializer};

use crate::outcome::DeadLetterReason;

/// A line on its way to the dead-letter file. Cheap to clone (the data is shared).
#[derive(Clone, Debug)]
pub struct Pending {
    pub time: SystemTime,
    pub file: PathBuf,
    pub offset: u64,
    pub reason: DeadLetterReason,
    /// The line with its `\n`, or only its first bytes when it is huge.
    pub data: Bytes,
    /// The line's full size in bytes, with its `\n`.
    pub size: u64,
}

#[derive(Serialize)]
struct Entry<'a> {
    time: String,
    file: &'a std::path::Path,
    offset: u64,
    reason: &'a str,
    size: u64,
    line: Line<'a>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    line_base64: bool,
    /// True when only the first bytes of a huge line are kept here; the rest is still
    /// in the log file at `offset`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    line_cut: bool,
}

/// The line as a JSON string: as it is when UTF-8, else base64 — both streamed.
enum Line<'a> {
    Text(&'a str),
    Base64(&'a [u8]),
}

impl Serialize for Line<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Line::Text(t) => s.serialize_str(t),
            Line::Base64(b) => s.collect_str(&Base64Display::new(
                b,
                &base64::engine::general_purpose::STANDARD,
            )),
        }
    }
}

impl Pending {
    /// Writes the entry's JSON line (with its `\n`) to `w`.
    pub fn encode_to(&self, w: &mut impl Write) -> io::Result<()> {
        let body = self.data.strip_suffix(b"\n").unwrap_or(&self.data);
        let (line, line_base64) = match std::str::from_utf8(body) {
            Ok(s) => (Line::Text(s), false),
            Err(_) => (Line::Base64(body), true),
        };
        let entry = Entry {
            time: humantime::format_rfc3339_millis(self.time).to_string(),
            file: &self.file,
            offset: self.offset,
            reason: self.reason.as_str(),
            size: self.size,
            line,
            line_base64,
            line_cut: (self.data.len() as u64) < self.size,
        };
        serde_json::to_writer(&mut *w, &entry).map_err(io::Error::from)?;
        w.write_all(b"\n")
    }

    /// The length of [`Pending::encode_to`]'s output, without keeping it.
    pub fn encoded_len(&self) -> u64 {
        let mut count = Count(0);
        self.encode_to(&mut count)
            .expect("counting bytes cannot fail");
        count.0
    }
}

struct Count(u64);

impl Write for Count {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(data: &[u8], size: u64) -> Pending {
        Pending {
            time: SystemTime::UNIX_EPOCH,
            file: PathBuf::from("/a.log"),
            offset: 7,
            reason: DeadLetterReason::Oversize,
            data: Bytes::copy_from_slice(data),
            size,
        }
    }

    fn encode(p: &Pending) -> serde_json::Value {
        let mut out = Vec::new();
        p.encode_to(&mut out).unwrap();
        assert_eq!(out.last(), Some(&b'\n'));
        assert_eq!(out.len() as u64, p.encoded_len());
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn text_lines_are_strings_and_binary_is_base64() {
        let row = encode(&pending(b"{\"x\":1}\n", 8));
        assert_eq!(row["line"], "{\"x\":1}");
        assert_eq!(row["offset"], 7);
        assert_eq!(row["reason"], "oversize");
        assert_eq!(row["time"], "1970-01-01T00:00:00.000Z");
        assert!(row.get("line_base64").is_none());
        let row = encode(&pending(b"\xff\x00\n", 3));
        assert_eq!(row["line"], "/wA=");
        assert_eq!(row["line_base64"], true);
    }

    #[test]
    fn control_bytes_round_trip_and_a_cut_line_says_so() {
        let data: Vec<u8> = (0u8..32).cycle().take(10_000).collect();
        let row = encode(&pending(&data, 20_000));
        assert_eq!(row["line"].as_str().unwrap().as_bytes(), &data[..]);
        assert_eq!(row["line_cut"], true);
        assert_eq!(row["size"], 20_000);
    }

    #[test]
    fn base64_streams_to_the_same_text_as_encoding_at_once() {
        use base64::Engine;
        let data: Vec<u8> = (0..=255u8).cycle().take(100_001).collect();
        let row = encode(&pending(&data, data.len() as u64));
        let whole = base64::engine::general_purpose::STANDARD.encode(&data);
        assert_eq!(row["line"].as_str().unwrap(), whole);
    }
}
