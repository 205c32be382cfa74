//! sources: what firetail follows and where each goes (docs/design.md#sources).
//!
//! Either one source from `--path` and `--stream` (named [`DEFAULT_SOURCE`]), or any
//! number from `--source name=..,path=..,stream=..` (or `FIRETAIL_SOURCES`, one spec a
//! line); never both, so each thing is said one way. Each spec is checked alone, then
//! against the others: one file is followed by one source, so its lines go to one
//! stream once. Every error names the source — by name once it has a valid one, else by
//! position — and the key.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use glob::{MatchOptions, Pattern};

use super::paths::{check_log_path, dir_problem, log_path_problem, parent_dir};
use super::values::{Given, Origin};
use super::{stream_problem, ConfigError};

/// The name of the one source that `--path` and `--stream` make.
pub const DEFAULT_SOURCE: &str = "default";

/// A name is a metric label value and part of a file name: short, plain, lower case.
const NAME_MAX: usize = 32;
const NAME_RULE: &str = "[a-z0-9][a-z0-9_-]{0,31}";
const KEYS: &str = "the keys are name, path and stream";

/// How a pattern matches a file name: as a shell does, so `*` skips hidden files
/// (firetail's own `.firetail-*` files among them).
pub const MATCH: MatchOptions = MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: true,
};

/// One source: a name, a file or a pattern over the file names of one directory, and
/// the stream its lines go to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SourceConfig {
    pub name: String,
    pub path: PathBuf,
    pub stream: String,
}

impl SourceConfig {
    /// Whether the path is a pattern. Validation keeps wildcards to the file name.
    pub fn is_glob(&self) -> bool {
        self.path.file_name().is_some_and(has_wildcard)
    }

    /// The file-name pattern of a glob source; None for a literal path.
    pub fn pattern(&self) -> Option<Pattern> {
        let name = self.path.file_name()?;
        if !has_wildcard(name) {
            return None;
        }
        Pattern::new(name.to_str()?).ok()
    }

    /// Whether this source follows the file at `path`: the path itself, or a file of
    /// the pattern's directory whose name the pattern matches ([`MATCH`]).
    pub fn matches(&self, path: &Path) -> bool {
        match self.pattern() {
            None => self.path == path,
            Some(p) => {
                parent_dir(path) == parent_dir(&self.path)
                    && path.file_name().is_some_and(|n| name_matches(&p, n))
            }
        }
    }
}

fn has_wildcard(s: &OsStr) -> bool {
    s.as_encoded_bytes()
        .iter()
        .any(|b| matches!(b, b'*' | b'?' | b'['))
}

fn name_matches(pattern: &Pattern, name: &OsStr) -> bool {
    name.to_str()
        .is_some_and(|n| pattern.matches_with(n, MATCH))
}

/// Every source, from whichever form was given, checked alone and together.
pub(super) fn from_given(given: &Given) -> Result<Vec<SourceConfig>, ConfigError> {
    let Some((specs, origin)) = given.list("source", '\n')? else {
        return one_source(given).map(|s| vec![s]);
    };
    if let Some((_, other)) = given.raw("path").or_else(|| given.raw("stream")) {
        return Err(origin.bad(format!(
            "cannot be combined with {}: give every source with {}, or one source with --path and --stream",
            other.name(),
            origin.name()
        )));
    }
    let mut sources = Vec::with_capacity(specs.len());
    for (pos, text) in &specs {
        let at = Position::new(&origin, *pos);
        let source = parse_spec(text).map_err(|(name, p)| at.bad(name.as_deref(), p))?;
        if let Some(j) = sources
            .iter()
            .position(|o: &SourceConfig| o.name == source.name)
        {
            let first = Position::new(&origin, specs[j].0).label();
            let problem = format!("name: {:?} is already the name of {first}", source.name);
            return Err(at.bad(None, problem));
        }
        sources.push(source);
    }
    check_together(&sources).map_err(|(i, name, problem)| {
        Position::new(&origin, specs[i].0).bad(name.as_deref(), problem)
    })?;
    Ok(sources)
}

/// `--path` and `--stream`: one source, with the errors named as they always were.
fn one_source(given: &Given) -> Result<SourceConfig, ConfigError> {
    let (stream, stream_origin) = given
        .text("stream")?
        .ok_or_else(|| missing("--stream", "FIRETAIL_STREAM"))?;
    stream_problem(&stream).map_err(|p| stream_origin.bad(p))?;
    let (path, origin) = given
        .path("path")
        .ok_or_else(|| missing("--path", "FIRETAIL_PATH"))?;
    let source = SourceConfig {
        name: DEFAULT_SOURCE.to_string(),
        path,
        stream,
    };
    if has_wildcard(source.path.as_os_str()) {
        glob_problem(&source.path).map_err(|p| origin.bad(p))?;
    } else {
        check_log_path(&source.path, &origin)?;
    }
    Ok(source)
}

fn missing(flag: &str, var: &str) -> ConfigError {
    ConfigError {
        name: flag.to_string(),
        problem: format!(
            "is required (give {flag} or set {var}; or give every source with --source or FIRETAIL_SOURCES)"
        ),
    }
}

/// Where a spec was written: `--source #2` (the second flag) or `FIRETAIL_SOURCES
/// line 3`; shown with the source's name instead once it has a valid one.
struct Position<'a> {
    origin: &'a Origin,
    pos: usize,
}

impl<'a> Position<'a> {
    fn new(origin: &'a Origin, pos: usize) -> Self {
        Position { origin, pos }
    }

    fn label(&self) -> String {
        match self.origin {
            Origin::Flag(f) => format!("{f} #{}", self.pos),
            Origin::Env(v) => format!("{v} line {}", self.pos),
        }
    }

    fn bad(&self, name: Option<&str>, problem: String) -> ConfigError {
        let at = match name {
            Some(n) => format!("{} {n:?}", self.origin.name()),
            None => self.label(),
        };
        ConfigError { name: at, problem }
    }
}

/// A spec's problem: the source's name when it has a valid one, and the sentence.
type SpecError = (Option<String>, String);

/// `name=web,path=/var/log/app/access.log,stream=web-logs`: each key once, in any
/// order, spaces around items ignored.
fn parse_spec(text: &str) -> Result<SourceConfig, SpecError> {
    let items: Vec<&str> = text.split(',').map(str::trim).collect();
    let named = items
        .iter()
        .filter_map(|i| i.split_once('='))
        .find(|(k, v)| k.trim() == "name" && name_problem(v.trim()).is_none())
        .map(|(_, v)| v.trim().to_string());
    let fail = |p: String| Err((named.clone(), p));
    let (mut name, mut path, mut stream) = (None, None, None);
    for item in &items {
        let Some((key, value)) = item.split_once('=') else {
            if item.is_empty() {
                return fail(format!("has an empty item (a stray comma?); {KEYS}"));
            }
            return fail(format!("{item:?} is not key=value; {KEYS}"));
        };
        let slot = match key.trim() {
            "name" => &mut name,
            "path" => &mut path,
            "stream" => &mut stream,
            k => return fail(format!("unknown key {k:?}; {KEYS}")),
        };
        if slot.is_some() {
            return fail(format!("{}: given twice", key.trim()));
        }
        *slot = Some(value.trim());
    }
    let (Some(name), Some(path), Some(stream)) = (name, path, stream) else {
        let absent = [("name", name), ("path", path), ("stream", stream)]
            .into_iter()
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| k)
            .collect::<Vec<_>>()
            .join(", ");
        return fail(format!(
            "missing {absent}: every source needs name, path and stream"
        ));
    };
    let source = SourceConfig {
        name: name.to_string(),
        path: PathBuf::from(path),
        stream: stream.to_string(),
    };
    let checks = [
        ("name", name_problem(name).map_or(Ok(()), Err)),
        ("stream", stream_problem(stream)),
        ("path", spec_path_problem(&source.path)),
    ];
    for (key, check) in checks {
        if let Err(p) = check {
            return fail(format!("{key}: {p}"));
        }
    }
    Ok(source)
}

fn name_problem(name: &str) -> Option<String> {
    let mut bytes = name.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let rest_ok =
        bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    (!(first_ok && rest_ok && name.len() <= NAME_MAX)).then(|| {
        format!(
            "{name:?} is not a source name ({NAME_RULE}: lower-case letters, digits, '_' and '-', at most {NAME_MAX}, starting with a letter or digit)"
        )
    })
}

/// A spec's path is absolute (a sidecar has no meaningful working directory), then
/// checked as a pattern or as a log path.
fn spec_path_problem(path: &Path) -> Result<(), String> {
    if !path.is_absolute() {
        return Err(format!("{:?} is not absolute", path.display().to_string()));
    }
    if has_wildcard(path.as_os_str()) {
        glob_problem(path)
    } else {
        log_path_problem(path)
    }
}

/// Wildcards only in the file name, so the directory is fixed and can be watched; the
/// pattern must parse, and its directory must exist now, like a log file's.
fn glob_problem(path: &Path) -> Result<(), String> {
    let name = path.file_name().filter(|n| has_wildcard(n));
    let ends_in_slash = path.as_os_str().as_encoded_bytes().ends_with(b"/");
    let (Some(name), false, false) = (
        name,
        ends_in_slash,
        has_wildcard(parent_dir(path).as_os_str()),
    ) else {
        return Err(format!(
            "{} has a wildcard (*, ? or [..]) outside the file name; only the last component may have one",
            path.display()
        ));
    };
    let text = name
        .to_str()
        .ok_or_else(|| format!("{} is a pattern that is not valid UTF-8", path.display()))?;
    Pattern::new(text).map_err(|e| format!("{text:?} is not a valid pattern: {}", e.msg))?;
    dir_problem(parent_dir(path))
}

/// What is wrong between sources: which one (its index), its name, and the sentence.
type TogetherError = (usize, Option<String>, String);

/// No file followed by two sources: the same path, a path another source's pattern
/// matches, or two patterns of one directory that both match a file there now. Each
/// conflict is reported on the later of the two sources.
fn check_together(sources: &[SourceConfig]) -> Result<(), TogetherError> {
    let mut listings = HashMap::new();
    for (i, s) in sources.iter().enumerate() {
        for o in &sources[..i] {
            if let Some(p) = overlap(s, o, &mut listings) {
                return Err((i, Some(s.name.clone()), format!("path: {p}")));
            }
        }
    }
    Ok(())
}

/// Why `later` and `earlier` would follow one file, if they would.
fn overlap(
    later: &SourceConfig,
    earlier: &SourceConfig,
    listings: &mut HashMap<PathBuf, Vec<std::ffi::OsString>>,
) -> Option<String> {
    let dir = real_dir(&later.path);
    if dir != real_dir(&earlier.path) {
        return None;
    }
    let (lname, ename) = (later.path.file_name()?, earlier.path.file_name()?);
    let other = &earlier.name;
    match (later.pattern(), earlier.pattern()) {
        _ if lname == ename => Some(format!(
            "{} is also the path of source {other:?}; one file is followed by one source",
            later.path.display()
        )),
        (None, None) => None,
        (None, Some(p)) => name_matches(&p, lname).then(|| {
            format!(
                "{} is matched by the pattern {} of source {other:?}; one file is followed by one source",
                later.path.display(),
                earlier.path.display()
            )
        }),
        (Some(p), None) => name_matches(&p, ename).then(|| {
            format!(
                "the pattern {} matches {}, the path of source {other:?}; one file is followed by one source",
                later.path.display(),
                earlier.path.display()
            )
        }),
        (Some(p), Some(q)) => {
            let present = listings.entry(dir.clone()).or_insert_with(|| files_in(&dir));
            let both = present
                .iter()
                .find(|f| name_matches(&p, f) && name_matches(&q, f))?;
            Some(format!(
                "the pattern {} and the pattern {} of source {other:?} both match {}; one file is followed by one source",
                later.path.display(),
                earlier.path.display(),
                dir.join(both).display()
            ))
        }
    }
}

/// The directory with symbolic links resolved, so two spellings of one directory
/// compare equal; as written when it cannot be resolved.
fn real_dir(path: &Path) -> PathBuf {
    let dir = parent_dir(path);
    std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf())
}

/// The names of the entries of `dir` that are not directories, sorted so the file an
/// error names does not depend on the directory's order.
fn files_in(dir: &Path) -> Vec<std::ffi::OsString> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| !t.is_dir()))
        .map(|e| e.file_name())
        .collect();
    names.sort();
    names
}

#[cfg(test)]
mod tests;
