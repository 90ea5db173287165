# Public entry points. ALB: HTTPS only (HTTP redirects), /api/* to provision_api, /auth/* to
# Keycloak, invalid headers dropped. NLB: MQTT over TLS on 8883, terminated with ACM and
# forwarded to Mosquitto's plain listener inside the VPC.

resource "aws_lb" "main" {
  #checkov:skip=CKV2_AWS_28:WAF is Phase 46 (out of scope of the dev landing zone).
  name                       = "${local.name}-alb"
  load_balancer_type         = "application"
  internal                   = false
  subnets                    = aws_subnet.public[*].id
  security_groups            = [aws_security_group.alb.id]
  drop_invalid_header_fields = true
  enable_deletion_protection = var.deletion_protection
  idle_timeout               = 60

  access_logs {
    bucket  = aws_s3_bucket.logs.id
    prefix  = "alb"
    enabled = true
  }

  depends_on = [aws_s3_bucket_policy.logs]
}

resource "aws_lb_target_group" "api" {
  #checkov:skip=CKV_AWS_378:TLS ends at the ALB; targets are private tasks reachable from the ALB security group only.
  name                 = "${local.name}-api"
  port                 = local.services.provision_api.port
  protocol             = "HTTP"
  target_type          = "ip"
  vpc_id               = aws_vpc.main.id
  deregistration_delay = 30

  health_check {
    path                = "/readyz"
    matcher             = "200"
    interval            = 15
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }
}

resource "aws_lb_target_group" "keycloak" {
  #checkov:skip=CKV_AWS_378:TLS ends at the ALB; targets are private tasks reachable from the ALB security group only.
  name                 = "${local.name}-keycloak"
  port                 = 8080
  protocol             = "HTTP"
  target_type          = "ip"
  vpc_id               = aws_vpc.main.id
  deregistration_delay = 30

  # Keycloak reports readiness (database reachable) on its management port.
  health_check {
    path                = "/auth/health/ready"
    port                = "9000"
    matcher             = "200"
    interval            = 30
    timeout             = 10
    healthy_threshold   = 2
    unhealthy_threshold = 5
  }

  stickiness {
    type    = "lb_cookie"
    enabled = true
  }
}

resource "aws_lb_listener" "http" {
  load_balancer_arn = aws_lb.main.arn
  port              = 80
  protocol          = "HTTP"

  default_action {
    type = "redirect"
    redirect {
      protocol    = "HTTPS"
      port        = "443"
      status_code = "HTTP_301"
    }
  }
}

resource "aws_lb_listener" "https" {
  load_balancer_arn = aws_lb.main.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = var.certificate_arn

  lifecycle {
    precondition {
      condition     = local.api_name_covered
      error_message = "certificate_arn holds ${jsonencode(var.certificate_domains)} (certificate_domains), which does not cover domain_name ${var.domain_name}: browsers, the API's OIDC issuer and Keycloak would all fail TLS."
    }
  }

  default_action {
    type = "fixed-response"
    fixed_response {
      # The provider accepts text/plain, text/css, text/html, application/javascript and
      # application/json only (not application/problem+json).
      content_type = "application/json"
      message_body = "{\"title\":\"Not Found\",\"status\":404}"
      status_code  = "404"
    }
  }
}

resource "aws_lb_listener_rule" "api" {
  listener_arn = aws_lb_listener.https.arn
  priority     = 10

  action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.api.arn
  }

  condition {
    path_pattern {
      values = ["/api/*", "/openapi.json"]
    }
  }
}

resource "aws_lb_listener_rule" "keycloak" {
  listener_arn = aws_lb_listener.https.arn
  priority     = 20

  action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.keycloak.arn
  }

  condition {
    path_pattern {
      values = ["/auth/*"]
    }
  }
}

# Keycloak's health and metrics endpoints are for the load balancer and operators, not the internet.
resource "aws_lb_listener_rule" "keycloak_internal_block" {
  listener_arn = aws_lb_listener.https.arn
  priority     = 15

  action {
    type = "fixed-response"
    fixed_response {
      content_type = "text/plain"
      message_body = "Not Found"
      status_code  = "404"
    }
  }

  condition {
    path_pattern {
      values = ["/auth/metrics*", "/auth/health*"]
    }
  }
}

resource "aws_lb" "mqtt" {
  name                             = "${local.name}-mqtt"
  load_balancer_type               = "network"
  internal                         = false
  subnets                          = aws_subnet.public[*].id
  security_groups                  = [aws_security_group.nlb.id]
  enable_deletion_protection       = var.deletion_protection
  enable_cross_zone_load_balancing = true

  access_logs {
    bucket  = aws_s3_bucket.logs.id
    prefix  = "nlb"
    enabled = true
  }

  depends_on = [aws_s3_bucket_policy.logs]
}

resource "aws_lb_target_group" "mqtt" {
  name                 = "${local.name}-mqtt"
  port                 = 1883
  protocol             = "TCP"
  target_type          = "ip"
  vpc_id               = aws_vpc.main.id
  deregistration_delay = 30

  health_check {
    protocol            = "TCP"
    interval            = 30
    healthy_threshold   = 3
    unhealthy_threshold = 3
  }
}

resource "aws_lb_listener" "mqtts" {
  load_balancer_arn = aws_lb.mqtt.arn
  port              = 8883
  protocol          = "TLS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = var.mqtt_certificate_arn != "" ? var.mqtt_certificate_arn : var.certificate_arn
  alpn_policy       = "None"

  lifecycle {
    precondition {
      condition     = var.mqtt_certificate_arn == "" || length(var.mqtt_certificate_domains) > 0
      error_message = "mqtt_certificate_arn is set: list its names in mqtt_certificate_domains."
    }
    precondition {
      condition     = local.mqtt_name_covered
      error_message = "The MQTT listener's certificate holds ${jsonencode(local.mqtt_certificate_domains)}, which does not cover mqtt_domain_name ${var.mqtt_domain_name}: every device would fail TLS."
    }
  }

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.mqtt.arn
  }
}

# A certificate name covers a host when equal, or when it is "*.<rest>" and the host is one
# label followed by ".<rest>" (a wildcard matches exactly one label).
locals {
  mqtt_certificate_domains = var.mqtt_certificate_arn != "" ? var.mqtt_certificate_domains : var.certificate_domains
  api_name_covered = anytrue([
    for d in var.certificate_domains : d == var.domain_name || (startswith(d, "*.") && can(regex("^[a-z0-9-]+\\.", var.domain_name)) && trimprefix(d, "*.") == join(".", slice(split(".", var.domain_name), 1, length(split(".", var.domain_name)))))
  ])
  mqtt_name_covered = anytrue([
    for d in local.mqtt_certificate_domains : d == var.mqtt_domain_name || (startswith(d, "*.") && trimprefix(d, "*.") == join(".", slice(split(".", var.mqtt_domain_name), 1, length(split(".", var.mqtt_domain_name)))))
  ])
}

# --- Access-log bucket (ALB, NLB, CloudFront, S3 server access logs) ---------------------

data "aws_elb_service_account" "main" {}

resource "aws_s3_bucket" "logs" {
  #checkov:skip=CKV_AWS_18:This is the access-log bucket itself.
  #checkov:skip=CKV_AWS_144:Cross-region replication of dev access logs is not worth its cost.
  #checkov:skip=CKV_AWS_145:ELB access logs support only SSE-S3 (AES256), not KMS.
  #checkov:skip=CKV2_AWS_62:Nothing reacts to new log objects.
  bucket_prefix = "${local.name}-logs-"
  # Logs survive `terraform destroy` in AWS. Under var.emulator (moto writes an access-log
  # object for every request to the console bucket, destroy's own included) they do not.
  force_destroy = var.emulator
}

resource "aws_s3_bucket_ownership_controls" "logs" {
  #checkov:skip=CKV2_AWS_65:CloudFront standard logging delivers through the awslogsdelivery ACL; the bucket stays private (public access block).
  bucket = aws_s3_bucket.logs.id
  rule {
    # CloudFront standard logging writes with ACLs.
    object_ownership = "BucketOwnerPreferred"
  }
}

resource "aws_s3_bucket_public_access_block" "logs" {
  bucket                  = aws_s3_bucket.logs.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_server_side_encryption_configuration" "logs" {
  bucket = aws_s3_bucket.logs.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_versioning" "logs" {
  bucket = aws_s3_bucket.logs.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "logs" {
  bucket = aws_s3_bucket.logs.id

  rule {
    id     = "expire-access-logs"
    status = "Enabled"
    filter {}
    expiration {
      days = 90
    }
    noncurrent_version_expiration {
      noncurrent_days = 7
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
}

resource "aws_s3_bucket_policy" "logs" {
  bucket = aws_s3_bucket.logs.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = concat([
      {
        Sid       = "AlbAccessLogs"
        Effect    = "Allow"
        Principal = { AWS = data.aws_elb_service_account.main.arn }
        Action    = "s3:PutObject"
        Resource  = "${aws_s3_bucket.logs.arn}/alb/AWSLogs/${local.account_id}/*"
      },
      {
        Sid       = "NlbAccessLogs"
        Effect    = "Allow"
        Principal = { Service = "delivery.logs.amazonaws.com" }
        Action    = "s3:PutObject"
        Resource  = "${aws_s3_bucket.logs.arn}/nlb/AWSLogs/${local.account_id}/*"
        Condition = { StringEquals = { "s3:x-amz-acl" = "bucket-owner-full-control", "aws:SourceAccount" = local.account_id } }
      },
      {
        Sid       = "NlbAclCheck"
        Effect    = "Allow"
        Principal = { Service = "delivery.logs.amazonaws.com" }
        Action    = "s3:GetBucketAcl"
        Resource  = aws_s3_bucket.logs.arn
        Condition = { StringEquals = { "aws:SourceAccount" = local.account_id } }
      },
      {
        # S3 server access logging of the console bucket (cloudfront.tf). The logging service
        # writes as logging.s3.amazonaws.com; with ownership controls other than
        # BucketOwnerEnforced only a bucket policy (not the log-delivery ACL) is honoured here.
        # One statement per source bucket and prefix (the lake's are added below).
        Sid       = "S3ServerAccessLogs"
        Effect    = "Allow"
        Principal = { Service = "logging.s3.amazonaws.com" }
        Action    = "s3:PutObject"
        Resource  = "${aws_s3_bucket.logs.arn}/${local.console_access_log_prefix}*"
        Condition = {
          ArnLike      = { "aws:SourceArn" = aws_s3_bucket.console.arn }
          StringEquals = { "aws:SourceAccount" = local.account_id }
        }
      },
      ], [
      # S3 server access logs of the lake and Athena results buckets (lake.tf)
      for key, bucket in local.analytics_buckets : {
        Sid       = "S3ServerAccessLogs${replace(title(replace(key, "_", " ")), " ", "")}"
        Effect    = "Allow"
        Principal = { Service = "logging.s3.amazonaws.com" }
        Action    = "s3:PutObject"
        Resource  = "${aws_s3_bucket.logs.arn}/s3-${replace(key, "_", "-")}/*"
        Condition = {
          ArnLike      = { "aws:SourceArn" = "arn:${local.partition}:s3:::${bucket}" }
          StringEquals = { "aws:SourceAccount" = local.account_id }
        }
      }
      ], [
      # last: moto's S3 logging check reads statements in order and fails on a string Principal
      {
        Sid       = "TlsOnly"
        Effect    = "Deny"
        Principal = "*"
        Action    = "s3:*"
        Resource  = [aws_s3_bucket.logs.arn, "${aws_s3_bucket.logs.arn}/*"]
        Condition = { Bool = { "aws:SecureTransport" = "false" } }
      },
    ])
  })

  depends_on = [aws_s3_bucket_public_access_block.logs]
}
