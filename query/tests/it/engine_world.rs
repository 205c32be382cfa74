//! The world the engine tests query: rows of the access-log table spread over several
//! days, a time range, and filters whose values are built to break quoting; plus the
//! reference filter, written here without SQL, that says which rows a query must return.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::Value as Json;

use clap::Parser as _;
use firetail_query::cli::{Cli, Command};
use firetail_query::sql::{DayRange, Filter, Ident, LikeMatch, TimeBounds, Value};
use firetail_query::timerange::{parse_time, utc_day, TimeRange};

use crate::support::engine::table_columns;

const DAY: u64 = 86_400;

/// 2026-12-27T00:00:00Z: the days generated cross a month and a year.
const BASE: u64 = 1_798_329_600;

/// Pieces of string values: SQL quotes, placeholders, line breaks and other control
/// bytes (no NUL), non-ASCII, an injection.
const PIECES: &[&str] = &[
    "'",
    "''",
    "?",
    "\n",
    "\r\t",
    "\u{1}\u{1f}\u{7f}",
    "é",
    "日本",
    "🔥",
    "/*",
    " ",
    "'; DROP TABLE \"shop_access_log\"; --",
];

/// LIKE's wildcards and escape character, and what they would wrongly match if left
/// unescaped: drawn as often as all the other pieces.
const LIKE_PIECES: &[&str] = &[
    "%", "_", "\\", "\\%", "%_", "a", "A", "x", "run_1-", "runx1-", "run%1-",
];

/// A generated row: its cells in `table_columns` order, and when it was written and
/// received (`datepath` is the day of `received`).
#[derive(Clone, Debug)]
pub struct Row {
    pub cells: Vec<Json>,
    pub written: Option<SystemTime>,
    pub received: SystemTime,
}

/// Where a filter's text comes from: made up, or cut from a row (so that it matches).
#[derive(Clone, Debug)]
pub enum Text {
    Fresh(String),
    FromRow(Index, Index, Index),
}

#[derive(Clone, Debug)]
pub enum FilterSpec {
    Eq(&'static str, Text),
    Like(&'static str, LikeMatch, Text),
    Number(&'static str, Text),
    /// `--pod`, `--namespace`, `--node` or `--source` and its value, through the CLI.
    Identity(&'static str, Text),
}

/// firetail-query's identity flags and the column each one filters by default.
const IDENTITY_FLAGS: &[(&str, &str)] = &[
    ("--pod", "pod"),
    ("--namespace", "namespace"),
    ("--node", "node"),
    ("--source", "source"),
];

#[derive(Clone, Debug)]
pub struct World {
    pub rows: Vec<Row>,
    pub range: TimeRange,
    pub filters: Vec<FilterSpec>,
    pub id_prefix: Option<Text>,
    pub order: Option<(&'static str, bool)>,
    pub limit: u32,
}

pub fn column(name: &str) -> usize {
    table_columns()
        .iter()
        .position(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no column {name}"))
}

fn at(secs: u64, millis: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(secs * 1000 + millis)
}

fn nasty() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        prop::sample::select(PIECES),
        prop::sample::select(LIKE_PIECES)
    ];
    prop::collection::vec(piece, 0..4).prop_map(|v| v.concat())
}

fn text() -> impl Strategy<Value = Text> {
    prop_oneof![
        nasty().prop_map(Text::Fresh),
        (any::<Index>(), any::<Index>(), any::<Index>())
            .prop_map(|(r, a, b)| Text::FromRow(r, a, b)),
    ]
}

/// A time range starting at any second of six days, or at a midnight or a second
/// either side of one, and lasting from a second to three days.
fn range() -> impl Strategy<Value = TimeRange> {
    let start = prop_oneof![
        0..6 * DAY,
        (0..6u64, 0..3u64).prop_map(|(d, s)| (d * DAY + DAY + s).saturating_sub(1)),
    ];
    (start, 1..3 * DAY).prop_map(|(s, len)| {
        TimeRange::new(at(BASE + s, 0), at(BASE + s + len, 0)).expect("from < to")
    })
}

/// How a row's `time` is written: as the app does (UTC, milliseconds), in whole
/// seconds, with an offset of so many minutes, or something else (NULL, not a time).
#[derive(Clone, Debug)]
enum TimeText {
    Millis,
    Seconds,
    Offset(i64),
    Other(Option<&'static str>),
}

impl TimeText {
    fn format(&self, t: SystemTime) -> Json {
        match self {
            TimeText::Millis => humantime::format_rfc3339_millis(t).to_string().into(),
            TimeText::Seconds => humantime::format_rfc3339_seconds(t).to_string().into(),
            TimeText::Offset(minutes) => {
                // The wall clock at that offset, then the offset itself.
                let shift = Duration::from_secs(minutes.unsigned_abs() * 60);
                let local = if *minutes >= 0 { t + shift } else { t - shift };
                let text = humantime::format_rfc3339_millis(local).to_string();
                let sign = if *minutes < 0 { '-' } else { '+' };
                let m = minutes.unsigned_abs();
                format!(
                    "{}{sign}{:02}:{:02}",
                    &text[..text.len() - 1],
                    m / 60,
                    m % 60
                )
                .into()
            }
            TimeText::Other(text) => (*text).into(),
        }
    }
}

/// Written within a day of the range, or at any moment of the days around it, or
/// exactly on or just beside one of its bounds; received from six hours early (a skewed app clock) to two and a
/// half days late; sometimes with no time or one that is not a time.
fn row(range: TimeRange) -> impl Strategy<Value = Row> {
    let edge = prop::sample::select(vec![
        range.from,
        range.to,
        range.from - Duration::from_millis(1),
        range.to - Duration::from_millis(1),
    ]);
    let near = range.from - Duration::from_secs(DAY);
    let span = range.to.duration_since(range.from).unwrap().as_millis() as u64 + 2 * DAY * 1000;
    let written = prop_oneof![
        (0..span).prop_map(move |ms| near + Duration::from_millis(ms)),
        (0..10 * DAY, 0..1000u64).prop_map(|(s, ms)| at(BASE - 2 * DAY + s, ms)),
        edge,
    ];
    let time_text = prop_oneof![
        6 => Just(TimeText::Millis),
        1 => Just(TimeText::Seconds),
        2 => prop::sample::select(vec![60, -300, 330, 840, -720, 0]).prop_map(TimeText::Offset),
        1 => prop::sample::select(vec![None, Some("not a time"), Some("")]).prop_map(TimeText::Other),
    ];
    let string = || prop::option::weighted(0.9, nasty());
    let status = prop::sample::select(vec![200, 404, 500, -1, i32::MAX, i32::MIN]);
    let bytes = prop::sample::select(vec![0, 5120, 9_000_000_000, i64::MAX, -i64::MAX]);
    let duration = prop::sample::select(vec![0.0, 12.5, 0.1, 1e-7, 1e300, -3.0, 123_456.789]);
    let strings = (string(), string(), string(), string(), string(), string());
    let numbers = (
        prop::option::weighted(0.9, status),
        prop::option::weighted(0.9, bytes),
        prop::option::weighted(0.9, duration),
    );
    let delay = 0..(2 * DAY + DAY / 2 + DAY / 4);
    // Pods of two Deployments on two nodes, two sources; sometimes made to break
    // quoting, sometimes missing (a line shipped before the fields were added).
    let named = |names: Vec<&'static str>| {
        prop::option::weighted(
            0.9,
            prop_oneof![
                3 => prop::sample::select(names).prop_map(String::from),
                1 => nasty(),
            ],
        )
    };
    let identity = (
        named(vec![
            "shop-web-7d4b9c-x2x8q",
            "shop-web-7d4b9c-k9p2z",
            "shop-worker-5f6-abcde",
        ]),
        named(vec!["shop", "shop-staging"]),
        named(vec!["ip-10-0-1-7.ec2.internal", "ip-10-0-2-9.ec2.internal"]),
        named(vec!["rails", "sidekiq"]),
    );
    (written, time_text, delay, strings, numbers, identity).prop_map(
        move |(written, time_text, delay, s, (status, bytes, duration), who)| {
            let received = written + Duration::from_secs(delay) - Duration::from_secs(DAY / 4);
            let time = time_text.format(written);
            let cells = vec![
                time,
                s.0.into(),
                s.1.into(),
                s.2.into(),
                status.into(),
                duration.into(),
                s.3.into(),
                s.4.into(),
                bytes.into(),
                s.5.into(),
                who.0.into(),
                who.1.into(),
                who.2.into(),
                who.3.into(),
                utc_day(received).into(),
            ];
            Row {
                cells,
                written: matches!(time_text, TimeText::Millis | TimeText::Offset(_))
                    .then_some(written),
                received,
            }
        },
    )
}

fn filter() -> impl Strategy<Value = FilterSpec> {
    let strings = || {
        prop::sample::select(vec![
            "request_id",
            "method",
            "path",
            "remote_ip",
            "user_agent",
            "level",
            "time",
        ])
    };
    let kinds = prop::sample::select(vec![
        LikeMatch::Prefix,
        LikeMatch::Suffix,
        LikeMatch::Contains,
    ]);
    let numbers = prop::sample::select(vec!["status", "bytes", "duration_ms"]);
    let identity = prop::sample::select(IDENTITY_FLAGS);
    prop_oneof![
        1 => (strings(), text()).prop_map(|(c, t)| FilterSpec::Eq(c, t)),
        2 => (strings(), kinds, text()).prop_map(|(c, k, t)| FilterSpec::Like(c, k, t)),
        1 => (numbers, text()).prop_map(|(c, t)| FilterSpec::Number(c, t)),
        2 => (identity, text()).prop_map(|((flag, _), t)| FilterSpec::Identity(flag, t)),
    ]
}

pub fn world() -> impl Strategy<Value = World> {
    range().prop_flat_map(|range| {
        let order = prop::option::of((
            prop::sample::select(vec!["time", "path", "status", "bytes", "duration_ms"]),
            any::<bool>(),
        ));
        (
            prop::collection::vec(row(range), 0..40),
            prop::collection::vec(filter(), 0..3),
            prop::option::of(text()),
            order,
            1..50u32,
        )
            .prop_map(move |(rows, filters, id_prefix, order, limit)| World {
                rows,
                range,
                filters,
                id_prefix,
                order,
                limit,
            })
    })
}

impl World {
    /// The filters as the query builder takes them.
    pub fn filters(&self) -> Vec<Filter> {
        self.filters.iter().map(|f| self.build(f)).collect()
    }

    /// Verify's `--id-prefix`, a LIKE on the id column.
    pub fn id_prefix(&self) -> Option<Filter> {
        let t = self.id_prefix.as_ref()?;
        let text = self.text("request_id", t, Some(LikeMatch::Prefix));
        Some(Filter::like(ident("request_id"), LikeMatch::Prefix, &text).expect("a string"))
    }

    fn build(&self, spec: &FilterSpec) -> Filter {
        match spec {
            FilterSpec::Eq(c, t) => Filter::Eq(ident(c), Value::Str(self.text(c, t, None))),
            FilterSpec::Like(c, kind, t) => {
                Filter::like(ident(c), *kind, &self.text(c, t, Some(*kind))).expect("a string")
            }
            FilterSpec::Number(c, t) => {
                let text = match t {
                    // A small made-up number, which rows seldom hold.
                    Text::Fresh(s) => s.len().to_string(),
                    Text::FromRow(..) => self.text(c, t, None),
                };
                // "null" when the row had none: then a made-up one too.
                let value = Value::for_column(&ident(c), &text)
                    .or_else(|_| Value::for_column(&ident(c), "7"))
                    .unwrap();
                Filter::Eq(ident(c), value)
            }
            FilterSpec::Identity(flag, t) => {
                let (_, c) = IDENTITY_FLAGS.iter().find(|(f, _)| f == flag).unwrap();
                let value = self.text(c, t, None);
                let filter = identity_filter(flag, &value);
                // The reference filter reads the column from the filter: check here
                // that it is the flag's own.
                assert_eq!(filter, Filter::Eq(ident(c), Value::Str(value)), "{flag}");
                filter
            }
        }
    }

    /// A made-up text, or a row's value of column `c`: whole, or the piece of it that
    /// the LIKE `cut` anchors (a prefix, a suffix, any part).
    fn text(&self, c: &str, t: &Text, cut: Option<LikeMatch>) -> String {
        let (r, a, b) = match t {
            Text::Fresh(s) => return s.clone(),
            Text::FromRow(r, a, b) => (r, a, b),
        };
        if self.rows.is_empty() {
            return String::new();
        }
        let value = match &self.rows[r.index(self.rows.len())].cells[column(c)] {
            Json::String(s) => s.clone(),
            other => other.to_string(),
        };
        let Some(kind) = cut else { return value };
        let chars: Vec<char> = value.chars().collect();
        let (a, b) = (a.index(chars.len() + 1), b.index(chars.len() + 1));
        let (from, to) = match kind {
            LikeMatch::Prefix => (0, b),
            LikeMatch::Suffix => (a, chars.len()),
            LikeMatch::Contains => (a.min(b), a.max(b)),
        };
        chars[from..to].iter().collect()
    }
}

/// What firetail-query makes of `FLAG=VALUE` on its command line: one filter.
fn identity_filter(flag: &str, value: &str) -> Filter {
    let args = [
        "firetail-query",
        "search",
        "--last",
        "1h",
        &format!("{flag}={value}"),
    ];
    let cli = Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
    let Command::Search(search) = cli.command else {
        unreachable!("a search")
    };
    let mut filters = search.filters.filters().expect("a valid identity filter");
    assert_eq!(filters.len(), 1, "{args:?}");
    filters.pop().unwrap()
}

fn ident(c: &str) -> Ident {
    Ident::new("column", c).expect("a valid column")
}

/// The reference filter: does this row satisfy `filter`, by the meaning of each kind of
/// filter rather than by SQL.
pub fn matches(row: &Row, filter: &Filter) -> bool {
    match filter {
        Filter::Eq(c, v) => {
            let cell = &row.cells[column(c.as_str())];
            match v {
                Value::Str(s) => cell.as_str() == Some(s.as_str()),
                Value::Int(i) => cell.as_i64() == Some(*i),
                Value::Double(d) => cell.as_f64() == Some(*d),
            }
        }
        Filter::Like(c, kind, text) => {
            let Some(cell) = row.cells[column(c.as_str())].as_str() else {
                return false;
            };
            match kind {
                LikeMatch::Prefix => cell.starts_with(text.as_str()),
                LikeMatch::Suffix => cell.ends_with(text.as_str()),
                LikeMatch::Contains => cell.contains(text.as_str()),
            }
        }
    }
}

pub fn in_days(row: &Row, days: &DayRange) -> bool {
    let day = row.cells[column("datepath")].as_str().expect("a datepath");
    days.first.as_str() <= day && day <= days.last.as_str()
}

/// `time` read as Athena's `try(from_iso8601_timestamp(time))` does, within the bounds.
pub fn in_time(row: &Row, bounds: &TimeBounds) -> bool {
    let Some(t) = row.cells[column("time")].as_str().and_then(iso_instant) else {
        return false;
    };
    let from = parse_time(&bounds.from).unwrap();
    let to = parse_time(&bounds.to).unwrap();
    from <= t && t < to
}

/// The instant of an ISO-8601 time ending in `Z` or an offset `±HH:MM`.
fn iso_instant(text: &str) -> Option<SystemTime> {
    if text.ends_with('Z') {
        return parse_time(text).ok();
    }
    let cut = text.len().checked_sub(6)?;
    let (local, zone) = (text.get(..cut)?, text.get(cut..)?);
    let (sign, hh, mm) = (zone.get(..1)?, zone.get(1..3)?, zone.get(4..)?);
    let offset = Duration::from_secs(hh.parse::<u64>().ok()? * 3600 + mm.parse::<u64>().ok()? * 60);
    let local = parse_time(local).ok()?;
    match sign {
        "+" => local.checked_sub(offset),
        "-" => local.checked_add(offset),
        _ => None,
    }
}
