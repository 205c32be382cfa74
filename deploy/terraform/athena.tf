# Query the log with Athena in this workgroup: results go to the same bucket
# under athena-results/ (kept 7 days), and a query that would scan more than
# athena_bytes_scanned_cutoff is cancelled. Always filter on datepath: it is
# what partition projection prunes on. More queries: deploy/athena/.

resource "aws_athena_workgroup" "logs" {
  name          = var.athena_workgroup_name
  description   = "Queries over the access log shipped by firetail."
  force_destroy = false

  configuration {
    enforce_workgroup_configuration    = true
    publish_cloudwatch_metrics_enabled = true
    bytes_scanned_cutoff_per_query     = var.athena_bytes_scanned_cutoff

    engine_version {
      selected_engine_version = "AUTO"
    }

    result_configuration {
      output_location = "s3://${aws_s3_bucket.logs.id}/athena-results/"

      encryption_configuration {
        encryption_option = "SSE_S3"
      }
    }
  }
}

# An example to start from: the slowest failing requests of the last day.
# "time" is quoted: it is a reserved word in Athena's SQL.
resource "aws_athena_named_query" "recent_server_errors" {
  name        = "recent-server-errors"
  description = "5xx responses of the last day, slowest first."
  workgroup   = aws_athena_workgroup.logs.id
  database    = aws_glue_catalog_database.logs.name
  query       = <<-SQL
    SELECT from_iso8601_timestamp("time") AS at, method, path, status, duration_ms, request_id
    FROM "${aws_glue_catalog_database.logs.name}"."${aws_glue_catalog_table.access_log.name}"
    WHERE datepath >= date_format(current_date - interval '1' day, '%Y/%m/%d')
      AND status >= 500
    ORDER BY duration_ms DESC
    LIMIT 100
  SQL
}
