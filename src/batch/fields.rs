//! fields: the pod's identity on every record — `--add-field`, `--source-field` and
//! `--file-field` spliced into each JSON object line (docs/design.md#sources). Pure.
//!
//! The line is not re-serialised: its bytes stay exactly as the app wrote them, and
//! the fields (`,"key":"value"`, key and value JSON-escaped) go in just before the
//! object's closing `}`, without the comma when the object is empty. Whitespace and
//! the `\n` after the `}` stay where they were.
//!
//! - A key the app already wrote at the top level of its object wins: that field is
//!   left out ([`Splice::AppKept`]), so no key appears twice. Keys are compared after
//!   JSON unescaping (`"pod\u005fname"` is `pod_name`); keys inside nested objects
//!   do not count.
//! - A line that is not a JSON object (an array, a scalar, invalid JSON) is shipped
//!   as it is, without fields ([`Splice::NotObject`]).
//! - A line the fields would push over Firehose's record limit is shipped as the app
//!   wrote it, without fields ([`Splice::TooLarge`]): the app's line was fine, so it
//!   is neither refused nor dead-lettered, and it is counted apart.
//!
//! One pass per line: [`Fields::probe`] validates the JSON and notes which of our keys
//! the app wrote, so the batch stage's classification does both at the cost of the
//! validation alone. The encoded fields are built once ([`Fields::new`]) and once per
//! file ([`Fields::suffix`]), so a line costs a copy and a lookup in a short list.

use std::fmt;

use bytes::BufMut;
use serde::de::{self, DeserializeSeed, Deserializer as _, IgnoredAny, MapAccess, Visitor};

/// What became of one line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Splice {
    /// Every field was added.
    Spliced,
    /// The app had written this many of the fields' keys itself; its values stayed and
    /// the other fields were added.
    AppKept(u32),
    /// Not a JSON object: shipped as it is, without fields.
    NotObject,
    /// With the fields the line would exceed the record limit: shipped as it is.
    TooLarge,
}

/// What [`Fields::probe`] found in a valid JSON text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Shape {
    /// An array or a scalar.
    NotObject,
    /// An object; `app` holds the index of each field whose key the app wrote at its
    /// top level (empty, and so not allocated, for nearly every line).
    Object { app: Vec<u16> },
}

/// The fields to add, encoded once.
#[derive(Clone, Debug)]
pub struct Fields {
    /// Every field's key in order: the `--add-field`s, then the source, then the file.
    keys: Vec<Box<str>>,
    /// Bit `n` set when some key is `n` bytes long (`n` ≥ 63 share bit 63): most of
    /// the app's keys are ruled out by their length alone.
    lengths: u64,
    /// `,"key":"value"` for each `--add-field`, back to back, and where each ends.
    constant: Vec<u8>,
    constant_ends: Vec<usize>,
    /// `,"key":` of the source and file fields.
    source_key: Option<Vec<u8>>,
    file_key: Option<Vec<u8>>,
}

/// The encoded fields for one file: `,"k1":"v1",…` and where each field ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Suffix {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Suffix {
    /// The most bytes a splice adds with it.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    fn piece(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..self.ends[i]]
    }
}

/// `"text"`, JSON-escaped.
fn quoted(text: &str) -> String {
    serde_json::to_string(text).expect("a string always serialises")
}

fn length_bit(len: usize) -> u64 {
    1 << len.min(63)
}

impl Fields {
    /// `add` in the order given, then `"source_field":"<source>"`, then
    /// `"file_field":"<file>"`. The keys are distinct (the command line checks).
    pub fn new(
        add: &[(String, String)],
        source_field: Option<&str>,
        file_field: Option<&str>,
    ) -> Fields {
        let mut keys: Vec<Box<str>> = add.iter().map(|(k, _)| k.as_str().into()).collect();
        keys.extend(source_field.into_iter().chain(file_field).map(Into::into));
        let mut constant = Vec::new();
        let mut constant_ends = Vec::new();
        for (k, v) in add {
            constant.extend_from_slice(format!(",{}:{}", quoted(k), quoted(v)).as_bytes());
            constant_ends.push(constant.len());
        }
        let key_part = |k: &str| format!(",{}:", quoted(k)).into_bytes();
        Fields {
            lengths: keys.iter().fold(0, |m, k| m | length_bit(k.len())),
            keys,
            constant,
            constant_ends,
            source_key: source_field.map(key_part),
            file_key: file_field.map(key_part),
        }
    }

    /// True when no field is configured.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The encoded fields for the lines of one file; the caller keeps it per file.
    pub fn suffix(&self, source: &str, file: &str) -> Suffix {
        let mut bytes = self.constant.clone();
        let mut ends = self.constant_ends.clone();
        for (key, value) in [(&self.source_key, source), (&self.file_key, file)] {
            if let Some(key) = key {
                bytes.extend_from_slice(key);
                bytes.extend_from_slice(quoted(value).as_bytes());
                ends.push(bytes.len());
            }
        }
        Suffix { bytes, ends }
    }

    /// The index of the field whose key is `key` (unescaped).
    fn index_of(&self, key: &[u8]) -> Option<u16> {
        if self.lengths & length_bit(key.len()) == 0 {
            return None;
        }
        let i = self.keys.iter().position(|k| k.as_bytes() == key)?;
        u16::try_from(i).ok()
    }

    /// Validates `body` (a line without its `\n`) as JSON and, for an object, finds the
    /// fields' keys the app wrote at its top level. `None` when it is not JSON: the same
    /// verdict as `serde_json::from_str::<IgnoredAny>` after a UTF-8 check (JSON text is
    /// UTF-8), which the property tests hold it to.
    pub fn probe(&self, body: &[u8]) -> Option<Shape> {
        let text = std::str::from_utf8(body).ok()?;
        let object = text
            .trim_start_matches(|c: char| is_json_space(c as u8))
            .starts_with('{');
        if !object {
            return serde_json::from_str::<IgnoredAny>(text)
                .is_ok()
                .then_some(Shape::NotObject);
        }
        if let Some(app) = self.top_keys(text, KeyAs::Str) {
            return Some(Shape::Object { app });
        }
        // Reading a key as a string refuses what skipping it accepts: a lone UTF-16
        // surrogate (`"\ud800"`). Such a key is none of ours, which are UTF-8; read the
        // keys as bytes instead, once the text is known to be JSON.
        serde_json::from_str::<IgnoredAny>(text).ok()?;
        let app = self.top_keys(text, KeyAs::Bytes).unwrap_or_default();
        Some(Shape::Object { app })
    }

    fn top_keys(&self, text: &str, how: KeyAs) -> Option<Vec<u16>> {
        let mut de = serde_json::Deserializer::from_str(text);
        let app = de.deserialize_map(TopKeys { fields: self, how }).ok()?;
        de.end().ok()?;
        Some(app)
    }

    /// The contract's one-call form: probes `line` (with its trailing `\n`) and splices
    /// the fields for `source` and `file` into `out`. The batch stage uses
    /// [`Fields::probe`] (its classification) and a [`Suffix`] kept per file instead.
    pub fn splice(&self, line: &[u8], source: &str, file: &str, out: &mut Vec<u8>) -> Splice {
        let body = line.strip_suffix(b"\n").unwrap_or(line);
        let shape = self.probe(body).unwrap_or(Shape::NotObject);
        splice_into(line, &shape, &self.suffix(source, file), usize::MAX, out)
    }
}

/// JSON's whitespace (RFC 8259 §2).
fn is_json_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// Writes `line` with the fields of `suffix` the app did not write (`shape`) before its
/// closing `}` into `out`, or `line` as it is when it is no object or the result would
/// be longer than `max` bytes.
pub fn splice_into(
    line: &[u8],
    shape: &Shape,
    suffix: &Suffix,
    max: usize,
    out: &mut impl BufMut,
) -> Splice {
    let Shape::Object { app } = shape else {
        out.put_slice(line);
        return Splice::NotObject;
    };
    let close = line.iter().rposition(|b| !is_json_space(*b));
    let Some(close) = close.filter(|&c| line[c] == b'}') else {
        // A probed object always ends in `}`; anything else is shipped untouched.
        out.put_slice(line);
        return Splice::NotObject;
    };
    let empty = line[..close].iter().rfind(|b| !is_json_space(**b)) == Some(&b'{');
    let wanted = |i: &usize| !app.contains(&(*i as u16));
    let added: usize = (0..suffix.ends.len())
        .filter(wanted)
        .map(|i| suffix.piece(i).len())
        .sum();
    // The empty object's first field goes in without its comma.
    let added = added.saturating_sub(usize::from(empty));
    if line.len() + added > max {
        out.put_slice(line);
        return Splice::TooLarge;
    }
    out.put_slice(&line[..close]);
    let mut first = true;
    for i in (0..suffix.ends.len()).filter(wanted) {
        let piece = suffix.piece(i);
        out.put_slice(if first && empty { &piece[1..] } else { piece });
        first = false;
    }
    out.put_slice(&line[close..]);
    let kept = (0..suffix.ends.len()).filter(|i| !wanted(i)).count();
    match kept {
        0 => Splice::Spliced,
        n => Splice::AppKept(n as u32),
    }
}

/// How [`TopKeys`] reads a key: as a string (which refuses lone surrogates) or as the
/// bytes it unescapes to.
#[derive(Clone, Copy)]
enum KeyAs {
    Str,
    Bytes,
}

/// Visits the top-level object: each key is looked up among the fields', each value
/// skipped (serde_json's fast path, as for [`IgnoredAny`]).
struct TopKeys<'f> {
    fields: &'f Fields,
    how: KeyAs,
}

impl<'de> Visitor<'de> for TopKeys<'_> {
    type Value = Vec<u16>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<u16>, A::Error> {
        let mut app = Vec::new();
        while let Some(hit) = map.next_key_seed(KeySeed(self.fields, self.how))? {
            map.next_value::<IgnoredAny>()?;
            if let Some(i) = hit.filter(|i| !app.contains(i)) {
                app.push(i);
            }
        }
        Ok(app)
    }
}

struct KeySeed<'f>(&'f Fields, KeyAs);

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Option<u16>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Option<u16>, D::Error> {
        match self.1 {
            KeyAs::Str => d.deserialize_str(self),
            KeyAs::Bytes => d.deserialize_bytes(self),
        }
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Option<u16>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Option<u16>, E> {
        Ok(self.0.index_of(key.as_bytes()))
    }

    fn visit_bytes<E: de::Error>(self, key: &[u8]) -> Result<Option<u16>, E> {
        Ok(self.0.index_of(key))
    }
}

#[cfg(test)]
mod tests;
