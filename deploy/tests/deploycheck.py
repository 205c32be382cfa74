"""Helpers shared by the deploy/ checks: locating files, loading YAML and HCL,
and reading the few values (durations, quantities, flags) the checks compare.

Everything here reads files only: no cluster, no AWS, no Docker, no network.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Iterator

import hcl2
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
TERRAFORM = DEPLOY / "terraform"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"

EXAMPLE_DEPLOYMENT = KUBERNETES / "example" / "deployment.yaml"
EXAMPLE_SERVICE_ACCOUNT = KUBERNETES / "example" / "serviceaccount.yaml"
EXAMPLE_CONFIGMAP = KUBERNETES / "example" / "configmap.yaml"
SIDECAR_COMPONENT = KUBERNETES / "sidecar"
PROMETHEUS = DEPLOY / "prometheus"
GRAFANA = DEPLOY / "grafana"
ATHENA = DEPLOY / "athena"
METRICS_RS = REPO / "src" / "metrics.rs"
README = REPO / "README.md"
# The pages under docs/ that the checks read: each answers one reader's question.
DOCS = REPO / "docs"
DEPLOYING_GUIDE = DOCS / "deploying.md"
TROUBLESHOOTING_GUIDE = DOCS / "troubleshooting.md"

SIDECAR_NAME = "firetail"
# firetail's defaults (docs/configuration.md), used when a flag is not given.
DEFAULT_METRICS_ADDR = "[::]:9797"
DEFAULT_DRAIN_TIMEOUT_S = 10.0

# The access log the app writes: one JSON object per line with these keys, and
# the Glue/Hive type each one must have in the table Firehose converts with.
ACCESS_LOG_COLUMNS = [
    ("time", "string"),
    ("request_id", "string"),
    ("method", "string"),
    ("path", "string"),
    ("status", "int"),
    ("duration_ms", "double"),
    ("remote_ip", "string"),
    ("user_agent", "string"),
    ("bytes", "bigint"),
    ("level", "string"),
]


# --- YAML --------------------------------------------------------------------


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    """Every non-empty document of a (possibly multi-document) YAML file."""
    with path.open() as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


def is_kustomize_file(doc: dict[str, Any]) -> bool:
    return str(doc.get("apiVersion", "")).startswith("kustomize.config.k8s.io/")


def kustomize_patch_paths() -> set[Path]:
    """Files used as patches by a kustomization or component: partial objects,
    validated only once merged into a whole one."""
    patches = set()
    for path in KUBERNETES.rglob("*.yaml"):
        for doc in load_yaml_documents(path):
            if is_kustomize_file(doc):
                for patch in doc.get("patches", []) + doc.get("patchesStrategicMerge", []):
                    # An inline patch (`patch: |-`) names no file.
                    rel = patch.get("path") if isinstance(patch, dict) else patch
                    if rel:
                        patches.add((path.parent / rel).resolve())
    return patches


def kubernetes_objects() -> Iterator[tuple[Path, dict[str, Any]]]:
    """(file, object) for every Kubernetes API object under deploy/kubernetes:
    all YAML documents except kustomize's own files and the patches they use."""
    patches = kustomize_patch_paths()
    for path in sorted(KUBERNETES.rglob("*.y*ml")):
        if path.resolve() in patches:
            continue
        for doc in load_yaml_documents(path):
            if not is_kustomize_file(doc):
                yield path, doc


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]


def containers_of(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return spec.get("initContainers", []) + spec.get("containers", [])


def find_container(containers: list[dict[str, Any]], name: str) -> dict[str, Any]:
    matches = [c for c in containers if c["name"] == name]
    assert len(matches) == 1, f"expected one container named {name!r}, found {len(matches)}"
    return matches[0]


def flag_value(args: list[str], flag: str) -> str | None:
    """The value of `--flag=value` or `--flag value` in a container's args."""
    for i, arg in enumerate(args):
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
        if arg == flag:
            assert i + 1 < len(args), f"{flag} has no value"
            return args[i + 1]
    return None


def env_value(container: dict[str, Any], name: str, configmaps: dict[str, dict[str, str]]) -> str | None:
    """The value a container gets for env variable `name`: literal, or read
    from a ConfigMap (`configmaps`: name -> data) through configMapKeyRef."""
    for env in container.get("env", []):
        if env["name"] != name:
            continue
        if "value" in env:
            return env["value"]
        ref = env.get("valueFrom", {}).get("configMapKeyRef")
        assert ref, f"{name} comes from neither a value nor a ConfigMap: {env}"
        assert ref["name"] in configmaps, f"{name} reads ConfigMap {ref['name']!r}, which is not there"
        data = configmaps[ref["name"]].get("data", {})
        assert ref["key"] in data, f"ConfigMap {ref['name']} has no key {ref['key']!r} for {name}"
        return data[ref["key"]]
    return None


def configmaps_beside(path: Path) -> dict[str, dict[str, Any]]:
    """name -> ConfigMap for every ConfigMap in the directory of `path`."""
    found = {}
    for other in sorted(path.parent.glob("*.y*ml")):
        for doc in load_yaml_documents(other):
            if doc.get("kind") == "ConfigMap":
                found[doc["metadata"]["name"]] = doc
    return found


def parse_duration_seconds(text: str) -> float:
    """A humantime duration as firetail's flags take them: `500ms`, `15s`, `2m`,
    `1m30s`."""
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h)", text)
    assert parts and "".join(n + u for n, u in parts) == text.replace(" ", ""), (
        f"cannot read duration {text!r}"
    )
    return sum(float(n) * units[u] for n, u in parts)


def parse_quantity_bytes(text: str) -> float:
    """A Kubernetes memory quantity (`24Mi`, `1Gi`, `64M`) in bytes."""
    suffixes = {
        "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40,
        "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "": 1,
    }
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T|)", str(text))
    assert m, f"cannot read quantity {text!r}"
    return float(m.group(1)) * suffixes[m.group(2)]


def parse_cpu_millicores(text: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(m?)", str(text))
    assert m, f"cannot read CPU quantity {text!r}"
    return float(m.group(1)) * (1 if m.group(2) else 1000)


def merge_strategic(base: Any, patch: Any) -> Any:
    """A small strategic-merge patch, enough for the sidecar component: maps
    merge key by key, lists of named maps (containers, volumes, env, ports,
    volumeMounts) merge by name, anything else is replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            merged[key] = merge_strategic(base[key], value) if key in base else value
        return merged
    if (
        isinstance(base, list)
        and isinstance(patch, list)
        and all(isinstance(i, dict) and "name" in i for i in base + patch)
    ):
        by_name = {item["name"]: item for item in base}
        merged = [merge_strategic(by_name[p["name"]], p) if p["name"] in by_name else p for p in patch]
        patched = {p["name"] for p in patch}
        return merged + [item for item in base if item["name"] not in patched]
    return patch


# --- HCL ---------------------------------------------------------------------


def _unquote(value: Any) -> Any:
    """python-hcl2 >= 7 keeps the quotes of string literals (`'"abc"'`) and of
    block labels; older versions drop them. Normalise to the bare string, and
    drop its `__is_block__` markers, so checks work with either."""
    if isinstance(value, str):
        if len(value) >= 2 and value[0] == value[-1] == '"':
            return value[1:-1]
        return value
    if isinstance(value, list):
        return [_unquote(v) for v in value]
    if isinstance(value, dict):
        return {_unquote(k): _unquote(v) for k, v in value.items() if k != "__is_block__"}
    return value


def load_terraform() -> dict[str, list[dict[str, Any]]]:
    """All top-level blocks of deploy/terraform/*.tf, merged across files:
    {"resource": [...], "data": [...], "variable": [...], ...}."""
    merged: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(TERRAFORM.glob("*.tf")):
        with path.open() as f:
            parsed = _unquote(hcl2.load(f))
        for kind, blocks in parsed.items():
            merged.setdefault(kind, []).extend(blocks)
    return merged


def tf_blocks(tf: dict[str, list[dict[str, Any]]], kind: str, type_: str) -> dict[str, dict[str, Any]]:
    """{name: body} of every `kind "type_" "name" {}` (kind: resource or data)."""
    found: dict[str, dict[str, Any]] = {}
    for block in tf.get(kind, []):
        for block_type, by_name in block.items():
            if block_type == type_:
                found.update(by_name)
    return found


def tf_variable_defaults(tf: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    defaults = {}
    for block in tf.get("variable", []):
        for name, body in block.items():
            if "default" in body:
                defaults[name] = body["default"]
    return defaults


def tf_locals(tf: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for block in tf.get("locals", []):
        merged.update(block)
    return merged


def tf_interpolate_locals(text: str, locals_: dict[str, Any]) -> str:
    """Replace `${local.NAME}` with the local's literal value, repeatedly, so
    two strings built from the same locals can be compared."""
    for _ in range(5):
        new = re.sub(
            r"\$\{local\.(\w+)\}",
            lambda m: str(locals_[m.group(1)]) if isinstance(locals_[m.group(1)], str) and "${" not in locals_[m.group(1)] else m.group(0),
            text,
        )
        if new == text:
            break
        text = new
    return text


def one(blocks: Any) -> dict[str, Any]:
    """python-hcl2 gives every nested block as a list; most appear once."""
    assert isinstance(blocks, list) and len(blocks) == 1, f"expected one block, got {blocks!r}"
    return blocks[0]


def skip_or_fail(message: str):
    """A check that cannot build its real world here: a failure under CI=true, where
    it must run; elsewhere a skip that pytest reports (-rs), never a pass."""
    if os.environ.get("CI") == "true":
        pytest.fail(message + " (CI=true: this check must run in CI)")
    pytest.skip(message)
