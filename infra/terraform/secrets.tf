# Every credential lives in Secrets Manager and reaches a container only through the task
# definition's `secrets` (valueFrom), resolved by the execution role at task start: never as
# plain environment, never baked into an image.
#
# Generated values come from Secrets Manager itself (the ephemeral
# aws_secretsmanager_random_password) and are written with write-only arguments
# (secret_string_wo): they never enter the plan or the state, and the AWS provider is the only
# provider needed. They are written again only when var.secrets_version changes: raising it
# rotates every generated value at once (README: Rotation). Keycloak's database password is
# RDS-managed (manage_master_user_password) and rotated by RDS.

# Timescale Cloud connection string. Terraform creates the secret; the value comes either from
# var.database_url or from `aws secretsmanager put-secret-value` (README). A task started before
# the value exists fails at start with a clear ResourceNotFoundException, not with a silent
# missing DATABASE_URL.
resource "aws_secretsmanager_secret" "database_url" {
  #checkov:skip=CKV2_AWS_57:External Timescale Cloud credential; rotated in Timescale Cloud, then put here (README).
  name                    = "${local.name}/database-url"
  description             = "Timescale Cloud connection string (FLEETPULSE_DATABASE_URL)"
  kms_key_id              = aws_kms_key.main.arn
  recovery_window_in_days = 7
}

resource "aws_secretsmanager_secret_version" "database_url" {
  count         = var.database_url == null ? 0 : 1
  secret_id     = aws_secretsmanager_secret.database_url.id
  secret_string = var.database_url
}


ephemeral "aws_secretsmanager_random_password" "generated" {
  for_each = toset(["mqtt_admin", "mqtt_ingest", "mqtt_delivery", "keycloak_admin", "keycloak_api_client", "keycloak_smoke_client"])
  # Letters and digits only: the values are embedded in mqtt:// URLs and Keycloak's realm file.
  password_length     = 40
  exclude_punctuation = true
  include_space       = false
}

# 43 base64 letters/digits + "=" decode to exactly 32 bytes (crypto.SecretBox's key size).
ephemeral "aws_secretsmanager_random_password" "webhook_encryption_key" {
  password_length     = 43
  exclude_punctuation = true
  include_space       = false
}

# Mosquitto dynamic-security admin: the broker's init container creates it; provision_api uses it
# (url key) to manage device credentials, the broker task to create the service users.
resource "aws_secretsmanager_secret" "mqtt_admin" {
  #checkov:skip=CKV2_AWS_57:Rotation needs a dynsec-aware rotation function; rotate by raising var.secrets_version (README).
  name                    = "${local.name}/mqtt-admin"
  description             = "Mosquitto dynamic-security admin (username, password, url)"
  kms_key_id              = aws_kms_key.main.arn
  recovery_window_in_days = 7
}

resource "aws_secretsmanager_secret_version" "mqtt_admin" {
  secret_id = aws_secretsmanager_secret.mqtt_admin.id
  secret_string_wo = jsonencode({
    username = "fleetpulse-admin"
    password = ephemeral.aws_secretsmanager_random_password.generated["mqtt_admin"].random_password
    url      = "mqtt://fleetpulse-admin:${ephemeral.aws_secretsmanager_random_password.generated["mqtt_admin"].random_password}@${local.mqtt_internal}:1883"
  })
  secret_string_wo_version = var.secrets_version
}

# Least-privilege broker users of ingest and the delivery worker (subscribe to device topics;
# publish to integration topics but never as a device). The broker task's service-users
# container creates them with compose/mosquitto/service-users.sh, the script `make up` runs.
resource "aws_secretsmanager_secret" "mqtt_service" {
  #checkov:skip=CKV2_AWS_57:Rotation needs a dynsec-aware rotation function; rotate by raising var.secrets_version (README).
  for_each                = toset(["ingest", "delivery"])
  name                    = "${local.name}/mqtt-${each.key}"
  description             = "Broker user fleetpulse-${each.key} (username, password, url)"
  kms_key_id              = aws_kms_key.main.arn
  recovery_window_in_days = 7
}

resource "aws_secretsmanager_secret_version" "mqtt_service" {
  for_each  = aws_secretsmanager_secret.mqtt_service
  secret_id = each.value.id
  secret_string_wo = jsonencode({
    username = "fleetpulse-${each.key}"
    password = ephemeral.aws_secretsmanager_random_password.generated["mqtt_${each.key}"].random_password
    url      = "mqtt://fleetpulse-${each.key}:${ephemeral.aws_secretsmanager_random_password.generated["mqtt_${each.key}"].random_password}@${local.mqtt_internal}:1883"
  })
  secret_string_wo_version = var.secrets_version
}

resource "aws_secretsmanager_secret" "keycloak_admin" {
  #checkov:skip=CKV2_AWS_57:Only used to bootstrap Keycloak's admin at first start; change it in Keycloak afterwards.
  name                    = "${local.name}/keycloak-admin"
  description             = "Keycloak bootstrap admin (username, password)"
  kms_key_id              = aws_kms_key.main.arn
  recovery_window_in_days = 7
}

resource "aws_secretsmanager_secret_version" "keycloak_admin" {
  secret_id = aws_secretsmanager_secret.keycloak_admin.id
  secret_string_wo = jsonencode({
    username = "admin"
    password = ephemeral.aws_secretsmanager_random_password.generated["keycloak_admin"].random_password
  })
  secret_string_wo_version = var.secrets_version
}

# Client secrets of the realm's confidential clients, substituted into the realm file Keycloak
# imports at start (ecs.tf): fleetpulse-api (machine clients) and fleetpulse-smoke (the deploy
# smoke's client-credentials token, read by deploy.yml).
resource "aws_secretsmanager_secret" "keycloak_client" {
  #checkov:skip=CKV2_AWS_57:The realm import applies a client secret only when the realm is created; rotate in Keycloak, then put the value here (README).
  for_each                = toset(["api", "smoke"])
  name                    = "${local.name}/keycloak-client-${each.key}"
  description             = "Keycloak client fleetpulse-${each.key} of realm ${var.keycloak_realm} (client_id, client_secret)"
  kms_key_id              = aws_kms_key.main.arn
  recovery_window_in_days = 7
}

resource "aws_secretsmanager_secret_version" "keycloak_client" {
  for_each  = aws_secretsmanager_secret.keycloak_client
  secret_id = each.value.id
  secret_string_wo = jsonencode({
    client_id     = "fleetpulse-${each.key}"
    client_secret = ephemeral.aws_secretsmanager_random_password.generated["keycloak_${each.key}_client"].random_password
    token_url     = "${local.oidc_issuer}/protocol/openid-connect/token"
  })
  secret_string_wo_version = var.secrets_version
}

# Key that encrypts integration secrets (whsec_...) at rest in the event store.
resource "aws_secretsmanager_secret" "webhook_encryption_key" {
  #checkov:skip=CKV2_AWS_57:Rotation needs re-encryption of stored integration secrets by the application.
  name                    = "${local.name}/webhook-encryption-key"
  description             = "Key encrypting webhook secrets at rest (base64, 32 bytes)"
  kms_key_id              = aws_kms_key.main.arn
  recovery_window_in_days = 7
}

resource "aws_secretsmanager_secret_version" "webhook_encryption_key" {
  secret_id        = aws_secretsmanager_secret.webhook_encryption_key.id
  secret_string_wo = "${ephemeral.aws_secretsmanager_random_password.webhook_encryption_key.random_password}="
  # Never rotated with secrets_version: stored integration secrets would no longer open.
  secret_string_wo_version = 1
}

# --- SMTP for the email channel --------------------------------------------------------------
# Default: SES's SMTP interface. An IAM user whose only right is ses:SendRawEmail from
# var.smtp_from's identity; its SMTP password is derived from the access key by the provider
# (ses_smtp_password_v4). Or var.smtp_secret_arn: any SMTP server, JSON {host, port, username,
# password}, encrypted with the platform key or aws/secretsmanager.

locals {
  ses_smtp          = var.smtp_secret_arn == ""
  smtp_secret_arn   = local.ses_smtp ? aws_secretsmanager_secret.smtp[0].arn : var.smtp_secret_arn
  smtp_from_domain  = split("@", var.smtp_from)[1]
  ses_identity_arns = ["arn:${local.partition}:ses:${local.region}:${local.account_id}:identity/${local.smtp_from_domain}", "arn:${local.partition}:ses:${local.region}:${local.account_id}:identity/${var.smtp_from}"]
}

resource "aws_iam_user" "ses_smtp" {
  #checkov:skip=CKV_AWS_273:SES SMTP authentication needs an IAM user's access key; the user may only send mail.
  count = local.ses_smtp ? 1 : 0
  name  = "${local.name}-ses-smtp"
}

resource "aws_iam_user_policy" "ses_smtp" {
  #checkov:skip=CKV_AWS_40:The SMTP user's one permission; SES SMTP requires a user, not a role.
  count = local.ses_smtp ? 1 : 0
  name  = "send-alert-email"
  user  = aws_iam_user.ses_smtp[0].name
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Action    = ["ses:SendRawEmail"]
      Resource  = local.ses_identity_arns
      Condition = { StringEquals = { "ses:FromAddress" = var.smtp_from } }
    }]
  })
}

resource "aws_iam_access_key" "ses_smtp" {
  count = local.ses_smtp ? 1 : 0
  user  = aws_iam_user.ses_smtp[0].name
}

resource "aws_secretsmanager_secret" "smtp" {
  #checkov:skip=CKV2_AWS_57:Rotate by replacing the access key (terraform apply -replace=aws_iam_access_key.ses_smtp[0]), README.
  count                   = local.ses_smtp ? 1 : 0
  name                    = "${local.name}/smtp"
  description             = "SMTP server of the email channel (host, port, username, password): SES SMTP interface"
  kms_key_id              = aws_kms_key.main.arn
  recovery_window_in_days = 7
}

resource "aws_secretsmanager_secret_version" "smtp" {
  count     = local.ses_smtp ? 1 : 0
  secret_id = aws_secretsmanager_secret.smtp[0].id
  secret_string = jsonencode({
    host     = "email-smtp.${local.region}.amazonaws.com"
    port     = "587"
    username = aws_iam_access_key.ses_smtp[0].id
    password = aws_iam_access_key.ses_smtp[0].ses_smtp_password_v4
  })
}
