variable "region" {
  description = "AWS region of the stream, the bucket and the Glue/Athena resources. Set the same value as AWS_REGION in firetail's container."
  type        = string
  default     = "eu-west-1"
}

variable "stream_name" {
  description = "Name of the Firehose stream: firetail's --stream."
  type        = string
  default     = "shop-access-log"
}

variable "extra_stream_names" {
  description = "Other Firehose streams, in this account and region, that the pod's sources ship to besides stream_name (firetail's --source ...,stream=NAME): the pod role may PutRecordBatch on each. This configuration does not create them."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for s in var.extra_stream_names : can(regex("^[a-zA-Z0-9_.-]{1,64}$", s))])
    error_message = "Each of extra_stream_names must be a Firehose stream name: 1-64 letters, digits, _ . -."
  }
}

variable "pod_column" {
  description = "Column of the pod's name, which firetail adds to every line (--add-field KEY=$(POD_NAME), KEY from the ConfigMap's pod-key). Empty for no column."
  type        = string
  default     = "pod"

  validation {
    condition     = can(regex("^([a-z_][a-z0-9_]{0,127})?$", var.pod_column))
    error_message = "pod_column must be empty or a column name: lowercase letters, digits and _, not starting with a digit."
  }
}

variable "namespace_column" {
  description = "Column of the pod's namespace (--add-field, the ConfigMap's namespace-key). Empty for no column."
  type        = string
  default     = "namespace"

  validation {
    condition     = can(regex("^([a-z_][a-z0-9_]{0,127})?$", var.namespace_column))
    error_message = "namespace_column must be empty or a column name: lowercase letters, digits and _, not starting with a digit."
  }
}

variable "node_column" {
  description = "Column of the node's name (--add-field, the ConfigMap's node-key). Empty for no column."
  type        = string
  default     = "node"

  validation {
    condition     = can(regex("^([a-z_][a-z0-9_]{0,127})?$", var.node_column))
    error_message = "node_column must be empty or a column name: lowercase letters, digits and _, not starting with a digit."
  }
}

variable "source_column" {
  description = "Column of the source's name, when firetail runs with --source-field of this name. Empty (the default) for no column."
  type        = string
  default     = ""

  validation {
    condition     = can(regex("^([a-z_][a-z0-9_]{0,127})?$", var.source_column))
    error_message = "source_column must be empty or a column name: lowercase letters, digits and _, not starting with a digit."
  }
}

variable "file_column" {
  description = "Column of the file's path, when firetail runs with --file-field of this name. Empty (the default) for no column."
  type        = string
  default     = ""

  validation {
    condition     = can(regex("^([a-z_][a-z0-9_]{0,127})?$", var.file_column))
    error_message = "file_column must be empty or a column name: lowercase letters, digits and _, not starting with a digit."
  }
}

variable "bucket_name" {
  description = "Name of the S3 bucket for the Parquet files, the error output and Athena's results (globally unique)."
  type        = string
}

variable "glue_database_name" {
  description = "Glue database holding the access-log table (lowercase, digits, underscores)."
  type        = string
  default     = "access_logs"
}

variable "glue_table_name" {
  description = "Glue table: the schema Firehose converts to and the table Athena queries."
  type        = string
  default     = "shop_access_log"
}

variable "athena_workgroup_name" {
  description = "Athena workgroup for querying the access log."
  type        = string
  default     = "access-logs"
}

variable "firehose_role_name" {
  description = "Name of the IAM role the Firehose service assumes to read the Glue schema and write to S3."
  type        = string
  default     = "shop-access-log-firehose"
}

variable "pod_role_name" {
  description = "Name of the IAM role firetail assumes; it goes in the service account's eks.amazonaws.com/role-arn annotation."
  type        = string
  default     = "shop-worker-firetail"
}

variable "cluster_oidc_issuer_url" {
  description = "The EKS cluster's OIDC issuer URL, for IRSA: `aws eks describe-cluster --name NAME --query cluster.identity.oidc.issuer`. Its IAM OIDC provider must exist in this account. Empty to use EKS Pod Identity only."
  type        = string
  default     = ""

  validation {
    condition     = var.cluster_oidc_issuer_url == "" || startswith(var.cluster_oidc_issuer_url, "https://")
    error_message = "cluster_oidc_issuer_url must be the issuer URL, starting with https://, or empty."
  }
}

variable "k8s_namespace" {
  description = "Namespace of the pods running firetail (the IRSA trust names it)."
  type        = string
  default     = "shop"
}

variable "k8s_service_account" {
  description = "Service account of the pods running firetail (the IRSA trust names it)."
  type        = string
  default     = "shop-worker"
}

variable "use_eks_pod_identity" {
  description = "Also let EKS Pod Identity hand out the pod role, and create the association for the service account (needs the Pod Identity Agent add-on and eks_cluster_name)."
  type        = bool
  default     = false
}

variable "eks_cluster_name" {
  description = "EKS cluster name, needed only when use_eks_pod_identity is true (the role trusts Pod Identity for this cluster only)."
  type        = string
  default     = ""
}

variable "buffering_size_mib" {
  description = "Firehose buffer size in MiB. Record format conversion needs at least 64; bigger means fewer, larger Parquet files."
  type        = number
  default     = 128

  validation {
    condition     = var.buffering_size_mib >= 64 && var.buffering_size_mib <= 128
    error_message = "With format conversion to Parquet, Firehose needs a buffer of 64 to 128 MiB."
  }
}

variable "buffering_interval_seconds" {
  description = "Firehose buffer interval: the longest a record waits in Firehose before it is written to S3 (60-900). This, not firetail's --flush-interval, is what dominates the delay until a line is queryable."
  type        = number
  default     = 300

  validation {
    condition     = var.buffering_interval_seconds >= 60 && var.buffering_interval_seconds <= 900
    error_message = "buffering_interval_seconds must be between 60 and 900."
  }
}

variable "log_retention_days" {
  description = "Days to keep the Parquet access log in S3."
  type        = number
  default     = 400
}

variable "error_retention_days" {
  description = "Days to keep records Firehose could not convert (under errors/)."
  type        = number
  default     = 30
}

variable "projection_start_date" {
  description = "First day (yyyy/MM/dd, the datepath format) of Athena's partition projection; days before it are never scanned."
  type        = string
  default     = "2026/01/01"

  validation {
    condition     = can(regex("^\\d{4}/\\d{2}/\\d{2}$", var.projection_start_date))
    error_message = "projection_start_date must look like 2026/01/01."
  }
}

variable "athena_bytes_scanned_cutoff" {
  description = "Per-query scan limit of the Athena workgroup, in bytes (a guard against an unfiltered scan of the whole log)."
  type        = number
  default     = 107374182400 # 100 GiB
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default = {
    "app.kubernetes.io/part-of" = "firetail"
  }
}
