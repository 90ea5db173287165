output "alb_url" {
  description = "Public base URL of the platform (API under /api/v1, Keycloak under /auth)."
  value       = local.public_base_url
}

output "alb_dns_name" {
  description = "ALB DNS name: point domain_name's CNAME here."
  value       = aws_lb.main.dns_name
}

output "mqtt_nlb_dns_name" {
  description = "MQTT NLB DNS name: point mqtt_domain_name's CNAME here."
  value       = aws_lb.mqtt.dns_name
}

output "mqtt_endpoint" {
  description = "Devices connect here with MQTT over TLS (mqtts://...:8883): the IoT Core data endpoint with enable_iot_core, else mqtt_domain_name."
  value       = "mqtts://${local.mqtt_public_host}:8883"
}

output "keycloak_smoke_client_secret_arn" {
  description = "Client-credentials secret of the deploy smoke (GitHub variable SMOKE_CLIENT_SECRET_ARN)."
  value       = aws_secretsmanager_secret.keycloak_client["smoke"].arn
}

output "oidc_issuer" {
  description = "Issuer of the platform's tokens (Keycloak realm)."
  value       = local.oidc_issuer
}

output "iot_endpoint" {
  description = "AWS IoT Core data endpoint (when enable_iot_core)."
  value       = var.enable_iot_core ? data.aws_iot_endpoint.data[0].endpoint_address : null
}

output "cloudfront_url" {
  description = "Console SPA URL."
  value       = "https://${var.console_domain_name != "" ? var.console_domain_name : aws_cloudfront_distribution.console.domain_name}"
}

output "console_distribution_id" {
  description = "CloudFront distribution of the console (deploy.yml invalidates it)."
  value       = aws_cloudfront_distribution.console.id
}

output "console_bucket" {
  description = "S3 bucket to upload the console build into."
  value       = aws_s3_bucket.console.id
}

output "ecr_repository_urls" {
  description = "ECR repository URL per service."
  value       = { for svc, repo in aws_ecr_repository.service : svc => repo.repository_url }
}

output "ecs_cluster_name" {
  description = "ECS cluster (GitHub variable ECS_CLUSTER)."
  value       = aws_ecs_cluster.main.name
}

output "ecs_service_names" {
  description = "ECS service and task-definition family per service."
  value       = { for svc, s in aws_ecs_service.service : svc => s.name }
}

output "migrate_task_definition_family" {
  description = "Task definition family of the one-shot migrator."
  value       = aws_ecs_task_definition.migrate.family
}

output "migrate_network_configuration" {
  description = "awsvpcConfiguration for `aws ecs run-task` of the migrator (GitHub variable MIGRATE_NETWORK_CONFIGURATION)."
  value = jsonencode({
    awsvpcConfiguration = {
      subnets        = aws_subnet.private[*].id
      securityGroups = [aws_security_group.service["ingest"].id]
      assignPublicIp = "DISABLED"
    }
  })
}

output "github_deploy_role_arn" {
  description = "Role deploy.yml assumes through OIDC (GitHub variable AWS_DEPLOY_ROLE_ARN)."
  value       = var.github_repository == "" ? null : aws_iam_role.deploy[0].arn
}

output "database_url_secret_arn" {
  description = "Put the Timescale Cloud connection string into this secret if var.database_url was not given."
  value       = aws_secretsmanager_secret.database_url.arn
}

output "alarm_topic_arn" {
  description = "SNS topic receiving the platform's alarms."
  value       = aws_sns_topic.alarms.arn
}

output "queue_prefix" {
  description = "FLEETPULSE_QUEUE_PREFIX used by the services."
  value       = local.queue_prefix
}

output "github_plan_role_arn" {
  description = "Read-only role deploy.yml's terraform plan job assumes (GitHub variable AWS_PLAN_ROLE_ARN)."
  value       = length(aws_iam_role.plan) == 0 ? null : aws_iam_role.plan[0].arn
}

output "dashboard_name" {
  description = "CloudWatch dashboard of the platform."
  value       = aws_cloudwatch_dashboard.platform.dashboard_name
}
