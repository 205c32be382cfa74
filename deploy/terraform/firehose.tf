# The delivery stream firetail writes to. Direct PUT: there is no
# kinesis_source_configuration, so producers call PutRecord(Batch) on it.

resource "aws_cloudwatch_log_group" "firehose" {
  name              = "/aws/kinesisfirehose/${var.stream_name}"
  retention_in_days = 30
}

resource "aws_cloudwatch_log_stream" "firehose_delivery" {
  name           = "DestinationDelivery"
  log_group_name = aws_cloudwatch_log_group.firehose.name
}

resource "aws_kinesis_firehose_delivery_stream" "access_log" {
  name        = var.stream_name
  destination = "extended_s3"

  server_side_encryption {
    enabled  = true
    key_type = "AWS_OWNED_CMK"
  }

  extended_s3_configuration {
    role_arn   = aws_iam_role.firehose.arn
    bucket_arn = aws_s3_bucket.logs.arn

    # Day folders in the layout Athena's projection expects (glue.tf):
    # app_access_log/2026/11/26/<files>.
    prefix = "${local.data_prefix}!{timestamp:${local.datepath_format}}/"
    # Records that fail conversion (wrong types, invalid JSON, a packed record
    # with one bad line) are kept here as JSON with the raw record
    # base64-encoded, by error type and day. A prefix with expressions
    # requires an error prefix with !{firehose:error-output-type}.
    error_output_prefix = "${local.error_prefix}!{firehose:error-output-type}/!{timestamp:${local.datepath_format}}/"

    # Record format conversion needs a buffer of at least 64 MiB; the larger
    # it is, the fewer and larger the Parquet files (better for Athena). Under
    # light traffic the interval fires first.
    buffering_size     = var.buffering_size_mib
    buffering_interval = var.buffering_interval_seconds

    # With format conversion the S3-level compression must stay off: Snappy is
    # applied inside the Parquet files (parquet_ser_de below).
    compression_format = "UNCOMPRESSED"

    data_format_conversion_configuration {
      enabled = true

      input_format_configuration {
        deserializer {
          # OpenX rather than Hive: it is the one AWS recommends unless timestamp
          # parsing needs Hive's formats, and `time` is kept as a string anyway.
          # Several JSON objects in one record (firetail's --aggregate) are
          # read as several rows.
          open_x_json_ser_de {}
        }
      }

      output_format_configuration {
        serializer {
          parquet_ser_de {
            compression = "SNAPPY"
          }
        }
      }

      schema_configuration {
        role_arn      = aws_iam_role.firehose.arn
        region        = var.region
        database_name = aws_glue_catalog_database.logs.name
        table_name    = aws_glue_catalog_table.access_log.name
        version_id    = "LATEST"
      }
    }

    cloudwatch_logging_options {
      enabled         = true
      log_group_name  = aws_cloudwatch_log_group.firehose.name
      log_stream_name = aws_cloudwatch_log_stream.firehose_delivery.name
    }
  }

  # The role's policy must exist before Firehose validates access to Glue and S3.
  depends_on = [aws_iam_role_policy.firehose]
}

# --- The role the Firehose service assumes --------------------------------

data "aws_iam_policy_document" "firehose_trust" {
  statement {
    sid     = "FirehoseInThisAccount"
    effect  = "Allow"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["firehose.amazonaws.com"]
    }

    # Firehose passes the account id as the external id; this keeps a stream
    # in another account from using the role (confused deputy).
    condition {
      test     = "StringEquals"
      variable = "sts:ExternalId"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "firehose" {
  name               = var.firehose_role_name
  assume_role_policy = data.aws_iam_policy_document.firehose_trust.json
}

data "aws_iam_policy_document" "firehose" {
  # Bucket-level calls name the bucket, not an object, so they cannot be
  # scoped to a prefix by resource.
  statement {
    sid    = "FindTheLogBucket"
    effect = "Allow"
    actions = [
      "s3:GetBucketLocation",
      "s3:ListBucket",
      "s3:ListBucketMultipartUploads",
    ]
    resources = [aws_s3_bucket.logs.arn]
  }

  # Objects: only under the data and error prefixes. Firehose cannot touch
  # Athena's results or anything else in the bucket.
  statement {
    sid    = "WriteDataAndErrorPrefixesOnly"
    effect = "Allow"
    actions = [
      "s3:AbortMultipartUpload",
      "s3:GetObject",
      "s3:PutObject",
    ]
    resources = [
      "${aws_s3_bucket.logs.arn}/${local.data_prefix}*",
      "${aws_s3_bucket.logs.arn}/${local.error_prefix}*",
    ]
  }

  statement {
    sid    = "ReadTheSchemaForFormatConversion"
    effect = "Allow"
    actions = [
      "glue:GetTable",
      "glue:GetTableVersion",
      "glue:GetTableVersions",
    ]
    resources = [
      "arn:${local.partition}:glue:${var.region}:${local.account_id}:catalog",
      "arn:${local.partition}:glue:${var.region}:${local.account_id}:database/${aws_glue_catalog_database.logs.name}",
      "arn:${local.partition}:glue:${var.region}:${local.account_id}:table/${aws_glue_catalog_database.logs.name}/${aws_glue_catalog_table.access_log.name}",
    ]
  }

  statement {
    sid       = "ReportDeliveryErrors"
    effect    = "Allow"
    actions   = ["logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.firehose.arn}:log-stream:*"]
  }
}

resource "aws_iam_role_policy" "firehose" {
  name   = "deliver-to-s3"
  role   = aws_iam_role.firehose.id
  policy = data.aws_iam_policy_document.firehose.json
}
