# Optional AWS IoT Core path (var.enable_iot_core). Devices authenticate with X.509
# certificates attached to a thing; the policy uses thing variables so a certificate can only
# connect as its own thing and publish under its own tenant/{t}/device/{d}/ topics.
#
# Thing naming contract with provision_api's IotCoreCredentialIssuer: thing name
# "{tenant_id}:{device_id}" (":" cannot occur in ids), attributes tenant_id and device_id,
# MQTT client id = thing name. The certificate's private key is returned once by
# CreateKeysAndCertificate and handed to the caller only: no copy is kept (a store of every
# device's key would be one breach away from every device; a lost key is replaced with the
# rotate-credentials endpoint, which issues a new certificate and deactivates the old).
# Devices are told the account's ATS data endpoint (FLEETPULSE_MQTT_PUBLIC_HOST, port 8883).
#
# The API's role allows exactly the IoT calls IotCoreCredentialIssuer makes
# (services/provision_api/.../credentials/iot_core.py; tests/infra cross-checks both ways).
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
        "iot:CreateThing", "iot:AttachThingPrincipal", "iot:DetachThingPrincipal",
        "iot:ListThingPrincipals",
      ]
      Resource = ["${local.iot_prefix}:thing/*"]
    },
    {
      Sid      = "DeactivateDeviceCertificates"
      Effect   = "Allow"
      Action   = ["iot:UpdateCertificate"]
      Resource = ["${local.iot_prefix}:cert/*"]
    },
    {
      # The issuer creates the device policy if missing (Terraform creates it first, so it
      # answers ResourceAlreadyExists) and attaches it to each new certificate.
      Sid      = "DevicePolicy"
      Effect   = "Allow"
      Action   = ["iot:CreatePolicy", "iot:AttachPolicy"]
      Resource = ["${local.iot_prefix}:policy/${local.name}-device", "${local.iot_prefix}:cert/*"]
    },
    {
      # Neither action supports resource-level permissions (ListThings: readiness probe).
      Sid      = "CreateCertificatesAndProbe"
      Effect   = "Allow"
      Action   = ["iot:CreateKeysAndCertificate", "iot:ListThings"]
      Resource = ["*"]
    },
  ]
}

# moto has no IoT tagging API (the provider retries ListTagsForResource forever): the policy and
# the topic rules are plan-only under var.emulator.
resource "aws_iot_policy" "device" {
  count = var.emulator ? 0 : local.iot_enabled
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
  for_each    = var.enable_iot_core && !var.emulator ? toset(["telemetry", "heartbeat"]) : toset([])
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
