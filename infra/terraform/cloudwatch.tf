# Log groups (retention set, KMS optional), the platform dashboard, and alarms to the alarm topic:
# backlog and age of the oldest message in each work queue, any message in a
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

# Work-queue backlog: the DLQ alarms say something failed; these say the platform is falling
# behind (a stopped consumer, a slow database) before anything is dead-lettered.
resource "aws_cloudwatch_metric_alarm" "queue_depth" {
  for_each            = local.queues
  alarm_name          = "${local.name}-queue-depth-${each.key}"
  alarm_description   = "More than ${var.queue_depth_alarm_messages} visible messages in ${aws_sqs_queue.main[each.key].name} for 10 minutes: its consumer is behind or stopped."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.main[each.key].name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 2
  threshold           = var.queue_depth_alarm_messages
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}

resource "aws_cloudwatch_metric_alarm" "queue_oldest_message_age" {
  for_each            = local.queues
  alarm_name          = "${local.name}-queue-age-${each.key}"
  alarm_description   = "The oldest message in ${aws_sqs_queue.main[each.key].name} is older than ${var.queue_age_alarm_seconds}s: work is waiting."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateAgeOfOldestMessage"
  dimensions          = { QueueName = aws_sqs_queue.main[each.key].name }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 5
  threshold           = var.queue_age_alarm_seconds
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
}

# One dashboard for the platform: queue depth and age per work queue, DLQ depth, healthy
# targets, running tasks per service. Widgets derive from local.queues and local.services, so
# a new queue or service appears here without editing this file.
locals {
  dashboard_queue_metrics = [for q in keys(local.queues) : ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", aws_sqs_queue.main[q].name]]
  dashboard_age_metrics   = [for q in keys(local.queues) : ["AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", aws_sqs_queue.main[q].name]]
  dashboard_dlq_metrics   = [for q in keys(local.queues) : ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", aws_sqs_queue.dlq[q].name]]
  dashboard_task_metrics = concat(
    [for svc in keys(local.services) : ["ECS/ContainerInsights", "RunningTaskCount", "ClusterName", aws_ecs_cluster.main.name, "ServiceName", aws_ecs_service.service[svc].name]],
    [
      ["ECS/ContainerInsights", "RunningTaskCount", "ClusterName", aws_ecs_cluster.main.name, "ServiceName", aws_ecs_service.mosquitto.name],
      ["ECS/ContainerInsights", "RunningTaskCount", "ClusterName", aws_ecs_cluster.main.name, "ServiceName", aws_ecs_service.keycloak.name],
    ],
  )
  dashboard_widgets = [
    { title = "Work queue depth (visible messages)", metrics = local.dashboard_queue_metrics, stat = "Maximum" },
    { title = "Age of oldest message (s)", metrics = local.dashboard_age_metrics, stat = "Maximum" },
    { title = "Dead-letter queue depth", metrics = local.dashboard_dlq_metrics, stat = "Maximum" },
    { title = "Running tasks", metrics = local.dashboard_task_metrics, stat = "Average" },
    {
      title = "Healthy targets"
      stat  = "Minimum"
      metrics = [
        ["AWS/ApplicationELB", "HealthyHostCount", "TargetGroup", aws_lb_target_group.api.arn_suffix, "LoadBalancer", aws_lb.main.arn_suffix],
        ["AWS/ApplicationELB", "HealthyHostCount", "TargetGroup", aws_lb_target_group.keycloak.arn_suffix, "LoadBalancer", aws_lb.main.arn_suffix],
        ["AWS/NetworkELB", "HealthyHostCount", "TargetGroup", aws_lb_target_group.mqtt.arn_suffix, "LoadBalancer", aws_lb.mqtt.arn_suffix],
      ]
    },
  ]
}

resource "aws_cloudwatch_dashboard" "platform" {
  dashboard_name = local.name
  dashboard_body = jsonencode({
    widgets = [
      for i, w in local.dashboard_widgets : {
        type   = "metric"
        x      = (i % 2) * 12
        y      = floor(i / 2) * 6
        width  = 12
        height = 6
        properties = {
          title   = w.title
          region  = local.region
          stat    = w.stat
          period  = 60
          view    = "timeSeries"
          metrics = w.metrics
        }
      }
    ]
  })
}
