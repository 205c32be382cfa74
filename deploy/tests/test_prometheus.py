"""Checks of deploy/prometheus: the rules pass `promtool check rules` and
their unit tests (`promtool test rules`), every alert is tested firing and not
firing, says what and where and links to its runbook in
docs/troubleshooting.md, reads only
series that exist, and the PrometheusRule holds exactly the rules file's
groups. The PodMonitor scrapes the port firetail's container declares."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from deploycheck import (
    DEPLOYING_GUIDE,
    EXAMPLE_DEPLOYMENT,
    PROMETHEUS,
    SIDECAR_COMPONENT,
    SIDECAR_NAME,
    TROUBLESHOOTING_GUIDE,
    find_container,
    load_yaml_documents,
    pod_spec,
)
from promql import (
    PENDING_FIRETAIL_SERIES,
    allowed_series,
    metric_names,
    page_anchors,
    registered_series,
    run_promtool,
)

RULES = PROMETHEUS / "firetail-rules.yaml"
PROMETHEUS_RULE = PROMETHEUS / "prometheusrule.yaml"
PODMONITOR = PROMETHEUS / "podmonitor.yaml"
UNIT_TESTS = PROMETHEUS / "tests" / "firetail-rules.test.yaml"
TROUBLESHOOTING_PAGE = "docs/troubleshooting.md"


def rules_file() -> dict:
    return yaml.safe_load(RULES.read_text())


def all_rules() -> list[dict]:
    return [rule for group in rules_file()["groups"] for rule in group["rules"]]


def alerts() -> list[dict]:
    return [r for r in all_rules() if "alert" in r]


def recorded() -> set[str]:
    return {r["record"] for r in all_rules() if "record" in r}


def test_rules_file_passes_promtool_check():
    out = run_promtool("check", "rules", str(RULES))
    assert out.returncode == 0, out.stdout + out.stderr


def test_promtool_unit_tests_pass():
    out = run_promtool("test", "rules", str(UNIT_TESTS))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout + out.stderr


def test_promtool_unit_tests_can_fail(tmp_path):
    # The same tests against rules whose thresholds never trip must fail:
    # the unit tests really evaluate the rules they claim to.
    broken = RULES.read_text()
    broken = re.sub(r"\) > 0\b", ") > 1e18", broken)
    broken = broken.replace("> 64 * 1024 * 1024", "> 1e18").replace("> 120", "> 1e18")
    (tmp_path / "firetail-rules.yaml").write_text(broken)
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "firetail-rules.test.yaml").write_text(UNIT_TESTS.read_text())
    out = run_promtool("test", "rules", str(tests / "firetail-rules.test.yaml"))
    assert out.returncode != 0, "the unit tests pass against rules that can never fire"


def test_every_alert_is_tested_firing_and_not_firing():
    tested: dict[str, set[str]] = {}
    for case in yaml.safe_load(UNIT_TESTS.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            outcome = "fires" if check.get("exp_alerts") else "silent"
            tested.setdefault(check["alertname"], set()).add(outcome)
    for alert in alerts():
        assert tested.get(alert["alert"]) == {"fires", "silent"}, (
            f"{alert['alert']}: tested {sorted(tested.get(alert['alert'], []))}, needs both firing and silent cases"
        )


def test_the_alerts_the_issue_asks_for_exist():
    names = {a["alert"] for a in alerts()}
    assert {
        "FiretailDeliveryStalled",
        "FiretailLagHigh",
        "FiretailOldestUnackedAgeHigh",
        "FiretailDeadLettersAppearing",
        "FiretailThrottled",
        "FiretailCheckpointWriteFailing",
        "FiretailDrainLeftLinesUndelivered",
    } <= names, names


def test_every_alert_says_what_where_and_what_to_do():
    anchors = page_anchors(TROUBLESHOOTING_GUIDE, level=2)
    assert anchors, f"{TROUBLESHOOTING_PAGE} has no '## ' entries"
    for alert in alerts():
        annotations = alert.get("annotations", {})
        name = alert["alert"]
        assert annotations.get("summary"), f"{name}: no summary"
        assert "$labels.pod" in annotations.get("description", ""), f"{name}: the description does not name the pod"
        assert "$labels.namespace" in annotations["description"], f"{name}: the description does not name the namespace"
        assert alert.get("labels", {}).get("severity") in ("warning", "critical"), f"{name}: no severity"
        url = annotations.get("runbook_url", "")
        assert re.fullmatch(r"https://\S+/docs/troubleshooting\.md#[\w-]+", url), f"{name}: runbook_url {url!r}"
        anchor = url.split("#", 1)[1]
        assert anchor in anchors, f"{name}: #{anchor} is not an entry of {TROUBLESHOOTING_PAGE}"


def runbook_urls(path) -> list[str]:
    """Every runbook_url a file holds, wherever it sits in the YAML."""
    found: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "runbook_url":
                    found.append(value)
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for doc in load_yaml_documents(path):
        walk(doc)
    return found


def test_runbook_urls_share_one_page_and_every_anchor_exists():
    """The rules file, the PrometheusRule and the unit tests point into one page
    (render.py --runbook-base changes it in all three), the page the deploying
    guide names, and every anchor is an entry of docs/troubleshooting.md."""
    anchors = page_anchors(TROUBLESHOOTING_GUIDE, level=2)
    urls = {path.name: runbook_urls(path) for path in (RULES, PROMETHEUS_RULE, UNIT_TESTS)}
    assert all(urls.values()), urls
    bases = {url.split("#", 1)[0] for found in urls.values() for url in found}
    assert len(bases) == 1, f"runbook_url points into several pages: {sorted(bases)}"
    (base,) = bases
    assert f"`{base}`" in DEPLOYING_GUIDE.read_text(), f"docs/deploying.md does not name the runbook page {base}"
    for name, found in urls.items():
        for url in found:
            assert url.split("#", 1)[1] in anchors, f"{name}: {url}: no such entry in {TROUBLESHOOTING_PAGE}"


def test_render_py_moves_every_runbook_to_another_page(tmp_path):
    copy = tmp_path / "prometheus"
    shutil.copytree(PROMETHEUS, copy)
    page = "https://git.example.com/ops/firetail/-/blob/main/docs/troubleshooting.md"
    out = subprocess.run(
        [sys.executable, copy / "render.py", "--runbook-base", page], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    for name in ("firetail-rules.yaml", "prometheusrule.yaml", "tests/firetail-rules.test.yaml"):
        before, after = runbook_urls(PROMETHEUS / name), runbook_urls(copy / name)
        assert after == [page + "#" + url.split("#", 1)[1] for url in before], name
    # The unit tests still pass: their expected annotations moved with the rules.
    out = run_promtool("test", "rules", str(copy / "tests" / "firetail-rules.test.yaml"))
    assert out.returncode == 0, out.stdout + out.stderr
    bad = subprocess.run(
        [sys.executable, copy / "render.py", "--runbook-base", page + "#troubleshooting"], capture_output=True, text=True
    )
    assert bad.returncode != 0 and "without a #anchor" in bad.stderr


def test_rules_read_only_series_that_exist():
    allowed = allowed_series() | recorded()
    for rule in all_rules():
        unknown = metric_names(rule["expr"]) - allowed
        assert not unknown, f"{rule.get('alert') or rule.get('record')} reads unknown series {sorted(unknown)}"


def test_pending_series_are_not_yet_registered():
    registered = registered_series()
    for name in PENDING_FIRETAIL_SERIES:
        assert name not in registered, f"src/metrics.rs now registers {name}: remove it from PENDING_FIRETAIL_SERIES"


def test_a_recording_rule_gives_the_fleet_cost_ratio():
    ratios = [r for r in all_rules() if "record" in r and r["record"].endswith("billable_per_shipped_byte:ratio_rate5m")]
    assert ratios, "no recording rule for billable / shipped bytes"
    # Built from the counters, not from the per-pod ratio gauge, which does
    # not aggregate across pods.
    sources = set()
    for rule in all_rules():
        if "record" in rule:
            sources |= metric_names(rule["expr"])
    assert {"firetail_bytes_shipped_total", "firetail_billable_bytes_total"} <= sources
    assert "firetail_billable_ratio" not in sources


def test_prometheusrule_holds_exactly_the_rules_file():
    (rule,) = load_yaml_documents(PROMETHEUS_RULE)
    assert rule["apiVersion"] == "monitoring.coreos.com/v1" and rule["kind"] == "PrometheusRule"
    assert rule["metadata"]["name"]
    assert rule["spec"]["groups"] == rules_file()["groups"], "prometheusrule.yaml differs: run deploy/prometheus/render.py"


def test_prometheusrule_is_what_render_py_writes():
    spec = importlib.util.spec_from_file_location("render", PROMETHEUS / "render.py")
    render = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(render)
    assert PROMETHEUS_RULE.read_text() == render.render(), "run .venv/bin/python deploy/prometheus/render.py"


def test_prometheusrule_groups_pass_promtool(tmp_path):
    # The Kubernetes schema validator does not know the operator's CRDs; the
    # groups inside are checked by promtool as a rules file.
    (rule,) = load_yaml_documents(PROMETHEUS_RULE)
    extracted = tmp_path / "groups.yaml"
    extracted.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    out = run_promtool("check", "rules", str(extracted))
    assert out.returncode == 0, out.stdout + out.stderr


# --- the PodMonitor ----------------------------------------------------------


def firetail_containers() -> list[dict]:
    (deployment,) = [d for d in load_yaml_documents(EXAMPLE_DEPLOYMENT) if d["kind"] == "Deployment"]
    (patch,) = load_yaml_documents(SIDECAR_COMPONENT / "firetail-sidecar.yaml")
    return [
        (deployment, find_container(pod_spec(deployment)["initContainers"], SIDECAR_NAME)),
        (patch, find_container(pod_spec(patch)["initContainers"], SIDECAR_NAME)),
    ]


def test_podmonitor_has_its_required_fields():
    (monitor,) = load_yaml_documents(PODMONITOR)
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["kind"] == "PodMonitor"
    assert monitor["metadata"]["name"]
    spec = monitor["spec"]
    assert spec["selector"].get("matchLabels") or spec["selector"].get("matchExpressions"), "an empty selector scrapes every pod"
    endpoints = spec["podMetricsEndpoints"]
    assert endpoints, "no podMetricsEndpoints"
    for endpoint in endpoints:
        assert endpoint.get("port") or endpoint.get("portNumber"), endpoint
        assert endpoint.get("path", "/metrics") == "/metrics"


def test_podmonitor_scrapes_the_port_and_pods_firetail_runs_in():
    (monitor,) = load_yaml_documents(PODMONITOR)
    wanted = monitor["spec"]["selector"]["matchLabels"]
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    for workload, container in firetail_containers():
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert endpoint["port"] in ports, f"firetail declares no port named {endpoint['port']!r}"
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert all(labels.get(k) == v for k, v in wanted.items()), f"pod labels {labels} do not match {wanted}"


def test_a_missing_promtool_fails_in_ci_and_is_skipped_elsewhere(monkeypatch):
    import promql

    monkeypatch.setattr(promql.shutil, "which", lambda _: None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception):
        promql.promtool()
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception):
        promql.promtool()
