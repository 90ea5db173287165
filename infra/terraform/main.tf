# FleetPulse AWS landing zone (Phase 45 layout): providers, state backend, shared locals.
# The per-service facts (queues, secrets, ports) live in local.services so every other file
# derives its resources from one table; tests/infra cross-checks that table against services/.

terraform {
  required_version = ">= 1.10.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.80"
    }
  }

  # Partial configuration: bucket, key and region come from `-backend-config=backend.hcl`
  # (see README). use_lockfile gives S3-native state locking (Terraform >= 1.10).
  backend "s3" {
    encrypt      = true
    use_lockfile = true
  }
}

provider "aws" {
  region = var.aws_region

  default_tags {
    tags = {
      Project     = var.project
      Environment = var.environment
      ManagedBy   = "terraform"
    }
  }
}

data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}


locals {
  name       = "${var.project}-${var.environment}"
  account_id = data.aws_caller_identity.current.account_id
  region     = data.aws_region.current.name
  partition  = data.aws_partition.current.partition
  # Pinned by name (no zone lookup), so a new or impaired zone never reshuffles the subnets.
  azs          = length(var.availability_zones) == 2 ? var.availability_zones : ["${local.region}a", "${local.region}b"]
  queue_prefix = coalesce(var.queue_prefix, "${local.name}-")

  # Public entry points: explicit names the listener certificates cover (never the load
  # balancers' own amazonaws.com names, which no ACM certificate can hold).
  public_host     = var.domain_name
  public_base_url = "https://${local.public_host}"
  # What devices are told: the IoT Core data endpoint when IoT Core is on, else the MQTT name.
  mqtt_public_host = var.enable_iot_core ? data.aws_iot_endpoint.data[0].endpoint_address : var.mqtt_domain_name
  oidc_issuer      = "${local.public_base_url}/auth/realms/${var.keycloak_realm}"
  mqtt_internal    = "mosquitto.${aws_service_discovery_private_dns_namespace.main.name}"

  # SQS work queues; each gets a dead-letter queue and a redrive policy (sqs.tf).
  queues = {
    ingest = {
      visibility_timeout_seconds = 60
      max_receive_count          = 5
    }
    evaluator = {
      visibility_timeout_seconds = 60
      max_receive_count          = 5
    }
    dispatcher = {
      visibility_timeout_seconds = 60
      max_receive_count          = 5
    }
    deliveries = {
      visibility_timeout_seconds = 300
      max_receive_count          = 10
    }
  }

  # The five Python services. consumes/sends_to name keys of local.queues; secrets map an
  # environment variable to a secret (and optional JSON key) injected by ECS at start;
  # environment adds plain settings. A single_task service runs exactly one task, and a deploy
  # stops the old task before the new one starts.
  services = {
    ingest = {
      package          = "fleetpulse-ingest"
      command          = ["fleetpulse-ingest"]
      port             = 8080
      cpu              = 512
      memory           = 1024
      consumes         = ["ingest"]
      sends_to         = ["evaluator"]
      publishes_events = false
      uses_mqtt        = true
      # Persistent MQTT sessions under fixed client ids: one task (two would take each other's
      # sessions over), with a plain subscription, which Mosquitto restores after a restart
      # ($share ones it drops). IoT Core devices reach it through the ingest queue.
      single_task = true
      environment = {
        FLEETPULSE_SOURCES          = var.enable_iot_core ? "mqtt,sqs" : "mqtt"
        FLEETPULSE_MQTT_SHARE_GROUP = ""
        FLEETPULSE_MQTT_CONNECTIONS = "1"

        # committed batches forwarded to SQS and acknowledged (in order) while the next ones
        # are written: SQS latency, not the one connection, would hold the writes back
        FLEETPULSE_COMMITTED_BATCHES = "4"
      }
      secrets = {
        FLEETPULSE_DATABASE_URL = { secret = "database_url", key = "" }
        FLEETPULSE_MQTT_URL     = { secret = "mqtt_ingest", key = "url" }
      }
    }
    evaluator = {
      package          = "fleetpulse-evaluator"
      command          = ["fleetpulse-evaluator"]
      port             = 8080
      cpu              = 256
      memory           = 512
      consumes         = ["evaluator"]
      sends_to         = []
      publishes_events = true
      uses_mqtt        = false
      single_task      = false
      environment      = {}
      secrets = {
        FLEETPULSE_DATABASE_URL = { secret = "database_url", key = "" }
      }
    }
    dispatcher = {
      package          = "fleetpulse-dispatcher"
      command          = ["fleetpulse-dispatcher"]
      port             = 8080
      cpu              = 256
      memory           = 512
      consumes         = ["dispatcher"]
      sends_to         = []
      publishes_events = true
      uses_mqtt        = false
      single_task      = false
      environment      = {}
      secrets = {
        FLEETPULSE_DATABASE_URL = { secret = "database_url", key = "" }
      }
    }
    delivery_worker = {
      package          = "fleetpulse-delivery-worker"
      command          = ["fleetpulse-delivery-worker"]
      port             = 8080
      cpu              = 256
      memory           = 512
      consumes         = ["deliveries"]
      sends_to         = []
      publishes_events = true
      uses_mqtt        = true
      single_task      = false
      # Email channel: SES's SMTP interface (or var.smtp_secret_arn), STARTTLS on 587.
      environment = {
        FLEETPULSE_SMTP_STARTTLS = "true"
        FLEETPULSE_SMTP_FROM     = var.smtp_from
      }
      secrets = {
        FLEETPULSE_DATABASE_URL           = { secret = "database_url", key = "" }
        FLEETPULSE_MQTT_URL               = { secret = "mqtt_delivery", key = "url" }
        FLEETPULSE_WEBHOOK_ENCRYPTION_KEY = { secret = "webhook_encryption_key", key = "" }
        FLEETPULSE_SMTP_HOST              = { secret = "smtp", key = "host" }
        FLEETPULSE_SMTP_PORT              = { secret = "smtp", key = "port" }
        FLEETPULSE_SMTP_USERNAME          = { secret = "smtp", key = "username" }
        FLEETPULSE_SMTP_PASSWORD          = { secret = "smtp", key = "password" }
      }
    }
    provision_api = {
      package          = "fleetpulse-provision-api"
      command          = ["fleetpulse-provision-api"]
      port             = 8000
      cpu              = 512
      memory           = 1024
      consumes         = []
      sends_to         = []
      publishes_events = true
      uses_mqtt        = true
      single_task      = false
      environment      = {}
      secrets = {
        FLEETPULSE_DATABASE_URL           = { secret = "database_url", key = "" }
        FLEETPULSE_MQTT_URL               = { secret = "mqtt_admin", key = "url" }
        FLEETPULSE_WEBHOOK_ENCRYPTION_KEY = { secret = "webhook_encryption_key", key = "" }
      }
    }
  }

  # Services whose desired count follows the depth of the queue they consume (ecs.tf).
  queue_scaled_services = {
    evaluator       = "evaluator"
    delivery_worker = "deliveries"
  }

  # Third-party containers run next to the services.
  platform_containers = {
    mosquitto = { image = var.mosquitto_image }
    keycloak  = { image = var.keycloak_image }
  }

  secret_arns = {
    database_url           = aws_secretsmanager_secret.database_url.arn
    mqtt_admin             = aws_secretsmanager_secret.mqtt_admin.arn
    mqtt_ingest            = aws_secretsmanager_secret.mqtt_service["ingest"].arn
    mqtt_delivery          = aws_secretsmanager_secret.mqtt_service["delivery"].arn
    keycloak_admin         = aws_secretsmanager_secret.keycloak_admin.arn
    keycloak_db            = aws_db_instance.keycloak.master_user_secret[0].secret_arn
    keycloak_api_client    = aws_secretsmanager_secret.keycloak_client["api"].arn
    keycloak_smoke_client  = aws_secretsmanager_secret.keycloak_client["smoke"].arn
    webhook_encryption_key = aws_secretsmanager_secret.webhook_encryption_key.arn
    smtp                   = local.smtp_secret_arn
  }
}
