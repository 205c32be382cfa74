#!/usr/bin/env python3
"""Render prometheusrule.yaml (the Prometheus Operator's PrometheusRule) from
firetail-rules.yaml (a plain Prometheus rules file), so the two can never
hold different rules. Run it after editing the rules file:

    .venv/bin/python deploy/prometheus/render.py   (scripts/python-env.sh makes .venv)

Every alert's runbook_url is a page (docs/troubleshooting.md) plus the anchor of
its entry there. The page is the one thing a fork or mirror changes,
and this is the one place to change it: the rules file, the promtool unit
tests (which expect the annotation) and the PrometheusRule all follow.

    .venv/bin/python deploy/prometheus/render.py --runbook-base https://git.example.com/ops/firetail/blob/main/docs/troubleshooting.md

deploy/tests/test_prometheus.py fails when the committed file differs from
what this prints, or when the three files disagree on the page."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
RULES = HERE / "firetail-rules.yaml"
PROMETHEUS_RULE = HERE / "prometheusrule.yaml"
UNIT_TESTS = HERE / "tests" / "firetail-rules.test.yaml"
# `runbook_url: <page>#<anchor>`, as the rules file and the unit tests write it.
RUNBOOK_URL = re.compile(r"(runbook_url: )(\S+?)(#[\w-]+)$", re.MULTILINE)

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


def set_runbook_base(base: str) -> None:
    """Point every runbook_url of the rules file and the unit tests at `base`,
    keeping each anchor (and everything else, byte for byte)."""
    if not re.fullmatch(r"https?://[^\s#]+", base):
        sys.exit(f"render.py: --runbook-base {base!r}: give an http(s) URL without a #anchor.")
    for path in (RULES, UNIT_TESTS):
        text, count = RUNBOOK_URL.subn(lambda m: m.group(1) + base + m.group(3), path.read_text())
        if not count:
            sys.exit(f"render.py: {path} has no runbook_url to change.")
        path.write_text(text)
        print(f"{path}: {count} runbook_url(s) now under {base}", file=sys.stderr)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runbook-base", metavar="URL", help="the page every runbook_url points into")
    args = parser.parse_args(argv)
    if args.runbook_base:
        set_runbook_base(args.runbook_base)
    PROMETHEUS_RULE.write_text(render())
    print(f"wrote {PROMETHEUS_RULE}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
