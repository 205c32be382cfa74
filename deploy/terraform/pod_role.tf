# The role firetail runs as. Its one permission is the one call firetail makes:
# firehose:PutRecordBatch, on this stream and the extra_stream_names only. (firetail never calls
# PutRecord, DescribeDeliveryStream or anything else; deploy/tests checks both
# this policy and that the source calls no other Firehose operation.)
#
# Who may assume it:
#   - IRSA: the pods' projected service-account token, issued by the cluster's
#     OIDC provider, for exactly system:serviceaccount:NAMESPACE:NAME and
#     audience sts.amazonaws.com. The service account carries the role ARN in
#     its eks.amazonaws.com/role-arn annotation
#     (deploy/kubernetes/example/serviceaccount.yaml).
#   - optionally EKS Pod Identity: the pods.eks.amazonaws.com service, with an
#     association that names the same namespace and service account, and only
#     on behalf of this account's cluster (aws:SourceAccount, aws:SourceArn:
#     the conditions Pod Identity's AssumeRole carries). IRSA's web-identity
#     call carries no aws:SourceAccount; its conditions are the token's :sub
#     and :aud.

locals {
  oidc_host = trimprefix(var.cluster_oidc_issuer_url, "https://")
  # The IAM OIDC provider EKS clusters use for IRSA; create it once per cluster
  # (eksctl utils associate-iam-oidc-provider, or aws_iam_openid_connect_provider).
  oidc_provider_arn = "arn:${local.partition}:iam::${local.account_id}:oidc-provider/${local.oidc_host}"
  service_account   = "system:serviceaccount:${var.k8s_namespace}:${var.k8s_service_account}"
  eks_cluster_arn   = "arn:${local.partition}:eks:${var.region}:${local.account_id}:cluster/${var.eks_cluster_name}"
}

data "aws_iam_policy_document" "pod_trust" {
  dynamic "statement" {
    for_each = var.cluster_oidc_issuer_url == "" ? [] : [1]

    content {
      sid     = "IrsaForTheServiceAccount"
      effect  = "Allow"
      actions = ["sts:AssumeRoleWithWebIdentity"]

      principals {
        type        = "Federated"
        identifiers = [local.oidc_provider_arn]
      }

      condition {
        test     = "StringEquals"
        variable = "${local.oidc_host}:sub"
        values   = [local.service_account]
      }

      condition {
        test     = "StringEquals"
        variable = "${local.oidc_host}:aud"
        values   = ["sts.amazonaws.com"]
      }
    }
  }

  dynamic "statement" {
    for_each = var.use_eks_pod_identity ? [1] : []

    content {
      sid     = "EksPodIdentity"
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
        values   = [local.eks_cluster_arn]
      }
    }
  }
}

resource "aws_iam_role" "pod" {
  name                 = var.pod_role_name
  description          = "firetail in ${var.k8s_namespace}/${var.k8s_service_account}: PutRecordBatch on ${join(", ", concat([var.stream_name], var.extra_stream_names))} only."
  assume_role_policy   = data.aws_iam_policy_document.pod_trust.json
  max_session_duration = 3600

  lifecycle {
    precondition {
      condition     = var.cluster_oidc_issuer_url != "" || var.use_eks_pod_identity
      error_message = "Set cluster_oidc_issuer_url (IRSA) or use_eks_pod_identity = true, or no pod can assume the role."
    }

    precondition {
      condition     = !var.use_eks_pod_identity || var.eks_cluster_name != ""
      error_message = "use_eks_pod_identity needs eks_cluster_name: the trust names the cluster (aws:SourceArn)."
    }
  }
}

data "aws_iam_policy_document" "pod_put_record_batch" {
  statement {
    sid     = "PutRecordBatchOnItsStreamsOnly"
    effect  = "Allow"
    actions = ["firehose:PutRecordBatch"]
    # The stream made here, and the other streams the pod's sources name.
    resources = concat(
      [aws_kinesis_firehose_delivery_stream.access_log.arn],
      [for s in var.extra_stream_names : "arn:${local.partition}:firehose:${var.region}:${local.account_id}:deliverystream/${s}"],
    )
  }
}

resource "aws_iam_role_policy" "pod_put_record_batch" {
  name   = "firehose-put-record-batch"
  role   = aws_iam_role.pod.id
  policy = data.aws_iam_policy_document.pod_put_record_batch.json
}

resource "aws_eks_pod_identity_association" "firetail" {
  count = var.use_eks_pod_identity ? 1 : 0

  cluster_name    = var.eks_cluster_name
  namespace       = var.k8s_namespace
  service_account = var.k8s_service_account
  role_arn        = aws_iam_role.pod.arn

  lifecycle {
    precondition {
      condition     = var.eks_cluster_name != ""
      error_message = "use_eks_pod_identity needs eks_cluster_name."
    }
  }
}
