"""Checks of deploy/terraform, without Terraform or AWS: the files parse, the
pod role can do nothing but PutRecordBatch on its streams (and firetail's source
calls nothing else), IRSA trusts exactly the service account the manifests use,
and the Firehose prefix, the Glue columns and Athena's projection agree with
each other and with the access log."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess

import pytest

from deploycheck import (
    ACCESS_LOG_COLUMNS,
    EXAMPLE_DEPLOYMENT,
    EXAMPLE_SERVICE_ACCOUNT,
    REPO,
    SIDECAR_NAME,
    TERRAFORM,
    configmaps_beside,
    env_value,
    find_container,
    load_terraform,
    load_yaml_documents,
    one,
    pod_spec,
    tf_blocks,
    tf_interpolate_locals,
    tf_locals,
    tf_variable_defaults,
)

# The operations of aws-sdk-firehose's client (one module per operation under
# aws_sdk_firehose::operation), and the IAM action each one needs.
FIREHOSE_OPERATIONS = {
    "create_delivery_stream": "firehose:CreateDeliveryStream",
    "delete_delivery_stream": "firehose:DeleteDeliveryStream",
    "describe_delivery_stream": "firehose:DescribeDeliveryStream",
    "list_delivery_streams": "firehose:ListDeliveryStreams",
    "list_tags_for_delivery_stream": "firehose:ListTagsForDeliveryStream",
    "put_record": "firehose:PutRecord",
    "put_record_batch": "firehose:PutRecordBatch",
    "start_delivery_stream_encryption": "firehose:StartDeliveryStreamEncryption",
    "stop_delivery_stream_encryption": "firehose:StopDeliveryStreamEncryption",
    "tag_delivery_stream": "firehose:TagDeliveryStream",
    "untag_delivery_stream": "firehose:UntagDeliveryStream",
    "update_destination": "firehose:UpdateDestination",
}


@pytest.fixture(scope="module")
def tf():
    return load_terraform()


def stream(tf) -> tuple[str, dict]:
    streams = tf_blocks(tf, "resource", "aws_kinesis_firehose_delivery_stream")
    assert len(streams) == 1, streams.keys()
    return next(iter(streams.items()))


def pod_role(tf) -> tuple[str, dict]:
    """The role whose trust policy accepts a web identity (IRSA)."""
    roles = tf_blocks(tf, "resource", "aws_iam_role")
    found = []
    for name, role in roles.items():
        doc = policy_document(tf, role["assume_role_policy"])
        actions = {a for s in statements(doc) for a in s.get("actions", [])}
        if "sts:AssumeRoleWithWebIdentity" in actions:
            found.append((name, role))
    assert len(found) == 1, f"expected one IRSA role, found {[n for n, _ in found]}"
    return found[0]


def policy_document(tf, reference: str) -> dict:
    m = re.fullmatch(r"\$\{data\.aws_iam_policy_document\.(\w+)\.json\}", reference)
    assert m, f"policy {reference!r} is not an aws_iam_policy_document (so it cannot be checked)"
    return tf_blocks(tf, "data", "aws_iam_policy_document")[m.group(1)]


def statements(doc: dict) -> list[dict]:
    """Static and dynamic statements alike."""
    result = list(doc.get("statement", []))
    for dynamic in doc.get("dynamic", []):
        for label, body in dynamic.items():
            if label == "statement":
                result += body.get("content", [])
    return result


def test_every_file_parses(tf):
    assert list(TERRAFORM.glob("*.tf")), "no Terraform files"
    for kind in ("resource", "variable", "output"):
        assert tf.get(kind), f"no {kind} blocks parsed"


def test_pod_role_may_only_put_record_batch_on_this_stream(tf):
    stream_name, _ = stream(tf)
    role_name, role = pod_role(tf)
    role_ref = f"aws_iam_role.{role_name}."
    assert not role.get("inline_policy") and not role.get("managed_policy_arns"), (
        "the pod role has policies defined on the role itself"
    )
    for kind in ("aws_iam_role_policy_attachment", "aws_iam_role_policies_exclusive", "aws_iam_policy_attachment"):
        for name, body in tf_blocks(tf, "resource", kind).items():
            assert role_ref not in repr(body), f"{kind}.{name} attaches more to the pod role"

    inline = [p for p in tf_blocks(tf, "resource", "aws_iam_role_policy").values() if p["role"].startswith("${" + role_ref)]
    assert len(inline) == 1, "expected exactly one policy on the pod role"
    doc = policy_document(tf, inline[0]["policy"])
    assert not doc.get("dynamic"), "no dynamic statements: the permissions must be readable as they are"
    for merged in ("source_policy_documents", "override_policy_documents", "source_json", "override_json"):
        assert merged not in doc, f"{merged} would add statements this check cannot see"

    allowed_actions, allowed_resources = set(), set()
    for statement in doc["statement"]:
        assert statement.get("effect", "Allow") == "Allow"
        assert "not_actions" not in statement and "not_resources" not in statement
        assert "condition" not in statement or statement["condition"], statement
        allowed_actions |= set(statement["actions"])
        resources = statement["resources"]
        allowed_resources |= {resources} if isinstance(resources, str) else set(resources)
    assert allowed_actions == {"firehose:PutRecordBatch"}, allowed_actions
    # This stream, and the ones extra_stream_names lists, as delivery-stream
    # ARNs in this account and region (the applied policy: test_quick_start.py).
    this_stream = f"aws_kinesis_firehose_delivery_stream.{stream_name}.arn"
    extra = (
        '[for s in var.extra_stream_names : '
        '"arn:${local.partition}:firehose:${var.region}:${local.account_id}:deliverystream/${s}"]'
    )
    assert allowed_resources == {f"${{concat([{this_stream}], {extra})}}"}, allowed_resources


def firehose_operations_called_in_src() -> set[str]:
    calls = set()
    for path in (REPO / "src").rglob("*.rs"):
        text = path.read_text()
        for op in FIREHOSE_OPERATIONS:
            # A client call is `.op()` followed by the fluent builder; the `(`
            # right after the name keeps put_record from matching
            # put_record_batch.
            if re.search(rf"\.{op}\s*\(", text):
                calls.add(op)
    return calls


def test_firetail_calls_only_what_the_pod_role_allows():
    actions = {FIREHOSE_OPERATIONS[op] for op in firehose_operations_called_in_src()}
    assert actions <= {"firehose:PutRecordBatch"}, (
        f"src/ calls {sorted(actions)}: grant these in deploy/terraform/pod_role.tf "
        "(and update this check), or the call fails with AccessDenied in production"
    )


def test_irsa_trusts_exactly_the_service_account(tf):
    _, role = pod_role(tf)
    doc = policy_document(tf, role["assume_role_policy"])
    (irsa,) = [s for s in statements(doc) if "sts:AssumeRoleWithWebIdentity" in s.get("actions", [])]
    assert one(irsa["principals"])["type"] == "Federated"
    conditions = {c["variable"]: c for c in irsa["condition"]}
    locals_ = tf_locals(tf)
    sub = conditions.get("${local.oidc_host}:sub")
    aud = conditions.get("${local.oidc_host}:aud")
    assert sub and aud, f"IRSA trust needs both :sub and :aud conditions, got {list(conditions)}"
    # StringEquals, not StringLike: no wildcard over namespaces or accounts.
    assert sub["test"] == "StringEquals" and aud["test"] == "StringEquals"
    assert aud["values"] == ["sts.amazonaws.com"]
    sub_values = [tf_interpolate_locals(v, locals_) for v in sub["values"]]
    sub_values = [locals_.get(v[len("${local."):-1], v) if v.startswith("${local.") else v for v in sub_values]
    assert sub_values == ["system:serviceaccount:${var.k8s_namespace}:${var.k8s_service_account}"], sub_values


def test_direct_put_stream_converts_to_parquet_snappy(tf):
    _, body = stream(tf)
    assert body["destination"] == "extended_s3"
    assert "kinesis_source_configuration" not in body and "msk_source_configuration" not in body, (
        "a source configuration would make it not Direct PUT: PutRecordBatch would be refused"
    )
    s3 = one(body["extended_s3_configuration"])
    conversion = one(s3["data_format_conversion_configuration"])
    assert conversion.get("enabled", True) in (True, "true")
    deserializer = one(one(conversion["input_format_configuration"])["deserializer"])
    assert "open_x_json_ser_de" in deserializer or "hive_json_ser_de" in deserializer
    parquet = one(one(one(conversion["output_format_configuration"])["serializer"])["parquet_ser_de"])
    assert parquet["compression"] == "SNAPPY"
    assert s3.get("compression_format", "UNCOMPRESSED") == "UNCOMPRESSED", (
        "S3-level compression must be off with format conversion (Snappy is inside the Parquet files)"
    )
    schema = one(conversion["schema_configuration"])
    table_name = next(iter(tf_blocks(tf, "resource", "aws_glue_catalog_table")))
    assert schema["table_name"] == f"${{aws_glue_catalog_table.{table_name}.name}}"


def test_buffer_meets_the_format_conversion_minimum(tf):
    _, body = stream(tf)
    size = one(body["extended_s3_configuration"])["buffering_size"]
    if isinstance(size, str):
        m = re.fullmatch(r"\$\{var\.(\w+)\}", size)
        assert m, size
        size = tf_variable_defaults(tf)[m.group(1)]
    assert 64 <= int(size) <= 128, f"format conversion needs a 64-128 MiB buffer, got {size}"


# The layout of the original design: app_access_log/ then the day as a path.
DATA_PREFIX = "app_access_log/"
DATEPATH_FORMAT = "yyyy/MM/dd"


def prefixes(tf) -> tuple[str, str]:
    _, body = stream(tf)
    s3 = one(body["extended_s3_configuration"])
    locals_ = tf_locals(tf)
    return tf_interpolate_locals(s3["prefix"], locals_), tf_interpolate_locals(s3["error_output_prefix"], locals_)


def test_prefixes_are_the_designed_day_paths_with_errors_apart(tf):
    prefix, errors = prefixes(tf)
    assert prefix == f"{DATA_PREFIX}!{{timestamp:{DATEPATH_FORMAT}}}/", prefix
    assert "!{firehose:error-output-type}" in errors, errors
    assert f"!{{timestamp:{DATEPATH_FORMAT}}}" in errors, errors
    assert not errors.startswith(DATA_PREFIX), "errors must not land inside the table's location"
    assert errors.split("/")[0] == tf_locals(tf)["error_prefix"].strip("/")


def test_athena_projection_reads_the_prefix_firehose_writes(tf):
    prefix, _ = prefixes(tf)
    data_prefix, _, day = prefix.partition("!")
    firehose_day_format = re.fullmatch(r"\{timestamp:(.+)\}/", day).group(1)

    locals_ = tf_locals(tf)
    table = next(iter(tf_blocks(tf, "resource", "aws_glue_catalog_table").values()))
    params = {k: tf_interpolate_locals(str(v), locals_) for k, v in table["parameters"].items()}
    assert params["projection.enabled"] == "true"
    assert params["projection.datepath.type"] == "date"
    assert params["projection.datepath.format"] == firehose_day_format == DATEPATH_FORMAT
    assert params["projection.datepath.interval"] == "1" and params["projection.datepath.interval.unit"] == "DAYS"
    assert params["projection.datepath.range"].endswith(",NOW")
    bucket = "${aws_s3_bucket.logs.id}"
    # `$${datepath}` is Terraform's escape for the literal `${datepath}` Athena substitutes.
    template = params["storage.location.template"]
    assert template == f"s3://{bucket}/{data_prefix}$${{datepath}}", template
    assert template.endswith("app_access_log/$${datepath}")
    storage = one(table["storage_descriptor"])
    assert tf_interpolate_locals(storage["location"], locals_) == f"s3://{bucket}/{data_prefix}"
    (partition,) = table["partition_keys"]
    assert (partition["name"], partition["type"]) == ("datepath", "string")
    destination = one(stream(tf)[1]["extended_s3_configuration"])["bucket_arn"]
    assert destination == "${aws_s3_bucket.logs.arn}", "Firehose writes to another bucket than Athena reads"


def test_projection_start_date_has_the_datepath_format(tf):
    start = tf_variable_defaults(tf)["projection_start_date"]
    assert re.fullmatch(r"\d{4}/\d{2}/\d{2}", start), start


def test_provider_is_pinned_to_one_major_version(tf):
    (terraform,) = tf["terraform"]
    aws = one(terraform["required_providers"])["aws"]
    version = aws["version"].replace(" ", "")
    m = re.fullmatch(r"~>(\d+)\.\d+", version) or re.fullmatch(r">=(\d+)\.[\d.]+,<(\d+)\.0(?:\.0)?", version)
    assert m, f"aws provider {aws['version']!r} is not pinned to a major range (~> N.M)"
    if m.lastindex == 2:
        assert int(m.group(2)) == int(m.group(1)) + 1, version


def test_firehose_role_writes_only_under_the_data_and_error_prefixes(tf):
    (role_policy,) = [p for p in tf_blocks(tf, "resource", "aws_iam_role_policy").values() if "firehose" in p["role"]]
    doc = policy_document(tf, role_policy["policy"])
    locals_ = tf_locals(tf)
    bucket = "${aws_s3_bucket.logs.arn}"
    allowed_objects = {f"{bucket}/{DATA_PREFIX}*", f"{bucket}/{locals_['error_prefix']}*"}
    s3_statements = [s for s in statements(doc) if any(a.startswith("s3:") for a in s["actions"])]
    assert s3_statements
    for statement in s3_statements:
        resources = {tf_interpolate_locals(r, locals_) for r in statement["resources"]}
        object_actions = {a for a in statement["actions"] if "Object" in a or a == "s3:AbortMultipartUpload"}
        assert "s3:*" not in statement["actions"]
        if object_actions:
            assert resources <= allowed_objects, f"{statement.get('sid')}: objects outside the prefixes: {resources}"
            assert resources, statement
        else:
            assert resources == {bucket}, f"{statement.get('sid')}: {resources}"
    object_resources = {
        tf_interpolate_locals(r, locals_)
        for s in s3_statements
        if "s3:PutObject" in s["actions"]
        for r in s["resources"]
    }
    assert object_resources == allowed_objects, object_resources


def test_eks_pod_identity_trust_names_the_account_and_cluster(tf):
    _, role = pod_role(tf)
    doc = policy_document(tf, role["assume_role_policy"])
    (pod_identity,) = [
        s for s in statements(doc)
        if one(s["principals"]).get("identifiers") == ["pods.eks.amazonaws.com"]
    ]
    assert set(pod_identity["actions"]) == {"sts:AssumeRole", "sts:TagSession"}
    conditions = {c["variable"]: c for c in pod_identity["condition"]}
    assert set(conditions) == {"aws:SourceAccount", "aws:SourceArn"}, list(conditions)
    assert conditions["aws:SourceAccount"]["values"] == ["${local.account_id}"]
    assert conditions["aws:SourceAccount"]["test"] == "StringEquals"
    assert conditions["aws:SourceArn"]["test"] in ("ArnEquals", "StringEquals"), "no wildcard over clusters"
    (arn,) = conditions["aws:SourceArn"]["values"]
    arn = tf_interpolate_locals(arn, tf_locals(tf))
    arn = tf_locals(tf).get(arn[len("${local."):-1], arn) if arn.startswith("${local.") else arn
    assert arn == "arn:${local.partition}:eks:${var.region}:${local.account_id}:cluster/${var.eks_cluster_name}", arn


def test_irsa_trust_has_no_condition_its_call_cannot_carry(tf):
    # AssumeRoleWithWebIdentity carries no aws:SourceAccount or aws:SourceArn;
    # a condition on them would make IRSA fail closed.
    _, role = pod_role(tf)
    doc = policy_document(tf, role["assume_role_policy"])
    (irsa,) = [s for s in statements(doc) if "sts:AssumeRoleWithWebIdentity" in s.get("actions", [])]
    variables = {c["variable"] for c in irsa["condition"]}
    assert not variables & {"aws:SourceAccount", "aws:SourceArn"}, variables


def test_athena_named_query_restricts_datepath(tf):
    for name, query in tf_blocks(tf, "resource", "aws_athena_named_query").items():
        assert re.search(r"\bdatepath\s*(=|>=|<=|>|<|between|in)", query["query"], re.I), f"{name} scans every day"


# The columns firetail adds (--add-field from the Downward API), with the
# Terraform variables' defaults; source_column and file_column default to none.
ADDED_COLUMNS = [("pod", "string"), ("namespace", "string"), ("node", "string")]


def added_columns(tf, values: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """local.added_columns with each `${var.X}` name resolved from `values`,
    else the variable's default; a name that is "" is no column."""
    resolved = {**tf_variable_defaults(tf), **(values or {})}
    columns = []
    for c in tf_locals(tf)["added_columns"]:
        m = re.fullmatch(r"\$\{var\.(\w+)\}", c["name"])
        assert m, f"an added column's name should be a variable: {c['name']}"
        if resolved[m.group(1)]:
            columns.append((resolved[m.group(1)], c["type"]))
    return columns


def glue_columns(tf) -> list[tuple[str, str]]:
    """The Glue table's columns with the variables' defaults: the app's, then firetail's."""
    table = next(iter(tf_blocks(tf, "resource", "aws_glue_catalog_table").values()))
    storage = one(table["storage_descriptor"])
    assert not storage.get("columns"), "the columns come from local.table_columns only"
    (dynamic,) = [d["columns"] for d in storage.get("dynamic", []) if "columns" in d]
    assert dynamic["for_each"] == "${local.table_columns}"
    assert tf_locals(tf)["table_columns"] == (
        '${concat(local.access_log_columns, [for c in local.added_columns : c if c.name != ""])}'
    )
    app = [(c["name"], c["type"]) for c in tf_locals(tf)["access_log_columns"]]
    return app + added_columns(tf)


def app_columns(tf) -> list[tuple[str, str]]:
    return [(c["name"], c["type"]) for c in tf_locals(tf)["access_log_columns"]]


def test_glue_columns_match_the_access_log(tf):
    assert app_columns(tf) == ACCESS_LOG_COLUMNS
    assert glue_columns(tf) == ACCESS_LOG_COLUMNS + ADDED_COLUMNS



def demo_writer_keys() -> set[str] | None:
    """The keys of the JSON object scripts/demo_helper.py writes per line: the
    dict literal (or dict(...) call) holding the access-log keys."""
    helper = REPO / "scripts" / "demo_helper.py"
    if not helper.exists():
        return None
    expected = {name for name, _ in ACCESS_LOG_COLUMNS}
    best: set[str] = set()
    for node in ast.walk(ast.parse(helper.read_text())):
        keys: set[str] = set()
        if isinstance(node, ast.Dict):
            keys = {k.value for k in node.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)}
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "dict":
            keys = {k.arg for k in node.keywords if k.arg}
        if len(keys & expected) > len(best & expected):
            best = keys
    return best


def test_demo_writer_writes_the_columns_of_the_table(tf):
    keys = demo_writer_keys()
    assert keys is not None, "scripts/demo_helper.py writes no access-log line the test can read"
    columns = {name for name, _ in app_columns(tf)}
    # A column the log never has is always NULL; a key the table lacks is
    # dropped silently by Firehose's conversion.
    assert keys == columns, (
        "scripts/demo_helper.py writes different keys than the Glue table's columns: "
        f"missing {sorted(columns - keys)}, not in the table (dropped by the conversion) {sorted(keys - columns)}"
    )


def test_outputs_give_the_stream_and_the_role(tf):
    outputs = {}
    for block in tf["output"]:
        outputs.update(block)
    values = {o["value"] for o in outputs.values()}
    stream_name, _ = stream(tf)
    role_name, _ = pod_role(tf)
    assert f"${{aws_kinesis_firehose_delivery_stream.{stream_name}.name}}" in values
    assert f"${{aws_iam_role.{role_name}.arn}}" in values


def test_variables_describe_names_region_and_oidc(tf):
    variables = {name for block in tf["variable"] for name in block}
    assert {"region", "stream_name", "bucket_name", "cluster_oidc_issuer_url", "k8s_namespace", "k8s_service_account"} <= variables


def test_defaults_match_the_example_manifests(tf):
    defaults = tf_variable_defaults(tf)
    (sa,) = [d for d in load_yaml_documents(EXAMPLE_SERVICE_ACCOUNT) if d["kind"] == "ServiceAccount"]
    (deployment,) = [d for d in load_yaml_documents(EXAMPLE_DEPLOYMENT) if d["kind"] == "Deployment"]
    spec = pod_spec(deployment)
    sidecar = find_container(spec["initContainers"], SIDECAR_NAME)
    configmaps = configmaps_beside(EXAMPLE_DEPLOYMENT)

    assert spec["serviceAccountName"] == sa["metadata"]["name"] == defaults["k8s_service_account"]
    assert deployment["metadata"]["namespace"] == sa["metadata"]["namespace"] == defaults["k8s_namespace"]
    assert env_value(sidecar, "FIRETAIL_STREAM", configmaps) == defaults["stream_name"]
    assert env_value(sidecar, "AWS_REGION", configmaps) == defaults["region"]
    role_arn = sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
    assert re.fullmatch(r"arn:aws[\w-]*:iam::\d{12}:role/(.+)", role_arn).group(1) == defaults["pod_role_name"]


@pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform not installed")
def test_terraform_fmt_is_clean():
    # `terraform fmt` needs no providers and no network; `validate` would.
    out = subprocess.run(
        ["terraform", "fmt", "-check", "-diff", "-recursive", str(TERRAFORM)],
        capture_output=True, text=True, check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
