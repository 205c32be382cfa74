//! The SQL firetail-query builds, run in a real engine (support/engine.rs: Athena's Trino
//! dialect transpiled by sqlglot and run by DuckDB, with the execution parameters put in
//! as Athena puts them): over rows spread across several days and values made to break
//! quoting, each query returns exactly the rows the reference filter of engine_world.rs
//! selects, and never a row from a day outside its `datepath` range.

use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::BTreeMap;

use proptest::prelude::{prop_assert, prop_assert_eq};
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::Value as Json;

use firetail_query::sql::{
    self, Direction, Filter, Ident, Query, SearchSpec, TableRef, Value, VerifySpec,
    ACCESS_LOG_COLUMNS, IDENTITY_COLUMNS,
};
use firetail_query::timerange::SEARCH_LATE;

use crate::engine_world::{column, in_days, in_time, matches, world, FilterSpec, Row, World};
use crate::support::engine::{table_columns, Answer, Engine};

const DATABASE: &str = "access_logs";
const TABLE: &str = "shop_access_log";

fn table() -> TableRef {
    TableRef {
        database: Ident::new("database", DATABASE).unwrap(),
        table: Ident::new("table", TABLE).unwrap(),
    }
}

fn ident(name: &str) -> Ident {
    Ident::new("column", name).unwrap()
}

fn search_spec(w: &World, filters: Vec<Filter>) -> SearchSpec {
    let order = w.order.map(|(c, asc)| {
        let dir = if asc { Direction::Asc } else { Direction::Desc };
        (ident(c), dir)
    });
    SearchSpec {
        table: table(),
        columns: table_columns().iter().map(|(c, _)| ident(c)).collect(),
        days: w.range.search_days(),
        time: w.range.bounds(),
        filters,
        order,
        limit: w.limit,
    }
}

/// A row as JSON text, so rows compare and sort as whole values.
fn key(cells: &[Json]) -> String {
    serde_json::to_string(cells).unwrap()
}

/// Trino's ORDER BY: NULLS LAST in either direction.
fn order_cmp(a: &Json, b: &Json, asc: bool) -> Ordering {
    let by_value = match (a, b) {
        (Json::Null, Json::Null) => return Ordering::Equal,
        (Json::Null, _) => return Ordering::Greater,
        (_, Json::Null) => return Ordering::Less,
        (Json::String(x), Json::String(y)) => x.cmp(y),
        (x, y) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x.cmp(&y),
            _ => x.as_f64().partial_cmp(&y.as_f64()).unwrap(),
        },
    };
    if asc {
        by_value
    } else {
        by_value.reverse()
    }
}

fn check_search(w: &World, filters: &[Filter], answer: Answer) -> Result<(), TestCaseError> {
    let got = answer.map_err(TestCaseError::fail)?;
    let days = w.range.search_days();
    let at = column("datepath");
    for row in &got {
        let day = row[at].as_str().unwrap_or_default();
        prop_assert!(
            days.first.as_str() <= day && day <= days.last.as_str(),
            "a row from {day}, outside {days:?}"
        );
    }
    let bounds = w.range.bounds();
    let want: Vec<&Row> = w
        .rows
        .iter()
        .filter(|r| in_days(r, &days) && in_time(r, &bounds))
        .filter(|r| filters.iter().all(|f| matches(r, f)))
        .collect();
    let mut got_keys: Vec<String> = got.iter().map(|r| key(r)).collect();
    got_keys.sort();
    let mut want_keys: Vec<String> = want.iter().map(|r| key(&r.cells)).collect();
    want_keys.sort();
    if want.len() <= w.limit as usize {
        prop_assert_eq!(&got_keys, &want_keys, "rows returned != rows selected");
    } else {
        prop_assert_eq!(got.len(), w.limit as usize);
        let mut left = want_keys.clone();
        for k in &got_keys {
            let i = left.binary_search(k);
            prop_assert!(i.is_ok(), "a row the reference does not select: {}", k);
            left.remove(i.unwrap());
        }
    }
    let Some((c, asc)) = w.order else {
        return Ok(());
    };
    let at = column(c);
    for pair in got.windows(2) {
        let ord = order_cmp(&pair[0][at], &pair[1][at], asc);
        prop_assert!(ord != Ordering::Greater, "not in {c} order: {pair:?}");
    }
    // Under LIMIT, every row that sorts before the last one returned is returned.
    if let Some(last) = got.last() {
        let before = want
            .iter()
            .filter(|r| order_cmp(&r.cells[at], &last[at], asc) == Ordering::Less)
            .count();
        let got_before = got
            .iter()
            .filter(|r| order_cmp(&r[at], &last[at], asc) == Ordering::Less)
            .count();
        prop_assert_eq!(before, got_before, "LIMIT kept the wrong rows");
    }
    Ok(())
}

fn check_verify(w: &World, filters: &[Filter], answer: Answer) -> Result<(), TestCaseError> {
    let got = answer.map_err(TestCaseError::fail)?;
    let days = w.range.verify_days();
    let mut want: BTreeMap<String, i64> = BTreeMap::new();
    for r in &w.rows {
        let id = &r.cells[column("request_id")];
        if in_days(r, &days) && !id.is_null() && filters.iter().all(|f| matches(r, f)) {
            *want.entry(id.as_str().unwrap().to_string()).or_default() += 1;
        }
    }
    let mut found: BTreeMap<String, i64> = BTreeMap::new();
    for row in &got {
        let (id, copies) = (row[0].as_str().unwrap(), row[1].as_i64().unwrap());
        prop_assert!(
            found.insert(id.to_string(), copies).is_none(),
            "{id:?} twice"
        );
    }
    prop_assert_eq!(found, want, "copies per id");
    Ok(())
}

/// The promise the days are widened for: a line written in the range and received
/// within SEARCH_LATE (search) or a day (verify) of being written is in the days scanned.
fn check_days_cover_on_time_lines(w: &World) -> Result<(), TestCaseError> {
    let day = std::time::Duration::from_secs(86_400);
    for r in &w.rows {
        let Some(written) = r.written else { continue };
        if written < w.range.from || written >= w.range.to || r.received < written {
            continue;
        }
        let late = r.received.duration_since(written).unwrap();
        if late <= SEARCH_LATE {
            prop_assert!(in_days(r, &w.range.search_days()), "search misses {r:?}");
        }
        if late <= day {
            prop_assert!(in_days(r, &w.range.verify_days()), "verify misses {r:?}");
        }
    }
    Ok(())
}

/// How much of each run actually exercised the engine (printed, and a run that
/// selected nothing at all fails: its cases would prove nothing).
#[derive(Default, Debug)]
struct Coverage {
    cases: u32,
    rows_returned: usize,
    searches_with_rows: u32,
    rows_only_out_of_days: usize,
    /// Searches with a --pod/--namespace/--node/--source filter that returned rows.
    identity_searches_with_rows: u32,
}

#[test]
fn queries_return_exactly_the_rows_a_reference_filter_selects_and_no_other_day() {
    let Some(engine) = Engine::start() else {
        return;
    };
    let engine = RefCell::new(engine);
    let coverage = RefCell::new(Coverage::default());
    // 256 cases unless PROPTEST_CASES says otherwise (proptest's default).
    let config = Config {
        source_file: Some(file!()),
        ..Config::default()
    };
    let started = std::time::Instant::now();
    let result = TestRunner::new(config).run(&world(), |w| {
        check_days_cover_on_time_lines(&w)?;
        let filters = w.filters();
        let search = sql::search(&search_spec(&w, filters.clone())).unwrap();
        let verify_filters: Vec<Filter> = filters.iter().cloned().chain(w.id_prefix()).collect();
        let verify = sql::verify(&VerifySpec {
            table: table(),
            id_column: ident("request_id"),
            days: w.range.verify_days(),
            filters: verify_filters.clone(),
        })
        .unwrap();
        let rows: Vec<Vec<Json>> = w.rows.iter().map(|r| r.cells.clone()).collect();
        let mut answers = engine
            .borrow_mut()
            .run((DATABASE, TABLE), &rows, &[search, verify]);
        let verify_answer = answers.pop().unwrap();
        let search_answer = answers.pop().unwrap();
        {
            let mut c = coverage.borrow_mut();
            c.cases += 1;
            let n = search_answer.as_ref().map_or(0, Vec::len);
            c.rows_returned += n;
            c.searches_with_rows += u32::from(n > 0);
            let identity = w
                .filters
                .iter()
                .any(|f| matches!(f, FilterSpec::Identity(..)));
            c.identity_searches_with_rows += u32::from(n > 0 && identity);
            let (days, bounds) = (w.range.search_days(), w.range.bounds());
            c.rows_only_out_of_days += w
                .rows
                .iter()
                .filter(|r| !in_days(r, &days) && in_time(r, &bounds))
                .filter(|r| filters.iter().all(|f| matches(r, f)))
                .count();
        }
        check_search(&w, &filters, search_answer)?;
        check_verify(&w, &verify_filters, verify_answer)
    });
    let c = coverage.into_inner();
    eprintln!("engine: {c:?} in {:?}", started.elapsed());
    if let Err(e) = result {
        panic!("{e}");
    }
    assert!(
        c.searches_with_rows > 0
            && c.rows_only_out_of_days > 0
            && c.identity_searches_with_rows > 0,
        "{c:?}"
    );
}

/// The engine puts values in as text, as Athena does: a value that is not a quoted
/// literal changes the statement. This is what makes the property above able to fail
/// on a builder that quotes wrongly.
#[test]
fn the_engine_substitutes_parameters_as_text_as_athena_does() {
    let Some(mut engine) = Engine::start() else {
        return;
    };
    let path = column("path");
    let mut rows = Vec::new();
    for (p, day) in [
        ("/a", "2026/12/27"),
        ("/b?", "2026/12/27"),
        ("/a", "2026/12/20"),
    ] {
        let mut r = vec![Json::Null; table_columns().len()];
        r[path] = p.into();
        r[column("datepath")] = day.into();
        rows.push(r);
    }
    let q = |param: &str| Query {
        sql: "SELECT \"path\" FROM \"access_logs\".\"shop_access_log\"\n\
              WHERE \"datepath\" = '2026/12/27' AND \"path\" = ?"
            .into(),
        params: vec![param.into()],
    };
    let injected = "'x' OR 'a' = 'a'";
    let quoted = Value::Str(injected.into()).literal();
    let answers = engine.run(
        (DATABASE, TABLE),
        &rows,
        &[q(injected), q(&quoted), q("'/b?'"), q("'it's'")],
    );
    let paths = |a: &Answer| -> Vec<String> {
        let rows = a.as_ref().unwrap();
        rows.iter().map(|r| r[0].as_str().unwrap().into()).collect()
    };
    // The injected OR even escapes the datepath condition: the other day's row too.
    assert_eq!(
        paths(&answers[0]),
        ["/a", "/b?", "/a"],
        "injected text ran as SQL"
    );
    assert!(
        paths(&answers[1]).is_empty(),
        "the builder's literal is one value"
    );
    assert_eq!(
        paths(&answers[2]),
        ["/b?"],
        "a ? inside a value is not a placeholder"
    );
    assert!(
        answers[3].is_err(),
        "an unpaired quote breaks the statement"
    );
}

/// The default of Terraform variable `name` in deploy/terraform/variables.tf.
fn variable_default(variables: &str, name: &str) -> String {
    let block = &variables[variables
        .find(&format!("variable \"{name}\" {{"))
        .unwrap_or_else(|| panic!("no variable {name}"))..];
    let line = block
        .lines()
        .find(|l| l.trim_start().starts_with("default"))
        .unwrap_or_else(|| panic!("variable {name} has no default"));
    line.split('"').nth(1).unwrap_or_default().to_string()
}

/// The engine's table is the Glue table: the query builder's column lists, which the
/// engine's table is made from, have the columns and types of deploy/terraform/glue.tf
/// (with the variables' defaults for the columns firetail adds: the pod's identity; the
/// source and file columns are off unless named).
#[test]
fn the_engine_table_has_the_glue_tables_columns() {
    let terraform = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/terraform");
    let glue = std::fs::read_to_string(terraform.join("glue.tf")).unwrap();
    let variables = std::fs::read_to_string(terraform.join("variables.tf")).unwrap();
    let added: Vec<String> = glue
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("{ name = var."))
        .map(|rest| variable_default(&variables, &rest[..rest.find(',').unwrap()]))
        .collect();
    let identity: Vec<String> = IDENTITY_COLUMNS.iter().map(|c| c.to_string()).collect();
    assert_eq!(added, [&identity[..], &["".into(), "".into()]].concat());
    let source = glue
        .lines()
        .find(|l| l.contains("{ name = var.") && l.contains("--source-field"))
        .expect("the source column");
    assert!(source.contains("name = var.source_column"), "{source}");

    let field = |line: &str, name: &str| -> Option<String> {
        let rest = &line[line.find(&format!("{name} = \""))? + name.len() + 4..];
        Some(rest[..rest.find('"')?].to_string())
    };
    let glue_columns: Vec<(String, String)> = glue
        .lines()
        .filter(|l| l.trim_start().starts_with("{ name = "))
        .filter_map(|l| Some((field(l, "name")?, field(l, "type")?)))
        .collect();
    let builder: Vec<(String, String)> = ACCESS_LOG_COLUMNS
        .iter()
        .map(|(name, kind)| {
            let hive = match kind {
                sql::ColumnType::String => "string",
                sql::ColumnType::Int => "int",
                sql::ColumnType::BigInt => "bigint",
                sql::ColumnType::Double => "double",
            };
            (name.to_string(), hive.to_string())
        })
        .collect();
    assert_eq!(glue_columns, builder);
}
