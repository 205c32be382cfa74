//! The sources rows (docs/design.md#sources), firetail only, each a pair run back to
//! back so that both halves share the machine's moment:
//!
//! - `--fields-cost`: scenario 1 without, then with three `--add-field`s (a pod's
//!   identity from the Downward API), then without them but with the same three
//!   fields already in every line: the first pair is what the fields cost in all
//!   (longer records cost more to encode, encrypt and send), the last pair what the
//!   splice itself costs (the same bytes shipped);
//! - `--four-files`: scenario 2 at `--steady-rate` into one file, then the same total
//!   rate spread over four files, each its own `--source` shipping to the one stream:
//!   what following several files costs.

use std::fmt::Write as _;
use std::path::PathBuf;

use crate::fake_firehose::DEFAULT_STREAM;
use crate::report::opt;
use crate::scenarios::backlog;
use crate::steady::steady_idle;
use crate::{Agent, Ctx, Mode, Row, Scenario};

/// A pod's identity as a Deployment's Downward API hands it over.
pub const FIELDS: [&str; 3] = [
    "--add-field=pod=web-7d9f8c6b5-x2x9q",
    "--add-field=namespace=shop",
    "--add-field=node=ip-10-0-12-34.eu-west-1.compute.internal",
];

/// `lines` as an app would write them with the three fields itself, at the end of each
/// object: the bytes firetail ships with `--add-field`, without the splice.
pub fn with_fields_written(lines: &[u8]) -> Vec<u8> {
    let suffix: String = FIELDS
        .iter()
        .map(|f| {
            let (k, v) = f["--add-field=".len()..].split_once('=').unwrap();
            format!(",\"{k}\":\"{v}\"")
        })
        .collect();
    let mut out = Vec::with_capacity(lines.len() + lines.len() / 3);
    for line in lines.split_inclusive(|b| *b == b'\n') {
        let body = line
            .strip_suffix(b"}\n")
            .expect("a bench line is one JSON object");
        out.extend_from_slice(body);
        out.extend_from_slice(suffix.as_bytes());
        out.extend_from_slice(b"}\n");
    }
    out
}

/// A `--source` for each log, all to the fake's stream.
pub fn source_args(logs: &[PathBuf]) -> Vec<String> {
    logs.iter()
        .enumerate()
        .map(|(i, log)| {
            format!(
                "--source=name=f{i},path={},stream={DEFAULT_STREAM}",
                log.display()
            )
        })
        .collect()
}

/// The pairs asked for, over one transport.
pub fn rows(ctx: &Ctx, tls: bool) -> Vec<Row> {
    let base = Mode::new(tls, false);
    let mut rows = Vec::new();
    if ctx.opts.fields_cost {
        rows.push(backlog(ctx, Agent::Firetail, base, None));
        let fields = Mode {
            fields: true,
            ..base
        };
        rows.push(backlog(ctx, Agent::Firetail, fields, None));
        let app_fields = Mode {
            app_fields: true,
            ..base
        };
        rows.push(backlog(ctx, Agent::Firetail, app_fields, None));
    }
    if ctx.opts.four_files {
        let rate = ctx.opts.steady_rate;
        for files in [1, 4] {
            let mode = Mode { files, ..base };
            rows.extend(steady_idle(ctx, Agent::Firetail, mode, rate, true, false));
        }
    }
    rows
}

/// The pairs side by side: the second of each against the first.
pub fn summary(rows: &[Row]) -> String {
    let mut t = String::new();
    let pair = |s: Scenario, second: &dyn Fn(&Row) -> bool| {
        let of = |r: &&Row| r.agent == Agent::Firetail && r.scenario == s && !r.aggregate;
        let b = rows.iter().filter(of).find(|r| r.variant.is_empty())?;
        let v = rows.iter().filter(of).find(|r| second(r))?;
        Some((b, v))
    };
    let change = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if a > 0.0 => format!("{:+.0} %", (b / a - 1.0) * 100.0),
        _ => "—".into(),
    };
    // A run that lost lines compares nothing: say so instead of a change.
    let short = |r: &Row| r.notes.iter().any(|n| n.starts_with("only "));
    let change_of = |a: &Row, b: &Row, f: &dyn Fn(&Row) -> Option<f64>| {
        if short(a) || short(b) {
            "— (lines missing: see the notes)".to_owned()
        } else {
            change(f(a), f(b))
        }
    };
    let fields = pair(Scenario::Backlog, &|r| r.variant.contains("added fields"));
    let written = pair(Scenario::Backlog, &|r| r.variant.contains("in the lines"));
    let files = pair(Scenario::Steady, &|r| r.variant.contains("files"));
    if fields.is_none() && files.is_none() {
        return t;
    }
    let _ = writeln!(t, "Sources and added fields (pairs run back to back):");
    let _ = writeln!(t);
    let _ = writeln!(t, "| Pair | Measure | First | Second | Change |");
    let _ = writeln!(t, "|---|---|--:|--:|--:|");
    if let Some((b, v)) = fields {
        let _ = writeln!(
            t,
            "| 1 backlog: no fields / 3 added fields | CPU-s per M lines | {} | {} | {} |",
            opt(b.cpu_per_m, 2),
            opt(v.cpu_per_m, 2),
            change_of(b, v, &|r| r.cpu_per_m)
        );
    }
    if let (Some((_, added)), Some((_, app))) = (fields, written) {
        let _ = writeln!(
            t,
            "| 1 backlog: the 3 fields in the lines / added by firetail (same bytes) | CPU-s per M lines | {} | {} | {} |",
            opt(app.cpu_per_m, 2),
            opt(added.cpu_per_m, 2),
            change_of(app, added, &|r| r.cpu_per_m)
        );
    }
    if let Some((b, v)) = files {
        for (what, f) in [
            (
                "CPU % of a core",
                (|r: &Row| r.cpu_pct) as fn(&Row) -> Option<f64>,
            ),
            ("CPU-s per M lines", |r: &Row| r.cpu_per_m),
        ] {
            let _ = writeln!(
                t,
                "| 2 at {} lines/s: 1 file / 4 files | {what} | {} | {} | {} |",
                b.offered,
                opt(f(b), 2),
                opt(f(v), 2),
                change_of(b, v, &f)
            );
        }
    }
    let _ = writeln!(t);
    t
}
