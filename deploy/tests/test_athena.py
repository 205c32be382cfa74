"""Checks of deploy/athena/queries.sql: each query reads the Terraform table,
restricts `datepath` (the projected partition) so it scans only those days,
and names only columns the Glue table has."""

from __future__ import annotations

import re

import pytest

from deploycheck import ATHENA, load_terraform, tf_variable_defaults
from test_terraform import glue_columns

QUERIES = ATHENA / "queries.sql"
PARTITION = "datepath"
SQL_WORDS = {
    "select", "from", "where", "and", "or", "not", "as", "order", "by", "group", "limit",
    "between", "like", "in", "is", "null", "asc", "desc", "distinct", "interval", "on",
    "join", "having", "case", "when", "then", "else", "end", "true", "false", "with",
    "current_date", "current_timestamp", "second", "minute", "hour", "day", "month", "year",
    "union", "all", "over", "partition", "nulls", "first", "last",
}


def queries() -> dict[str, str]:
    """name -> SQL, split on the `-- name:` lines."""
    found: dict[str, str] = {}
    name = None
    for line in QUERIES.read_text().splitlines():
        m = re.match(r"--\s*name:\s*(\S+)", line)
        if m:
            name = m.group(1)
            found[name] = ""
        elif name and not line.lstrip().startswith("--"):
            found[name] += line + "\n"
    return found


def strip_literals(sql: str) -> str:
    sql = re.sub(r"'(?:[^']|'')*'", "''", sql)
    return sql


def tables(sql: str) -> set[str]:
    return set(re.findall(r"\bfrom\s+([\w.\"]+)", strip_literals(sql), re.I))


def columns_named(sql: str) -> set[str]:
    """Identifiers a query reads as columns: not keywords, not functions, not
    the table, not aliases it defines itself."""
    text = strip_literals(sql)
    for table in tables(sql):
        text = text.replace(table, " ")
    aliases = {a.lower() for a in re.findall(r"\bas\s+(\w+)", text, re.I)}
    names = set()
    for m in re.finditer(r'"(\w+)"|\b([a-zA-Z_]\w*)\b(\s*\()?', text):
        quoted, bare, call = m.group(1), m.group(2), m.group(3)
        word = (quoted or bare).lower()
        if call or word in SQL_WORDS or word in aliases:
            continue
        names.add(word)
    return names


def restricts_partition(sql: str) -> bool:
    where = re.split(r"\bwhere\b", strip_literals(sql), flags=re.I)
    return len(where) > 1 and bool(
        re.search(rf"\b{PARTITION}\s*(=|>=|<=|>|<|\bbetween\b|\bin\b)", where[1], re.I)
    )


@pytest.fixture(scope="module")
def table_columns() -> set[str]:
    return {name for name, _ in glue_columns(load_terraform())} | {PARTITION}


def test_there_are_queries_for_the_searches_operators_run():
    names = set(queries())
    assert {"by-request-id", "by-status-and-path-over-a-time-range", "one-pod-over-a-time-range"} <= names, names


def test_a_query_selects_one_pod_by_the_identity_columns():
    # The columns firetail adds (Terraform's defaults), in WHERE: what a
    # reader of docs/query.md copies to read one pod's lines back.
    where = re.split(r"\bwhere\b", strip_literals(queries()["one-pod-over-a-time-range"]), flags=re.I)[1]
    defaults = tf_variable_defaults(load_terraform())
    for variable in ("pod_column", "namespace_column"):
        assert re.search(rf"\b{defaults[variable]}\s*=", where), f"no {defaults[variable]} = ... in WHERE"


@pytest.mark.parametrize("name", sorted(queries()))
def test_query_restricts_datepath(name):
    assert restricts_partition(queries()[name]), f"{name} does not restrict {PARTITION}: it would scan every day"


@pytest.mark.parametrize("name", sorted(queries()))
def test_query_names_only_columns_of_the_table(name, table_columns):
    unknown = columns_named(queries()[name]) - table_columns
    assert not unknown, f"{name} names columns the Glue table lacks: {sorted(unknown)}"


@pytest.mark.parametrize("name", sorted(queries()))
def test_query_reads_the_terraform_table(name):
    defaults = tf_variable_defaults(load_terraform())
    assert tables(queries()[name]) == {f"{defaults['glue_database_name']}.{defaults['glue_table_name']}"}


def test_the_checks_catch_a_wrong_column_and_a_full_scan(table_columns):
    bad = "SELECT colour, status FROM access_logs.shop_access_log WHERE status = 500"
    assert columns_named(bad) - table_columns == {"colour"}
    assert not restricts_partition(bad)
    assert not restricts_partition("SELECT datepath FROM t WHERE status = 1")
    assert restricts_partition("SELECT 1 FROM t WHERE datepath BETWEEN '2026/01/01' AND '2026/01/02'")
