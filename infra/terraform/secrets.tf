# Every credential lives in Secrets Manager and reaches a container only through the task
# definition's `secrets` (valueFrom), resolved by the execution role at task start: never as
# plain environment, never baked into an image.

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

resource "random_password" "mqtt_admin" {
  length  = 32
  special = false # it is embedded in an mqtt:// URL
}

# Mosquitto dynamic-security admin: the broker's init container creates it; provision_api uses it
# (url key) to manage device credentials, the broker task to create the service users.
resource "aws_secretsmanager_secret" "mqtt_admin" {
  #checkov:skip=CKV2_AWS_57:Rotation needs a dynsec-aware rotation function; Phase 46.
  name                    = "${local.name}/mqtt-admin"
  description             = "Mosquitto dynamic-security admin (username, password, url)"
  kms_key_id              = aws_kms_key.main.arn
  recovery_window_in_days = 7
}

resource "aws_secretsmanager_secret_version" "mqtt_admin" {
  secret_id = aws_secretsmanager_secret.mqtt_admin.id
  secret_string = jsonencode({
    username = "fleetpulse-admin"
    password = random_password.mqtt_admin.result
    url      = "mqtt://fleetpulse-admin:${random_password.mqtt_admin.result}@${local.mqtt_internal}:1883"
  })
}

# Least-privilege broker users of ingest and the delivery worker (subscribe to device topics;
# publish to integration topics but never as a device). The broker task's service-users
# container creates them with compose/mosquitto/service-users.sh, the script `make up` runs.
resource "random_password" "mqtt_service" {
  for_each = toset(["ingest", "delivery"])
  length   = 32
  special  = false # it is embedded in an mqtt:// URL
}

resource "aws_secretsmanager_secret" "mqtt_service" {
  #checkov:skip=CKV2_AWS_57:Rotation needs a dynsec-aware rotation function; Phase 46.
  for_each                = random_password.mqtt_service
  name                    = "${local.name}/mqtt-${each.key}"
  description             = "Broker user fleetpulse-${each.key} (username, password, url)"
  kms_key_id              = aws_kms_key.main.arn
  recovery_window_in_days = 7
}

resource "aws_secretsmanager_secret_version" "mqtt_service" {
  for_each  = random_password.mqtt_service
  secret_id = aws_secretsmanager_secret.mqtt_service[each.key].id
  secret_string = jsonencode({
    username = "fleetpulse-${each.key}"
    password = each.value.result
    url      = "mqtt://fleetpulse-${each.key}:${each.value.result}@${local.mqtt_internal}:1883"
  })
}

resource "random_password" "keycloak_admin" {
  length  = 32
  special = false
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
  secret_string = jsonencode({
    username = "admin"
    password = random_password.keycloak_admin.result
  })
}

resource "random_password" "keycloak_db" {
  length  = 32
  special = false
}

# Keycloak's database login, with the host it belongs to, in one secret (rds.tf uses the same
# password). Kept in Terraform rather than RDS-managed so a rotation cannot cut Keycloak off
# between restarts without anyone noticing.
resource "aws_secretsmanager_secret" "keycloak_db" {
  #checkov:skip=CKV2_AWS_57:Rotating needs a coordinated Keycloak restart; documented manual procedure (README).
  name                    = "${local.name}/keycloak-db"
  description             = "Keycloak RDS PostgreSQL login (username, password, host, port, dbname)"
  kms_key_id              = aws_kms_key.main.arn
  recovery_window_in_days = 7
}

resource "aws_secretsmanager_secret_version" "keycloak_db" {
  secret_id = aws_secretsmanager_secret.keycloak_db.id
  secret_string = jsonencode({
    username = aws_db_instance.keycloak.username
    password = random_password.keycloak_db.result
    host     = aws_db_instance.keycloak.address
    port     = aws_db_instance.keycloak.port
    dbname   = aws_db_instance.keycloak.db_name
  })
}

resource "random_bytes" "webhook_encryption_key" {
  length = 32
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
  secret_id     = aws_secretsmanager_secret.webhook_encryption_key.id
  secret_string = random_bytes.webhook_encryption_key.base64
}
