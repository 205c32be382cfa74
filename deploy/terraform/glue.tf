# One Glue table serves both ends, so they cannot disagree: Firehose reads its
# columns to convert each JSON line to a Parquet row, and Athena queries it.
#
# The columns are the keys of the access log the app writes, one JSON object
# per line (scripts/demo_helper.py writes the same keys):
#   {"time": "2026-11-26T17:33:00.123Z", "request_id": "<uuid>", "method": "GET",
#    "path": "/orders/42", "status": 200, "duration_ms": 12.5,
#    "remote_ip": "203.0.113.7", "user_agent": "...", "bytes": 5120,
#    "level": "info"}
# Keys not listed are dropped by the conversion; a listed key missing from a
# line becomes NULL; a value of the wrong type (say "status": "ok") makes the
# whole line fail conversion and land under errors/format-conversion-failed/
# (with --aggregate: the whole packed record; docs/troubleshooting.md).
#
# After the app's keys come the ones firetail adds (added_columns below).

locals {
  # name => [Hive type, comment]. Order is the table's column order.
  access_log_columns = [
    # A string, not a timestamp: Firehose's OpenX JSON deserializer parses
    # timestamps only as yyyy-MM-dd'T'HH:mm:ss[.S]'Z' (or epoch numbers), so an
    # ISO-8601 time with an offset such as +01:00 would fail conversion and
    # send the line to errors/. Query it with from_iso8601_timestamp("time").
    { name = "time", type = "string", comment = "ISO-8601 time the request was logged, as written by the app" },
    { name = "request_id", type = "string", comment = "Request UUID" },
    { name = "method", type = "string", comment = "HTTP method" },
    { name = "path", type = "string", comment = "Request path" },
    { name = "status", type = "int", comment = "HTTP status code" },
    { name = "duration_ms", type = "double", comment = "Time to serve the request, in milliseconds" },
    { name = "remote_ip", type = "string", comment = "Client IP address (personal data)" },
    { name = "user_agent", type = "string", comment = "Client User-Agent" },
    { name = "bytes", type = "bigint", comment = "Response size in bytes" },
    { name = "level", type = "string", comment = "Log level" },
  ]

  # Keys firetail adds to every line (--add-field, --source-field,
  # --file-field; docs/deploying.md, "The pod's identity on every record"),
  # not the app: the pod's identity from the Downward API, and optionally the
  # source's name and the file's path. A name set to "" drops the column.
  added_columns = [
    { name = var.pod_column, type = "string", comment = "Pod that wrote the line (Downward API metadata.name)" },
    { name = var.namespace_column, type = "string", comment = "Namespace of that pod (Downward API metadata.namespace)" },
    { name = var.node_column, type = "string", comment = "Node the pod ran on (Downward API spec.nodeName)" },
    { name = var.source_column, type = "string", comment = "firetail source the line came from (--source-field)" },
    { name = var.file_column, type = "string", comment = "Path of the file the line was read from (--file-field)" },
  ]

  table_columns = concat(local.access_log_columns, [for c in local.added_columns : c if c.name != ""])
}

resource "aws_glue_catalog_database" "logs" {
  name        = var.glue_database_name
  description = "Access logs shipped by firetail through Firehose."
}

resource "aws_glue_catalog_table" "access_log" {
  name          = var.glue_table_name
  database_name = aws_glue_catalog_database.logs.name
  description   = "Access log of the app, one row per line, converted to Parquet by Firehose."
  table_type    = "EXTERNAL_TABLE"

  parameters = {
    EXTERNAL             = "TRUE"
    classification       = "parquet"
    "has_encrypted_data" = "false"

    # Partition projection: Athena computes the partitions from these rules
    # instead of looking them up, so no crawler, no MSCK REPAIR, no
    # ALTER TABLE ADD PARTITION, and a new day is queryable as soon as
    # Firehose writes its first file. The template must match Firehose's
    # prefix in firehose.tf ($${datepath} is Terraform's escape for a literal
    # ${datepath}). A query restricts datepath ('2026/11/26', or a range of
    # such strings) and Athena lists only those days' prefixes.
    "projection.enabled"                = "true"
    "projection.datepath.type"          = "date"
    "projection.datepath.format"        = local.datepath_format
    "projection.datepath.range"         = "${var.projection_start_date},NOW"
    "projection.datepath.interval"      = "1"
    "projection.datepath.interval.unit" = "DAYS"
    "storage.location.template"         = "s3://${aws_s3_bucket.logs.id}/${local.data_prefix}$${datepath}"
  }

  lifecycle {
    precondition {
      condition     = length(distinct([for c in local.table_columns : c.name])) == length(local.table_columns)
      error_message = "pod_column, namespace_column, node_column, source_column and file_column must differ from each other and from the access log's own columns."
    }
  }

  partition_keys {
    name    = "datepath"
    type    = "string"
    comment = "UTC day Firehose received the line, as the S3 path yyyy/MM/dd"
  }

  storage_descriptor {
    location      = "s3://${aws_s3_bucket.logs.id}/${local.data_prefix}"
    input_format  = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
    output_format = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"

    ser_de_info {
      name                  = "parquet"
      serialization_library = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"

      parameters = {
        "serialization.format" = "1"
      }
    }

    dynamic "columns" {
      for_each = local.table_columns

      content {
        name    = columns.value.name
        type    = columns.value.type
        comment = columns.value.comment
      }
    }
  }
}
