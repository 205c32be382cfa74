//! Memory under hostile lines, measured on the build users run: the release binary
//! (`cargo build --release --locked`, which `.ci/run` and `scripts/test.sh` make
//! before the tests). Its peak RSS (`VmHWM`) must stay within the target in
//! docs/performance.md ("Memory under hostile lines": 32 MiB, half the memory limit in deploy/) on
//! ordinary lines and on hostile ones — lines of control bytes (which JSON escaping
//! multiplies by six), lines that are not UTF-8, 5 MB lines, a run of consecutive
//! oversize lines, a flood of tiny lines — shipped as they are or dead-lettered. The
//! peak must also not grow with the number of consecutive oversize lines (each is
//! dropped once dead-lettered).
//!
//! Without a release binary as new as the sources the test cannot measure anything:
//! it fails under CI and is reported as skipped elsewhere (`support::skip`).
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::support::fake_firehose::{FakeConfig, FakeFirehose};
use crate::support::firetail::{aws_env, base_args, binary, Firetail};
use crate::support::skip::skip_or_fail;

const LONG: Duration = Duration::from_secs(300);
const MIB: u64 = 1024 * 1024;
/// The target (docs/performance.md, "Memory under hostile lines").
const TARGET: u64 = 32 * MIB;
/// How far the peak may move between 10 and 300 consecutive oversize lines: the
/// allocator's noise, 0.3 to 2.7 MiB measured (and 1,000 lines peaked lower than 300).
/// An oversize line kept in memory would add a MiB per line, 290 MiB here.
const FLAT: u64 = 4 * MIB;

/// Peak resident set of a live process, from `/proc/PID/status`.
fn vm_hwm(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("procfs");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status");
    kib * 1024
}

/// The release binary beside the debug one the tests are built with (same target
/// directory, `release/` instead of `debug/`), if it exists and is newer than every
/// source it is built from; else why not.
pub(crate) fn release_binary() -> Result<PathBuf, String> {
    let debug = binary();
    let profile_dir = debug.parent().and_then(Path::parent).expect("target dir");
    let release = profile_dir.join("release").join("firetail");
    let built = std::fs::metadata(&release)
        .and_then(|m| m.modified())
        .map_err(|e| {
            format!(
                "no release build at {} ({e}): run `cargo build --release --locked`",
                release.display()
            )
        })?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut newest = (SystemTime::UNIX_EPOCH, PathBuf::new());
    for source in ["Cargo.toml", "Cargo.lock", "build.rs", "src"] {
        newest_under(&root.join(source), &mut newest);
    }
    if newest.0 > built {
        return Err(format!(
            "the release build {} is older than {}: run `cargo build --release --locked`",
            release.display(),
            newest.1.display()
        ));
    }
    Ok(release)
}

/// Raises `newest` to the latest modification time of `path` and what is under it.
fn newest_under(path: &Path, newest: &mut (SystemTime, PathBuf)) {
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            newest_under(&entry.unwrap().path(), newest);
        }
    } else if let Ok(modified) = meta.modified() {
        if modified > newest.0 {
            *newest = (modified, path.to_path_buf());
        }
    }
}

/// Control bytes (no `\n`), cycling through all 31 of them.
fn control_bytes(n: usize) -> Vec<u8> {
    let ctrl: Vec<u8> = (0u8..32).filter(|&b| b != b'\n').collect();
    (0..n).map(|i| ctrl[i % ctrl.len()]).collect()
}

/// Bytes that are not UTF-8: continuation bytes without a lead, and 0xfe/0xff.
fn not_utf8(n: usize) -> Vec<u8> {
    (0..n).map(|i| [0x80, 0xbf, 0xfe, 0xff][i % 4]).collect()
}

/// What one file holds: lines for Firehose, and lines for the dead-letter file by
/// reason (oversize, or not JSON when those are dead-lettered).
#[derive(Debug, Default, PartialEq)]
struct Expected {
    shipped: u64,
    oversize: u64,
    invalid_json: u64,
}

/// The hostile part of a file.
#[derive(Clone, Copy)]
struct Hostile {
    oversize_run: usize,
    /// `--invalid-json dead-letter`: lines that are not JSON go to the dead-letter file
    /// (those that are not UTF-8 as base64) instead of to Firehose.
    dead_letter_invalid: bool,
}

/// Writes the test file — ordinary lines only when `hostile` is `None`.
fn write_lines(path: &Path, hostile: Option<Hostile>) -> Expected {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut expected = Expected::default();
    let mut short = |f: &mut dyn Write, body: &[u8], json: bool| {
        f.write_all(body).unwrap();
        f.write_all(b"\n").unwrap();
        match hostile {
            Some(h) if h.dead_letter_invalid && !json => expected.invalid_json += 1,
            _ => expected.shipped += 1,
        }
    };
    for i in 0..2_000 {
        let mut line = format!("{i:05}").into_bytes();
        match hostile {
            // Not JSON either way: shipped as they are, or dead-lettered.
            Some(_) => line.extend(control_bytes(300)),
            None => line.extend([b'z'; 300]),
        }
        short(&mut f, &line, false);
    }
    let Some(hostile) = hostile else {
        return finish(f, expected);
    };
    for i in 0..2_000 {
        let mut line = format!("{i:05}").into_bytes();
        line.extend(not_utf8(300));
        short(&mut f, &line, false);
    }
    // A flood of the smallest records: per-record overhead, not bytes.
    for _ in 0..100_000 {
        short(&mut f, b"{}", true);
    }
    // A 6 MB line of control bytes (six times that once escaped), and 3 MB that is
    // not UTF-8 (a third more as base64).
    f.write_all(&control_bytes(6_000_000)).unwrap();
    f.write_all(b"\n").unwrap();
    f.write_all(&not_utf8(3_000_000)).unwrap();
    f.write_all(b"\n").unwrap();
    expected.oversize += 2;
    // 5 MB JSON lines.
    for i in 0..5 {
        writeln!(f, "{{\"big\":{i},\"pad\":\"{}\"}}", "x".repeat(5_000_000)).unwrap();
        expected.oversize += 1;
    }
    // Consecutive oversize lines, just over the record limit.
    for i in 0..hostile.oversize_run {
        writeln!(f, "{i:08}{}", "y".repeat(1_100_000)).unwrap();
        expected.oversize += 1;
    }
    finish(f, expected)
}

/// Short JSON lines after the others: they arrive only if nothing wedged.
fn finish(mut f: impl Write, mut expected: Expected) -> Expected {
    for i in 0..1_000 {
        writeln!(f, "{{\"after\":{i}}}").unwrap();
        expected.shipped += 1;
    }
    f.flush().unwrap();
    expected
}

/// Runs the release binary over a file until every line is shipped or dead-lettered;
/// returns its peak RSS.
fn peak_rss(release: &Path, hostile: Option<Hostile>) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let expected = write_lines(&log, hostile);
    let fake = FakeFirehose::start(FakeConfig {
        store: false,
        ..FakeConfig::default()
    });
    let mut args = base_args(&log, &fake.stream_name());
    if hostile.is_some_and(|h| h.dead_letter_invalid) {
        args.push("--invalid-json=dead-letter".into());
    }
    let mut ft = Firetail::start_binary(release, &args, &aws_env(&fake.endpoint()));
    assert!(
        fake.wait_for_lines(expected.shipped, LONG),
        "shipped {} of {}; logs:\n{}",
        fake.lines_accepted(),
        expected.shipped,
        ft.dump()
    );
    let hwm = vm_hwm(ft.pid());
    ft.term();
    assert_eq!(ft.exit_code(LONG), 0, "logs:\n{}", ft.dump());
    let report = ft.report();
    let count = |key: &str| report[key].as_u64().unwrap_or(0);
    let got = Expected {
        shipped: fake.lines_accepted(),
        oversize: count("dead_lettered_oversize"),
        invalid_json: count("dead_lettered_invalid_json"),
    };
    assert_eq!(got, expected, "{report}");
    assert_eq!(report["undelivered"], 0, "{report}");
    hwm
}

#[test]
fn peak_rss_under_hostile_lines_stays_under_the_target() {
    let release = match release_binary() {
        Ok(release) => release,
        Err(why) => return skip_or_fail(&why),
    };
    let mib = |b: u64| b as f64 / MIB as f64;
    let hostile = |oversize_run, dead_letter_invalid| {
        peak_rss(
            &release,
            Some(Hostile {
                oversize_run,
                dead_letter_invalid,
            }),
        )
    };
    let benign = peak_rss(&release, None);
    let few = hostile(10, false);
    let many = hostile(300, false);
    let dead_lettered = hostile(10, true);
    println!(
        "memory (release build, peak RSS): benign={:.1}MiB hostile_10_oversize={:.1}MiB \
         hostile_300_oversize={:.1}MiB hostile_10_oversize_invalid_dead_lettered={:.1}MiB \
         target={}MiB",
        mib(benign),
        mib(few),
        mib(many),
        mib(dead_lettered),
        TARGET / MIB
    );
    for (name, peak) in [
        ("ordinary lines", benign),
        ("hostile lines, 10 oversize", few),
        ("hostile lines, 300 oversize", many),
        ("hostile lines dead-lettered", dead_lettered),
    ] {
        assert!(
            peak <= TARGET,
            "{name}: peak RSS {:.1} MiB, over the {} MiB target",
            mib(peak),
            TARGET / MIB
        );
    }
    assert!(
        many <= few + FLAT,
        "peak RSS grows with the number of oversize lines: {:.1} → {:.1} MiB",
        mib(few),
        mib(many)
    );
}
