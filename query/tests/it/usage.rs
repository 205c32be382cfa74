//! Bad usage exits 2 with a message naming the flag, before any query is started.

use std::time::Duration;

use crate::support::{self, fake_athena::FakeAthena};

fn refused(args: &[&str], expect: &str) {
    let fake = FakeAthena::start(Vec::new());
    let run = support::run(&fake.endpoint(), args, Duration::from_secs(30));
    assert_eq!(run.code, Some(2), "{args:?}: {run:?}");
    assert!(
        run.stderr.contains(expect),
        "{args:?}: expected {expect:?} in {}",
        run.stderr
    );
    assert!(fake.started().is_empty(), "{args:?} started a query");
}

#[test]
fn bad_flags_exit_2_and_start_no_query() {
    let range = [
        "--from",
        "2026-11-26T17:00:00Z",
        "--to",
        "2026-11-26T18:00:00Z",
    ];
    let with_range = |extra: &[&'static str]| -> Vec<&'static str> {
        let mut v = vec!["search"];
        v.extend(range);
        v.extend(extra);
        v
    };
    refused(&with_range(&["--eq", "status;drop table x=1"]), "--eq");
    refused(&with_range(&["--eq", "status=5xx"]), "integer");
    refused(
        &with_range(&["--prefix", "status=5"]),
        "not a string column",
    );
    refused(&with_range(&["--columns", "path,\"x\""]), "--columns");
    refused(&with_range(&["--table", "Logs"]), "--table");
    refused(
        &with_range(&["--pod", "web-1", "--pod-column", "pod\"; --"]),
        "--pod-column",
    );
    refused(
        &with_range(&["--node", "n1", "--node-column", "Node"]),
        "--node-column",
    );
    refused(&with_range(&["--order", "time:sideways"]), "--order");
    refused(
        &with_range(&["--output-location", "/tmp/x"]),
        "--output-location",
    );
    refused(&with_range(&["--timeout", "2h"]), "1s-1h");
    refused(&["search"], "--from");
    refused(
        &[
            "search",
            "--from",
            "2026-11-26T18:00:00Z",
            "--to",
            "2026-11-26T17:00:00Z",
        ],
        "before --to",
    );
    refused(&["search", "--from", "yesterday"], "yesterday");
    refused(
        &[
            "verify",
            "--ids",
            "/nonexistent/ids",
            "--from",
            "2026-11-26T17:00:00Z",
            "--to",
            "2026-11-26T18:00:00Z",
        ],
        "/nonexistent/ids",
    );
    refused(
        &[
            "verify",
            "--ids",
            "/dev/null",
            "--from",
            "2026-11-26T17:00:00Z",
            "--to",
            "2026-11-26T18:00:00Z",
        ],
        "holds no ids",
    );
    let dir = tempfile::tempdir().unwrap();
    let ids = support::ids_file(dir.path(), &["a".to_string()]);
    refused(
        &["verify", "--ids", &ids, "--from", "2026-11-26T17:00:00Z"],
        "--to is required",
    );
    refused(
        &[
            "verify",
            "--ids",
            &ids,
            "--last",
            "1h",
            "--to",
            "2026-11-26T18:00:00Z",
            "--id-column",
            "Id",
        ],
        "--id-column",
    );
}

#[test]
fn no_region_exits_2() {
    let fake = FakeAthena::start(Vec::new());
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_firetail-query"));
    cmd.args(["search", "--last", "1h"])
        .env_clear()
        .env("AWS_ENDPOINT_URL", fake.endpoint())
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null");
    let run = support::run_command(cmd, Duration::from_secs(30));
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.stderr.contains("AWS_REGION"), "{}", run.stderr);
    assert!(fake.started().is_empty());
}
