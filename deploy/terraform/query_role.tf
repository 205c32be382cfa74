# The role firetail-query runs as (docs/query.md): an operator's search, or a chaos test's `verify` run as a Job in
# the cluster. Least privilege, as in the original design:
#   - Athena: run, watch, read and stop queries in the one workgroup;
#   - Glue: read the catalog, the database and the table (the schema Athena
#     plans with);
#   - S3: find and list the bucket (listing only under the data and results
#     prefixes), read the data prefix, read and write the results prefix only
#     (Athena writes each result there as the caller, and `verify` reads it).
# It can neither write the log nor read anything else in the bucket.
#
# Who may assume it: EKS Pod Identity for the service account
# query_k8s_service_account (a Job in k8s_namespace), and/or the IAM principals
# in query_trusted_principals (people, CI). With neither, nobody could assume it,
# so it is not created: the pipeline applies without it, and setting either later
# adds it. Not IRSA: one web-identity role per stack keeps deploy/tests' check of
# the sidecar's role unambiguous; add an IRSA statement like pod_role.tf's if your
# cluster has no Pod Identity Agent.

variable "query_role_name" {
  description = "Name of the IAM role firetail-query assumes (search and verify)."
  type        = string
  default     = "firetail-query"
}

variable "query_k8s_service_account" {
  description = "Service account (in k8s_namespace) of the pods that run firetail-query, e.g. a chaos test's verify Job. Used with use_eks_pod_identity."
  type        = string
  default     = "firetail-query"
}

variable "query_trusted_principals" {
  description = "IAM role or user ARNs that may assume the query role (operators, CI). Empty: only Pod Identity, and with use_eks_pod_identity false no query role is created."
  type        = list(string)
  default     = []
}

locals {
  # A role nobody may assume would only be clutter, so it exists only when
  # someone can use it.
  query_role_enabled = var.use_eks_pod_identity || length(var.query_trusted_principals) > 0

  # Where the workgroup writes query results (athena.tf's output_location);
  # deploy/tests checks the two agree.
  query_results_prefix = "athena-results/"
}

data "aws_iam_policy_document" "query_trust" {
  dynamic "statement" {
    for_each = var.use_eks_pod_identity ? [1] : []

    content {
      sid     = "EksPodIdentityForTheQueryJob"
      effect  = "Allow"
      actions = ["sts:AssumeRole", "sts:TagSession"]

      principals {
        type        = "Service"
        identifiers = ["pods.eks.amazonaws.com"]
      }

      condition {
        test     = "StringEquals"
        variable = "aws:SourceAccount"
        values   = [local.account_id]
      }

      condition {
        test     = "ArnEquals"
        variable = "aws:SourceArn"
        values   = ["arn:${local.partition}:eks:${var.region}:${local.account_id}:cluster/${var.eks_cluster_name}"]
      }
    }
  }

  dynamic "statement" {
    for_each = length(var.query_trusted_principals) > 0 ? [1] : []

    content {
      sid     = "NamedPrincipals"
      effect  = "Allow"
      actions = ["sts:AssumeRole"]

      principals {
        type        = "AWS"
        identifiers = var.query_trusted_principals
      }
    }
  }
}

resource "aws_iam_role" "query" {
  count = local.query_role_enabled ? 1 : 0

  name                 = var.query_role_name
  description          = "firetail-query: Athena queries on ${aws_glue_catalog_database.logs.name}.${aws_glue_catalog_table.access_log.name} in workgroup ${aws_athena_workgroup.logs.name} only."
  assume_role_policy   = data.aws_iam_policy_document.query_trust.json
  max_session_duration = 3600
}

data "aws_iam_policy_document" "query" {
  statement {
    sid    = "QueriesInTheOneWorkgroup"
    effect = "Allow"
    actions = [
      "athena:StartQueryExecution",
      "athena:GetQueryExecution",
      "athena:GetQueryResults",
      "athena:StopQueryExecution",
    ]
    resources = [aws_athena_workgroup.logs.arn]
  }

  statement {
    sid    = "ReadTheTableDefinition"
    effect = "Allow"
    actions = [
      "glue:GetDatabase",
      "glue:GetTable",
      "glue:GetPartition",
      "glue:GetPartitions",
    ]
    resources = [
      "arn:${local.partition}:glue:${var.region}:${local.account_id}:catalog",
      "arn:${local.partition}:glue:${var.region}:${local.account_id}:database/${aws_glue_catalog_database.logs.name}",
      "arn:${local.partition}:glue:${var.region}:${local.account_id}:table/${aws_glue_catalog_database.logs.name}/${aws_glue_catalog_table.access_log.name}",
    ]
  }

  statement {
    sid    = "FindTheBucket"
    effect = "Allow"
    actions = [
      "s3:GetBucketLocation",
      "s3:ListBucketMultipartUploads",
    ]
    resources = [aws_s3_bucket.logs.arn]
  }

  statement {
    sid       = "ListOnlyTheDataAndResults"
    effect    = "Allow"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.logs.arn]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${local.data_prefix}*", "${local.query_results_prefix}*"]
    }
  }

  statement {
    sid       = "ReadTheLog"
    effect    = "Allow"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.logs.arn}/${local.data_prefix}*"]
  }

  statement {
    sid    = "ReadAndWriteQueryResults"
    effect = "Allow"
    actions = [
      "s3:GetObject",
      "s3:PutObject",
      "s3:AbortMultipartUpload",
      "s3:ListMultipartUploadParts",
    ]
    resources = ["${aws_s3_bucket.logs.arn}/${local.query_results_prefix}*"]
  }
}

resource "aws_iam_role_policy" "query" {
  count = local.query_role_enabled ? 1 : 0

  name   = "athena-query-access-log"
  role   = aws_iam_role.query[0].id
  policy = data.aws_iam_policy_document.query.json
}

resource "aws_eks_pod_identity_association" "query" {
  count = var.use_eks_pod_identity ? 1 : 0

  cluster_name    = var.eks_cluster_name
  namespace       = var.k8s_namespace
  service_account = var.query_k8s_service_account
  role_arn        = aws_iam_role.query[0].arn
}

output "query_role_arn" {
  description = "The role for firetail-query (search, verify); null until use_eks_pod_identity or query_trusted_principals lets someone assume it."
  value       = one(aws_iam_role.query[*].arn)
}
