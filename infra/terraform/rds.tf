# PostgreSQL for Keycloak only (the platform's data lives in Timescale Cloud). Private,
# encrypted, TLS enforced, reachable from the Keycloak security group alone.

resource "aws_db_subnet_group" "keycloak" {
  name       = "${local.name}-keycloak"
  subnet_ids = aws_subnet.private[*].id
}

resource "aws_db_parameter_group" "keycloak" {
  name   = "${local.name}-keycloak-pg16"
  family = "postgres16"

  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }

  parameter {
    name  = "log_statement"
    value = "ddl"
  }

  parameter {
    name  = "log_min_duration_statement"
    value = "1000"
  }
}

resource "aws_db_instance" "keycloak" {
  #checkov:skip=CKV_AWS_157:Single-AZ in the dev landing zone; Multi-AZ is Phase 46.
  identifier     = "${local.name}-keycloak"
  engine         = "postgres"
  engine_version = "16"
  instance_class = var.keycloak_db_instance_class

  allocated_storage     = 20
  max_allocated_storage = 50
  storage_type          = "gp3"
  storage_encrypted     = true
  kms_key_id            = aws_kms_key.main.arn

  db_name  = "keycloak"
  username = "keycloak"
  # RDS generates the password, keeps it in a secret of its own (KMS: the platform key) and
  # rotates it every 7 days. Keycloak reads username/password from that secret at task start;
  # after a rotation its pooled connections stay open, and a restarted task reads the new value
  # (README: Rotation).
  manage_master_user_password   = true
  master_user_secret_kms_key_id = aws_kms_key.main.arn

  db_subnet_group_name   = aws_db_subnet_group.keycloak.name
  vpc_security_group_ids = [aws_security_group.keycloak_db.id]
  parameter_group_name   = aws_db_parameter_group.keycloak.name
  publicly_accessible    = false
  multi_az               = false

  iam_database_authentication_enabled = true
  auto_minor_version_upgrade          = true
  backup_retention_period             = 7
  copy_tags_to_snapshot               = true
  deletion_protection                 = var.deletion_protection
  skip_final_snapshot                 = false
  final_snapshot_identifier           = "${local.name}-keycloak-final"
  enabled_cloudwatch_logs_exports     = ["postgresql", "upgrade"]

  performance_insights_enabled    = true
  performance_insights_kms_key_id = aws_kms_key.main.arn
  monitoring_interval             = 60
  monitoring_role_arn             = aws_iam_role.rds_monitoring.arn
}
