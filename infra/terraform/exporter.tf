# The exporter (services/exporter): a scheduled ECS task, `fleetpulse-exporter --once`, started by
# EventBridge Scheduler. Runs that overlap are harmless: a range is fixed in the database before
# its files are written and its object keys derive from it, so two runs write the same objects.
# Its own repository, log group, security group and roles live here, beside the five services'.

variable "export_schedule" {
  description = "EventBridge Scheduler expression for the exporter task"
  type        = string
  default     = "rate(15 minutes)"
}

resource "aws_ecr_repository" "exporter" {
  name                 = "${var.project}/exporter"
  image_tag_mutability = "IMMUTABLE"

  image_scanning_configuration {
    scan_on_push = true
  }

  encryption_configuration {
    encryption_type = "KMS"
    kms_key         = aws_kms_key.main.arn
  }
}

resource "aws_ecr_lifecycle_policy" "exporter" {
  repository = aws_ecr_repository.exporter.name
  policy = jsonencode({
    rules = [{
      rulePriority = 1
      description  = "Keep the 30 most recent images"
      selection    = { tagStatus = "any", countType = "imageCountMoreThan", countNumber = 30 }
      action       = { type = "expire" }
    }]
  })
}

resource "aws_cloudwatch_log_group" "exporter" {
  #checkov:skip=CKV_AWS_338:Dev landing zone keeps logs var.log_retention_days (30 by default) to bound cost; raise it for prod.
  name              = "/ecs/${local.name}/exporter"
  retention_in_days = var.log_retention_days
  kms_key_id        = local.logs_kms_key_arn
}

# Accepts nothing; talks HTTPS (S3, Secrets Manager, ECR) and PostgreSQL.
resource "aws_security_group" "exporter" {
  #checkov:skip=CKV2_AWS_5:Attached by the EventBridge Scheduler target's network configuration (below), which the graph check does not follow.
  name        = "${local.name}-exporter"
  description = "FleetPulse exporter tasks"
  vpc_id      = aws_vpc.main.id
  tags        = { Name = "${local.name}-exporter" }
}

resource "aws_vpc_security_group_egress_rule" "exporter_https" {
  security_group_id = aws_security_group.exporter.id
  description       = "HTTPS: S3, Secrets Manager, ECR"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

resource "aws_vpc_security_group_egress_rule" "exporter_database" {
  for_each          = toset(var.database_egress_cidrs)
  security_group_id = aws_security_group.exporter.id
  description       = "PostgreSQL to Timescale Cloud"
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = 5432
  to_port           = 5432
}

# Task role: write Parquet objects under the two dataset prefixes of the lake, encrypted with the
# platform key (S3 asks KMS for data keys on its behalf). No read, list or delete.
resource "aws_iam_role" "exporter" {
  name               = "${local.name}-exporter-task"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

resource "aws_iam_role_policy" "exporter" {
  name = "write-lake"
  role = aws_iam_role.exporter.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid    = "PutLakeObjects"
        Effect = "Allow"
        Action = ["s3:PutObject"]
        Resource = [
          "${aws_s3_bucket.lake.arn}/telemetry/*",
          "${aws_s3_bucket.lake.arn}/events/*",
        ]
      },
      {
        Sid      = "EncryptLakeObjects"
        Effect   = "Allow"
        Action   = ["kms:GenerateDataKey", "kms:Decrypt"]
        Resource = [aws_kms_key.main.arn]
        Condition = {
          StringEquals = { "kms:ViaService" = "s3.${local.region}.amazonaws.com" }
        }
      },
    ]
  })
}

resource "aws_ecs_task_definition" "exporter" {
  family                   = "${local.name}-exporter"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = 512
  memory                   = 2048
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.exporter.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  volume {
    name = "tmp"
  }

  container_definitions = jsonencode([{
    name                   = "exporter"
    image                  = "${aws_ecr_repository.exporter.repository_url}:${var.image_tag}"
    essential              = true
    command                = ["fleetpulse-exporter", "--once"]
    user                   = "10001:10001"
    readonlyRootFilesystem = true
    stopTimeout            = 30
    environment = [
      { name = "FLEETPULSE_LAKE_BUCKET", value = aws_s3_bucket.lake.id },
      { name = "FLEETPULSE_LOG_LEVEL", value = var.log_level },
      { name = "FLEETPULSE_HEALTH_PORT", value = "0" },
    ]
    secrets         = [{ name = "FLEETPULSE_DATABASE_URL", valueFrom = local.secret_arns.database_url }]
    mountPoints     = [{ sourceVolume = "tmp", containerPath = "/tmp", readOnly = false }]
    linuxParameters = { initProcessEnabled = true }
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.exporter.name
        awslogs-region        = local.region
        awslogs-stream-prefix = "exporter"
      }
    }
  }])
}

# EventBridge Scheduler may start exactly this task family and hand it exactly its two roles.
data "aws_iam_policy_document" "scheduler_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["scheduler.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "exporter_scheduler" {
  name               = "${local.name}-exporter-scheduler"
  assume_role_policy = data.aws_iam_policy_document.scheduler_assume.json
}

resource "aws_iam_role_policy" "exporter_scheduler" {
  name = "run-exporter"
  role = aws_iam_role.exporter_scheduler.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "RunExporterTask"
        Effect   = "Allow"
        Action   = ["ecs:RunTask"]
        Resource = ["arn:${local.partition}:ecs:${local.region}:${local.account_id}:task-definition/${aws_ecs_task_definition.exporter.family}:*"]
        Condition = {
          ArnEquals = { "ecs:cluster" = aws_ecs_cluster.main.arn }
        }
      },
      {
        Sid      = "DecryptScheduleWithPlatformKey"
        Effect   = "Allow"
        Action   = ["kms:Decrypt"]
        Resource = [aws_kms_key.main.arn]
      },
      {
        Sid      = "PassExporterRoles"
        Effect   = "Allow"
        Action   = ["iam:PassRole"]
        Resource = [aws_iam_role.execution.arn, aws_iam_role.exporter.arn]
        Condition = {
          StringEquals = { "iam:PassedToService" = "ecs-tasks.amazonaws.com" }
        }
      },
    ]
  })
}

resource "aws_scheduler_schedule" "exporter" {
  name                         = "${local.name}-exporter"
  description                  = "Export telemetry and the event log to the lake"
  schedule_expression          = var.export_schedule
  schedule_expression_timezone = "UTC"
  kms_key_arn                  = aws_kms_key.main.arn

  flexible_time_window {
    mode = "OFF"
  }

  target {
    arn      = aws_ecs_cluster.main.arn
    role_arn = aws_iam_role.exporter_scheduler.arn

    ecs_parameters {
      task_definition_arn = aws_ecs_task_definition.exporter.arn_without_revision
      launch_type         = "FARGATE"
      task_count          = 1

      network_configuration {
        subnets          = aws_subnet.private[*].id
        security_groups  = [aws_security_group.exporter.id]
        assign_public_ip = false
      }
    }

    retry_policy {
      maximum_retry_attempts       = 2
      maximum_event_age_in_seconds = 600
    }
  }
}
