//! Added fields end to end: the built binary with `--add-field`, `--source-field` and
//! `--file-field`, against the fake Firehose (docs/design.md#sources).

use std::time::Duration;

use crate::support::fake_firehose::{FakeConfig, FakeFirehose};
use crate::support::firetail::{
    access_lines, append, aws_env, base_args, sample, scrape, Firetail,
};
use crate::support::sorted;

const LONG: Duration = Duration::from_secs(60);

/// Every JSON object line arrives with the fields before its closing brace (the app's
/// own `pod` kept), an array line as written, and the invalid line is dead-lettered as
/// the app wrote it; with `--aggregate`, every line of a record has them.
#[test]
fn every_object_line_arrives_with_the_fields_and_dead_letters_stay_as_written() {
    let fake = FakeFirehose::start(FakeConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let mut lines = access_lines("fields", 0..2000);
    lines[7] = r#"{"pod":"from-the-app","seq":7}"#.to_string();
    lines[8] = "[1,2,3]".to_string();
    lines[9] = "not json {}".to_string();
    append(&log, &lines);
    let mut args = base_args(&log, &fake.stream_name());
    args.extend([
        "--aggregate".to_string(),
        "--invalid-json=dead-letter".to_string(),
        "--add-field=pod=web-1".to_string(),
        "--add-field=namespace=shop \"blue\"".to_string(),
        "--source-field=source".to_string(),
        "--file-field=file".to_string(),
    ]);
    let mut ft = Firetail::start(&args, &aws_env(&fake.endpoint()));
    let shipped = lines.len() as u64 - 1;
    assert!(fake.wait_for_lines(shipped, LONG), "{}", ft.dump());
    let text = scrape(&ft.metrics_addr());
    let series = |name: &str| sample(&text, &format!("{name}{{source=\"default\"}}"));
    assert_eq!(
        series("firetail_fields_app_kept_total"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        series("firetail_fields_not_object_total"),
        Some(1.0),
        "{text}"
    );
    ft.term();
    assert_eq!(ft.exit_code(LONG), 0, "{}", ft.dump());

    let file = serde_json::to_string(&log.display().to_string()).unwrap();
    let ours = |pod: bool| {
        let pod = if pod { r#","pod":"web-1""# } else { "" };
        format!(r#"{pod},"namespace":"shop \"blue\"","source":"default","file":{file}}}"#)
    };
    let expected: Vec<String> = lines
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 9)
        .map(|(i, l)| match i {
            7 => format!("{}{}", &l[..l.len() - 1], ours(false)),
            8 => l.clone(),
            _ => format!("{}{}", &l[..l.len() - 1], ours(true)),
        })
        .collect();
    assert_eq!(sorted(fake.accepted_lines()), sorted(expected));
    assert!(fake.accepted().len() < 20, "the lines were aggregated");

    let dead = std::fs::read_to_string(log.with_file_name(".firetail-access.log.dead.jsonl"))
        .unwrap_or_default();
    let entries: Vec<serde_json::Value> = dead
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(entries.len(), 1, "{dead}");
    let written = entries[0]["line"].as_str().unwrap_or_default();
    assert_eq!(written.trim_end(), "not json {}", "{dead}");
}
