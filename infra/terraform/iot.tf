# Optional AWS IoT Core path (var.enable_iot_core). Devices authenticate with X.509
# certificates attached to a thing; the policy uses thing variables so a certificate can only
# connect as its own thing and publish under its own tenant/{t}/device/{d}/ topics.
#
# Thing naming contract with provision_api's IotCoreCredentialIssuer: thing name
# "{tenant_id}:{device_id}" (":" cannot occur in ids), attributes tenant_id and device_id,
# MQTT client id = thing name. The certificate's private key is returned once by
# CreateKeysAndCertificate: the API hands it to the caller and keeps a copy in Secrets Manager
# under "<name>/devices/{tenant}/{device}" (it is never derivable later, unlike the PEM).
#
# A topic rule forwards telemetry and heartbeats to the ingest queue, so the ingest service reads
# the same pipeline as with Mosquitto. SQS message body:
#   {"topic": "...", "payload_b64": "<base64 of the MQTT payload>", "received_at_ms": 1700000000000}

locals {
  iot_enabled = var.enable_iot_core ? 1 : 0
  iot_prefix  = "arn:${local.partition}:iot:${local.region}:${local.account_id}"
  iot_topic   = "tenant/$${iot:Connection.Thing.Attributes[tenant_id]}/device/$${iot:Connection.Thing.Attributes[device_id]}"

  iot_provisioning_statements = [
    {
      Sid    = "ProvisionDeviceThings"
      Effect = "Allow"
      Action = [
        "iot:CreateThing", "iot:DescribeThing", "iot:UpdateThing", "iot:DeleteThing",
        "iot:AttachThingPrincipal", "iot:DetachThingPrincipal", "iot:ListThingPrincipals",
      ]
      Resource = ["${local.iot_prefix}:thing/*"]
    },
    {
      Sid      = "ManageDeviceCertificates"
      Effect   = "Allow"
      Action   = ["iot:UpdateCertificate", "iot:DeleteCertificate", "iot:DescribeCertificate"]
      Resource = ["${local.iot_prefix}:cert/*"]
    },
    {
      Sid      = "AttachDevicePolicy"
      Effect   = "Allow"
      Action   = ["iot:AttachPolicy", "iot:DetachPolicy"]
      Resource = ["${local.iot_prefix}:policy/${local.name}-device"]
    },
    {
      # Neither action supports resource-level permissions.
      Sid      = "CreateCertificatesAndFindEndpoint"
      Effect   = "Allow"
      Action   = ["iot:CreateKeysAndCertificate", "iot:DescribeEndpoint"]
      Resource = ["*"]
    },
    {
      Sid    = "KeepDevicePrivateKeys"
      Effect = "Allow"
      Action = [
        "secretsmanager:CreateSecret", "secretsmanager:PutSecretValue",
        "secretsmanager:GetSecretValue", "secretsmanager:DeleteSecret", "secretsmanager:TagResource",
      ]
      Resource = ["arn:${local.partition}:secretsmanager:${local.region}:${local.account_id}:secret:${local.name}/devices/*"]
    },
  ]
}

resource "aws_iot_policy" "device" {
  count = local.iot_enabled
  name  = "${local.name}-device"

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Effect    = "Allow"
        Action    = "iot:Connect"
        Resource  = "${local.iot_prefix}:client/$${iot:Connection.Thing.ThingName}"
        Condition = { Bool = { "iot:Connection.Thing.IsAttached" = "true" } }
      },
      {
        Effect   = "Allow"
        Action   = "iot:Publish"
        Resource = "${local.iot_prefix}:topic/${local.iot_topic}/*"
      },
      {
        Effect   = "Allow"
        Action   = ["iot:Subscribe"]
        Resource = "${local.iot_prefix}:topicfilter/${local.iot_topic}/*"
      },
      {
        Effect   = "Allow"
        Action   = ["iot:Receive"]
        Resource = "${local.iot_prefix}:topic/${local.iot_topic}/*"
      },
    ]
  })
}

resource "aws_iam_role" "iot_rule" {
  count = local.iot_enabled
  name  = "${local.name}-iot-to-ingest"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "iot.amazonaws.com" }
      Action    = "sts:AssumeRole"
      Condition = { StringEquals = { "aws:SourceAccount" = local.account_id } }
    }]
  })
}

resource "aws_iam_role_policy" "iot_rule" {
  count = local.iot_enabled
  name  = "send-to-ingest-queue"
  role  = aws_iam_role.iot_rule[0].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Effect   = "Allow"
        Action   = ["sqs:SendMessage"]
        Resource = [aws_sqs_queue.main["ingest"].arn, aws_sqs_queue.dlq["ingest"].arn]
      },
      {
        Effect   = "Allow"
        Action   = ["kms:GenerateDataKey", "kms:Decrypt"]
        Resource = [aws_kms_key.main.arn]
      },
    ]
  })
}

resource "aws_iot_topic_rule" "to_ingest" {
  for_each    = var.enable_iot_core ? toset(["telemetry", "heartbeat"]) : toset([])
  name        = replace("${local.name}_${each.key}_to_ingest", "-", "_")
  description = "Device ${each.key} into the ${aws_sqs_queue.main["ingest"].name} queue"
  enabled     = true
  sql_version = "2016-03-23"
  sql         = "SELECT topic() AS topic, encode(*, 'base64') AS payload_b64, timestamp() AS received_at_ms FROM 'tenant/+/device/+/${each.key}'"

  sqs {
    queue_url  = aws_sqs_queue.main["ingest"].id
    role_arn   = aws_iam_role.iot_rule[0].arn
    use_base64 = false
  }

  # A message the rule cannot deliver is kept, not lost: it lands in the ingest DLQ.
  error_action {
    sqs {
      queue_url  = aws_sqs_queue.dlq["ingest"].id
      role_arn   = aws_iam_role.iot_rule[0].arn
      use_base64 = false
    }
  }
}

data "aws_iot_endpoint" "data" {
  count         = local.iot_enabled
  endpoint_type = "iot:Data-ATS"
}
