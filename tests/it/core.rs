//! The core pipeline, end to end, with the built binary as a child process.

use std::time::Duration;

use crate::support::fake_firehose::{FakeConfig, FakeFirehose, Faults};
use crate::support::firetail::{access_lines, append, aws_env, base_args, Firetail};
use crate::support::moto::Moto;
use crate::support::{eventually, sorted};

const LONG: Duration = Duration::from_secs(60);

fn moto_stream(stream: &str, bucket: &str) -> Moto {
    let moto = Moto::start();
    moto.create_stream(stream, bucket);
    moto
}

#[test]
fn every_line_of_a_prewritten_file_arrives_in_s3() {
    let moto = moto_stream("pre", "pre-bucket");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let lines = access_lines("pre", 0..3000);
    append(&log, &lines);
    let mut ft = Firetail::start(&base_args(&log, "pre"), &moto.env());
    assert!(
        eventually(LONG, || moto.s3_lines("pre-bucket").len() >= lines.len()),
        "S3 never held {} lines; logs:\n{}",
        lines.len(),
        ft.dump()
    );
    ft.term();
    assert_eq!(ft.exit_code(LONG), 0, "{}", ft.dump());
    assert_eq!(sorted(moto.s3_lines("pre-bucket")), sorted(lines));
    assert_eq!(ft.report()["lines_shipped"], 3000);
}

#[test]
fn a_trickle_of_three_lines_arrives_without_any_signal() {
    let moto = moto_stream("trickle", "trickle-bucket");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    append(&log, &[]);
    let ft = Firetail::start(&base_args(&log, "trickle"), &moto.env());
    ft.wait_message("Following file.", LONG);
    let lines = access_lines("trickle", 0..3);
    for l in &lines {
        append(&log, std::slice::from_ref(l));
    }
    // The flush interval is 200 ms: the lines must leave on the timer, not on a signal.
    assert!(
        eventually(Duration::from_secs(30), || moto
            .s3_lines("trickle-bucket")
            .len()
            == 3),
        "the trickle never arrived; logs:\n{}",
        ft.dump()
    );
    assert_eq!(sorted(moto.s3_lines("trickle-bucket")), sorted(lines));
}

#[test]
fn lines_appended_just_before_sigterm_all_arrive() {
    let moto = moto_stream("last", "last-bucket");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let first = access_lines("last", 0..100);
    append(&log, &first);
    let mut ft = Firetail::start(&base_args(&log, "last"), &moto.env());
    ft.wait_message("Following file.", LONG);
    let last = access_lines("last", 100..1100);
    append(&log, &last);
    ft.term();
    assert_eq!(ft.exit_code(LONG), 0, "{}", ft.dump());
    let mut all = first;
    all.extend(last);
    assert_eq!(sorted(moto.s3_lines("last-bucket")), sorted(all));
    let report = ft.report();
    assert_eq!(report["undelivered"], 0);
    assert_eq!(report["lines_shipped"], 1100);
}

#[test]
fn a_missing_file_that_appears_later_is_followed() {
    let moto = moto_stream("later", "later-bucket");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let mut ft = Firetail::start(&base_args(&log, "later"), &moto.env());
    ft.wait_message("firetail started.", LONG);
    let lines = access_lines("later", 0..50);
    append(&log, &lines);
    assert!(
        eventually(LONG, || moto.s3_lines("later-bucket").len() == 50),
        "the late file was never shipped; logs:\n{}",
        ft.dump()
    );
    ft.term();
    assert_eq!(ft.exit_code(LONG), 0, "{}", ft.dump());
    assert_eq!(sorted(moto.s3_lines("later-bucket")), sorted(lines));
}

#[test]
fn partial_failures_resend_only_the_failed_entries() {
    let fake = FakeFirehose::start(FakeConfig {
        faults: Faults {
            record_slow_down_rate: 0.2,
            record_internal_failure_rate: 0.1,
            ..Faults::default()
        },
        ..FakeConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let lines = access_lines("partial", 0..5000);
    append(&log, &lines);
    let mut ft = Firetail::start(
        &base_args(&log, &fake.stream_name()),
        &aws_env(&fake.endpoint()),
    );
    assert!(fake.wait_for_lines(5000, LONG), "{}", ft.dump());
    ft.term();
    assert_eq!(ft.exit_code(LONG), 0, "{}", ft.dump());
    assert!(
        fake.counters().records_failed > 0,
        "the fault was not injected"
    );
    assert_eq!(
        fake.duplicate_lines(),
        Vec::<String>::new(),
        "an accepted entry was sent again"
    );
    assert_eq!(sorted(fake.accepted_lines()), sorted(lines));
}

#[test]
fn restart_on_the_checkpoint_resends_nothing_before_it() {
    let fake = FakeFirehose::start(FakeConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let first = access_lines("restart", 0..2000);
    append(&log, &first);
    let args = base_args(&log, &fake.stream_name());
    let env = aws_env(&fake.endpoint());

    let mut ft = Firetail::start(&args, &env);
    // Stop it midway: some lines shipped, others not yet read.
    assert!(fake.wait_for_lines(1, LONG));
    ft.term();
    assert_eq!(ft.exit_code(LONG), 0, "{}", ft.dump());
    assert!(dir.path().join(".firetail-access.log.json").exists());

    let second = access_lines("restart", 2000..3000);
    append(&log, &second);
    let mut ft = Firetail::start(&args, &env);
    assert!(fake.wait_for_lines(3000, LONG), "{}", ft.dump());
    ft.term();
    assert_eq!(ft.exit_code(LONG), 0, "{}", ft.dump());

    let mut all = first;
    all.extend(second);
    assert_eq!(
        fake.duplicate_lines(),
        Vec::<String>::new(),
        "lines before the checkpoint were sent again"
    );
    assert_eq!(sorted(fake.accepted_lines()), sorted(all));
}

#[test]
fn read_from_end_ships_only_what_is_written_after_the_start() {
    let fake = FakeFirehose::start(FakeConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    append(&log, &access_lines("old", 0..100));
    let mut args = base_args(&log, &fake.stream_name());
    args.push("--read-from=end".into());
    let mut ft = Firetail::start(&args, &aws_env(&fake.endpoint()));
    ft.wait_message("Following file.", LONG);
    let new = access_lines("new", 0..50);
    append(&log, &new);
    assert!(fake.wait_for_lines(50, LONG), "{}", ft.dump());
    ft.term();
    assert_eq!(ft.exit_code(LONG), 0, "{}", ft.dump());
    assert_eq!(sorted(fake.accepted_lines()), sorted(new));
}

#[test]
fn aggregate_packs_json_lines_and_sends_a_non_json_line_alone() {
    let fake = FakeFirehose::start(FakeConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let mut lines = access_lines("agg", 0..3000);
    lines.insert(1500, "not json at all".to_string());
    append(&log, &lines);
    let mut args = base_args(&log, &fake.stream_name());
    args.push("--aggregate".into());
    let mut ft = Firetail::start(&args, &aws_env(&fake.endpoint()));
    assert!(
        fake.wait_for_lines(lines.len() as u64, LONG),
        "{}",
        ft.dump()
    );
    ft.term();
    assert_eq!(ft.exit_code(LONG), 0, "{}", ft.dump());
    assert_eq!(sorted(fake.accepted_lines()), sorted(lines));
    let records = fake.accepted();
    // ~300-byte lines packed up to 1,024,000 bytes a record: a handful of records,
    // each ending in a newline, and the invalid line in a record of its own.
    assert!(
        records.len() < 20,
        "{} records for 3,001 lines",
        records.len()
    );
    assert!(records.iter().all(|r| r.ends_with(b"\n")));
    assert!(records.iter().any(|r| r.as_slice() == b"not json at all\n"));
    assert_eq!(ft.report()["lines_shipped"], 3001);
    assert_eq!(ft.report()["records_shipped"], records.len());
}
