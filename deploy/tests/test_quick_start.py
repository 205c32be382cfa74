"""The README's production quick start applies as written: deploy/terraform
with terraform.tfvars.example completed with the values the README names is
initialised, validated, planned and applied by the real Terraform against
moto's server on loopback (IAM, STS, S3, Glue, Firehose, Athena, CloudWatch
Logs), and the outputs the next steps read are there; so are the settings of
a pod with several sources (more streams, renamed identity columns).

Nothing here reaches AWS or a registry: the test writes its own Terraform CLI
configuration that installs the AWS provider from the filesystem mirror
(FIRETAIL_TF_PLUGINS, default /opt/tf-plugins), and points the provider's
endpoints at moto in an override file of its temporary copy. The mirror holds
the provider version it holds; the override pins that version, so this proves
the configuration and the example against it, and says which one it was.

Without terraform, the mirror or moto's server the test is skipped, and under
CI=true it fails: CI must not pass without having applied the quick start."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from deploycheck import ACCESS_LOG_COLUMNS, README, REPO, TERRAFORM, skip_or_fail

PLUGINS = Path(os.environ.get("FIRETAIL_TF_PLUGINS", "/opt/tf-plugins"))
AWS_MIRROR = PLUGINS / "registry.terraform.io" / "hashicorp" / "aws"
# Values a reader would type for the ones the README names.
READER_VALUES = {
    "bucket_name": "quick-start-access-logs-123456789012",
    "cluster_oidc_issuer_url": "https://oidc.eks.eu-west-1.amazonaws.com/id/0123456789ABCDEF0123456789ABCDEF",
    "k8s_namespace": "orders",
    "k8s_service_account": "orders-worker",
}
ENDPOINT_SERVICES = ("athena", "cloudwatch", "eks", "firehose", "glue", "iam", "logs", "s3", "sts")


def missing(what: str):
    skip_or_fail(f"{what}: the quick start cannot be applied here")


def moto_server() -> str | None:
    for candidate in (os.environ.get("FIRETAIL_MOTO_SERVER"), str(REPO / ".venv" / "bin" / "moto_server")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("moto_server")


def mirrored_aws_version() -> str | None:
    versions = sorted(p.name for p in AWS_MIRROR.glob("*") if any(p.glob("*/terraform-provider-aws*")))
    return versions[-1] if versions else None


def values_the_readme_names() -> list[str]:
    """The variables the quick start tells the reader to edit, from its
    `$EDITOR terraform.tfvars  # a, b, …` line."""
    m = re.search(r"^\$EDITOR terraform\.tfvars\s+# (.+)$", README.read_text(), re.M)
    assert m, "the README's quick start no longer says which values to edit in terraform.tfvars"
    return [name.strip() for name in m.group(1).split(",")]


def complete_the_example(names: list[str]) -> str:
    text = (TERRAFORM / "terraform.tfvars.example").read_text()
    for name in names:
        assert name in READER_VALUES, f"the README names {name!r}: give it a reader's value here"
        text, n = re.subn(rf'^{name}\s*=\s*".*"$', f'{name} = "{READER_VALUES[name]}"', text, flags=re.M)
        assert n == 1, f"terraform.tfvars.example has no line `{name} = ...` for the README's value"
    return text


@pytest.fixture(scope="module")
def moto_endpoint():
    server = moto_server()
    if server is None:
        missing("moto_server not found (scripts/python-env.sh installs it; or FIRETAIL_MOTO_SERVER)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([server, "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                opener.open(endpoint + "/moto-api/", timeout=1).read()
                break
            except OSError:
                assert proc.poll() is None, f"moto_server exited with {proc.returncode}"
                assert time.monotonic() < deadline, "moto_server did not answer within 60 s"
                time.sleep(0.2)
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def workdir(tmp: Path, endpoint: str, provider_version: str) -> tuple[Path, dict]:
    """A copy of deploy/terraform as a reader would have it after the quick
    start's first two lines, plus this test's overrides (mirror, endpoints)."""
    work = tmp / "terraform"
    work.mkdir()
    for tf in TERRAFORM.glob("*.tf"):
        shutil.copy(tf, work / tf.name)
    (work / "terraform.tfvars").write_text(complete_the_example(values_the_readme_names()))
    (work / "test_versions_override.tf").write_text(
        'terraform {\n  required_providers {\n    aws = {\n      source  = "hashicorp/aws"\n'
        f'      version = "{provider_version}"\n    }}\n  }}\n}}\n'
    )
    endpoints = "\n".join(f'    {s} = "{endpoint}"' for s in ENDPOINT_SERVICES)
    (work / "test_provider_override.tf").write_text(
        'provider "aws" {\n  access_key                  = "testing"\n  secret_key                  = "testing"\n'
        "  skip_credentials_validation = true\n  skip_metadata_api_check     = true\n"
        f"  s3_use_path_style           = true\n\n  endpoints {{\n{endpoints}\n  }}\n}}\n"
    )
    cli = tmp / "terraform.tfrc"
    cli.write_text(f'provider_installation {{\n  filesystem_mirror {{\n    path = "{PLUGINS}"\n  }}\n}}\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k.lower() not in ("http_proxy", "https_proxy")}
    env.update(TF_CLI_CONFIG_FILE=str(cli), TF_IN_AUTOMATION="1", CHECKPOINT_DISABLE="1",
               NO_PROXY="127.0.0.1,localhost", AWS_EC2_METADATA_DISABLED="true")
    return work, env


def fresh(endpoint: str) -> None:
    """Forget what an earlier test created: each apply starts from an empty account."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    opener.open(urllib.request.Request(endpoint + "/moto-api/reset", method="POST"), timeout=30).read()


def terraform(work: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    out = subprocess.run(["terraform", *args, "-no-color"], cwd=work, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, (
        f"terraform {' '.join(args)} failed:\n{out.stderr[-4000:]}\n--- the end of its output ---\n{out.stdout[-1500:]}"
    )
    return out


def test_the_readme_names_values_the_example_holds():
    names = values_the_readme_names()
    assert len(names) == 4 and set(names) == set(READER_VALUES), names
    complete_the_example(names)


def test_the_quick_start_applies_as_written(tmp_path, moto_endpoint):
    if shutil.which("terraform") is None:
        missing("terraform not installed")
    version = mirrored_aws_version()
    if version is None:
        missing(f"no hashicorp/aws provider in the filesystem mirror {PLUGINS}")
    work, env = workdir(tmp_path, moto_endpoint, version)
    fresh(moto_endpoint)

    terraform(work, env, "init", "-input=false")
    terraform(work, env, "validate")
    terraform(work, env, "plan", "-input=false", "-out=quick-start.plan")
    terraform(work, env, "apply", "-input=false", "quick-start.plan")

    outputs = {k: v["value"] for k, v in json.loads(terraform(work, env, "output", "-json").stdout).items()}
    # Step 3 of the quick start reads these two; the table name is its Athena query's.
    assert outputs["stream_name"] == "shop-access-log", outputs
    assert re.fullmatch(r"arn:aws:iam::\d{12}:role/.+", outputs["pod_role_arn"]), outputs
    assert outputs["athena_table"] == "access_logs.shop_access_log", outputs
    assert outputs.get("query_role_arn") is None, "nobody may assume the query role, yet it was created"

    # The table Firehose converts with has the app's columns, then the pod's
    # identity firetail adds; the pod may put to its one stream only.
    state = applied(work, env)
    assert table_columns(state) == [c for c, _ in ACCESS_LOG_COLUMNS] + ["pod", "namespace", "node"]
    assert put_record_batch_resources(state) == [stream_arn(state, "shop-access-log")]
    print(f"quick start applied against moto with hashicorp/aws {version}")


def applied(work: Path, env: dict) -> list[dict]:
    """Every resource and data source in the state, as `terraform show -json` gives them."""
    state = json.loads(terraform(work, env, "show", "-json").stdout)
    return state["values"]["root_module"]["resources"]


def table_columns(state: list[dict]) -> list[str]:
    (table,) = [r for r in state if r["type"] == "aws_glue_catalog_table"]
    (storage,) = table["values"]["storage_descriptor"]
    return [c["name"] for c in storage["columns"]]


def put_record_batch_resources(state: list[dict]) -> list[str]:
    (policy,) = [r for r in state if r["type"] == "aws_iam_role_policy" and r["name"] == "pod_put_record_batch"]
    statements = json.loads(policy["values"]["policy"])["Statement"]
    assert [s["Action"] for s in statements] == ["firehose:PutRecordBatch"], statements
    resources = statements[0]["Resource"]
    return [resources] if isinstance(resources, str) else resources


def stream_arn(state: list[dict], name: str) -> str:
    (stream,) = [r for r in state if r["type"] == "aws_kinesis_firehose_delivery_stream"]
    assert stream["values"]["name"] == name
    return stream["values"]["arn"]


def test_several_streams_and_renamed_identity_columns_apply(tmp_path, moto_endpoint):
    """The two-source pod (deploy/kubernetes/two-sources): the pod role may put
    to every stream its sources name, and the identity columns take the names
    the variables give (or none)."""
    if shutil.which("terraform") is None:
        missing("terraform not installed")
    version = mirrored_aws_version()
    if version is None:
        missing(f"no hashicorp/aws provider in the filesystem mirror {PLUGINS}")
    work, env = workdir(tmp_path, moto_endpoint, version)
    tfvars = work / "terraform.tfvars"
    tfvars.write_text(re.sub(r'^stream_name\s*=.*\n', "", tfvars.read_text(), flags=re.M))
    with tfvars.open("a") as f:
        f.write(
            'stream_name        = "rails-access"\n'
            'extra_stream_names = ["sidekiq-jobs", "audit.v2"]\n'
            'pod_column         = "k8s_pod"\n'
            'node_column        = ""\n'
            'source_column      = "source"\n'
            'file_column        = "file"\n'
        )

    fresh(moto_endpoint)
    terraform(work, env, "init", "-input=false")
    terraform(work, env, "apply", "-input=false", "-auto-approve")

    state = applied(work, env)
    assert table_columns(state) == [c for c, _ in ACCESS_LOG_COLUMNS] + ["k8s_pod", "namespace", "source", "file"]
    rails = stream_arn(state, "rails-access")
    prefix = rails.removesuffix("rails-access")
    assert prefix.endswith(":deliverystream/"), rails
    # IAM keeps a policy's resources as a set.
    assert sorted(put_record_batch_resources(state)) == sorted([rails, prefix + "sidekiq-jobs", prefix + "audit.v2"])


def test_a_column_name_twice_is_refused(tmp_path, moto_endpoint):
    if shutil.which("terraform") is None:
        missing("terraform not installed")
    version = mirrored_aws_version()
    if version is None:
        missing(f"no hashicorp/aws provider in the filesystem mirror {PLUGINS}")
    work, env = workdir(tmp_path, moto_endpoint, version)
    with (work / "terraform.tfvars").open("a") as f:
        f.write('node_column = "path"\n')
    terraform(work, env, "init", "-input=false")
    out = subprocess.run(["terraform", "plan", "-input=false", "-no-color"], cwd=work, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode != 0 and "must differ from each other" in " ".join(out.stderr.split()), out.stderr[-2000:]


def test_naming_who_may_query_adds_the_query_role(tmp_path, moto_endpoint):
    """The example leaves firetail-query's role out; naming a principal adds it
    (planned only: applying it is the test above, with one role more)."""
    if shutil.which("terraform") is None:
        missing("terraform not installed")
    version = mirrored_aws_version()
    if version is None:
        missing(f"no hashicorp/aws provider in the filesystem mirror {PLUGINS}")
    work, env = workdir(tmp_path, moto_endpoint, version)
    with (work / "terraform.tfvars").open("a") as f:
        f.write('query_trusted_principals = ["arn:aws:iam::123456789012:role/platform-oncall"]\n')

    terraform(work, env, "init", "-input=false")
    terraform(work, env, "plan", "-input=false", "-out=with-query.plan")
    plan = json.loads(terraform(work, env, "show", "-json", "with-query.plan").stdout)
    created = {c["address"] for c in plan["resource_changes"] if "create" in c["change"]["actions"]}
    assert {"aws_iam_role.query[0]", "aws_iam_role_policy.query[0]"} <= created, sorted(created)
