//! Several sources per sidecar, on the built binary (docs/design.md#sources): one
//! firetail follows several files, literal paths and globs, each source shipping to
//! its own stream, and every file is followed as the one file always was —
//! rotations, copytruncate, restarts, kills — while a throttled or flooded stream
//! holds up only its own lines.
//!
//! The sink is the fake Firehose knowing a family of streams (`firetail-test-<x>`),
//! which records the stream each accepted line was sent to and when its call was
//! read: "each line in its own stream only" and per-line latency are counted from
//! what it received. Each test prints `sources <name> <stream>: written=N
//! delivered=N lost=N duplicated=N misplaced=N` per stream.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::files::compare;
use crate::support::fake_firehose::{FakeConfig, FakeFirehose, Faults};
use crate::support::firetail::{base_args, Firetail};
use crate::support::skip::skip_or_fail;

mod burst;
mod chaos;
mod globs;
mod isolation;
mod kill;
mod rotation;

/// Deadline for anything that should take seconds; reached only when broken.
pub(crate) const LONG: Duration = Duration::from_secs(90);

/// A fake Firehose that knows every stream named `firetail-test-<x>`.
pub(crate) fn family_fake(faults: Faults) -> FakeFirehose {
    FakeFirehose::start(FakeConfig {
        stream_family: true,
        faults,
        ..FakeConfig::default()
    })
}

/// The stream `firetail-test-<name>` of the fake's family.
pub(crate) fn stream(fake: &FakeFirehose, name: &str) -> String {
    format!("{}-{name}", fake.stream_name())
}

/// One `--source`: its name, path (or glob) and stream.
#[derive(Clone, Debug)]
pub(crate) struct Source {
    pub(crate) name: String,
    pub(crate) path: PathBuf,
    pub(crate) stream: String,
}

impl Source {
    pub(crate) fn new(name: &str, path: &Path, stream: &str) -> Source {
        Source {
            name: name.to_owned(),
            path: path.to_path_buf(),
            stream: stream.to_owned(),
        }
    }

    fn arg(&self) -> String {
        format!(
            "--source=name={},path={},stream={}",
            self.name,
            self.path.display(),
            self.stream
        )
    }
}

/// The flags every test passes ([`base_args`]: a free metrics port, short flush and
/// drain settings) with `--source` for each source instead of `--path`/`--stream`,
/// then `extra` (`--flag=value`), each replacing the value given before (clap refuses
/// a flag given twice).
pub(crate) fn source_args(sources: &[Source], extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = base_args(Path::new("/unused"), "unused")
        .into_iter()
        .filter(|a| !a.starts_with("--path=") && !a.starts_with("--stream="))
        .collect();
    args.extend(sources.iter().map(Source::arg));
    for e in extra {
        let flag = e.split_once('=').map_or(*e, |(f, _)| f);
        let prefix = format!("{flag}=");
        args.retain(|a| !a.starts_with(&prefix));
        args.push((*e).to_owned());
    }
    args
}

/// True when every tool runs; otherwise the test cannot build its world: it fails
/// under CI and is reported skipped elsewhere (the caller returns).
pub(crate) fn tools_present(tools: &[&str]) -> bool {
    for tool in tools {
        let runs = Command::new(tool)
            .arg("--version")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !runs {
            skip_or_fail(&format!("{tool} is not installed (scripts/system-deps.sh)"));
            return false;
        }
    }
    true
}

/// What one stream got compared with what its sources wrote.
#[derive(Debug)]
pub(crate) struct StreamFigures {
    pub(crate) duplicated: usize,
}

/// Compares, stream by stream, what the fake accepted with what was written for it
/// (`expected`: stream → lines). Asserts that no stream got a line written for
/// another stream or never written, that no other stream got anything, and that at
/// most `may_lose` lines are missing per stream; prints the figures and returns them.
pub(crate) fn per_stream(
    name: &str,
    fake: &FakeFirehose,
    expected: &[(&str, &[String])],
    may_lose: usize,
    ft: &Firetail,
) -> BTreeMap<String, StreamFigures> {
    let mut got: HashMap<String, Vec<String>> = HashMap::new();
    for l in fake.accepted_lines_by_stream() {
        got.entry(l.stream.to_string()).or_default().push(l.line);
    }
    let known: Vec<&str> = expected.iter().map(|(s, _)| *s).collect();
    for (stream, lines) in &got {
        assert!(
            known.contains(&stream.as_str()),
            "{} lines went to {stream}, which no source ships to",
            lines.len()
        );
    }
    let mut out = BTreeMap::new();
    for (stream, written) in expected {
        let empty = Vec::new();
        let d = compare(written, got.get(*stream).unwrap_or(&empty));
        println!(
            "sources {name} {stream}: written={} delivered={} lost={} duplicated={} misplaced={}",
            written.len(),
            written.len() - d.missing_count,
            d.missing_count,
            d.duplicates,
            d.unexpected_count
        );
        assert_eq!(
            d.unexpected_count,
            0,
            "{stream} got lines not written for it (another source's, or invented): {:?}\n{}",
            d.unexpected,
            ft.dump()
        );
        assert!(
            d.missing_count <= may_lose,
            "{stream}: {} lines lost (at most {may_lose} allowed): {:?}\n{}",
            d.missing_count,
            d.missing,
            ft.dump()
        );
        out.insert(
            (*stream).to_owned(),
            StreamFigures {
                duplicated: d.duplicates,
            },
        );
    }
    out
}

/// Distinct lines accepted (any stream).
pub(crate) fn distinct(fake: &FakeFirehose) -> usize {
    let mut seen = std::collections::HashSet::new();
    fake.for_each_accepted_line(|l| {
        seen.insert(l.to_vec());
    });
    seen.len()
}

/// A latency figure: p50, p99 and max of `samples`, in milliseconds.
pub(crate) fn percentiles(samples: &[Duration]) -> (f64, f64, f64) {
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99), at(1.0))
}

/// The latency promise (docs/deploying.md, `--flush-interval`): a line reaches
/// Firehose at most one flush interval and a quarter of one, the quarter capped at
/// 250 ms, after it was written.
pub(crate) fn latency_bound(flush: Duration) -> Duration {
    flush + (flush / 4).min(Duration::from_millis(250))
}
