"""What the Prometheus and Grafana checks share: finding promtool, the series
firetail exports (read from src/metrics.rs, so a renamed series breaks the
alerts' and the dashboard's tests), the standard series they may also use, and
the metric names a PromQL expression reads.

promtool comes from Debian's `prometheus` package (scripts/system-deps.sh). In
CI (CI=true) a missing promtool fails the checks; elsewhere they are skipped
with the reason.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path


from deploycheck import METRICS_RS, skip_or_fail

# Series of other exporters that firetail's alerts and dashboard may read:
# cAdvisor (through the kubelet) for the sidecar's CPU and memory, and
# kube-state-metrics for its exit code, restarts and readiness.
CADVISOR_SERIES = {
    "container_cpu_usage_seconds_total",
    "container_memory_working_set_bytes",
}
KUBE_STATE_METRICS_SERIES = {
    # kube-state-metrics >= v2.20.0 (kubernetes/kube-state-metrics#3000).
    "kube_pod_init_container_status_last_terminated_exitcode",
    "kube_pod_container_status_last_terminated_exitcode",
    "kube_pod_init_container_status_terminated_reason",
    "kube_pod_container_status_terminated_reason",
    "kube_pod_init_container_status_restarts_total",
    "kube_pod_init_container_status_ready",
    "kube_pod_container_resource_limits",
    "kube_pod_init_container_resource_limits",
}
# Promised to the alerts and the dashboard, and added to src/metrics.rs by the Rust side. Each one
# is accepted until src/metrics.rs registers it; then
# test_pending_series_are_not_yet_registered fails, and it comes off this list.
PENDING_FIRETAIL_SERIES = {"firetail_build_info"}

PROMQL_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right",
    "and", "or", "unless", "offset", "bool", "inf", "nan",
}

REGISTER = re.compile(r'\.register\(\s*"(\w+)"\s*,\s*"(?:[^"\\]|\\.)*"\s*,\s*(?:m|self)\.(\w+)\.clone\(\)', re.S)
FIELD = re.compile(r"^\s*(?:pub(?:\([\w:]+\))?\s+)?(\w+)\s*:\s*(.+?),\s*$", re.M)
# The labelled series (per source, per stream) are registered from here.
LABELLED_RS = METRICS_RS.parent / "metrics" / "labelled.rs"

def promtool() -> str:
    path = shutil.which("promtool")
    if path:
        return path
    skip_or_fail("promtool not found: install Debian's prometheus package (scripts/system-deps.sh)")


def run_promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([promtool(), *args], capture_output=True, text=True, check=False)


def _series_of(name: str, rust_type: str) -> set[str]:
    """The names prometheus-client's text encoder writes for one registration."""
    full = f"firetail_{name}"
    if "Histogram" in rust_type:
        return {f"{full}_bucket", f"{full}_sum", f"{full}_count"}
    if "Counter" in rust_type:
        return {f"{full}_total"}
    if "Info" in rust_type:
        return {f"{full}_info"}
    return {full}


def registered_series() -> set[str]:
    """Every series name src/metrics.rs (and src/metrics/labelled.rs) registers."""
    types: dict[str, str] = {}
    found: set[str] = set()
    registrations = []
    for path in (METRICS_RS, LABELLED_RS):
        text = path.read_text()
        for struct in re.finditer(r"\bstruct \w+ \{(.*?)\n\}", text, re.S):
            types.update(FIELD.findall(struct.group(1)))
        registrations += REGISTER.findall(text)
    for name, field in registrations:
        assert field in types, f"src/metrics registers {field}, which is not a field of its structs"
        found |= _series_of(name, types[field])
    assert len(found) > 20, f"parsed only {sorted(found)} from src/metrics: has its layout changed?"
    return found

def allowed_series() -> set[str]:
    return registered_series() | PENDING_FIRETAIL_SERIES | CADVISOR_SERIES | KUBE_STATE_METRICS_SERIES


def metric_names(expr: str) -> set[str]:
    """The metric (or recorded series) names an expression reads. PromQL has no
    Python parser here; promtool proves the syntax, and this reads the names:
    strings, label matchers, ranges and grouping clauses are removed, then
    every identifier not called as a function and not a keyword is a name."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\boffset\s+\w+", " ", text)
    names = set()
    for m in re.finditer(r"(?<![\w.])([a-zA-Z_:][\w:]*)(\s*\()?", text):
        word, call = m.group(1), m.group(2)
        if call or word.lower() in PROMQL_KEYWORDS:
            continue
        names.add(word)
    return names


def github_anchor(heading: str) -> str:
    """The id GitHub gives a Markdown heading."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def markdown_headings(text: str) -> list[tuple[int, str]]:
    """(level, title) of every ATX heading outside fenced code blocks."""
    headings, fence = [], None
    for line in text.splitlines():
        m = re.match(r"^ {0,3}(`{3,}|~{3,})", line)
        if m:
            if fence is None:
                fence = m.group(1)[0]
            elif m.group(1)[0] == fence:
                fence = None
            continue
        m = re.match(r"^(#{1,6}) +(.+?) *#* *$", line)
        if fence is None and m:
            headings.append((len(m.group(1)), m.group(2)))
    return headings


def page_anchors(page: Path, level: int | None = None) -> set[str]:
    """Anchors GitHub gives the headings of a Markdown page (of one level, if
    given). Two headings with the same text get `-1`, `-2`… after the first."""
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    for depth, title in markdown_headings(page.read_text()):
        anchor = github_anchor(title)
        n = seen.get(anchor, 0)
        seen[anchor] = n + 1
        if level is None or depth == level:
            anchors.add(anchor if n == 0 else f"{anchor}-{n}")
    return anchors
