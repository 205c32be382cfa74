//! The identity filters as a user types them: `--pod`, `--namespace`, `--node` and
//! `--source` become equalities on their columns (renamed by `--pod-column` and the
//! like), built by the same identifier and literal code as `--eq`, whatever the value.

use clap::Parser as _;
use proptest::prelude::*;

use super::{Cli, Command, FilterArgs};
use crate::sql::{self, DayRange, Filter, Ident, SearchSpec, TableRef, TimeBounds, Value};

fn parse(extra: &[&str]) -> Result<Cli, clap::Error> {
    let mut args = vec!["firetail-query", "search", "--last", "1h"];
    args.extend(extra);
    Cli::try_parse_from(args)
}

fn filter_args(cli: &Cli) -> &FilterArgs {
    match &cli.command {
        Command::Search(s) => &s.filters,
        Command::Verify(v) => &v.filters,
    }
}

fn filters(extra: &[&str]) -> Result<Vec<Filter>, String> {
    let cli = parse(extra).map_err(|e| e.to_string())?;
    filter_args(&cli).filters()
}

fn eq(column: &str, value: &str) -> Filter {
    Filter::Eq(
        Ident::new("column", column).unwrap(),
        Value::Str(value.into()),
    )
}

fn search_sql(filters: Vec<Filter>) -> sql::Query {
    let id = |n: &str| Ident::new("column", n).unwrap();
    sql::search(&SearchSpec {
        table: TableRef {
            database: Ident::new("database", "access_logs").unwrap(),
            table: Ident::new("table", "shop_access_log").unwrap(),
        },
        columns: vec![id("time"), id("pod")],
        days: DayRange {
            first: "2026/11/25".into(),
            last: "2026/11/27".into(),
        },
        time: TimeBounds {
            from: "2026-11-26T00:00:00.000Z".into(),
            to: "2026-11-26T01:00:00.000Z".into(),
        },
        filters,
        order: None,
        limit: 10,
    })
    .unwrap()
}

#[test]
fn each_identity_flag_is_an_equality_on_its_column() {
    let got = filters(&[
        "--pod",
        "shop-web-7d4b9c-x2x8q",
        "--namespace",
        "shop",
        "--node",
        "ip-10-0-1-7.ec2.internal",
        "--source",
        "sidekiq",
    ])
    .unwrap();
    assert_eq!(
        got,
        [
            eq("pod", "shop-web-7d4b9c-x2x8q"),
            eq("namespace", "shop"),
            eq("node", "ip-10-0-1-7.ec2.internal"),
            eq("source", "sidekiq"),
        ]
    );
    let q = search_sql(got);
    for column in ["pod", "namespace", "node", "source"] {
        assert!(q.sql.contains(&format!("\"{column}\" = ?")), "{}", q.sql);
    }
    assert_eq!(
        q.params[4..],
        [
            "'shop-web-7d4b9c-x2x8q'",
            "'shop'",
            "'ip-10-0-1-7.ec2.internal'",
            "'sidekiq'"
        ]
    );
}

#[test]
fn no_identity_flag_no_condition() {
    assert_eq!(filters(&[]).unwrap(), []);
    // Only the ones given.
    assert_eq!(filters(&["--node", "n1"]).unwrap(), [eq("node", "n1")]);
}

#[test]
fn the_columns_take_the_tables_names() {
    let got = filters(&[
        "--pod",
        "web-1",
        "--pod-column",
        "k8s_pod",
        "--namespace",
        "shop",
        "--namespace-column",
        "k8s_namespace",
        "--node",
        "n1",
        "--node-column",
        "host",
        "--source",
        "rails",
        "--source-column",
        "log_source",
    ])
    .unwrap();
    assert_eq!(
        got,
        [
            eq("k8s_pod", "web-1"),
            eq("k8s_namespace", "shop"),
            eq("host", "n1"),
            eq("log_source", "rails"),
        ]
    );
}

#[test]
fn a_bad_column_name_is_refused_naming_its_flag() {
    for (flag, value_flag) in [
        ("--pod-column", "--pod"),
        ("--namespace-column", "--namespace"),
        ("--node-column", "--node"),
        ("--source-column", "--source"),
    ] {
        for bad in ["Pod", "pod\"; DROP TABLE x; --", "", "1pod", "pod name"] {
            let err = filters(&[value_flag, "x", flag, bad]).unwrap_err();
            assert!(err.starts_with(flag), "{flag} {bad:?}: {err}");
        }
        // Not used, not checked: a bad default in the environment does not stop a
        // query that filters on something else.
        assert_eq!(filters(&[flag, "Pod"]).unwrap(), []);
    }
}

#[test]
fn a_typed_column_takes_only_its_type() {
    // Renamed onto a number column, the value must be a number, as with --eq.
    let err = filters(&["--pod", "web-1", "--pod-column", "status"]).unwrap_err();
    assert!(err.starts_with("--pod") && err.contains("integer"), "{err}");
}

#[test]
fn each_flag_is_given_once() {
    assert!(parse(&["--pod", "a", "--pod", "b"]).is_err());
}

/// Values made to break quoting: SQL quotes, placeholders, comments, control bytes,
/// non-ASCII, a leading dash (a flag to a naive parser).
fn nasty() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "'",
        "''",
        "\\",
        "%",
        "_",
        "\n",
        "\r",
        "?",
        "\"",
        ";",
        "--",
        "/*",
        "é",
        "日本",
        "🔥",
        " ",
        "a",
        "-",
        "=",
        ",",
        "$(POD_NAME)",
    ]);
    prop::collection::vec(pieces, 0..10).prop_map(|v| v.concat())
}

proptest! {
    #[test]
    fn any_value_travels_as_one_literal(pod in nasty(), namespace in nasty(), node in nasty(), source in nasty()) {
        let given = [("--pod", &pod), ("--namespace", &namespace), ("--node", &node), ("--source", &source)];
        let args: Vec<String> = given.iter().map(|(f, v)| format!("{f}={v}")).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let got = filters(&args).unwrap();
        let q = search_sql(got);
        // The text is the one of plain values: no value reaches it.
        let plain = search_sql(filters(&["--pod=x", "--namespace=x", "--node=x", "--source=x"]).unwrap());
        prop_assert_eq!(&q.sql, &plain.sql);
        // Each parameter is the value as one quoted literal, inner quotes doubled.
        for ((_, value), param) in given.iter().zip(&q.params[4..]) {
            prop_assert_eq!(param, &format!("'{}'", value.replace('\'', "''")));
        }
    }
}
