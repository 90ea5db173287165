# The analytics lake: Parquet files written by the exporter (services/exporter), catalogued in
# Glue with partition projection (no crawler, no partition maintenance) and queried with Athena.
#
#   s3://<lake>/telemetry/tenant_id=<t>/date=<YYYY-MM-DD>/part-<start>-<until>-<n>.parquet
#   s3://<lake>/events/tenant_id=<t>/date=<YYYY-MM-DD>/part-<start>-<until>-<n>.parquet
#
# The columns below are the exporter's Arrow schemas (fleetpulse.exporter.schema) in Hive types;
# tests/infra/test_lake.py compares them. tenant_id is an injected projection: every query names
# its tenant (WHERE tenant_id = '...'), which keeps scans, and bills, per tenant.

variable "lake_transition_ia_days" {
  description = "Days after which lake objects move to S3 Standard-IA"
  type        = number
  default     = 30
}

variable "lake_transition_glacier_ir_days" {
  description = "Days after which lake objects move to S3 Glacier Instant Retrieval"
  type        = number
  default     = 180
}

variable "athena_bytes_scanned_cutoff" {
  description = "Most bytes one Athena query of the lake workgroup may scan (default 10 GiB)"
  type        = number
  default     = 10737418240
  validation {
    condition     = var.athena_bytes_scanned_cutoff >= 10485760
    error_message = "Athena's smallest per-query limit is 10 MiB (10485760 bytes)."
  }
}

locals {
  lake_datasets = {
    telemetry = [
      { name = "device_id", type = "string" },
      { name = "time", type = "timestamp" },
      { name = "seq", type = "bigint" },
      { name = "received_at", type = "timestamp" },
      { name = "temperature_c", type = "double" },
      { name = "temp_c", type = "double" },
      { name = "humidity_pct", type = "double" },
      { name = "battery_pct", type = "double" },
      { name = "battery_v", type = "double" },
      { name = "pressure_hpa", type = "double" },
      { name = "speed_kmh", type = "double" },
      { name = "door_open", type = "boolean" },
      { name = "other_metrics", type = "map<string,double>" },
      { name = "other_flags", type = "map<string,boolean>" },
    ]
    events = [
      { name = "position", type = "bigint" },
      { name = "event_id", type = "string" },
      { name = "stream_id", type = "string" },
      { name = "version", type = "int" },
      { name = "type", type = "string" },
      { name = "data", type = "string" },
      { name = "metadata", type = "string" },
      { name = "recorded_at", type = "timestamp" },
    ]
  }
  lake_partition_keys = [
    { name = "tenant_id", type = "string" },
    { name = "date", type = "string" },
  ]
}

# --- buckets -------------------------------------------------------------------------------

resource "aws_s3_bucket" "lake" {
  #checkov:skip=CKV_AWS_144:The lake is rebuilt from the event log and the telemetry table; replication adds cost, not safety.
  #checkov:skip=CKV2_AWS_62:Nothing reacts to new lake objects; Glue partition projection needs no notification.
  bucket_prefix = "${local.name}-lake-"
}

resource "aws_s3_bucket" "athena_results" {
  #checkov:skip=CKV_AWS_144:Query results are disposable and expire after 30 days.
  #checkov:skip=CKV2_AWS_62:Nothing reacts to query results.
  bucket_prefix = "${local.name}-athena-"
}

locals {
  analytics_buckets = {
    lake           = aws_s3_bucket.lake.id
    athena_results = aws_s3_bucket.athena_results.id
  }
}

resource "aws_s3_bucket_public_access_block" "analytics" {
  for_each                = local.analytics_buckets
  bucket                  = each.value
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "analytics" {
  for_each = local.analytics_buckets
  bucket   = each.value
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "analytics" {
  for_each = local.analytics_buckets
  bucket   = each.value
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.main.arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_versioning" "analytics" {
  for_each = local.analytics_buckets
  bucket   = each.value
  versioning_configuration {
    status = "Enabled"
  }
}

# Delivered by logging.s3.amazonaws.com, which the logs bucket's policy admits (alb.tf).
resource "aws_s3_bucket_logging" "analytics" {
  for_each      = local.analytics_buckets
  bucket        = each.value
  target_bucket = aws_s3_bucket.logs.id
  target_prefix = "s3-${replace(each.key, "_", "-")}/"

  depends_on = [aws_s3_bucket_policy.logs]
}

# TLS only, on both buckets.
resource "aws_s3_bucket_policy" "analytics" {
  for_each = local.analytics_buckets
  bucket   = each.value
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "DenyInsecureTransport"
      Effect    = "Deny"
      Principal = "*"
      Action    = "s3:*"
      Resource  = ["arn:${local.partition}:s3:::${each.value}", "arn:${local.partition}:s3:::${each.value}/*"]
      Condition = { Bool = { "aws:SecureTransport" = "false" } }
    }]
  })
  depends_on = [aws_s3_bucket_public_access_block.analytics]
}

# Lake files are read less as they age: Standard-IA, then Glacier Instant Retrieval (still
# queryable by Athena). A re-exported range replaces objects: old versions go after 7 days.
resource "aws_s3_bucket_lifecycle_configuration" "lake" {
  bucket = aws_s3_bucket.lake.id
  rule {
    id     = "age-to-cheaper-storage"
    status = "Enabled"
    filter {}
    transition {
      days          = var.lake_transition_ia_days
      storage_class = "STANDARD_IA"
    }
    transition {
      days          = var.lake_transition_glacier_ir_days
      storage_class = "GLACIER_IR"
    }
    noncurrent_version_expiration {
      noncurrent_days = 7
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "athena_results" {
  bucket = aws_s3_bucket.athena_results.id
  rule {
    id     = "expire-query-results"
    status = "Enabled"
    filter {}
    expiration {
      days = 30
    }
    noncurrent_version_expiration {
      noncurrent_days = 1
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
}

# --- Glue catalog ----------------------------------------------------------------------------

resource "aws_glue_catalog_database" "lake" {
  name        = replace("${local.name}_lake", "-", "_")
  description = "FleetPulse analytics lake (Parquet from the exporter)"
}

resource "aws_glue_catalog_table" "lake" {
  for_each      = local.lake_datasets
  name          = each.key
  database_name = aws_glue_catalog_database.lake.name
  table_type    = "EXTERNAL_TABLE"

  parameters = {
    EXTERNAL                        = "TRUE"
    classification                  = "parquet"
    "parquet.compression"           = "ZSTD"
    "projection.enabled"            = "true"
    "projection.tenant_id.type"     = "injected"
    "projection.date.type"          = "date"
    "projection.date.format"        = "yyyy-MM-dd"
    "projection.date.range"         = "2024-01-01,NOW+1DAYS"
    "projection.date.interval"      = "1"
    "projection.date.interval.unit" = "DAYS"
    "storage.location.template"     = "s3://${aws_s3_bucket.lake.id}/${each.key}/tenant_id=$${tenant_id}/date=$${date}/"
  }

  dynamic "partition_keys" {
    for_each = local.lake_partition_keys
    content {
      name = partition_keys.value.name
      type = partition_keys.value.type
    }
  }

  storage_descriptor {
    location      = "s3://${aws_s3_bucket.lake.id}/${each.key}/"
    input_format  = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
    output_format = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"

    ser_de_info {
      serialization_library = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
      parameters            = { "serialization.format" = "1" }
    }

    dynamic "columns" {
      for_each = each.value
      content {
        name = columns.value.name
        type = columns.value.type
      }
    }
  }
}

# --- Athena ------------------------------------------------------------------------------------

resource "aws_athena_workgroup" "lake" {
  count         = var.emulator ? 0 : 1 # plan-only under an AWS emulator (moto's ARN has no account)
  name          = "${local.name}-lake"
  description   = "Queries of the FleetPulse analytics lake"
  force_destroy = false

  configuration {
    enforce_workgroup_configuration    = true
    publish_cloudwatch_metrics_enabled = true
    bytes_scanned_cutoff_per_query     = var.athena_bytes_scanned_cutoff

    engine_version {
      selected_engine_version = "Athena engine version 3"
    }

    result_configuration {
      output_location = "s3://${aws_s3_bucket.athena_results.id}/results/"
      encryption_configuration {
        encryption_option = "SSE_KMS"
        kms_key_arn       = aws_kms_key.main.arn
      }
    }
  }
}

output "lake_bucket" {
  description = "S3 bucket of the analytics lake"
  value       = aws_s3_bucket.lake.id
}

output "lake_glue_database" {
  description = "Glue database with the telemetry and events tables"
  value       = aws_glue_catalog_database.lake.name
}

output "athena_workgroup" {
  description = "Athena workgroup for lake queries (bytes-scanned limit, encrypted results)"
  value       = one(aws_athena_workgroup.lake[*].name)
}
