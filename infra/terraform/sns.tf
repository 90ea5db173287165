# {prefix}domain-events: the outbox relay publishes every committed event here with message
# attributes `type` and `tenant_id`. Filtered, raw subscriptions feed the consumers' queues.

locals {
  domain_event_subscriptions = {
    dispatcher = { type = [{ prefix = "Alert" }] } # AlertOpened, AlertResolved, ...
    deliveries = { type = ["DeliveryScheduled"] }  # the delivery worker's jobs
  }
}

resource "aws_sns_topic" "domain_events" {
  name              = "${local.queue_prefix}domain-events"
  kms_master_key_id = aws_kms_key.main.arn
}

resource "aws_sns_topic_subscription" "domain_events" {
  for_each             = local.domain_event_subscriptions
  topic_arn            = aws_sns_topic.domain_events.arn
  protocol             = "sqs"
  endpoint             = aws_sqs_queue.main[each.key].arn
  raw_message_delivery = true
  filter_policy_scope  = "MessageAttributes"
  filter_policy        = jsonencode(each.value)

  depends_on = [aws_sqs_queue_policy.from_domain_events]
}

resource "aws_sns_topic" "alarms" {
  name              = "${local.name}-alarms"
  kms_master_key_id = aws_kms_key.main.arn
}

resource "aws_sns_topic_subscription" "alarm_email" {
  count     = var.alarm_email == "" ? 0 : 1
  topic_arn = aws_sns_topic.alarms.arn
  protocol  = "email"
  endpoint  = var.alarm_email
}
