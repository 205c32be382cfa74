//! splicer: the batch stage's side of the added fields — each record line gets the
//! fields of its source and file ([`super::fields`]) before it joins a record.
//!
//! Dead-lettered and skipped lines are never spliced: the dead-letter file keeps what
//! the app wrote. A line the fields would push over the record limit is shipped as
//! written and counted ([`Splice::TooLarge`]), with a WARN at most once a minute.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;

use super::fields::{splice_into, Fields, Shape, Splice, Suffix};
use crate::config::Config;
use crate::firehose::MAX_RECORD_BYTES;
use crate::handover::{Line, SourceId};
use crate::log_throttle::LogThrottle;
use crate::metrics::Metrics;
use crate::progress::{FileKey, Progress};

/// Where the batch stage counts what became of each line's fields, per source: the
/// pipeline passes its [`Metrics`], tests a [`FieldTally`].
pub trait FieldCounts: Send + Sync {
    /// One record line of `source` was spliced with the outcome `what`.
    fn count(&self, source: SourceId, what: Splice);
}

/// The sidecar's series: a line too large with the fields is shipped without them, as
/// a line that is no object is, and counted with those (its WARN tells them apart).
impl FieldCounts for Metrics {
    fn count(&self, source: SourceId, what: Splice) {
        let m = self.source(source);
        match what {
            Splice::Spliced => {}
            Splice::AppKept(_) => {
                m.fields_app_kept.inc();
            }
            Splice::NotObject | Splice::TooLarge => {
                m.fields_not_object.inc();
            }
        }
    }
}

/// The fields and what the batch stage needs to write them.
#[derive(Clone)]
pub struct FieldSettings {
    pub fields: Arc<Fields>,
    /// Every source's name, indexed by [`SourceId`] (the `--source-field` value).
    pub sources: Vec<String>,
    pub counts: Arc<dyn FieldCounts>,
}

/// Lines per source and outcome, in memory (tests).
#[derive(Debug, Default)]
pub struct FieldTally(std::sync::Mutex<HashMap<(SourceId, &'static str), u64>>);

impl FieldTally {
    /// Lines of `source` whose outcome was of the kind of `what`.
    pub fn get(&self, source: SourceId, what: Splice) -> u64 {
        let counts = self.0.lock().unwrap();
        counts.get(&(source, kind(what))).copied().unwrap_or(0)
    }
}

fn kind(what: Splice) -> &'static str {
    match what {
        Splice::Spliced => "spliced",
        Splice::AppKept(_) => "app_kept",
        Splice::NotObject => "not_object",
        Splice::TooLarge => "too_large",
    }
}

impl FieldCounts for FieldTally {
    fn count(&self, source: SourceId, what: Splice) {
        *self
            .0
            .lock()
            .unwrap()
            .entry((source, kind(what)))
            .or_default() += 1;
    }
}

/// Files whose fields are kept encoded; past this the cache starts afresh (keys only
/// grow, so old files' entries are dead weight).
const CACHED_FILES: usize = 4096;
/// Spliced lines are written into shared buffers of this size: one allocation for
/// many records instead of one each.
const ARENA: usize = 64 << 10;

/// Splices record lines, keeping each file's encoded fields.
pub struct Splicer {
    settings: FieldSettings,
    suffixes: HashMap<FileKey, Suffix>,
    arena: BytesMut,
    too_large: LogThrottle,
}

impl fmt::Debug for FieldSettings {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.debug_struct("FieldSettings")
            .field("fields", &self.fields)
            .field("sources", &self.sources)
            .finish_non_exhaustive()
    }
}

impl FieldSettings {
    /// The configured fields for the sources of `config`; `None` when there are none.
    pub fn from_config(config: &Config, counts: Arc<dyn FieldCounts>) -> Option<FieldSettings> {
        let fields = Fields::new(
            &config.add_fields,
            config.source_field.as_deref(),
            config.file_field.as_deref(),
        );
        (!fields.is_empty()).then(|| FieldSettings {
            fields: Arc::new(fields),
            sources: config.sources.iter().map(|s| s.name.clone()).collect(),
            counts,
        })
    }
}

impl Splicer {
    pub fn new(settings: FieldSettings) -> Splicer {
        Splicer {
            settings,
            suffixes: HashMap::new(),
            arena: BytesMut::new(),
            too_large: LogThrottle::new(Duration::from_secs(60)),
        }
    }

    pub fn fields(&self) -> &Fields {
        &self.settings.fields
    }

    /// The line as it is shipped: with the fields when it is a JSON object (`shape`,
    /// from the classification), else as it is; the outcome is counted.
    pub fn splice(&mut self, line: &Line, shape: &Shape, progress: &Progress) -> Line {
        let source = line.source;
        let suffix = suffix_of(&mut self.suffixes, &self.settings, line, progress);
        let need = line.data.len() + suffix.len();
        if self.arena.capacity() < need {
            self.arena = BytesMut::with_capacity(need.max(ARENA));
        }
        let what = match shape {
            Shape::NotObject => Splice::NotObject,
            Shape::Object { .. } => {
                splice_into(&line.data, shape, suffix, MAX_RECORD_BYTES, &mut self.arena)
            }
        };
        let data = match what {
            Splice::Spliced | Splice::AppKept(_) => self.arena.split().freeze(),
            // Unchanged: the line's own bytes, not a copy.
            Splice::NotObject | Splice::TooLarge => {
                self.arena.clear();
                line.data.clone()
            }
        };
        self.settings.counts.count(source, what);
        if what == Splice::TooLarge {
            self.warn_too_large(source);
        }
        Line {
            size: data.len() as u64,
            data,
            ..line.clone()
        }
    }

    fn warn_too_large(&self, source: SourceId) {
        if let Some(lines) = self.too_large.note(1) {
            let name = self.settings.sources.get(usize::from(source));
            tracing::warn!(
                source = name.map_or("", String::as_str),
                lines,
                limit = MAX_RECORD_BYTES,
                "Lines shipped without the added fields: with them they would exceed the record limit."
            );
        }
    }
}

/// The encoded fields of the line's file; its path is asked of the ledger once per file.
fn suffix_of<'c>(
    cache: &'c mut HashMap<FileKey, Suffix>,
    settings: &FieldSettings,
    line: &Line,
    progress: &Progress,
) -> &'c Suffix {
    if cache.len() >= CACHED_FILES && !cache.contains_key(&line.file) {
        cache.clear();
    }
    cache.entry(line.file).or_insert_with(|| {
        let sources = &settings.sources;
        let name = sources
            .get(usize::from(line.source))
            .map_or("", String::as_str);
        // A path that is not UTF-8 is written with U+FFFD for its odd bytes.
        let path = progress.path_of(line.file);
        settings.fields.suffix(name, &path.to_string_lossy())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::{Chain, Identity};
    use bytes::Bytes;
    use std::path::Path;

    fn splicer() -> (Splicer, Arc<FieldTally>, Progress) {
        let tally = Arc::new(FieldTally::default());
        let settings = FieldSettings {
            fields: Arc::new(Fields::new(&[], Some("src"), Some("file"))),
            sources: vec!["web".into(), "jobs".into()],
            counts: tally.clone(),
        };
        let progress = Progress::new(u64::MAX, Default::default());
        let identity = Identity {
            dev: 1,
            ino: 2,
            fp_len: 0,
            fp_hash: 0,
        };
        progress.open(7, &Chain::default(), &identity, Path::new("/l/a.log"), 0);
        (Splicer::new(settings), tally, progress)
    }

    fn object_line(source: SourceId, body_len: usize) -> Line {
        let mut text = format!("{{\"a\":\"{}\"}}", "x".repeat(body_len)).into_bytes();
        text.push(b'\n');
        Line {
            source,
            file: 7,
            start: 0,
            end: text.len() as u64,
            size: text.len() as u64,
            data: Bytes::from(text),
        }
    }

    fn shape() -> Shape {
        Shape::Object { app: vec![] }
    }

    /// The file field names the path the file had when its first line was spliced: a
    /// rename (rotation) afterwards does not change it, and the ledger is asked once.
    #[test]
    fn a_file_keeps_the_path_it_had_at_its_first_line() {
        let (mut s, tally, progress) = splicer();
        let first = s.splice(&object_line(1, 1), &shape(), &progress);
        progress.set_path(7, Path::new("/l/a.log.1"));
        let second = s.splice(&object_line(1, 1), &shape(), &progress);
        let expected = "{\"a\":\"x\",\"src\":\"jobs\",\"file\":\"/l/a.log\"}\n";
        assert_eq!(first.data, expected);
        assert_eq!(second.data, expected);
        assert_eq!(
            first.size,
            expected.len() as u64,
            "the size is the record's"
        );
        assert_eq!(tally.get(1, Splice::Spliced), 2);
    }

    /// A line that fits the record limit as written but not with the fields is shipped
    /// as written (the app's line is fine: no dead letter) and counted apart.
    #[test]
    fn a_line_too_large_with_the_fields_is_shipped_as_written() {
        let (mut s, tally, progress) = splicer();
        let added = r#","src":"web","file":"/l/a.log""#.len();
        let fits = object_line(0, MAX_RECORD_BYTES - added - 9);
        let out = s.splice(&fits, &shape(), &progress);
        assert_eq!(out.data.len(), MAX_RECORD_BYTES, "at the limit exactly");
        let over = object_line(0, MAX_RECORD_BYTES - added - 8);
        let out = s.splice(&over, &shape(), &progress);
        assert_eq!(out.data, over.data);
        assert!(!out.is_oversize());
        assert_eq!(tally.get(0, Splice::TooLarge), 1);
        assert_eq!(tally.get(0, Splice::Spliced), 1);
    }

    #[test]
    fn no_configured_field_means_no_field_settings() {
        let dir = tempfile::tempdir().unwrap();
        let path = format!("--path={}", dir.path().join("app.log").display());
        let argv = ["firetail", &path, "--stream=s"];
        let mut config = crate::config::parse_from(argv, &|_| None).unwrap();
        assert!(FieldSettings::from_config(&config, Arc::new(FieldTally::default())).is_none());
        config.file_field = Some("file".into());
        let s = FieldSettings::from_config(&config, Arc::new(FieldTally::default())).unwrap();
        assert_eq!(s.sources.len(), config.sources.len());
    }

    /// The sidecar's series: kept keys in one, lines shipped without the fields (no
    /// object, or too large with them) in the other, each under its own source.
    #[test]
    fn the_metrics_count_kept_keys_and_lines_without_fields_per_source() {
        let m = Metrics::new(&["web".into(), "jobs".into()], &["s".into()]);
        for what in [
            Splice::Spliced,
            Splice::AppKept(2),
            Splice::NotObject,
            Splice::TooLarge,
        ] {
            m.count(1, what);
        }
        let (web, jobs) = (m.source(0), m.source(1));
        assert_eq!(
            (jobs.fields_app_kept.get(), jobs.fields_not_object.get()),
            (1, 2)
        );
        assert_eq!(
            (web.fields_app_kept.get(), web.fields_not_object.get()),
            (0, 0)
        );
    }
}
