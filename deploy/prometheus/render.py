#!/usr/bin/env python3
"""Render prometheusrule.yaml (the Prometheus Operator's PrometheusRule) from
firetail-rules.yaml (a plain Prometheus rules file), so the two can never
hold different rules. Run it after editing the rules file:

    .venv/bin/python deploy/prometheus/render.py   (scripts/python-env.sh makes .venv)

deploy/tests/test_prometheus.py fails when the committed file differs from
what this prints."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
RULES = HERE / "firetail-rules.yaml"
PROMETHEUS_RULE = HERE / "prometheusrule.yaml"

HEADER = """\
# GENERATED from firetail-rules.yaml by render.py: edit that file, then run
# .venv/bin/python deploy/prometheus/render.py. For the Prometheus Operator:
# apply it in the namespace your Prometheus watches for rules, with the labels
# its ruleSelector expects (kube-prometheus-stack: `release: <its name>`).
"""


class _Dumper(yaml.SafeDumper):
    """Block style for multi-line strings, so expressions stay readable."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def render() -> str:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    rule = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "firetail", "labels": {"app.kubernetes.io/name": "firetail"}},
        "spec": {"groups": groups},
    }
    return HEADER + yaml.dump(rule, Dumper=_Dumper, sort_keys=False, width=4096)


def main() -> int:
    PROMETHEUS_RULE.write_text(render())
    print(f"wrote {PROMETHEUS_RULE}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
