# ECS Fargate: the cluster, the five services, the Mosquitto broker (with its dynamic-security
# state on EFS), Keycloak, and the one-shot migrator task definition.
#
# Deploys: GitHub Actions (deploy.yml) registers a new revision of each family with the commit's
# image and updates the service; Terraform therefore ignores task_definition drift on the
# services. Changes made here (environment, secrets, sizes) reach the running tasks with the
# next deploy, which starts from the family's latest revision.

resource "aws_ecs_cluster" "main" {
  name = local.name

  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

resource "aws_ecs_cluster_capacity_providers" "main" {
  cluster_name       = aws_ecs_cluster.main.name
  capacity_providers = ["FARGATE", "FARGATE_SPOT"]

  default_capacity_provider_strategy {
    capacity_provider = "FARGATE"
    weight            = 1
  }
}

resource "aws_service_discovery_private_dns_namespace" "main" {
  name        = "${local.name}.internal"
  description = "Private names of FleetPulse tasks (mosquitto)"
  vpc         = aws_vpc.main.id
}

locals {
  service_environment = {
    for svc, cfg in local.services : svc => concat(
      [
        { name = "FLEETPULSE_QUEUE_PREFIX", value = local.queue_prefix },
        { name = "FLEETPULSE_LOG_LEVEL", value = var.log_level },
        { name = "FLEETPULSE_AUTO_CREATE", value = "false" }, # Terraform owns queues and topics
        { name = "AWS_DEFAULT_REGION", value = local.region },
        svc == "provision_api"
        ? { name = "FLEETPULSE_API_PORT", value = tostring(cfg.port) }
        : { name = "FLEETPULSE_HEALTH_PORT", value = tostring(cfg.port) },
      ],
      var.otlp_endpoint == "" ? [] : [{ name = "FLEETPULSE_OTLP_ENDPOINT", value = var.otlp_endpoint }],
      [for env, value in cfg.environment : { name = env, value = value }],
      svc != "provision_api" ? [] : [
        { name = "FLEETPULSE_OIDC_ISSUER", value = local.oidc_issuer },
        { name = "FLEETPULSE_OIDC_AUDIENCE", value = "fleetpulse-api" },
        { name = "FLEETPULSE_CREDENTIALS_BACKEND", value = var.enable_iot_core ? "iot-core" : "mosquitto" },
        { name = "FLEETPULSE_IOT_POLICY_NAME", value = "${local.name}-device" },
        # What devices are told in the provisioning response: the public MQTT-over-TLS endpoint.
        # IoT Core on: its ATS data endpoint; else var.mqtt_domain_name, which the NLB's
        # certificate covers (a precondition on aws_lb_listener.mqtts checks that).
        { name = "FLEETPULSE_MQTT_PUBLIC_HOST", value = local.mqtt_public_host },
        { name = "FLEETPULSE_MQTT_PUBLIC_PORT", value = "8883" },
        # Tasks are reachable from the ALB security group only, so its X-Forwarded-For is trusted.
        { name = "FLEETPULSE_FORWARDED_ALLOW_IPS", value = "*" },
      ],
    )
  }

  # Credentials only as `secrets` (valueFrom): resolved by the execution role at task start.
  service_secrets = {
    for svc, cfg in local.services : svc => [
      for env, ref in cfg.secrets : {
        name      = env
        valueFrom = ref.key == "" ? local.secret_arns[ref.secret] : "${local.secret_arns[ref.secret]}:${ref.key}::"
      }
    ]
  }

  python_healthcheck = "import urllib.request; urllib.request.urlopen('http://127.0.0.1:%d/healthz', timeout=3)"
}

resource "aws_ecs_task_definition" "service" {
  for_each                 = local.services
  family                   = "${local.name}-${replace(each.key, "_", "-")}"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = each.value.cpu
  memory                   = each.value.memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task[each.key].arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  volume {
    name = "tmp"
  }

  container_definitions = jsonencode([{
    name                   = each.key
    image                  = "${aws_ecr_repository.service[each.key].repository_url}:${var.image_tag}"
    essential              = true
    command                = each.value.command
    user                   = "10001:10001"
    readonlyRootFilesystem = true
    stopTimeout            = 30
    portMappings           = [{ containerPort = each.value.port, protocol = "tcp" }]
    environment            = local.service_environment[each.key]
    secrets                = local.service_secrets[each.key]
    mountPoints            = [{ sourceVolume = "tmp", containerPath = "/tmp", readOnly = false }]
    linuxParameters        = { initProcessEnabled = true }
    healthCheck = {
      command     = ["CMD", "python", "-c", format(local.python_healthcheck, each.value.port)]
      interval    = 15
      timeout     = 5
      retries     = 3
      startPeriod = 30
    }
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.service[each.key].name
        awslogs-region        = local.region
        awslogs-stream-prefix = each.key
      }
    }
  }])
}

resource "aws_ecs_service" "service" {
  for_each               = local.services
  name                   = "${local.name}-${replace(each.key, "_", "-")}"
  cluster                = aws_ecs_cluster.main.id
  task_definition        = aws_ecs_task_definition.service[each.key].arn
  desired_count          = each.value.single_task ? 1 : var.service_desired_count
  launch_type            = "FARGATE"
  platform_version       = "LATEST"
  propagate_tags         = "SERVICE"
  enable_execute_command = false

  health_check_grace_period_seconds  = each.key == "provision_api" ? 60 : null
  deployment_minimum_healthy_percent = each.value.single_task ? 0 : 100
  deployment_maximum_percent         = each.value.single_task ? 100 : 200

  network_configuration {
    subnets          = aws_subnet.private[*].id
    security_groups  = [aws_security_group.service[each.key].id]
    assign_public_ip = false
  }

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  dynamic "load_balancer" {
    for_each = each.key == "provision_api" ? [1] : []
    content {
      target_group_arn = aws_lb_target_group.api.arn
      container_name   = each.key
      container_port   = each.value.port
    }
  }

  lifecycle {
    # task_definition: deploy.yml rolls out new revisions; desired_count: autoscaling owns it.
    ignore_changes = [task_definition, desired_count]
  }

  # A target group must be attached to the load balancer (through its rule) before ECS uses it.
  depends_on = [aws_lb_listener_rule.api, aws_lb_listener_rule.keycloak]
}

# Queue-depth autoscaling: keep the backlog per running task near the target. (moto has no
# Application Auto Scaling tagging API, on which the provider waits: plan-only under var.emulator.)
resource "aws_appautoscaling_target" "queue_scaled" {
  for_each           = var.emulator ? {} : local.queue_scaled_services
  service_namespace  = "ecs"
  scalable_dimension = "ecs:service:DesiredCount"
  resource_id        = "service/${aws_ecs_cluster.main.name}/${aws_ecs_service.service[each.key].name}"
  min_capacity       = 1
  max_capacity       = var.autoscaling_max_tasks
}

resource "aws_appautoscaling_policy" "queue_backlog" {
  for_each           = var.emulator ? {} : local.queue_scaled_services
  name               = "${each.key}-sqs-backlog-per-task"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.queue_scaled[each.key].service_namespace
  resource_id        = aws_appautoscaling_target.queue_scaled[each.key].resource_id
  scalable_dimension = aws_appautoscaling_target.queue_scaled[each.key].scalable_dimension

  target_tracking_scaling_policy_configuration {
    target_value       = var.autoscaling_backlog_per_task
    scale_in_cooldown  = 300
    scale_out_cooldown = 60

    customized_metric_specification {
      metrics {
        id          = "visible"
        label       = "ApproximateNumberOfMessagesVisible"
        return_data = false
        metric_stat {
          stat = "Average"
          metric {
            namespace   = "AWS/SQS"
            metric_name = "ApproximateNumberOfMessagesVisible"
            dimensions {
              name  = "QueueName"
              value = aws_sqs_queue.main[each.value].name
            }
          }
        }
      }

      metrics {
        id          = "tasks"
        label       = "RunningTaskCount"
        return_data = false
        metric_stat {
          stat = "Average"
          metric {
            namespace   = "ECS/ContainerInsights"
            metric_name = "RunningTaskCount"
            dimensions {
              name  = "ClusterName"
              value = aws_ecs_cluster.main.name
            }
            dimensions {
              name  = "ServiceName"
              value = aws_ecs_service.service[each.key].name
            }
          }
        }
      }

      metrics {
        id          = "backlog_per_task"
        label       = "Visible messages per running task"
        expression  = "visible / IF(tasks > 0, tasks, 1)"
        return_data = true
      }
    }
  }
}

# One-shot migrator: fleetpulse-migrate from the ingest image (libs/common ships the script in
# every service image). deploy.yml runs it with `aws ecs run-task` and waits for exit code 0
# before rolling out the services.
resource "aws_ecs_task_definition" "migrate" {
  family                   = "${local.name}-migrate"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = 256
  memory                   = 512
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.migrate.arn

  volume {
    name = "tmp"
  }

  container_definitions = jsonencode([{
    name                   = "migrate"
    image                  = "${aws_ecr_repository.service["ingest"].repository_url}:${var.image_tag}"
    essential              = true
    command                = ["fleetpulse-migrate"]
    user                   = "10001:10001"
    readonlyRootFilesystem = true
    environment            = [{ name = "FLEETPULSE_LOG_LEVEL", value = var.log_level }]
    secrets                = [{ name = "FLEETPULSE_DATABASE_URL", valueFrom = local.secret_arns.database_url }]
    mountPoints            = [{ sourceVolume = "tmp", containerPath = "/tmp", readOnly = false }]
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.migrate.name
        awslogs-region        = local.region
        awslogs-stream-prefix = "migrate"
      }
    }
  }])
}

# --- Mosquitto ---------------------------------------------------------------------------
# Device credentials live in the dynamic-security JSON, so it sits on encrypted EFS and
# survives task replacement. An init container writes the broker config and, on first start
# only, creates the dynsec file with the admin from Secrets Manager. TLS for devices ends on
# the NLB (8883); inside the VPC the broker listens on 1883.
#
# Layout on Fargate: every path a container writes as uid 1883 is the EFS access point, which
# creates its root directory owned by 1883 and maps every access to 1883:1883. The config goes
# to /mosquitto/data/config/ there (rewritten at every start). A Fargate bind mount (a task
# `volume` without EFS) is created root-owned: uid 1883 could not write into it.

resource "aws_efs_file_system" "mosquitto" {
  encrypted        = true
  kms_key_id       = aws_kms_key.main.arn
  performance_mode = "generalPurpose"
  throughput_mode  = "bursting"

  lifecycle_policy {
    transition_to_ia = "AFTER_30_DAYS"
  }

  tags = { Name = "${local.name}-mosquitto" }
}

# moto does not keep EFS backup policies (the provider waits forever): plan-only under var.emulator.
resource "aws_efs_backup_policy" "mosquitto" {
  count          = var.emulator ? 0 : 1
  file_system_id = aws_efs_file_system.mosquitto.id

  backup_policy {
    status = "ENABLED"
  }
}

resource "aws_efs_mount_target" "mosquitto" {
  count           = 2
  file_system_id  = aws_efs_file_system.mosquitto.id
  subnet_id       = aws_subnet.private[count.index].id
  security_groups = [aws_security_group.efs.id]
}

resource "aws_efs_access_point" "mosquitto" {
  file_system_id = aws_efs_file_system.mosquitto.id

  posix_user {
    uid = 1883
    gid = 1883
  }

  root_directory {
    path = "/mosquitto"
    creation_info {
      owner_uid   = 1883
      owner_gid   = 1883
      permissions = "0750"
    }
  }
}

resource "aws_service_discovery_service" "mosquitto" {
  name = "mosquitto"

  dns_config {
    namespace_id   = aws_service_discovery_private_dns_namespace.main.id
    routing_policy = "MULTIVALUE"
    dns_records {
      type = "A"
      ttl  = 10
    }
  }

  health_check_custom_config {
    failure_threshold = 1
  }
}

locals {
  mosquitto_conf = join("\n", [
    "per_listener_settings false",
    "allow_anonymous false",
    "listener 1883 0.0.0.0",
    "plugin /usr/lib/mosquitto_dynamic_security.so",
    "plugin_opt_config_file /mosquitto/data/dynamic-security.json",
    "persistence true",
    "persistence_location /mosquitto/data/",
    "log_dest stdout",
    "log_timestamp_format %Y-%m-%dT%H:%M:%S",
    # = ingest's FLEETPULSE_MQTT_MAX_INFLIGHT (default 1000): half a window per batch
    "max_inflight_messages 1000",
    # ingest's one persistent session queues here while ingest is down or behind: a deeper
    # queue is what "a broker or ingest restart loses nothing" rests on (messages past it are
    # dropped by the broker)
    "max_queued_messages 1000000",
    "",
  ])

  mosquitto_init_script = <<-EOT
    set -eu
    mkdir -p /mosquitto/data/config
    printf '%s' "$MOSQUITTO_CONF" > /mosquitto/data/config/mosquitto.conf
    if [ ! -s /mosquitto/data/dynamic-security.json ]; then
      mosquitto_ctrl dynsec init /mosquitto/data/dynamic-security.json "$MQTT_ADMIN_USERNAME" "$MQTT_ADMIN_PASSWORD"
    fi
    chmod 0600 /mosquitto/data/dynamic-security.json
  EOT

  mosquitto_log = {
    logDriver = "awslogs"
    options = {
      awslogs-group         = aws_cloudwatch_log_group.platform["mosquitto"].name
      awslogs-region        = local.region
      awslogs-stream-prefix = "mosquitto"
    }
  }

  mqtt_admin_secrets = [
    { name = "MQTT_ADMIN_USERNAME", valueFrom = "${local.secret_arns.mqtt_admin}:username::" },
    { name = "MQTT_ADMIN_PASSWORD", valueFrom = "${local.secret_arns.mqtt_admin}:password::" },
  ]

  # compose/mosquitto/service-users.sh (the same script `make up` runs) and what it reads.
  service_users_script = file("${path.module}/../../compose/mosquitto/service-users.sh")
  service_users_secrets = [
    { name = "MQTT_ADMIN_USER", valueFrom = "${local.secret_arns.mqtt_admin}:username::" },
    { name = "MQTT_ADMIN_PASSWORD", valueFrom = "${local.secret_arns.mqtt_admin}:password::" },
    { name = "MQTT_INGEST_PASSWORD", valueFrom = "${local.secret_arns.mqtt_ingest}:password::" },
    { name = "MQTT_DELIVERY_PASSWORD", valueFrom = "${local.secret_arns.mqtt_delivery}:password::" },
  ]
}

resource "aws_ecs_task_definition" "mosquitto" {
  family                   = "${local.name}-mosquitto"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = 256
  memory                   = 512
  execution_role_arn       = aws_iam_role.execution.arn

  volume {
    name = "data"
    efs_volume_configuration {
      file_system_id     = aws_efs_file_system.mosquitto.id
      transit_encryption = "ENABLED"
      authorization_config {
        access_point_id = aws_efs_access_point.mosquitto.id
        iam             = "DISABLED"
      }
    }
  }

  container_definitions = jsonencode([
    {
      name                   = "dynsec-init"
      image                  = var.mosquitto_image
      essential              = false
      user                   = "1883:1883"
      readonlyRootFilesystem = true
      command                = ["sh", "-c", local.mosquitto_init_script]
      environment            = [{ name = "MOSQUITTO_CONF", value = local.mosquitto_conf }]
      secrets                = local.mqtt_admin_secrets
      mountPoints = [
        { sourceVolume = "data", containerPath = "/mosquitto/data", readOnly = false },
      ]
      logConfiguration = local.mosquitto_log
    },
    {
      name                   = "mosquitto"
      image                  = var.mosquitto_image
      essential              = true
      user                   = "1883:1883"
      readonlyRootFilesystem = true
      command                = ["mosquitto", "-c", "/mosquitto/data/config/mosquitto.conf"]
      dependsOn              = [{ containerName = "dynsec-init", condition = "SUCCESS" }]
      portMappings           = [{ containerPort = 1883, protocol = "tcp" }]
      secrets                = local.mqtt_admin_secrets
      mountPoints = [
        { sourceVolume = "data", containerPath = "/mosquitto/data", readOnly = false },
      ]
      healthCheck = {
        command     = ["CMD-SHELL", "mosquitto_sub -h 127.0.0.1 -p 1883 -u \"$MQTT_ADMIN_USERNAME\" -P \"$MQTT_ADMIN_PASSWORD\" -t '$SYS/broker/uptime' -C 1 -W 5 || exit 1"]
        interval    = 30
        timeout     = 10
        retries     = 3
        startPeriod = 20
      }
      logConfiguration = local.mosquitto_log
    },
    {
      # Once the broker is healthy: (re)create the ingest and delivery broker users.
      name                   = "service-users"
      image                  = var.mosquitto_image
      essential              = false
      user                   = "1883:1883"
      readonlyRootFilesystem = true
      command                = ["sh", "-c", local.service_users_script]
      dependsOn              = [{ containerName = "mosquitto", condition = "HEALTHY" }]
      environment            = [{ name = "MQTT_HOST", value = "127.0.0.1" }]
      secrets                = local.service_users_secrets
      logConfiguration       = local.mosquitto_log
    },
  ])
}

resource "aws_ecs_service" "mosquitto" {
  name             = "${local.name}-mosquitto"
  cluster          = aws_ecs_cluster.main.id
  task_definition  = aws_ecs_task_definition.mosquitto.arn
  desired_count    = 1
  launch_type      = "FARGATE"
  platform_version = "LATEST"
  propagate_tags   = "SERVICE"

  # One broker writing the EFS state at a time: stop the old task before starting the new.
  deployment_minimum_healthy_percent = 0
  deployment_maximum_percent         = 100
  health_check_grace_period_seconds  = 60

  network_configuration {
    subnets          = aws_subnet.private[*].id
    security_groups  = [aws_security_group.mosquitto.id]
    assign_public_ip = false
  }

  load_balancer {
    target_group_arn = aws_lb_target_group.mqtt.arn
    container_name   = "mosquitto"
    container_port   = 1883
  }

  service_registries {
    registry_arn = aws_service_discovery_service.mosquitto.arn
  }

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  depends_on = [aws_efs_mount_target.mosquitto, aws_lb_listener.mqtts]
}

# --- Keycloak ----------------------------------------------------------------------------
# Served under /auth on the ALB. Database login and bootstrap admin come from Secrets Manager;
# the database host is not a secret and is set from the RDS instance directly.
#
# The realm: compose/keycloak/realm-fleetpulse.json (the one `make up` imports), adapted for a
# deployed stack: the fleetpulse-api client secret becomes a placeholder Keycloak fills from
# the environment at import (the value comes from Secrets Manager), the demo users with known
# passwords are left out, and a fleetpulse-smoke client is added whose service account is
# platform-admin and tenant-admin of tenant "smoke" (deploy.yml's smoke job). The container
# writes the file into Keycloak's import directory and runs `start --import-realm`, which
# imports a realm only when it does not exist yet.

locals {
  realm_source_text = file("${path.module}/../../compose/keycloak/realm-fleetpulse.json")
  realm_dev_secret  = "\"secret\": \"fleetpulse-api-dev-secret\""
  realm_source      = jsondecode(replace(local.realm_source_text, local.realm_dev_secret, "\"secret\": \"$${FLEETPULSE_API_CLIENT_SECRET}\""))
  smoke_tenant      = "smoke"
  # make up's machine clients carry fixed secrets in the realm file: never deployed
  realm_local_only_clients = ["fleetpulse-demo-bot", "fleetpulse-platform-bot"]
  realm_smoke_client = {
    clientId                  = "fleetpulse-smoke"
    name                      = "FleetPulse deploy smoke"
    description               = "Client credentials of the deploy workflow's smoke job"
    enabled                   = true
    protocol                  = "openid-connect"
    publicClient              = false
    clientAuthenticatorType   = "client-secret"
    secret                    = "$${FLEETPULSE_SMOKE_CLIENT_SECRET}"
    standardFlowEnabled       = false
    implicitFlowEnabled       = false
    directAccessGrantsEnabled = false
    serviceAccountsEnabled    = true
    attributes                = { "access.token.lifespan" = "900" }
    protocolMappers = [
      {
        name            = "audience-fleetpulse-api"
        protocol        = "openid-connect"
        protocolMapper  = "oidc-audience-mapper"
        consentRequired = false
        config = {
          "included.client.audience"  = "fleetpulse-api"
          "id.token.claim"            = "false"
          "access.token.claim"        = "true"
          "introspection.token.claim" = "true"
        }
      },
      {
        name            = "tenant_id"
        protocol        = "openid-connect"
        protocolMapper  = "oidc-hardcoded-claim-mapper"
        consentRequired = false
        config = {
          "claim.name"                = "tenant_id"
          "claim.value"               = local.smoke_tenant
          "jsonType.label"            = "String"
          "access.token.claim"        = "true"
          "id.token.claim"            = "false"
          "introspection.token.claim" = "true"
        }
      },
    ]
  }
  realm_smoke_service_account = {
    username               = "service-account-fleetpulse-smoke"
    enabled                = true
    serviceAccountClientId = "fleetpulse-smoke"
    realmRoles             = ["platform-admin", "tenant-admin", "default-roles-${var.keycloak_realm}"]
  }
  realm = merge(local.realm_source, {
    realm = var.keycloak_realm
    clients = concat(
      [for c in local.realm_source.clients : c if !contains(local.realm_local_only_clients, c.clientId)],
      [local.realm_smoke_client],
    )
    users = [local.realm_smoke_service_account]
  })

  keycloak_start = <<-EOT
    set -eu
    mkdir -p /opt/keycloak/data/import
    printf '%s' "$FLEETPULSE_REALM_JSON" > /opt/keycloak/data/import/realm-${var.keycloak_realm}.json
    exec /opt/keycloak/bin/kc.sh start --import-realm
  EOT
}

resource "aws_ecs_task_definition" "keycloak" {
  #checkov:skip=CKV_AWS_336:Keycloak's start command augments its Quarkus build under /opt/keycloak at startup and needs a writable root filesystem.
  family                   = "${local.name}-keycloak"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = 1024
  memory                   = 2048
  execution_role_arn       = aws_iam_role.execution.arn

  container_definitions = jsonencode([{
    name       = "keycloak"
    image      = var.keycloak_image
    essential  = true
    entryPoint = ["/bin/bash", "-c"]
    command    = [local.keycloak_start]
    portMappings = [
      { containerPort = 8080, protocol = "tcp" },
      { containerPort = 9000, protocol = "tcp" },
    ]
    environment = [
      { name = "KC_DB", value = "postgres" },
      { name = "KC_DB_URL", value = "jdbc:postgresql://${aws_db_instance.keycloak.address}:${aws_db_instance.keycloak.port}/${aws_db_instance.keycloak.db_name}?sslmode=require" },
      { name = "KC_HOSTNAME", value = "${local.public_base_url}/auth" },
      { name = "KC_HTTP_RELATIVE_PATH", value = "/auth" },
      { name = "KC_HTTP_ENABLED", value = "true" },
      { name = "KC_PROXY_HEADERS", value = "xforwarded" },
      { name = "KC_HEALTH_ENABLED", value = "true" },
      { name = "KC_LOG_CONSOLE_OUTPUT", value = "json" },
      { name = "FLEETPULSE_REALM_JSON", value = jsonencode(local.realm) },
    ]
    secrets = [
      { name = "KC_DB_USERNAME", valueFrom = "${local.secret_arns.keycloak_db}:username::" },
      { name = "KC_DB_PASSWORD", valueFrom = "${local.secret_arns.keycloak_db}:password::" },
      { name = "KC_BOOTSTRAP_ADMIN_USERNAME", valueFrom = "${local.secret_arns.keycloak_admin}:username::" },
      { name = "KC_BOOTSTRAP_ADMIN_PASSWORD", valueFrom = "${local.secret_arns.keycloak_admin}:password::" },
      { name = "FLEETPULSE_API_CLIENT_SECRET", valueFrom = "${local.secret_arns.keycloak_api_client}:client_secret::" },
      { name = "FLEETPULSE_SMOKE_CLIENT_SECRET", valueFrom = "${local.secret_arns.keycloak_smoke_client}:client_secret::" },
    ]
    healthCheck = {
      command     = ["CMD-SHELL", "exec 3<>/dev/tcp/127.0.0.1/9000 && printf 'GET /auth/health/ready HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n' >&3 && grep -q '\"UP\"' <&3"]
      interval    = 30
      timeout     = 10
      retries     = 5
      startPeriod = 180
    }
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.platform["keycloak"].name
        awslogs-region        = local.region
        awslogs-stream-prefix = "keycloak"
      }
    }
  }])

  depends_on = [aws_secretsmanager_secret_version.keycloak_admin, aws_secretsmanager_secret_version.keycloak_client]

  lifecycle {
    precondition {
      condition     = strcontains(local.realm_source_text, local.realm_dev_secret)
      error_message = "compose/keycloak/realm-fleetpulse.json no longer holds the fleetpulse-api client's dev secret, so the deployed realm would keep whatever secret it has: update the replacement in ecs.tf."
    }
  }
}

resource "aws_ecs_service" "keycloak" {
  name             = "${local.name}-keycloak"
  cluster          = aws_ecs_cluster.main.id
  task_definition  = aws_ecs_task_definition.keycloak.arn
  desired_count    = 1
  launch_type      = "FARGATE"
  platform_version = "LATEST"
  propagate_tags   = "SERVICE"

  health_check_grace_period_seconds = 300

  network_configuration {
    subnets          = aws_subnet.private[*].id
    security_groups  = [aws_security_group.keycloak.id]
    assign_public_ip = false
  }

  load_balancer {
    target_group_arn = aws_lb_target_group.keycloak.arn
    container_name   = "keycloak"
    container_port   = 8080
  }

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  # A target group must be attached to the load balancer (through its rule) before ECS uses it.
  depends_on = [aws_lb_listener_rule.api, aws_lb_listener_rule.keycloak]
}
