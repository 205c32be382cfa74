//! The small parsers behind every option, and where each value came from.
//!
//! Each parser takes the raw text and returns the typed value or a sentence saying
//! what is wrong; [`Given`] looks a value up (flag, then `FIRETAIL_*` variable, then
//! default) so the error names what the user actually wrote.

use std::ffi::OsString;
use std::ops::RangeInclusive;
use std::time::Duration;

use clap::{ArgMatches, Command, ValueEnum};

use super::ConfigError;

/// Where a value came from: the name an error must use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// `--flag` on the command line, or the default of that flag.
    Flag(String),
    /// A `FIRETAIL_*` environment variable.
    Env(String),
}

impl Origin {
    /// The flag or the variable, as the user wrote it.
    pub fn name(&self) -> &str {
        match self {
            Origin::Flag(f) | Origin::Env(f) => f,
        }
    }

    pub fn bad(&self, problem: impl Into<String>) -> ConfigError {
        ConfigError {
            name: self.name().to_string(),
            problem: problem.into(),
        }
    }
}

/// One value of a repeatable option: its position (from 1) and its text.
pub type Item = (usize, String);

/// The parsed command line plus the environment it runs in. clap's own environment
/// reading is switched off (see `super::parse_from`), so that values from the
/// environment come from a lookup function tests can hand in as a map.
pub struct Given<'a> {
    matches: ArgMatches,
    /// (argument id, `--flag`, variable) for every option.
    names: Vec<(String, String, Option<String>)>,
    env: &'a dyn Fn(&str) -> Option<OsString>,
}

impl<'a> Given<'a> {
    pub fn new(
        cmd: &Command,
        matches: ArgMatches,
        env: &'a dyn Fn(&str) -> Option<OsString>,
    ) -> Given<'a> {
        let names = cmd
            .get_arguments()
            .filter_map(|a| {
                let long = a.get_long()?;
                let var = a.get_env().map(|v| v.to_string_lossy().into_owned());
                Some((a.get_id().to_string(), format!("--{long}"), var))
            })
            .collect();
        Given {
            matches,
            names,
            env,
        }
    }

    fn names(&self, id: &str) -> (&str, Option<&str>) {
        let (_, flag, var) = self
            .names
            .iter()
            .find(|(i, _, _)| i == id)
            .unwrap_or_else(|| panic!("no option {id}"));
        (flag, var.as_deref())
    }

    /// The flag's value if given, else a non-empty variable's, else the flag's default;
    /// with its origin. None when none of the three exists.
    pub fn raw(&self, id: &str) -> Option<(OsString, Origin)> {
        let (flag, var) = self.names(id);
        let from_flag = || {
            let v = self.matches.get_raw(id)?.next()?;
            Some((v.to_os_string(), Origin::Flag(flag.to_string())))
        };
        let given = self.matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine);
        if given {
            return from_flag();
        }
        if let Some(var) = var {
            if let Some(v) = (self.env)(var).filter(|v| !v.is_empty()) {
                return Some((v, Origin::Env(var.to_string())));
            }
        }
        from_flag()
    }

    /// The value as text, or an error naming where non-UTF-8 bytes came from.
    pub fn text(&self, id: &str) -> Result<Option<(String, Origin)>, ConfigError> {
        match self.raw(id) {
            None => Ok(None),
            Some((v, origin)) => match v.into_string() {
                Ok(s) => Ok(Some((s, origin))),
                Err(_) => Err(origin.bad("is not valid UTF-8")),
            },
        }
    }

    /// A value that has a default, parsed by `parse`.
    pub fn parsed<T>(
        &self,
        id: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<(T, Origin), ConfigError> {
        let (s, origin) = self
            .text(id)?
            .unwrap_or_else(|| panic!("{id} has a default"));
        parse(&s)
            .map(|v| (v, origin.clone()))
            .map_err(|e| origin.bad(e))
    }

    /// A switch: present on the command line, or a boolean variable (empty = unset).
    pub fn switch(&self, id: &str) -> Result<bool, ConfigError> {
        if self.matches.get_flag(id) {
            return Ok(true);
        }
        let (_, var) = self.names(id);
        let set = var.and_then(|v| (self.env)(v).filter(|x| !x.is_empty()).map(|x| (v, x)));
        match set {
            None => Ok(false),
            Some((var, x)) => {
                let origin = Origin::Env(var.to_string());
                let s = x.to_str().ok_or_else(|| origin.bad("is not valid UTF-8"))?;
                parse_bool(s).map_err(|e| origin.bad(e))
            }
        }
    }

    /// A repeatable option: every value of the flag, else the variable's items split
    /// at `sep` (blank items skipped, the others trimmed); each with its position
    /// counted from 1 (the flag's occurrence, or the item's place in the variable,
    /// blank ones counted, so a line number in a ConfigMap). None when neither is set.
    pub fn list(&self, id: &str, sep: char) -> Result<Option<(Vec<Item>, Origin)>, ConfigError> {
        let (flag, var) = self.names(id);
        if self.matches.value_source(id) == Some(clap::parser::ValueSource::CommandLine) {
            let origin = Origin::Flag(flag.to_string());
            let mut values = Vec::new();
            for (i, v) in self.matches.get_raw(id).into_iter().flatten().enumerate() {
                let v = v.to_str().ok_or_else(|| origin.bad("is not valid UTF-8"))?;
                values.push((i + 1, v.to_string()));
            }
            return Ok(Some((values, origin)));
        }
        let Some((var, v)) = var.and_then(|var| Some((var, (self.env)(var)?))) else {
            return Ok(None);
        };
        let origin = Origin::Env(var.to_string());
        let v = v
            .into_string()
            .map_err(|_| origin.bad("is not valid UTF-8"))?;
        let items: Vec<Item> = v
            .split(sep)
            .enumerate()
            .filter(|(_, item)| !item.trim().is_empty())
            .map(|(i, item)| (i + 1, item.trim().to_string()))
            .collect();
        Ok((!items.is_empty()).then_some((items, origin)))
    }

    /// A path, or None; non-UTF-8 paths are fine.
    pub fn path(&self, id: &str) -> Option<(std::path::PathBuf, Origin)> {
        self.raw(id).map(|(v, o)| (v.into(), o))
    }
}

/// Parses a humantime duration (`500ms`, `1s`, `2m`) within `range`; every duration
/// here is a wait that must make progress and a deadline that must fit an `Instant`.
pub fn duration(s: &str, range: &RangeInclusive<Duration>) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("{s:?}: {e} (expected a duration such as 500ms, 1s or 2m)"))?;
    within(d, range, |d| humantime::format_duration(*d).to_string())
}

/// Parses a size: a number of bytes with an optional unit (`KiB`, `MiB`, `GiB`, or
/// `KB`, `MB`, `GB` for powers of ten): `16MiB`, `4194304`.
pub fn size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (expected e.g. 16MiB, 512KiB or 4194304)"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        u => {
            return Err(format!(
                "unknown unit {u:?} in {s:?} (use B, KiB, MiB, GiB, KB, MB or GB)"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// A size within `range`.
pub fn size_within(s: &str, range: &RangeInclusive<u64>) -> Result<u64, String> {
    within(size(s)?, range, |n| format_size(*n))
}

/// A whole number within `range`.
pub fn count(s: &str, range: &RangeInclusive<usize>) -> Result<usize, String> {
    let n: usize = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a whole number"))?;
    within(n, range, |n| n.to_string())
}

/// true/false, 1/0, yes/no, on/off, in any case: what people write in a manifest.
pub fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(format!(
            "{s:?} is not a boolean (use true/false, 1/0 or yes/no)"
        )),
    }
}

/// One of a value enum's names, in any case.
pub fn choice<T: ValueEnum>(s: &str) -> Result<T, String> {
    T::from_str(s.trim(), true).map_err(|_| {
        let names: Vec<String> = T::value_variants()
            .iter()
            .filter_map(|v| v.to_possible_value().map(|p| p.get_name().to_string()))
            .collect();
        format!("{s:?} is not one of: {}", names.join(", "))
    })
}

fn within<T: PartialOrd + Copy>(
    v: T,
    range: &RangeInclusive<T>,
    show: impl Fn(&T) -> String,
) -> Result<T, String> {
    if range.contains(&v) {
        Ok(v)
    } else {
        Err(format!(
            "{} is outside the allowed range {}–{}",
            show(&v),
            show(range.start()),
            show(range.end())
        ))
    }
}

/// `16MiB` for whole binary units, else the byte count.
pub fn format_size(n: u64) -> String {
    for (unit, shift) in [("GiB", 30), ("MiB", 20), ("KiB", 10)] {
        if n >= 1 << shift && n.is_multiple_of(1 << shift) {
            return format!("{}{unit}", n >> shift);
        }
    }
    format!("{n}B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_checked_against_their_range() {
        let r = Duration::from_millis(10)..=Duration::from_secs(3600);
        assert_eq!(duration("250ms", &r), Ok(Duration::from_millis(250)));
        assert!(duration("0s", &r).unwrap_err().contains("outside"));
        assert!(duration("2h", &r).unwrap_err().contains("outside"));
        // The overflow that used to panic in Instant arithmetic.
        assert!(duration("1000000000y", &r).is_err());
        assert!(duration("99999999999999999999999s", &r).is_err());
        assert!(duration("soon", &r).unwrap_err().contains("500ms"));
    }

    #[test]
    fn sizes_take_binary_and_decimal_units() {
        assert_eq!(size("16MiB"), Ok(16 << 20));
        assert_eq!(size("4194304"), Ok(4 << 20));
        assert_eq!(size("2GB"), Ok(2_000_000_000));
        assert!(size("12XB").unwrap_err().contains("unknown unit"));
        assert!(size("99999999999GiB").unwrap_err().contains("too large"));
        assert!(size("").is_err());
        let r = (4 << 20)..=(1 << 30);
        assert!(size_within("1MiB", &r).unwrap_err().contains("4MiB–1GiB"));
        assert_eq!(size("512KiB"), Ok(512 * 1024));
        assert_eq!(size("1GiB"), Ok(1024 * 1024 * 1024));
        assert_eq!(size("3 kB"), Ok(3000));
        assert_eq!(size("7B"), Ok(7));
    }

    #[test]
    fn sizes_are_shown_in_the_largest_whole_binary_unit() {
        assert_eq!(format_size(2 * 1024 * 1024 * 1024), "2GiB");
        assert_eq!(format_size(1536 * 1024 * 1024), "1536MiB");
        assert_eq!(format_size(512 * 1024), "512KiB");
        assert_eq!(format_size(1000), "1000B");
        assert_eq!(format_size(0), "0B");
    }

    #[test]
    fn booleans_accept_what_manifests_use() {
        for t in ["true", "TRUE", "1", "yes", "Yes", "on"] {
            assert_eq!(parse_bool(t), Ok(true), "{t}");
        }
        for f in ["false", "False", "0", "no", "NO", "off"] {
            assert_eq!(parse_bool(f), Ok(false), "{f}");
        }
        assert!(parse_bool("maybe").is_err());
    }

    #[test]
    fn counts_are_whole_numbers_in_range() {
        assert_eq!(count("8", &(1..=64)), Ok(8));
        assert!(count("0", &(1..=64)).is_err());
        assert!(count("65", &(1..=64)).is_err());
        assert!(count("-1", &(1..=64)).is_err());
        assert!(count("four", &(1..=64)).is_err());
    }
}
