"""Checks of deploy/grafana/firetail-dashboard.json: it parses, shows what an
operator needs, every panel's PromQL is valid (Grafana's variables substituted,
then each expression loaded by promtool as a recording rule) and reads only
series firetail exports (src/metrics.rs), the rules record, or standard
container and kube-state-metrics series."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from deploycheck import GRAFANA, PROMETHEUS
from promql import allowed_series, metric_names, run_promtool

DASHBOARD = GRAFANA / "firetail-dashboard.json"

# Grafana's built-in variables, with values of the kind Grafana substitutes.
BUILTINS = {
    "__rate_interval": "2m",
    "__interval": "1m",
    "__range": "6h",
    "__range_s": "21600",
    "__interval_ms": "60000",
}


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def panels() -> list[dict]:
    found = []
    for panel in dashboard()["panels"]:
        found.append(panel)
        found += panel.get("panels", [])
    return [p for p in found if p["type"] != "row"]


def expressions() -> list[tuple[str, str]]:
    """(where, expr) for every query of every panel."""
    return [
        (f"panel {p['id']} {p['title']!r} target {t['refId']}", t["expr"])
        for p in panels()
        for t in p.get("targets", [])
    ]


def template_variables() -> set[str]:
    return {v["name"] for v in dashboard()["templating"]["list"]}


def substitute(expr: str) -> str:
    """What Prometheus receives: built-ins become durations, dashboard
    variables (multi-value, used in =~ matchers) a regex matching anything."""
    def value(m: re.Match) -> str:
        name = m.group(1) or m.group(2)
        if name in BUILTINS:
            return BUILTINS[name]
        assert name in template_variables(), f"${name} is not a variable of the dashboard"
        return ".*"
    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", value, expr)


def recorded_series() -> set[str]:
    rules = yaml.safe_load((PROMETHEUS / "firetail-rules.yaml").read_text())
    return {r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r}


def test_dashboard_parses_and_has_panels():
    d = dashboard()
    assert d["uid"] and d["title"]
    assert len(panels()) >= 10


@pytest.mark.parametrize(
    "topic",
    ["lines in and out", "lag", "oldest unacknowledged", "throttled", "retried", "dead-letter",
     "billable", "drain", "cpu", "memory", "in flight allowed", "flush interval", "send rate limit"],
)
def test_dashboard_shows(topic):
    titles = [p["title"].lower() for p in panels()]
    assert any(topic in t for t in titles), f"no panel about {topic!r}: {titles}"


def test_every_panel_queries_prometheus_through_the_datasource_variable():
    for p in panels():
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        assert p.get("targets"), f"{p['title']} has no query"
        for t in p["targets"]:
            assert t["expr"].strip(), f"{p['title']} {t['refId']} is empty"


def test_every_expression_is_valid_promql(tmp_path):
    rules = [
        {"record": f"dashboard:panel_{i}", "expr": substitute(expr)}
        for i, (_, expr) in enumerate(expressions())
    ]
    variables = [v for v in dashboard()["templating"]["list"] if v["type"] == "query"]
    for v in variables:
        m = re.fullmatch(r"label_values\((.+),\s*\w+\)", v["query"]["query"])
        assert m, f"variable {v['name']}: {v['query']['query']}"
        rules.append({"record": f"dashboard:variable_{v['name']}", "expr": substitute(m.group(1))})
    path = tmp_path / "dashboard-rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    out = run_promtool("check", "rules", str(path))
    assert out.returncode == 0, out.stdout + out.stderr


def test_substitution_leaves_no_variable_and_promtool_rejects_bad_promql(tmp_path):
    for where, expr in expressions():
        assert "$" not in substitute(expr), where
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "x", "rules": [{"record": "x:y", "expr": "sum(rate(a[5m])"}]}]}))
    assert run_promtool("check", "rules", str(path)).returncode != 0


def test_every_expression_reads_only_known_series():
    allowed = allowed_series() | recorded_series()
    for where, expr in expressions():
        names = metric_names(substitute(expr))
        assert names, f"{where}: reads no series?"
        unknown = names - allowed
        assert not unknown, f"{where} reads series nobody exports: {sorted(unknown)}"


def test_sidecar_container_panels_select_the_firetail_container():
    for where, expr in expressions():
        if re.search(r"\bcontainer_(cpu|memory)_", expr) or "kube_pod_" in expr:
            assert 'container="firetail"' in expr, f"{where}: would sum the app's containers too"


def test_panels_have_unique_ids_and_fit_the_grid():
    ids = [p["id"] for p in dashboard()["panels"]]
    assert len(ids) == len(set(ids)), "panel ids repeat: Grafana keeps only one of each"
    for p in dashboard()["panels"]:
        grid = p["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, p["title"]


def test_template_variables_query_firetail_series():
    for v in dashboard()["templating"]["list"]:
        if v["type"] == "query":
            m = re.fullmatch(r"label_values\((\w+).*,\s*(\w+)\)", v["query"]["query"])
            assert m and m.group(1) in allowed_series(), v["query"]["query"]
