//! What moto cannot show, against the fake Athena: paging past 1,000 rows, FAILED and
//! CANCELLED with Athena's reason, a query that never ends, and verify finding lost and
//! duplicated ids.

use std::time::Duration;

use crate::support::fake_athena::{End, FakeAthena, Plan};
use crate::support::{self, ids_file};

const DEADLINE: Duration = Duration::from_secs(60);
const RANGE: [&str; 4] = [
    "--from",
    "2026-11-26T17:00:00Z",
    "--to",
    "2026-11-26T18:00:00Z",
];

fn search(fake: &FakeAthena, extra: &[&str]) -> support::Run {
    let mut args = vec!["search"];
    args.extend(RANGE);
    args.extend(extra);
    support::run(&fake.endpoint(), &args, DEADLINE)
}

fn verify(fake: &FakeAthena, ids: &str, extra: &[&str]) -> support::Run {
    let mut args = vec!["verify", "--ids", ids];
    args.extend(RANGE);
    args.extend(extra);
    support::run(&fake.endpoint(), &args, DEADLINE)
}

fn id_rows(ids: &[(String, u64)]) -> Plan {
    let rows = ids
        .iter()
        .map(|(id, n)| vec![Some(id.clone()), Some(n.to_string())])
        .collect();
    Plan::rows(&[("id", "varchar"), ("copies", "bigint")], rows)
}

#[test]
fn search_reads_every_page_past_1000_rows_in_order() {
    let rows: Vec<Vec<Option<String>>> = (0..2500)
        .map(|i| vec![Some(format!("/p/{i}")), Some("200".to_string())])
        .collect();
    let fake = FakeAthena::start(vec![Plan::rows(
        &[("path", "varchar"), ("status", "integer")],
        rows,
    )]);
    let run = search(
        &fake,
        &[
            "--columns",
            "path,status",
            "--limit",
            "2500",
            "--format",
            "csv",
        ],
    );
    assert_eq!(run.code, Some(0), "{run:?}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 2501, "header + every row");
    assert_eq!(lines[0], "path,status");
    for (i, line) in lines[1..].iter().enumerate() {
        assert_eq!(*line, format!("/p/{i},200"));
    }
    // Header + 999 rows, 1,000 rows, 501 rows.
    assert_eq!(fake.result_pages(), 3);
    assert!(
        run.stderr
            .contains("scanned 123456789 bytes, billed 124 MB: about USD 0.000620"),
        "{}",
        run.stderr
    );
    let started = &fake.started()[0];
    assert_eq!(started.workgroup.as_deref(), Some("access-logs"));
    assert_eq!(started.database.as_deref(), Some("access_logs"));
    assert_eq!(started.params.len(), started.sql.matches('?').count());
    assert!(
        started.sql.ends_with("ORDER BY \"time\" DESC\nLIMIT 2500"),
        "{}",
        started.sql
    );
}

#[test]
fn a_failed_query_exits_1_with_athenas_reason() {
    let reason = "COLUMN_NOT_FOUND: line 1:8: Column 'nope' cannot be resolved";
    let fake = FakeAthena::start(vec![Plan::ending(End::Fail(reason.into()))]);
    let run = search(&fake, &["--columns", "nope"]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stderr.contains("FAILED") && run.stderr.contains(reason),
        "{}",
        run.stderr
    );
    assert_eq!(run.stdout, "");
}

#[test]
fn a_cancelled_query_exits_1_with_athenas_reason() {
    let reason = "Query exhausted resources at this scale factor";
    let fake = FakeAthena::start(vec![Plan::ending(End::Cancel(reason.into()))]);
    let dir = tempfile::tempdir().unwrap();
    let run = verify(&fake, &ids_file(dir.path(), &["a".into()]), &[]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stderr.contains("CANCELLED") && run.stderr.contains(reason),
        "{}",
        run.stderr
    );
    assert_eq!(run.stdout, "", "no report when the query did not run");
}

#[test]
fn a_query_that_never_finishes_times_out_and_is_stopped() {
    let fake = FakeAthena::start(vec![Plan::ending(End::Never)]);
    let run = search(&fake, &["--timeout", "2s"]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stderr.contains("did not finish within 2s"),
        "{}",
        run.stderr
    );
    assert!(
        run.took >= Duration::from_secs(2),
        "gave up early: {:?}",
        run.took
    );
    // Waits double from 100 ms (100, 200, 400, 800 ms, then the rest of the 2 s): a
    // handful of polls, not a busy loop.
    assert!(
        (4..=8).contains(&fake.polls()),
        "{} polls in 2 s",
        fake.polls()
    );
    let id = fake.started()[0].id.clone();
    assert_eq!(
        fake.stopped(),
        vec![id],
        "the query must be stopped so it costs nothing more"
    );
}

#[test]
fn verify_finds_the_lost_and_the_duplicated_ids_from_the_result_file() {
    let written: Vec<String> = (0..1500).map(|i| format!("chaos-7-{i:05}")).collect();
    let mut found: Vec<(String, u64)> = written.iter().map(|id| (id.clone(), 1)).collect();
    found.retain(|(id, _)| id != "chaos-7-00010" && id != "chaos-7-01499");
    found
        .iter_mut()
        .find(|(id, _)| id == "chaos-7-00500")
        .unwrap()
        .1 = 3;
    found.push(("someone-else".into(), 1));
    let fake = FakeAthena::start(vec![id_rows(&found)]);
    let dir = tempfile::tempdir().unwrap();
    let run = verify(&fake, &ids_file(dir.path(), &written), &["--json"]);
    assert_eq!(run.code, Some(1), "{run:?}");
    let report: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(report["written"], 1500);
    assert_eq!(report["found"], 1498);
    assert_eq!(
        report["lost_ids"],
        serde_json::json!(["chaos-7-00010", "chaos-7-01499"])
    );
    assert_eq!(
        report["duplicated_ids"],
        serde_json::json!([{ "id": "chaos-7-00500", "copies": 3 }])
    );
    assert_eq!(report["extra_copies"], 2);
    assert_eq!(report["unexpected"], 1);
    // 1,500 rows in one signed GET of the result file, not in GetQueryResults pages.
    assert_eq!(
        fake.s3_gets(),
        vec![format!(
            "/fake-workgroup-results/{}.csv",
            fake.started()[0].id
        )]
    );
    assert_eq!(fake.result_pages(), 0);
}

#[test]
fn verify_pages_through_results_when_the_result_file_cannot_be_read() {
    let written: Vec<String> = (0..2100).map(|i| format!("id-{i}")).collect();
    let mut plan = id_rows(&written.iter().map(|id| (id.clone(), 1)).collect::<Vec<_>>());
    plan.result_file = false;
    let fake = FakeAthena::start(vec![plan]);
    let dir = tempfile::tempdir().unwrap();
    let run = verify(
        &fake,
        &ids_file(dir.path(), &written),
        &["--output-location", "s3://results/v/"],
    );
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(
        run.stdout,
        "written 2100  found 2100  lost 0  duplicated 0 (0 extra copies)\n"
    );
    assert!(
        run.stderr
            .contains("paging through GetQueryResults instead"),
        "{}",
        run.stderr
    );
    assert_eq!(
        fake.s3_gets(),
        vec![format!("/results/v/{}.csv", fake.started()[0].id)]
    );
    assert_eq!(fake.result_pages(), 3);
}

#[test]
fn workgroup_tables_and_output_location_come_from_the_environment() {
    let fake = FakeAthena::start(vec![Plan::rows(&[("time", "varchar")], Vec::new())]);
    let env = [
        ("FIRETAIL_QUERY_WORKGROUP", "chaos"),
        ("FIRETAIL_QUERY_OUTPUT_LOCATION", "s3://env-results/q/"),
        ("FIRETAIL_QUERY_DATABASE", "other_db"),
        ("FIRETAIL_QUERY_TABLE", "other_table"),
    ];
    let mut args = vec!["search"];
    args.extend(RANGE);
    let run = support::run_with_env(&fake.endpoint(), &args, &env, DEADLINE);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stdout.ends_with("(0 rows)\n"), "{}", run.stdout);
    let started = &fake.started()[0];
    assert_eq!(started.workgroup.as_deref(), Some("chaos"));
    assert_eq!(started.database.as_deref(), Some("other_db"));
    assert!(
        started.sql.contains("FROM \"other_db\".\"other_table\""),
        "{}",
        started.sql
    );
    assert!(
        started.output_location.starts_with("s3://env-results/q/"),
        "{}",
        started.output_location
    );
}
