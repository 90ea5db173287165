# Log groups (retention set, KMS optional) and alarms to the alarm topic: any message in a
# dead-letter queue, any unhealthy target behind the ALB or NLB.

locals {
  logs_kms_key_arn = var.encrypt_logs_with_kms ? aws_kms_key.main.arn : null
}

resource "aws_cloudwatch_log_group" "service" {
  #checkov:skip=CKV_AWS_338:Dev landing zone keeps logs var.log_retention_days (30 by default) to bound cost; raise it for prod.
  for_each          = local.services
  name              = "/ecs/${local.name}/${replace(each.key, "_", "-")}"
  retention_in_days = var.log_retention_days
  kms_key_id        = local.logs_kms_key_arn
}

resource "aws_cloudwatch_log_group" "platform" {
  #checkov:skip=CKV_AWS_338:Dev landing zone keeps logs var.log_retention_days (30 by default) to bound cost; raise it for prod.
  for_each          = local.platform_containers
  name              = "/ecs/${local.name}/${each.key}"
  retention_in_days = var.log_retention_days
  kms_key_id        = local.logs_kms_key_arn
}

resource "aws_cloudwatch_log_group" "migrate" {
  #checkov:skip=CKV_AWS_338:Dev landing zone keeps logs var.log_retention_days (30 by default) to bound cost; raise it for prod.
  name              = "/ecs/${local.name}/migrate"
  retention_in_days = var.log_retention_days
  kms_key_id        = local.logs_kms_key_arn
}

resource "aws_cloudwatch_log_group" "vpc_flow" {
  #checkov:skip=CKV_AWS_338:Dev landing zone keeps logs var.log_retention_days (30 by default) to bound cost; raise it for prod.
  name              = "/vpc/${local.name}/flow-logs"
  retention_in_days = var.log_retention_days
  kms_key_id        = local.logs_kms_key_arn
}

resource "aws_cloudwatch_metric_alarm" "dlq_depth" {
  for_each            = local.queues
  alarm_name          = "${local.name}-dlq-${each.key}"
  alarm_description   = "Messages dead-lettered from ${aws_sqs_queue.main[each.key].name}: inspect and redrive."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.dlq[each.key].name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}

locals {
  alb_target_groups = {
    api      = aws_lb_target_group.api
    keycloak = aws_lb_target_group.keycloak
  }
}

resource "aws_cloudwatch_metric_alarm" "alb_unhealthy_targets" {
  for_each            = local.alb_target_groups
  alarm_name          = "${local.name}-unhealthy-${each.key}"
  alarm_description   = "Unhealthy ${each.key} targets behind the ALB."
  namespace           = "AWS/ApplicationELB"
  metric_name         = "UnHealthyHostCount"
  dimensions          = { LoadBalancer = aws_lb.main.arn_suffix, TargetGroup = each.value.arn_suffix }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 3
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}

resource "aws_cloudwatch_metric_alarm" "nlb_unhealthy_targets" {
  alarm_name          = "${local.name}-unhealthy-mosquitto"
  alarm_description   = "Unhealthy Mosquitto targets behind the MQTT NLB."
  namespace           = "AWS/NetworkELB"
  metric_name         = "UnHealthyHostCount"
  dimensions          = { LoadBalancer = aws_lb.mqtt.arn_suffix, TargetGroup = aws_lb_target_group.mqtt.arn_suffix }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 3
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}

# No healthy API target at all is an outage, not a degradation.
resource "aws_cloudwatch_metric_alarm" "api_no_healthy_targets" {
  alarm_name          = "${local.name}-api-down"
  alarm_description   = "No healthy provision_api target behind the ALB."
  namespace           = "AWS/ApplicationELB"
  metric_name         = "HealthyHostCount"
  dimensions          = { LoadBalancer = aws_lb.main.arn_suffix, TargetGroup = aws_lb_target_group.api.arn_suffix }
  statistic           = "Minimum"
  period              = 60
  evaluation_periods  = 2
  threshold           = 1
  comparison_operator = "LessThanThreshold"
  treat_missing_data  = "breaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}
