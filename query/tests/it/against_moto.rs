//! Both subcommands end to end against moto's Athena and S3.

use std::time::Duration;

use crate::support::{self, moto::Moto};

const DEADLINE: Duration = Duration::from_secs(60);

fn moto_with_results_bucket() -> Moto {
    let moto = Moto::start();
    moto.create_bucket("query-results");
    moto.athena(
        "CreateWorkGroup",
        serde_json::json!({ "Name": "access-logs", "Configuration": {} }),
    );
    moto
}

#[test]
fn search_prints_the_rows_athena_returned_and_sends_values_only_as_parameters() {
    let moto = moto_with_results_bucket();
    let columns = [
        ("time", "varchar"),
        ("path", "varchar"),
        ("status", "integer"),
    ];
    moto.queue_result(
        &columns,
        &[
            vec![
                Some("2026-11-26T17:33:00.123Z"),
                Some("/orders/42"),
                Some("500"),
            ],
            vec![Some("2026-11-26T17:32:00.000Z"), Some("/orders/it's"), None],
        ],
    );
    let run = support::run(
        &moto.endpoint(),
        &[
            "search",
            "--from",
            "2026-11-26T17:00:00Z",
            "--to",
            "2026-11-26T18:00:00Z",
            "--eq",
            "status=500",
            "--prefix",
            "path=/orders/50%_",
            "--columns",
            "time,path,status",
            "--format",
            "jsonl",
            "--output-location",
            "s3://query-results/search/",
        ],
        DEADLINE,
    );
    assert_eq!(run.code, Some(0), "{run:?}");
    let rows: Vec<serde_json::Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        rows,
        [
            serde_json::json!({ "time": "2026-11-26T17:33:00.123Z", "path": "/orders/42", "status": 500 }),
            serde_json::json!({ "time": "2026-11-26T17:32:00.000Z", "path": "/orders/it's", "status": null }),
        ]
    );
    assert!(
        run.stderr.contains("scanned 0 bytes, billed 10 MB"),
        "{}",
        run.stderr
    );

    let executions = moto.executions();
    assert_eq!(executions.len(), 1, "{executions:?}");
    let (sql, params) = &executions[0];
    assert!(
        sql.contains("\"path\" LIKE ? ESCAPE '\\'") && !sql.contains("orders"),
        "{sql}"
    );
    assert_eq!(
        params,
        &[
            "'2026/11/26'",
            "'2026/11/26'",
            "'2026-11-26T17:00:00.000Z'",
            "'2026-11-26T18:00:00.000Z'",
            "500",
            "'/orders/50\\%\\_%'",
        ]
    );
}

#[test]
fn verify_reads_the_result_file_and_exits_0_when_nothing_is_lost() {
    let moto = moto_with_results_bucket();
    let ids: Vec<String> = (0..5).map(|i| format!("chaos-1-{i}")).collect();
    let mut rows: Vec<Vec<Option<&str>>> = ids
        .iter()
        .map(|i| vec![Some(i.as_str()), Some("1")])
        .collect();
    rows[3][1] = Some("2"); // at-least-once: a duplicate is reported, not a failure
    moto.queue_result(&[("id", "varchar"), ("copies", "bigint")], &rows);
    let dir = tempfile::tempdir().unwrap();
    let run = support::run(
        &moto.endpoint(),
        &[
            "verify",
            "--ids",
            &support::ids_file(dir.path(), &ids),
            "--from",
            "2026-11-26T17:00:00Z",
            "--to",
            "2026-11-26T17:10:00Z",
            "--id-prefix",
            "chaos-1-",
            "--output-location",
            "s3://query-results/verify/",
        ],
        DEADLINE,
    );
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(
        run.stdout,
        "written 5  found 5  lost 0  duplicated 1 (1 extra copies)\nduplicated chaos-1-3 (2 copies)\n"
    );
    // moto wrote the result file to S3; reading it needed no GetQueryResults pages.
    assert!(!run.stderr.contains("paging"), "{}", run.stderr);
    let (sql, params) = &moto.executions()[0];
    assert!(
        sql.contains("count(*) AS copies") && sql.contains("GROUP BY \"request_id\""),
        "{sql}"
    );
    assert_eq!(params, &["'2026/11/25'", "'2026/11/27'", "'chaos-1-%'"]);
}

#[test]
fn verify_against_moto_names_the_lost_id_and_exits_1() {
    let moto = moto_with_results_bucket();
    let ids: Vec<String> = (0..4).map(|i| format!("run-{i}")).collect();
    let rows: Vec<Vec<Option<&str>>> = ids[..3]
        .iter()
        .map(|i| vec![Some(i.as_str()), Some("1")])
        .collect();
    moto.queue_result(&[("id", "varchar"), ("copies", "bigint")], &rows);
    let dir = tempfile::tempdir().unwrap();
    let run = support::run(
        &moto.endpoint(),
        &[
            "verify",
            "--ids",
            &support::ids_file(dir.path(), &ids),
            "--from",
            "2026-11-26T17:00:00Z",
            "--to",
            "2026-11-26T17:10:00Z",
            "--output-location",
            "s3://query-results/verify/",
        ],
        DEADLINE,
    );
    assert_eq!(run.code, Some(1), "{run:?}");
    assert_eq!(
        run.stdout,
        "written 4  found 3  lost 1  duplicated 0 (0 extra copies)\nlost run-3\n"
    );
}
