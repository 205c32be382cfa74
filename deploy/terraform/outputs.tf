output "stream_name" {
  description = "firetail's --stream."
  value       = aws_kinesis_firehose_delivery_stream.access_log.name
}

output "stream_arn" {
  description = "ARN of the delivery stream (the only resource the pod role may write to)."
  value       = aws_kinesis_firehose_delivery_stream.access_log.arn
}

output "pod_role_arn" {
  description = "The role for firetail: the value of the service account's eks.amazonaws.com/role-arn annotation."
  value       = aws_iam_role.pod.arn
}

output "bucket_name" {
  description = "Bucket holding the Parquet access log, the error output and Athena's results."
  value       = aws_s3_bucket.logs.id
}

output "athena_workgroup" {
  description = "Athena workgroup to query the access log in."
  value       = aws_athena_workgroup.logs.name
}

output "athena_table" {
  description = "The table to query, as database.table."
  value       = "${aws_glue_catalog_database.logs.name}.${aws_glue_catalog_table.access_log.name}"
}
