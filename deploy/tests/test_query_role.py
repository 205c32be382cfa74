"""Checks of firetail-query's side of deploy/, without Terraform or AWS: the query
role (deploy/terraform/query_role.tf) grants exactly the original design's least
privilege, on the resources the rest of the stack defines; firetail-query calls
nothing else; its defaults name the stack's workgroup, database and table; and
the image builds only the sidecar."""

from __future__ import annotations

import re

import pytest

from deploycheck import (
    DOCKERFILE,
    REPO,
    load_terraform,
    one,
    tf_blocks,
    tf_interpolate_locals,
    tf_locals,
    tf_variable_defaults,
)

QUERY_SRC = REPO / "query" / "src"
BUCKET_ARN = "${aws_s3_bucket.logs.arn}"
WORKGROUP_ARN = "${aws_athena_workgroup.logs.arn}"
GLUE = "arn:${local.partition}:glue:${var.region}:${local.account_id}"
GLUE_RESOURCES = {
    f"{GLUE}:catalog",
    f"{GLUE}:database/${{aws_glue_catalog_database.logs.name}}",
    f"{GLUE}:table/${{aws_glue_catalog_database.logs.name}}/${{aws_glue_catalog_table.access_log.name}}",
}

# aws-sdk-athena client operations firetail-query could call, and their IAM action.
ATHENA_OPERATIONS = {
    "start_query_execution": "athena:StartQueryExecution",
    "get_query_execution": "athena:GetQueryExecution",
    "get_query_results": "athena:GetQueryResults",
    "stop_query_execution": "athena:StopQueryExecution",
    "list_query_executions": "athena:ListQueryExecutions",
    "batch_get_query_execution": "athena:BatchGetQueryExecution",
    "get_work_group": "athena:GetWorkGroup",
    "get_table_metadata": "athena:GetTableMetadata",
    "create_named_query": "athena:CreateNamedQuery",
}


@pytest.fixture(scope="module")
def tf():
    return load_terraform()


def query_policy(tf) -> dict:
    roles = tf_blocks(tf, "resource", "aws_iam_role")
    assert "query" in roles, "deploy/terraform/query_role.tf defines aws_iam_role.query"
    policies = [
        p for p in tf_blocks(tf, "resource", "aws_iam_role_policy").values() if p["role"] == "${aws_iam_role.query[0].id}"
    ]
    assert len(policies) == 1, "exactly one inline policy on the query role"
    for kind in ("aws_iam_role_policy_attachment", "aws_iam_policy_attachment", "aws_iam_role_policies_exclusive"):
        for name, body in tf_blocks(tf, "resource", kind).items():
            assert "aws_iam_role.query." not in repr(body), f"{kind}.{name} adds to the query role"
    ref = re.fullmatch(r"\$\{data\.aws_iam_policy_document\.(\w+)\.json\}", policies[0]["policy"])
    assert ref, policies[0]["policy"]
    doc = tf_blocks(tf, "data", "aws_iam_policy_document")[ref.group(1)]
    assert not doc.get("dynamic"), "static statements only: the grants must be readable as they are"
    return doc


def grants(tf) -> dict[str, set[str]]:
    """action -> resources, with locals interpolated; conditions checked apart."""
    locals_ = tf_locals(tf)
    result: dict[str, set[str]] = {}
    for statement in query_policy(tf)["statement"]:
        assert statement.get("effect", "Allow") == "Allow"
        assert "not_actions" not in statement and "not_resources" not in statement
        for action in statement["actions"]:
            assert "*" not in action, f"wildcard action {action}"
            resources = {tf_interpolate_locals(r, locals_) for r in statement["resources"]}
            result.setdefault(action, set()).update(resources)
    return result


def prefixes(tf) -> tuple[str, str]:
    locals_ = tf_locals(tf)
    return locals_["data_prefix"], locals_["query_results_prefix"]


def test_grants_are_exactly_the_designed_least_privilege(tf):
    data, results = prefixes(tf)
    expected = {
        "athena:StartQueryExecution": {WORKGROUP_ARN},
        "athena:GetQueryExecution": {WORKGROUP_ARN},
        "athena:GetQueryResults": {WORKGROUP_ARN},
        "athena:StopQueryExecution": {WORKGROUP_ARN},
        "glue:GetDatabase": GLUE_RESOURCES,
        "glue:GetTable": GLUE_RESOURCES,
        "glue:GetPartition": GLUE_RESOURCES,
        "glue:GetPartitions": GLUE_RESOURCES,
        "s3:GetBucketLocation": {BUCKET_ARN},
        "s3:ListBucketMultipartUploads": {BUCKET_ARN},
        "s3:ListBucket": {BUCKET_ARN},
        "s3:GetObject": {f"{BUCKET_ARN}/{data}*", f"{BUCKET_ARN}/{results}*"},
        "s3:PutObject": {f"{BUCKET_ARN}/{results}*"},
        "s3:AbortMultipartUpload": {f"{BUCKET_ARN}/{results}*"},
        "s3:ListMultipartUploadParts": {f"{BUCKET_ARN}/{results}*"},
    }
    assert grants(tf) == expected


def test_listing_is_limited_to_the_data_and_results_prefixes(tf):
    data, results = prefixes(tf)
    locals_ = tf_locals(tf)
    (listing,) = [s for s in query_policy(tf)["statement"] if "s3:ListBucket" in s["actions"]]
    assert listing["actions"] == ["s3:ListBucket"]
    condition = one(listing["condition"])
    assert (condition["test"], condition["variable"]) == ("StringLike", "s3:prefix")
    assert {tf_interpolate_locals(v, locals_) for v in condition["values"]} == {f"{data}*", f"{results}*"}


def test_the_data_prefix_is_the_tables_location_and_results_are_the_workgroups(tf):
    data, results = prefixes(tf)
    locals_ = tf_locals(tf)
    table = tf_blocks(tf, "resource", "aws_glue_catalog_table")["access_log"]
    location = tf_interpolate_locals(one(table["storage_descriptor"])["location"], locals_)
    assert location == f"s3://${{aws_s3_bucket.logs.id}}/{data}", "the role reads another prefix than the table's"
    workgroup = tf_blocks(tf, "resource", "aws_athena_workgroup")["logs"]
    output = one(one(workgroup["configuration"])["result_configuration"])["output_location"]
    assert tf_interpolate_locals(output, locals_) == f"s3://${{aws_s3_bucket.logs.id}}/{results}", (
        "the workgroup writes results where the query role may not read them"
    )
    assert not data.startswith(results) and not results.startswith(data), "the prefixes overlap"


def athena_operations_called() -> set[str]:
    called = set()
    for path in QUERY_SRC.rglob("*.rs"):
        text = path.read_text()
        for op in ATHENA_OPERATIONS:
            if re.search(rf"\.{op}\s*\(", text):
                called.add(op)
    return called


def test_firetail_query_calls_only_what_the_role_allows(tf):
    called = athena_operations_called()
    assert called, "found no Athena calls in query/src: is this check still looking in the right place?"
    needed = {ATHENA_OPERATIONS[op] for op in called}
    allowed = {a for a in grants(tf) if a.startswith("athena:")}
    assert needed <= allowed, f"query/src calls {sorted(needed - allowed)}, which the query role does not grant"
    # verify reads the result file itself (one signed GET in query/src/s3.rs).
    assert "http::Request::get" in (QUERY_SRC / "s3.rs").read_text()
    _, results = prefixes(tf)
    assert f"{BUCKET_ARN}/{results}*" in grants(tf)["s3:GetObject"]


def test_query_role_trust_is_pod_identity_or_named_principals(tf):
    trust = tf_blocks(tf, "data", "aws_iam_policy_document")["query_trust"]
    statements = [c for d in trust.get("dynamic", []) for c in d.get("statement", {}).get("content", [])]
    statements += trust.get("statement", [])
    actions = {a for s in statements for a in s["actions"]}
    assert "sts:AssumeRoleWithWebIdentity" not in actions, "IRSA would make a second web-identity role"
    (pod_identity,) = [s for s in statements if one(s["principals"])["type"] == "Service"]
    assert one(pod_identity["principals"])["identifiers"] == ["pods.eks.amazonaws.com"]
    variables = {c["variable"] for c in pod_identity["condition"]}
    assert variables == {"aws:SourceAccount", "aws:SourceArn"}, "Pod Identity must be bound to this account's cluster"
    (named,) = [s for s in statements if one(s["principals"])["type"] == "AWS"]
    assert one(named["principals"])["identifiers"] == "${var.query_trusted_principals}"


def cli_default(flag: str) -> str:
    text = (QUERY_SRC / "cli.rs").read_text()
    m = re.search(rf'pub {flag}: String', text)
    assert m, f"no --{flag} in query/src/cli.rs"
    attr = text[: m.start()].rsplit("#[arg(", 1)[1]
    return re.search(r'default_value = "([^"]+)"', attr).group(1)


def test_firetail_query_defaults_name_this_stacks_workgroup_and_table(tf):
    defaults = tf_variable_defaults(tf)
    assert cli_default("workgroup") == defaults["athena_workgroup_name"]
    assert cli_default("database") == defaults["glue_database_name"]
    assert cli_default("table") == defaults["glue_table_name"]


def test_the_image_builds_only_the_sidecar_package():
    builds = [line for line in DOCKERFILE.read_text().splitlines() if re.search(r"\bcargo build\b", line)]
    assert builds and all(re.search(r"(-p|--package)[ =]firetail\b", b) for b in builds), builds
    assert "firetail-query" not in DOCKERFILE.read_text().split("FROM gcr.io")[-1], "the runtime image holds the sidecar only"
