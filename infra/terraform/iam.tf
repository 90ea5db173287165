# Roles. The execution role pulls images, writes logs and resolves the task definitions'
# `secrets`; each service has its own task role allowing only its own queues, the event topic
# when it publishes events, and its own secrets.

data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "execution" {
  name               = "${local.name}-ecs-execution"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

resource "aws_iam_role_policy_attachment" "execution_managed" {
  role       = aws_iam_role.execution.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

resource "aws_iam_role_policy" "execution_secrets" {
  name = "inject-secrets"
  role = aws_iam_role.execution.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "ReadTaskDefinitionSecrets"
        Effect   = "Allow"
        Action   = ["secretsmanager:GetSecretValue"]
        Resource = values(local.secret_arns)
      },
      {
        Sid      = "DecryptWithPlatformKey"
        Effect   = "Allow"
        Action   = ["kms:Decrypt"]
        Resource = [aws_kms_key.main.arn]
      },
    ]
  })
}

resource "aws_iam_role" "task" {
  for_each           = local.services
  name               = "${local.name}-${replace(each.key, "_", "-")}-task"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

locals {
  task_policy_statements = {
    for svc, cfg in local.services : svc => concat(
      length(cfg.consumes) == 0 ? [] : [{
        Sid    = "ConsumeOwnQueues"
        Effect = "Allow"
        Action = [
          "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
          "sqs:GetQueueUrl", "sqs:GetQueueAttributes",
        ]
        Resource = [for q in cfg.consumes : aws_sqs_queue.main[q].arn]
      }],
      length(cfg.sends_to) == 0 ? [] : [{
        Sid      = "SendToDownstreamQueues"
        Effect   = "Allow"
        Action   = ["sqs:SendMessage", "sqs:GetQueueUrl", "sqs:GetQueueAttributes"]
        Resource = [for q in cfg.sends_to : aws_sqs_queue.main[q].arn]
      }],
      cfg.publishes_events ? [{
        Sid      = "PublishDomainEvents"
        Effect   = "Allow"
        Action   = ["sns:Publish"]
        Resource = [aws_sns_topic.domain_events.arn]
      }] : [],
      [{
        # For `secretsmanager://` settings resolved by the service itself (ARCHITECTURE.md).
        Sid      = "ReadOwnSecrets"
        Effect   = "Allow"
        Action   = ["secretsmanager:GetSecretValue"]
        Resource = distinct([for env, ref in cfg.secrets : local.secret_arns[ref.secret]])
      }],
      [{
        Sid      = "UsePlatformKey"
        Effect   = "Allow"
        Action   = ["kms:Decrypt", "kms:GenerateDataKey"]
        Resource = [aws_kms_key.main.arn]
      }],
      svc == "delivery_worker" && length(var.delivery_sns_topic_arns) > 0 ? [{
        Sid      = "SnsChannelTopics"
        Effect   = "Allow"
        Action   = ["sns:Publish"]
        Resource = var.delivery_sns_topic_arns
      }] : [],
      svc == "provision_api" && var.enable_iot_core ? local.iot_provisioning_statements : [],
    )
  }
}

resource "aws_iam_role_policy" "task" {
  for_each = local.services
  name     = "${each.key}-least-privilege"
  role     = aws_iam_role.task[each.key].id
  policy = jsonencode({
    Version   = "2012-10-17"
    Statement = local.task_policy_statements[each.key]
  })
}

# VPC flow logs -> CloudWatch Logs.
resource "aws_iam_role" "flow_logs" {
  name = "${local.name}-vpc-flow-logs"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "vpc-flow-logs.amazonaws.com" }
      Action    = "sts:AssumeRole"
      Condition = { StringEquals = { "aws:SourceAccount" = local.account_id } }
    }]
  })
}

resource "aws_iam_role_policy" "flow_logs" {
  name = "write-flow-logs"
  role = aws_iam_role.flow_logs.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect   = "Allow"
      Action   = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
      Resource = ["${aws_cloudwatch_log_group.vpc_flow.arn}:*"]
    }]
  })
}

# RDS enhanced monitoring.
resource "aws_iam_role" "rds_monitoring" {
  name = "${local.name}-rds-monitoring"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "monitoring.rds.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  })
}

resource "aws_iam_role_policy_attachment" "rds_monitoring" {
  role       = aws_iam_role.rds_monitoring.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"
}

# GitHub Actions deploys (deploy.yml) through OIDC: no long-lived AWS keys in GitHub.
resource "aws_iam_openid_connect_provider" "github" {
  count           = var.github_repository != "" && var.create_github_oidc_provider ? 1 : 0
  url             = "https://token.actions.githubusercontent.com"
  client_id_list  = ["sts.amazonaws.com"]
  thumbprint_list = ["6938fd4d98bab03faadb97b34396831e3780aea1"]
}

locals {
  github_oidc_provider_arn = "arn:${local.partition}:iam::${local.account_id}:oidc-provider/token.actions.githubusercontent.com"
}

resource "aws_iam_role" "deploy" {
  #checkov:skip=CKV_AWS_393:sub is pinned to repo:<owner/name>:ref:refs/heads/main; checkov evaluates the empty default of var.github_repository, for which the role is not created (count = 0).
  count = var.github_repository == "" ? 0 : 1
  name  = "${local.name}-github-deploy"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Federated = local.github_oidc_provider_arn }
      Action    = "sts:AssumeRoleWithWebIdentity"
      Condition = {
        StringEquals = {
          "token.actions.githubusercontent.com:aud" = "sts.amazonaws.com"
          "token.actions.githubusercontent.com:sub" = "repo:${var.github_repository}:ref:refs/heads/main"
        }
      }
    }]
  })

  depends_on = [aws_iam_openid_connect_provider.github]
}

resource "aws_iam_role_policy" "deploy" {
  #checkov:skip=CKV_AWS_355:ecr:GetAuthorizationToken and ecs:(Describe|Register)TaskDefinition do not support resource-level permissions.
  #checkov:skip=CKV_AWS_290:Same actions; write access is limited by the statements scoped to our repositories and services.
  count = var.github_repository == "" ? 0 : 1
  name  = "deploy-services"
  role  = aws_iam_role.deploy[0].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "EcrLogin"
        Effect   = "Allow"
        Action   = ["ecr:GetAuthorizationToken", "ecs:DescribeTaskDefinition", "ecs:RegisterTaskDefinition"]
        Resource = "*"
      },
      {
        Sid    = "PushServiceImages"
        Effect = "Allow"
        Action = [
          "ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:CompleteLayerUpload",
          "ecr:InitiateLayerUpload", "ecr:PutImage", "ecr:UploadLayerPart", "ecr:DescribeImages",
        ]
        Resource = [for r in aws_ecr_repository.service : r.arn]
      },
      {
        Sid      = "DeployServices"
        Effect   = "Allow"
        Action   = ["ecs:UpdateService", "ecs:DescribeServices"]
        Resource = [for s in aws_ecs_service.service : s.id]
      },
      {
        Sid       = "RunMigrations"
        Effect    = "Allow"
        Action    = ["ecs:RunTask", "ecs:DescribeTasks"]
        Resource  = ["*"]
        Condition = { ArnEquals = { "ecs:cluster" = aws_ecs_cluster.main.arn } }
      },
      {
        # The smoke job's client-credentials token (fleetpulse-smoke) and its queue checks.
        Sid      = "SmokeClientSecret"
        Effect   = "Allow"
        Action   = ["secretsmanager:GetSecretValue"]
        Resource = [aws_secretsmanager_secret.keycloak_client["smoke"].arn]
      },
      {
        Sid       = "DecryptSmokeClientSecret"
        Effect    = "Allow"
        Action    = ["kms:Decrypt"]
        Resource  = [aws_kms_key.main.arn]
        Condition = { StringEquals = { "kms:ViaService" = "secretsmanager.${local.region}.amazonaws.com" } }
      },
      {
        Sid      = "VerifyQueueDepths"
        Effect   = "Allow"
        Action   = ["sqs:GetQueueAttributes", "sqs:GetQueueUrl"]
        Resource = concat([for q in aws_sqs_queue.main : q.arn], [for q in aws_sqs_queue.dlq : q.arn])
      },
      {
        Sid       = "PassTaskRoles"
        Effect    = "Allow"
        Action    = ["iam:PassRole"]
        Resource  = concat([aws_iam_role.execution.arn, aws_iam_role.migrate.arn], [for r in aws_iam_role.task : r.arn])
        Condition = { StringEquals = { "iam:PassedToService" = "ecs-tasks.amazonaws.com" } }
      },
    ]
  })
}

# The one-shot migrator (fleetpulse-migrate, run from the ingest image) needs no AWS API.
resource "aws_iam_role" "migrate" {
  name               = "${local.name}-migrate-task"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
}

# `terraform plan` for review in deploy.yml: read-only on the account, plus the state bucket
# (read, and the lock file that use_lockfile writes beside the state). Any workflow run of the
# repository's main branch may assume it (workflow_run events run in main's context).
resource "aws_iam_role" "plan" {
  #checkov:skip=CKV_AWS_393:sub is pinned to repo:<owner/name>:ref:refs/heads/main; checkov evaluates the empty default of var.github_repository, for which the role is not created (count = 0).
  count = var.github_repository == "" || var.terraform_state_bucket == "" ? 0 : 1
  name  = "${local.name}-github-plan"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Federated = local.github_oidc_provider_arn }
      Action    = "sts:AssumeRoleWithWebIdentity"
      Condition = {
        StringEquals = {
          "token.actions.githubusercontent.com:aud" = "sts.amazonaws.com"
          "token.actions.githubusercontent.com:sub" = "repo:${var.github_repository}:ref:refs/heads/main"
        }
      }
    }]
  })

  depends_on = [aws_iam_openid_connect_provider.github]
}

resource "aws_iam_role_policy_attachment" "plan_read_only" {
  count      = length(aws_iam_role.plan)
  role       = aws_iam_role.plan[0].name
  policy_arn = "arn:${local.partition}:iam::aws:policy/ReadOnlyAccess"
}

resource "aws_iam_role_policy" "plan" {
  count = length(aws_iam_role.plan)
  name  = "terraform-state-and-secret-versions"
  role  = aws_iam_role.plan[0].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "ReadState"
        Effect   = "Allow"
        Action   = ["s3:GetObject", "s3:ListBucket"]
        Resource = ["arn:${local.partition}:s3:::${var.terraform_state_bucket}", "arn:${local.partition}:s3:::${var.terraform_state_bucket}/*"]
      },
      {
        Sid      = "StateLockFile"
        Effect   = "Allow"
        Action   = ["s3:PutObject", "s3:DeleteObject"]
        Resource = ["arn:${local.partition}:s3:::${var.terraform_state_bucket}/*.tflock"]
      },
      {
        # Refreshing aws_secretsmanager_secret_version reads the version (values are write-only).
        Sid      = "RefreshSecretVersions"
        Effect   = "Allow"
        Action   = ["secretsmanager:GetSecretValue"]
        Resource = ["arn:${local.partition}:secretsmanager:${local.region}:${local.account_id}:secret:${local.name}/*"]
      },
      {
        Sid       = "DecryptForRefresh"
        Effect    = "Allow"
        Action    = ["kms:Decrypt"]
        Resource  = [aws_kms_key.main.arn]
        Condition = { StringEquals = { "kms:ViaService" = "secretsmanager.${local.region}.amazonaws.com" } }
      },
    ]
  })
}
