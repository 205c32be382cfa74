# The pipeline behind firetail, as code:
#
#   pods (firetail) --PutRecordBatch--> Firehose stream (Direct PUT)
#     --JSON -> Parquet/Snappy, schema from the Glue table-->
#   S3 s3://BUCKET/app_access_log/YYYY/MM/DD/...   (errors under errors/)
#     <-- Athena: the same Glue table, partition projection on `datepath`
#
# Files: s3.tf (bucket), glue.tf (schema and Athena table), firehose.tf (stream
# and its service role), pod_role.tf (the role firetail assumes through IRSA or
# EKS Pod Identity), athena.tf (workgroup, an example query), variables.tf,
# outputs.tf. Example values: terraform.tfvars.example.
#
# deploy/tests/test_terraform.py parses these files (python-hcl2) and checks the
# claims that matter: the pod role may call only firehose:PutRecordBatch on this
# stream, the Glue columns match the access log, the S3 prefix and the Athena
# projection agree, the buffer meets the conversion minimum.

terraform {
  required_version = ">= 1.5"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # One major version: a new major may rename or remove arguments (5.x
      # renamed the Firehose buffer arguments to buffering_size and
      # buffering_interval, used here), so moving to 7.x is a deliberate change.
      version = "~> 6.0"
    }
  }
}

provider "aws" {
  region = var.region

  default_tags {
    tags = var.tags
  }
}

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition

  # Where Firehose writes the Parquet files, and where Athena reads them:
  # app_access_log/YYYY/MM/DD/. The day is Firehose's arrival time in UTC (not
  # the line's own `time`), so a few lines written just before midnight land
  # in the next day's folder: filter on "time" as well as on datepath for
  # exact ranges.
  data_prefix = "app_access_log/"
  # Records Firehose could not convert, apart from the table's data, so a
  # query never reads them: errors/<error type>/YYYY/MM/DD/.
  error_prefix = "errors/"
  # The same day format on both sides: Java DateTimeFormatter for the Firehose
  # prefix (!{timestamp:...}), and the projection's format (also Java-style)
  # for Athena. The slashes make the day a path, `datepath` in the table.
  datepath_format = "yyyy/MM/dd"
}
