//! A real SQL engine for the queries firetail-query builds: `query/tests/trino_in_duckdb.py`
//! (sqlglot transpiles Athena's Trino dialect to DuckDB, which runs it), one Python
//! process per test run, spoken to over its stdin and stdout in JSON lines.
//!
//! The interpreter: `$FIRETAIL_VENV_PYTHON` (scripts/test.sh exports the venv's), else the
//! repository's `.venv/bin/python` (made by scripts/python-env.sh with the pinned sqlglot
//! and duckdb). Without it, or without those packages, [`Engine::start`] panics under
//! `CI=true` and otherwise prints a `firetail-test-skip:` line and returns `None`.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use serde_json::{json, Value};

use firetail_query::sql::{
    ColumnType, Query, ACCESS_LOG_COLUMNS, IDENTITY_COLUMNS, PARTITION_COLUMN, SOURCE_COLUMN,
};

/// What one query gave back: its rows as JSON values, or the engine's error.
pub type Answer = Result<Vec<Vec<Value>>, String>;

pub struct Engine {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Engine {
    /// Start the runner, or say why not (see the module's documentation).
    pub fn start() -> Option<Engine> {
        let python = python_path();
        let probe = Command::new(&python)
            .args(["-c", "import sqlglot, duckdb"])
            .stdin(Stdio::null())
            .output();
        let why = match probe {
            Err(e) => format!("cannot run {}: {e}", python.display()),
            Ok(out) if !out.status.success() => format!(
                "{} cannot import sqlglot and duckdb (run scripts/python-env.sh): {}",
                python.display(),
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .last()
                    .unwrap_or_default()
            ),
            Ok(_) => return Some(Engine::spawn(&python)),
        };
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{why}");
        }
        eprintln!("firetail-test-skip: no SQL engine: {why}");
        None
    }

    fn spawn(python: &PathBuf) -> Engine {
        let runner = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/trino_in_duckdb.py");
        let mut child = Command::new(python)
            .arg(&runner)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", runner.display()));
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Engine {
            child,
            stdin,
            stdout,
        }
    }

    /// Load `rows` (values in [`table_columns`] order) as `"database"."table"` and run
    /// each query against them; one answer per query, in order.
    pub fn run(
        &mut self,
        table: (&str, &str),
        rows: &[Vec<Value>],
        queries: &[Query],
    ) -> Vec<Answer> {
        let columns: Vec<Value> = table_columns()
            .iter()
            .map(|(name, kind)| json!([name, kind]))
            .collect();
        let queries: Vec<Value> = queries
            .iter()
            .map(|q| json!({"sql": q.sql, "params": q.params}))
            .collect();
        let case = json!({
            "schema": table.0, "table": table.1, "columns": columns,
            "rows": rows, "queries": queries,
        });
        writeln!(self.stdin, "{case}").expect("write a case to the SQL engine");
        self.stdin.flush().expect("write a case to the SQL engine");
        let mut line = String::new();
        let n = self
            .stdout
            .read_line(&mut line)
            .expect("read the SQL engine");
        assert!(n > 0, "the SQL engine exited (its stderr is above)");
        let answer: Value = serde_json::from_str(&line).expect("the SQL engine answers JSON");
        if let Some(e) = answer.get("error") {
            panic!("the SQL engine refused the case: {e}");
        }
        answer["results"]
            .as_array()
            .expect("results")
            .iter()
            .map(|r| match r.get("error") {
                Some(e) => Err(e.as_str().unwrap_or_default().to_string()),
                None => Ok(r["rows"]
                    .as_array()
                    .expect("rows")
                    .iter()
                    .map(|row| row.as_array().expect("a row").clone())
                    .collect()),
            })
            .collect()
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Glue table's columns as DuckDB types (the access log's, then the pod's identity
/// firetail adds, then the optional source column), then the partition column (a string).
pub fn table_columns() -> Vec<(&'static str, &'static str)> {
    let mut columns: Vec<(&str, &str)> = ACCESS_LOG_COLUMNS
        .iter()
        .map(|(name, kind)| {
            let kind = match kind {
                ColumnType::String => "VARCHAR",
                ColumnType::Int => "INTEGER",
                ColumnType::BigInt => "BIGINT",
                ColumnType::Double => "DOUBLE",
            };
            (*name, kind)
        })
        .collect();
    for name in IDENTITY_COLUMNS.iter().chain([&SOURCE_COLUMN]) {
        columns.push((name, "VARCHAR"));
    }
    columns.push((PARTITION_COLUMN, "VARCHAR"));
    columns
}

fn python_path() -> PathBuf {
    match std::env::var_os("FIRETAIL_VENV_PYTHON") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python"),
    }
}
