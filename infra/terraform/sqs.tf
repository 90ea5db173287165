# Work queues {prefix}ingest, {prefix}evaluator, {prefix}dispatcher, {prefix}deliveries, each
# with its own dead-letter queue and redrive policy, all encrypted with the platform key.

resource "aws_sqs_queue" "dlq" {
  for_each                          = local.queues
  name                              = "${local.queue_prefix}${each.key}-dlq"
  message_retention_seconds         = 1209600 # 14 days, the maximum: time to look before it is gone
  kms_master_key_id                 = aws_kms_key.main.arn
  kms_data_key_reuse_period_seconds = 3600
}

resource "aws_sqs_queue" "main" {
  for_each                          = local.queues
  name                              = "${local.queue_prefix}${each.key}"
  visibility_timeout_seconds        = each.value.visibility_timeout_seconds
  message_retention_seconds         = 345600 # 4 days
  receive_wait_time_seconds         = 20     # long polling: fewer empty receives, smaller bill
  kms_master_key_id                 = aws_kms_key.main.arn
  kms_data_key_reuse_period_seconds = 3600

  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dlq[each.key].arn
    maxReceiveCount     = each.value.max_receive_count
  })
}

# A DLQ accepts only the messages of its own queue. (moto ignores RedriveAllowPolicy, and the
# provider waits for it forever: plan-only under var.emulator.)
resource "aws_sqs_queue_redrive_allow_policy" "dlq" {
  for_each  = var.emulator ? {} : local.queues
  queue_url = aws_sqs_queue.dlq[each.key].id

  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.main[each.key].arn]
  })
}

# Queues fed by the domain-events topic accept messages from that topic only.
resource "aws_sqs_queue_policy" "from_domain_events" {
  for_each  = local.domain_event_subscriptions
  queue_url = aws_sqs_queue.main[each.key].id

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "DomainEventsTopic"
      Effect    = "Allow"
      Principal = { Service = "sns.amazonaws.com" }
      Action    = "sqs:SendMessage"
      Resource  = aws_sqs_queue.main[each.key].arn
      Condition = { ArnEquals = { "aws:SourceArn" = aws_sns_topic.domain_events.arn } }
    }]
  })
}
