# The console SPA: a private, KMS-encrypted S3 bucket read only by CloudFront through an origin
# access control (no public bucket, no legacy OAI). Unknown paths fall back to index.html.

resource "aws_s3_bucket" "console" {
  #checkov:skip=CKV_AWS_144:The SPA is rebuilt from git on every deploy; replication adds cost, not safety.
  #checkov:skip=CKV2_AWS_62:Nothing reacts to new console objects.
  bucket_prefix = "${local.name}-console-"
}

resource "aws_s3_bucket_public_access_block" "console" {
  bucket                  = aws_s3_bucket.console.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "console" {
  bucket = aws_s3_bucket.console.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "console" {
  bucket = aws_s3_bucket.console.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.main.arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_versioning" "console" {
  bucket = aws_s3_bucket.console.id
  versioning_configuration {
    status = "Enabled"
  }
}

locals {
  console_access_log_prefix = "s3-console/"
}

# Delivered by logging.s3.amazonaws.com, which the logs bucket's policy admits (alb.tf).
resource "aws_s3_bucket_logging" "console" {
  bucket        = aws_s3_bucket.console.id
  target_bucket = aws_s3_bucket.logs.id
  target_prefix = local.console_access_log_prefix

  depends_on = [aws_s3_bucket_policy.logs]
}

resource "aws_s3_bucket_lifecycle_configuration" "console" {
  bucket = aws_s3_bucket.console.id

  rule {
    id     = "expire-old-builds"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = 30
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
}

resource "aws_cloudfront_origin_access_control" "console" {
  name                              = "${local.name}-console"
  description                       = "CloudFront reads the console bucket"
  origin_access_control_origin_type = "s3"
  signing_behavior                  = "always"
  signing_protocol                  = "sigv4"
}

# The AWS-managed cache and response-headers policies by id (variables.tf: the same ids in
# every account), so no lookup is needed at plan time.

resource "aws_cloudfront_distribution" "console" {
  #checkov:skip=CKV_AWS_68:WAF is Phase 46.
  #checkov:skip=CKV2_AWS_47:WAF (and its Log4j rule set) is Phase 46; the origin is static files only.
  #checkov:skip=CKV_AWS_310:One static origin; failover adds nothing for a rebuildable SPA.
  #checkov:skip=CKV_AWS_374:No geo restriction: the console is used wherever operators are.
  #checkov:skip=CKV2_AWS_42:A custom certificate is optional (console_certificate_arn); without one CloudFront's own is used.
  #checkov:skip=CKV2_AWS_32:The AWS-managed Managed-SecurityHeadersPolicy is attached by its id (var.cloudfront_response_headers_policy_id); checkov recognises only a policy resource or data source.
  #checkov:skip=CKV_AWS_174:With console_certificate_arn set, TLSv1.2_2021 is enforced; CloudFront's default certificate cannot pin a minimum version.
  enabled             = true
  is_ipv6_enabled     = true
  comment             = "${local.name} console"
  default_root_object = "index.html"
  price_class         = "PriceClass_100"
  aliases             = var.console_domain_name != "" ? [var.console_domain_name] : []

  origin {
    domain_name              = aws_s3_bucket.console.bucket_regional_domain_name
    origin_id                = "console-s3"
    origin_access_control_id = aws_cloudfront_origin_access_control.console.id
  }

  default_cache_behavior {
    target_origin_id           = "console-s3"
    viewer_protocol_policy     = "redirect-to-https"
    allowed_methods            = ["GET", "HEAD", "OPTIONS"]
    cached_methods             = ["GET", "HEAD"]
    compress                   = true
    cache_policy_id            = var.cloudfront_cache_policy_id
    response_headers_policy_id = var.cloudfront_response_headers_policy_id
  }

  # Client-side routes: S3 answers 403 for keys that do not exist.
  custom_error_response {
    error_code            = 403
    response_code         = 200
    response_page_path    = "/index.html"
    error_caching_min_ttl = 10
  }

  custom_error_response {
    error_code            = 404
    response_code         = 200
    response_page_path    = "/index.html"
    error_caching_min_ttl = 10
  }

  restrictions {
    geo_restriction {
      restriction_type = "none"
    }
  }

  viewer_certificate {
    cloudfront_default_certificate = var.console_certificate_arn == ""
    acm_certificate_arn            = var.console_certificate_arn != "" ? var.console_certificate_arn : null
    ssl_support_method             = var.console_certificate_arn != "" ? "sni-only" : null
    minimum_protocol_version       = var.console_certificate_arn != "" ? "TLSv1.2_2021" : "TLSv1"
  }

  logging_config {
    bucket          = aws_s3_bucket.logs.bucket_domain_name
    prefix          = "cloudfront/"
    include_cookies = false
  }

  depends_on = [aws_s3_bucket_ownership_controls.logs]
}

resource "aws_s3_bucket_policy" "console" {
  bucket = aws_s3_bucket.console.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "CloudFrontReadsThroughOac"
        Effect    = "Allow"
        Principal = { Service = "cloudfront.amazonaws.com" }
        Action    = "s3:GetObject"
        Resource  = "${aws_s3_bucket.console.arn}/*"
        Condition = { StringEquals = { "AWS:SourceArn" = aws_cloudfront_distribution.console.arn } }
      },
      {
        Sid       = "TlsOnly"
        Effect    = "Deny"
        Principal = "*"
        Action    = "s3:*"
        Resource  = [aws_s3_bucket.console.arn, "${aws_s3_bucket.console.arn}/*"]
        Condition = { Bool = { "aws:SecureTransport" = "false" } }
      },
    ]
  })

  depends_on = [aws_s3_bucket_public_access_block.console]
}
