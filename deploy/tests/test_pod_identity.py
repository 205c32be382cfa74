"""Checks of the pod's identity on every record and of several sources per
sidecar in deploy/kubernetes:

- every firetail (the example, the component, each rendered kustomization)
  gets the pod's name, namespace and node from the Downward API and adds them
  with --add-field under keys read from its ConfigMap, which are the Glue
  table's column names (the Terraform variables' defaults);
- the two-source overlay renders one native sidecar that follows the Rails
  access log and the Sidekiq job log, each to its own stream, from the files
  both app containers write into the one emptyDir they share with firetail.

The renders use the kubectl of test_kubernetes.py (skipped without one,
failed under CI=true).
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

import pytest

from deploycheck import (
    EXAMPLE_DEPLOYMENT,
    KUBERNETES,
    SIDECAR_NAME,
    configmaps_beside,
    env_value,
    find_container,
    flag_value,
    load_terraform,
    pod_spec,
    tf_variable_defaults,
)
from test_kubernetes import kustomize, sidecar_from_component, sidecars, user_kustomization

TWO_SOURCES = KUBERNETES / "two-sources"

# The Downward API fields firetail's three --add-field values come from, and
# the Terraform variable naming each one's column.
IDENTITY = {
    "POD_NAME": ("metadata.name", "pod_column"),
    "POD_NAMESPACE": ("metadata.namespace", "namespace_column"),
    "NODE_NAME": ("spec.nodeName", "node_column"),
}

# Source specs as firetail takes them (docs/design.md#sources).
SOURCE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
FIELD_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")
WANTED_SOURCES = [
    {"name": "rails", "path": "/var/log/app/access.log", "stream": "rails-access"},
    {"name": "sidekiq", "path": "/var/log/app/sidekiq.json.log", "stream": "sidekiq-jobs"},
]


def configmaps_of(rendered: list[dict]) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in rendered if o["kind"] == "ConfigMap"}


def deployments_of(rendered: list[dict]) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in rendered if o["kind"] == "Deployment"}


def expand(text: str, env: dict[str, str]) -> str:
    """The kubelet's $(VAR) expansion of args: a defined variable is replaced,
    `$$` is a literal `$`, anything else is left as written."""

    def one(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))

    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)", one, text)


def container_env(container: dict, configmaps: dict[str, dict], pod: dict[str, str]) -> dict[str, str]:
    """The environment the kubelet would give the container, for a pod whose
    Downward API fields have the values in `pod`."""
    env = {}
    for entry in container.get("env", []):
        field = entry.get("valueFrom", {}).get("fieldRef")
        if field:
            env[entry["name"]] = pod[field["fieldPath"]]
        else:
            env[entry["name"]] = env_value(container, entry["name"], configmaps)
    return env


def added_fields(container: dict, configmaps: dict[str, dict], pod: dict[str, str]) -> dict[str, str]:
    """KEY -> VALUE of the container's --add-field arguments, as firetail sees them."""
    env = container_env(container, configmaps, pod)
    fields = {}
    for arg in container.get("args", []):
        if arg.startswith("--add-field="):
            key, sep, value = expand(arg.removeprefix("--add-field="), env).partition("=")
            assert sep and FIELD_KEY.fullmatch(key), f"{arg!r} gives no valid KEY=VALUE: {key!r}"
            assert key not in fields, f"--add-field {key} twice"
            fields[key] = value
    return fields


def parse_sources(text: str) -> list[dict[str, str]]:
    """FIRETAIL_SOURCES: one `name=...,path=...,stream=...` per line, blank lines ignored."""
    sources = []
    for line in text.splitlines():
        if not line.strip():
            continue
        spec = dict(part.split("=", 1) for part in line.strip().split(","))
        assert set(spec) == {"name", "path", "stream"}, f"source {line!r}: keys {sorted(spec)}"
        assert SOURCE_NAME.fullmatch(spec["name"]), f"source name {spec['name']!r}"
        assert PurePosixPath(spec["path"]).is_absolute(), f"source {spec['name']}: path not absolute"
        sources.append(spec)
    assert len({s["name"] for s in sources}) == len(sources), "duplicate source names"
    assert len({s["path"] for s in sources}) == len(sources), "two sources follow one file"
    return sources


def a_pod(name: str) -> dict[str, str]:
    return {"metadata.name": name, "metadata.namespace": "shop", "spec.nodeName": "ip-10-0-1-7.ec2.internal"}


def assert_identity_from_the_downward_api(where: str, sidecar: dict, configmaps: dict[str, dict]):
    env = {e["name"]: e for e in sidecar.get("env", [])}
    for name, (field_path, _) in IDENTITY.items():
        assert name in env, f"{where}: no env {name}"
        assert env[name].get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == field_path, (
            f"{where}: {name} should come from the Downward API's {field_path}: {env[name]}"
        )
    columns = tf_variable_defaults(load_terraform())
    pod = a_pod("shop-web-7d4b9c-x2x8q")
    fields = added_fields(sidecar, configmaps, pod)
    want = {columns[column]: pod[field_path] for field_path, column in IDENTITY.values()}
    assert fields == want, f"{where}: firetail adds {fields}, the Glue table's columns want {want}"


# --- the pod's identity ------------------------------------------------------


def test_every_sidecar_file_adds_the_pods_identity_from_the_downward_api():
    found = sidecars()
    assert found
    for path, _, sidecar in found:
        assert_identity_from_the_downward_api(str(path), sidecar, configmaps_beside(path))


def test_the_component_adds_the_pods_identity():
    _, sidecar = sidecar_from_component()
    configmaps = configmaps_beside(KUBERNETES / "sidecar" / "kustomization.yaml")
    assert_identity_from_the_downward_api("the sidecar component", sidecar, configmaps)


@pytest.mark.parametrize("which", ["example", "user", "two-sources"])
def test_every_render_adds_the_pods_identity(tmp_path, which):
    target = {"example": KUBERNETES / "example", "two-sources": TWO_SOURCES}.get(which)
    rendered = kustomize(target or user_kustomization(tmp_path))
    configmaps = configmaps_of(rendered)
    checked = 0
    for name, deployment in deployments_of(rendered).items():
        for c in pod_spec(deployment).get("initContainers", []):
            if c["name"] == SIDECAR_NAME:
                assert_identity_from_the_downward_api(f"{which}: {name}", c, configmaps)
                checked += 1
    assert checked, f"{which}: no firetail rendered"


def test_the_expansion_is_the_kubelets():
    # What the identity checks lean on: a defined variable is replaced, an
    # undefined one stays as written (and would then fail the key check).
    env = {"POD_KEY": "pod", "POD_NAME": "web-1"}
    assert expand("$(POD_KEY)=$(POD_NAME)", env) == "pod=web-1"
    assert expand("$(NOPE)=$(POD_NAME)", env) == "$(NOPE)=web-1"
    assert expand("$$(POD_NAME)", env) == "$(POD_NAME)"


# --- two sources, one sidecar --------------------------------------------------


def two_sources_rendered() -> tuple[dict, dict, dict[str, dict]]:
    rendered = kustomize(TWO_SOURCES)
    deployments = deployments_of(rendered)
    assert list(deployments) == ["shop-web"], list(deployments)
    spec = pod_spec(deployments["shop-web"])
    return spec, find_container(spec["initContainers"], SIDECAR_NAME), configmaps_of(rendered)


def test_two_sources_one_native_sidecar_follows_both_files_to_their_streams():
    spec, sidecar, configmaps = two_sources_rendered()
    assert sidecar["restartPolicy"] == "Always"
    assert [c["name"] for c in spec["initContainers"]] == [SIDECAR_NAME], "one firetail per pod"
    names = {e["name"] for e in sidecar["env"]}
    # firetail refuses a list of sources together with a path or a stream.
    assert not names & {"FIRETAIL_PATH", "FIRETAIL_STREAM"}, names
    for flag in ("--path", "--stream", "--source"):
        assert flag_value(sidecar["args"], flag) is None, f"{flag} in args: {sidecar['args']}"
    ref = next(e for e in sidecar["env"] if e["name"] == "FIRETAIL_SOURCES")["valueFrom"]["configMapKeyRef"]
    assert ref == {"name": "firetail", "key": "sources"}
    assert parse_sources(env_value(sidecar, "FIRETAIL_SOURCES", configmaps)) == WANTED_SOURCES
    # The region still comes from the same ConfigMap; its unused stream is gone.
    assert env_value(sidecar, "AWS_REGION", configmaps)
    assert "stream" not in configmaps["firetail"]["data"]


def test_two_sources_both_app_containers_write_into_the_volume_firetail_reads():
    spec, sidecar, configmaps = two_sources_rendered()
    sources = parse_sources(env_value(sidecar, "FIRETAIL_SOURCES", configmaps))
    firetail_mounts = {m["mountPath"]: m["name"] for m in sidecar["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    for source in sources:
        directory = str(PurePosixPath(source["path"]).parent)
        assert directory in firetail_mounts, f"{source['name']}: {directory} is not mounted in firetail"
        assert "emptyDir" in volumes[firetail_mounts[directory]], f"{source['name']}: not an emptyDir"
    checkpoint = env_value(sidecar, "FIRETAIL_CHECKPOINT", configmaps)
    assert str(PurePosixPath(checkpoint).parent) in firetail_mounts, "the checkpoint would not survive a restart"

    # Each app container writes its file into the same volume, mounted where
    # firetail looks: web the access log, sidekiq the job log.
    writes = {"web": ("ACCESS_LOG_PATH", "rails"), "sidekiq": ("SIDEKIQ_LOG_PATH", "sidekiq")}
    assert sorted(c["name"] for c in spec["containers"]) == sorted(writes)
    by_name = {s["name"]: s for s in sources}
    for app in spec["containers"]:
        variable, source = writes[app["name"]]
        written = env_value(app, variable, configmaps)
        assert written == by_name[source]["path"], f"{app['name']} writes {written}, firetail follows {by_name[source]['path']}"
        mounts = {m["mountPath"]: m["name"] for m in app["volumeMounts"]}
        directory = str(PurePosixPath(written).parent)
        assert mounts.get(directory) == firetail_mounts[directory], (
            f"{app['name']} does not write {directory} on firetail's volume"
        )


def test_two_sources_grace_period_covers_the_slowest_app_and_the_drain():
    spec, sidecar, _ = two_sources_rendered()
    text = (TWO_SOURCES / "deployment.yaml").read_text()
    m = re.search(r"grace-period:\s*(\d+)\s*=\s*(\d+) \(preStop sleep\) \+ (\d+) \(sidekiq -t\) \+ (\d+) "
                  r"\(firetail --drain-timeout\) \+ (\d+) \(margin\)", text)
    assert m, "the overlay's grace-period comment is missing"
    total, sleep, sidekiq, drain, margin = (int(g) for g in m.groups())
    assert total == sleep + sidekiq + drain + margin == spec["terminationGracePeriodSeconds"]
    assert f"--drain-timeout={drain}s" in sidecar["args"]
    for app in spec["containers"]:
        hook = " ".join(app["lifecycle"]["preStop"]["exec"]["command"])
        assert int(re.search(r"sleep (\d+)", hook).group(1)) <= sleep, app["name"]
    sidekiq_app = next(c for c in spec["containers"] if c["name"] == "sidekiq")
    assert f"-t {sidekiq}" in "\n".join(sidekiq_app["args"])


def test_the_configmap_keys_are_the_terraform_columns():
    # The ConfigMap keys are what a user edits to rename the columns: they
    # must start out as the Terraform defaults, or every row's pod is NULL.
    defaults = tf_variable_defaults(load_terraform())
    for where in (EXAMPLE_DEPLOYMENT, KUBERNETES / "sidecar" / "kustomization.yaml"):
        data = configmaps_beside(where)["firetail"]["data"]
        assert {k: data[k] for k in ("pod-key", "namespace-key", "node-key")} == {
            "pod-key": defaults["pod_column"],
            "namespace-key": defaults["namespace_column"],
            "node-key": defaults["node_column"],
        }, where
