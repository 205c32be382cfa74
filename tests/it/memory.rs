//! Memory under hostile lines. Lines of control bytes (which JSON escaping
//! multiplies by six), 5 MB lines, and a run of consecutive oversize lines must not
//! take the agent's peak RSS (`VmHWM`) past 32 MiB, half the memory limit in deploy/.
//!
//! The integration tests run the debug binary, whose own footprint is ~13 MiB larger
//! than the release build's (23.9 against 10.6 MiB peak on the benign workload below,
//! measured on the same machine). What hostile lines cost is data, the same in both
//! builds, so the test measures that: the debug binary's peak on the hostile file
//! minus its peak on a benign file with the same short lines must stay within
//! [`TARGET`] minus the release build's benign peak ([`RELEASE_BENIGN_PEAK`]) — so
//! that the release build stays under [`TARGET`]. The peak must also not grow with the
//! number of consecutive oversize lines (each is dropped once dead-lettered).
//!
//! Measured with the release build once the tail keeps 1 MiB of an oversize line and
//! the dead-letter file is written streamed (wip-tail and wip-store merged): 11.0 MiB
//! benign, 18.3 MiB hostile, flat from 300 to 3,000 consecutive oversize lines.
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use crate::support::fake_firehose::{FakeConfig, FakeFirehose};
use crate::support::firetail::{aws_env, base_args, Firetail};

const LONG: Duration = Duration::from_secs(300);
/// The target (docs/performance.md, "Memory under hostile lines").
const TARGET: u64 = 32 * 1024 * 1024;
/// The release binary's peak RSS on the benign workload (10.6 MiB measured, rounded
/// up): what the target leaves for hostile lines is `TARGET` minus this.
const RELEASE_BENIGN_PEAK: u64 = 11 * 1024 * 1024;
const MIB: u64 = 1024 * 1024;

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

/// Control bytes (no `\n`), cycling through all 31 of them.
fn control_bytes(n: usize) -> Vec<u8> {
    let ctrl: Vec<u8> = (0u8..32).filter(|&b| b != b'\n').collect();
    (0..n).map(|i| ctrl[i % ctrl.len()]).collect()
}

/// Writes the test file — with no hostile lines when `oversize_run` is `None`;
/// returns how many lines must reach Firehose and how many the dead-letter file.
fn write_lines(path: &Path, oversize_run: Option<usize>) -> (u64, u64) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let (mut shipped, mut dead) = (0, 0);
    // Short lines: of control bytes (not JSON, shipped as they are) when hostile.
    for i in 0..2_000 {
        let mut line = format!("{i:05}").into_bytes();
        match oversize_run {
            Some(_) => line.extend(control_bytes(300)),
            None => line.extend([b'z'; 300]),
        }
        line.push(b'\n');
        f.write_all(&line).unwrap();
        shipped += 1;
    }
    let Some(oversize_run) = oversize_run else {
        return finish(f, shipped, dead);
    };
    // A 6 MB line of control bytes: the 6× escaping case.
    f.write_all(&control_bytes(6_000_000)).unwrap();
    f.write_all(b"\n").unwrap();
    dead += 1;
    // 5 MB JSON lines.
    for i in 0..5 {
        writeln!(f, "{{\"big\":{i},\"pad\":\"{}\"}}", "x".repeat(5_000_000)).unwrap();
        dead += 1;
    }
    // Consecutive oversize lines, just over the record limit.
    for i in 0..oversize_run {
        writeln!(f, "{i:08}{}", "y".repeat(1_100_000)).unwrap();
        dead += 1;
    }
    finish(f, shipped, dead)
}

/// Short JSON lines after the hostile ones: they arrive only if nothing wedged.
fn finish(mut f: impl Write, mut shipped: u64, dead: u64) -> (u64, u64) {
    for i in 0..1_000 {
        writeln!(f, "{{\"after\":{i}}}").unwrap();
        shipped += 1;
    }
    f.flush().unwrap();
    (shipped, dead)
}

/// Runs the binary over a hostile file until every line is shipped or
/// dead-lettered; returns its peak RSS.
fn peak_rss(oversize_run: Option<usize>) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let (shipped, dead) = write_lines(&log, oversize_run);
    let fake = FakeFirehose::start(FakeConfig {
        store: false,
        ..FakeConfig::default()
    });
    let mut ft = Firetail::start(
        &base_args(&log, &fake.stream_name()),
        &aws_env(&fake.endpoint()),
    );
    assert!(
        fake.wait_for_lines(shipped, LONG),
        "shipped {} of {shipped}; logs:\n{}",
        fake.lines_accepted(),
        ft.dump()
    );
    let hwm = vm_hwm(ft.pid());
    ft.term();
    assert_eq!(ft.exit_code(LONG), 0, "logs:\n{}", ft.dump());
    let report = ft.report();
    let dead_lettered = report["dead_lettered_oversize"].as_u64().unwrap();
    assert_eq!(dead_lettered, dead, "{report}");
    assert_eq!(report["undelivered"], 0, "{report}");
    hwm
}

#[test]
fn peak_rss_under_hostile_lines_stays_under_the_target() {
    let mib = |b: u64| b as f64 / MIB as f64;
    let benign = peak_rss(None);
    let few = peak_rss(Some(10));
    let many = peak_rss(Some(300));
    let allowance = TARGET - RELEASE_BENIGN_PEAK;
    println!(
        "memory hostile (debug build): benign={:.1}MiB hostile_10_oversize={:.1}MiB hostile_300_oversize={:.1}MiB \
         hostile_extra={:.1}MiB allowance={:.1}MiB (target {}MiB - release benign {}MiB)",
        mib(benign),
        mib(few),
        mib(many),
        mib(many.max(few).saturating_sub(benign)),
        mib(allowance),
        TARGET / MIB,
        RELEASE_BENIGN_PEAK / MIB
    );
    assert!(
        many.max(few).saturating_sub(benign) <= allowance,
        "hostile lines cost {:.1} MiB over the benign peak; the target leaves {:.1} MiB",
        mib(many.max(few) - benign),
        mib(allowance)
    );
    // The debug build's allocator settles a few MiB higher after a few hundred
    // oversize lines (the release build is flat from 300 to 3,000 at 18.3 MiB); a line
    // kept in memory would add a MiB per line, hundreds of MiB here.
    assert!(
        many <= few + 8 * MIB,
        "peak RSS grows with the number of oversize lines: {few} → {many}"
    );
}
