"""Run the SQL firetail-query builds for Athena in a real engine: DuckDB.

Athena speaks Trino's dialect, so each query is transpiled with sqlglot
(Trino to DuckDB) after its execution parameters are put in place the way
Athena does: each value is SQL text that replaces one `?` of the statement,
in order, as given (a string value brings its own quotes; Athena's EXECUTE
... USING 'usa' and StartQueryExecution's ExecutionParameters). Nothing here
quotes or escapes a value: a builder that forgot to would be caught, because
its value would end the literal and change the statement.

Driven by query/tests/it/engine.rs over pipes, one process for a whole run:
each stdin line is one JSON case, answered by one stdout line.

    case:   {"schema": "access_logs", "table": "shop_access_log",
             "columns": [["time", "VARCHAR"], ...], "rows": [[...], ...],
             "queries": [{"sql": "... ? ...", "params": ["'x'", ...]}, ...]}
    answer: {"results": [{"rows": [[...], ...]} or {"error": "..."}, ...]}
    or, when the case itself is unusable: {"error": "..."}
"""

import json
import sys

import duckdb
import sqlglot


def placeholders(sql):
    """Offsets of the `?` that are placeholders: outside string literals,
    quoted identifiers and comments, as Trino's lexer sees them."""
    found, i, n = [], 0, len(sql)
    while i < n:
        c = sql[i]
        if c in "'\"":
            # A doubled quote inside is the escaped quote; scanning on finds it.
            end = sql.find(c, i + 1)
            while end != -1 and sql.startswith(c, end + 1):
                end = sql.find(c, end + 2)
            if end == -1:
                raise ValueError(f"unterminated {c} at offset {i}")
            i = end + 1
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end == -1 else end + 1
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            if end == -1:
                raise ValueError(f"unterminated comment at offset {i}")
            i = end + 2
        else:
            if c == "?":
                found.append(i)
            i += 1
    return found


def substitute(sql, params):
    """The statement Athena runs: each `?` of the text replaced by its value's
    text, in order. Values are never scanned, so a `?` inside one stays."""
    at = placeholders(sql)
    if len(at) != len(params):
        raise ValueError(f"{len(at)} placeholders but {len(params)} parameters")
    out, last = [], 0
    for offset, value in zip(at, params):
        out.append(sql[last:offset])
        out.append(value)
        last = offset + 1
    out.append(sql[last:])
    return "".join(out)


def to_duckdb(sql, params):
    """One DuckDB statement, or an error if the substituted text is not
    exactly one statement (a value that escaped its literal)."""
    text = substitute(sql, params)
    statements = sqlglot.transpile(
        text, read="trino", write="duckdb", unsupported_level=sqlglot.ErrorLevel.RAISE
    )
    if len(statements) != 1:
        raise ValueError(f"the substituted text is {len(statements)} statements")
    return statements[0]


def load(con, case):
    schema, table = case["schema"], case["table"]
    columns = case["columns"]
    con.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    defs = ", ".join(f'"{name}" {kind}' for name, kind in columns)
    con.execute(f'CREATE OR REPLACE TABLE "{schema}"."{table}" ({defs})')
    rows = case["rows"]
    if rows:
        # One INSERT of every row: executemany costs a statement per row.
        one = "(" + ", ".join("?" for _ in columns) + ")"
        values = ", ".join(one for _ in rows)
        flat = [value for row in rows for value in row]
        con.execute(f'INSERT INTO "{schema}"."{table}" VALUES {values}', flat)


def run(con, query):
    try:
        statement = to_duckdb(query["sql"], query["params"])
        rows = con.execute(statement).fetchall()
    except Exception as e:  # the answer names any failure; the Rust side fails the case
        return {"error": f"{type(e).__name__}: {e}"}
    return {"rows": [list(r) for r in rows], "duckdb_sql": statement}


def main():
    con = duckdb.connect(":memory:")
    # Athena runs queries in UTC; DuckDB would read a time without a zone in the
    # machine's zone.
    con.execute("SET TimeZone = 'UTC'")
    for line in sys.stdin:
        try:
            case = json.loads(line)
            load(con, case)
            answer = {"results": [run(con, q) for q in case["queries"]]}
        except Exception as e:
            answer = {"error": f"{type(e).__name__}: {e}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
