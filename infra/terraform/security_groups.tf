# Least privilege. Only the ALB (80/443) and the NLB (8883) accept traffic from the internet.
# provision_api and Keycloak accept only the ALB; Mosquitto only the NLB and the services that
# speak MQTT; the Keycloak database only Keycloak; EFS only Mosquitto. Workers accept nothing.
# Egress is limited by port: 443 (AWS APIs, image registries, webhooks), 5432 to Timescale Cloud.

resource "aws_security_group" "alb" {
  name        = "${local.name}-alb"
  description = "Public HTTPS load balancer"
  vpc_id      = aws_vpc.main.id
  tags        = { Name = "${local.name}-alb" }
}

resource "aws_vpc_security_group_ingress_rule" "alb_http" {
  #checkov:skip=CKV_AWS_260:Port 80 is open only to answer with a redirect to HTTPS (alb.tf).
  security_group_id = aws_security_group.alb.id
  description       = "HTTP from anywhere, redirected to HTTPS"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 80
  to_port           = 80
}

resource "aws_vpc_security_group_ingress_rule" "alb_https" {
  security_group_id = aws_security_group.alb.id
  description       = "HTTPS from anywhere"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

resource "aws_vpc_security_group_egress_rule" "alb_to_api" {
  security_group_id            = aws_security_group.alb.id
  description                  = "To provision_api"
  referenced_security_group_id = aws_security_group.service["provision_api"].id
  ip_protocol                  = "tcp"
  from_port                    = local.services.provision_api.port
  to_port                      = local.services.provision_api.port
}

resource "aws_vpc_security_group_egress_rule" "alb_to_keycloak" {
  for_each                     = toset(["8080", "9000"])
  security_group_id            = aws_security_group.alb.id
  description                  = "To Keycloak (HTTP ${each.key})"
  referenced_security_group_id = aws_security_group.keycloak.id
  ip_protocol                  = "tcp"
  from_port                    = tonumber(each.key)
  to_port                      = tonumber(each.key)
}

resource "aws_security_group" "nlb" {
  name        = "${local.name}-nlb"
  description = "Public MQTT over TLS load balancer"
  vpc_id      = aws_vpc.main.id
  tags        = { Name = "${local.name}-nlb" }
}

resource "aws_vpc_security_group_ingress_rule" "nlb_mqtts" {
  security_group_id = aws_security_group.nlb.id
  description       = "MQTT over TLS from devices"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 8883
  to_port           = 8883
}

resource "aws_vpc_security_group_egress_rule" "nlb_to_mosquitto" {
  security_group_id            = aws_security_group.nlb.id
  description                  = "To Mosquitto (TLS terminated on the NLB)"
  referenced_security_group_id = aws_security_group.mosquitto.id
  ip_protocol                  = "tcp"
  from_port                    = 1883
  to_port                      = 1883
}

# One security group per Python service, so each rule names exactly who may talk to whom.
resource "aws_security_group" "service" {
  #checkov:skip=CKV2_AWS_5:Attached to aws_ecs_service.service[each.key] (ecs.tf); the graph check does not follow for_each keys.
  for_each    = local.services
  name        = "${local.name}-${replace(each.key, "_", "-")}"
  description = "FleetPulse ${each.key} tasks"
  vpc_id      = aws_vpc.main.id
  tags        = { Name = "${local.name}-${each.key}" }
}

resource "aws_vpc_security_group_ingress_rule" "api_from_alb" {
  security_group_id            = aws_security_group.service["provision_api"].id
  description                  = "API traffic and health checks from the ALB only"
  referenced_security_group_id = aws_security_group.alb.id
  ip_protocol                  = "tcp"
  from_port                    = local.services.provision_api.port
  to_port                      = local.services.provision_api.port
}

resource "aws_vpc_security_group_egress_rule" "service_https" {
  for_each          = local.services
  security_group_id = aws_security_group.service[each.key].id
  description       = "HTTPS: AWS APIs, ECR, Keycloak JWKS, webhooks"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

# The gap that kept the old pipeline from writing: the service must be allowed to reach its
# database. Timescale Cloud is outside the VPC, so this is egress by port through the NAT.
resource "aws_vpc_security_group_egress_rule" "service_database" {
  for_each = {
    for pair in setproduct(keys(local.services), var.database_egress_cidrs) :
    "${pair[0]}-${pair[1]}" => { service = pair[0], cidr = pair[1] }
  }
  security_group_id = aws_security_group.service[each.value.service].id
  description       = "PostgreSQL to Timescale Cloud"
  cidr_ipv4         = each.value.cidr
  ip_protocol       = "tcp"
  from_port         = 5432
  to_port           = 5432
}

resource "aws_vpc_security_group_egress_rule" "service_mqtt" {
  for_each                     = { for k, v in local.services : k => v if v.uses_mqtt }
  security_group_id            = aws_security_group.service[each.key].id
  description                  = "MQTT to Mosquitto"
  referenced_security_group_id = aws_security_group.mosquitto.id
  ip_protocol                  = "tcp"
  from_port                    = 1883
  to_port                      = 1883
}

resource "aws_vpc_security_group_egress_rule" "delivery_webhook_http" {
  security_group_id = aws_security_group.service["delivery_worker"].id
  description       = "Plain-HTTP webhooks (SSRF-filtered by the worker)"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 80
  to_port           = 80
}

resource "aws_vpc_security_group_egress_rule" "delivery_smtp" {
  for_each          = toset(["465", "587"])
  security_group_id = aws_security_group.service["delivery_worker"].id
  description       = "SMTP submission (${each.key}) for the email channel"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = tonumber(each.key)
  to_port           = tonumber(each.key)
}

resource "aws_security_group" "mosquitto" {
  name        = "${local.name}-mosquitto"
  description = "Mosquitto broker tasks"
  vpc_id      = aws_vpc.main.id
  tags        = { Name = "${local.name}-mosquitto" }
}

resource "aws_vpc_security_group_ingress_rule" "mosquitto_from_nlb" {
  security_group_id            = aws_security_group.mosquitto.id
  description                  = "Devices through the NLB"
  referenced_security_group_id = aws_security_group.nlb.id
  ip_protocol                  = "tcp"
  from_port                    = 1883
  to_port                      = 1883
}

resource "aws_vpc_security_group_ingress_rule" "mosquitto_from_services" {
  for_each                     = { for k, v in local.services : k => v if v.uses_mqtt }
  security_group_id            = aws_security_group.mosquitto.id
  description                  = "MQTT from ${each.key}"
  referenced_security_group_id = aws_security_group.service[each.key].id
  ip_protocol                  = "tcp"
  from_port                    = 1883
  to_port                      = 1883
}

resource "aws_vpc_security_group_egress_rule" "mosquitto_https" {
  security_group_id = aws_security_group.mosquitto.id
  description       = "HTTPS: image pull, Secrets Manager, CloudWatch Logs"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

resource "aws_vpc_security_group_egress_rule" "mosquitto_efs" {
  security_group_id            = aws_security_group.mosquitto.id
  description                  = "NFS to the broker's EFS volume"
  referenced_security_group_id = aws_security_group.efs.id
  ip_protocol                  = "tcp"
  from_port                    = 2049
  to_port                      = 2049
}

resource "aws_security_group" "efs" {
  name        = "${local.name}-efs"
  description = "EFS holding Mosquitto's dynamic-security state"
  vpc_id      = aws_vpc.main.id
  tags        = { Name = "${local.name}-efs" }
}

resource "aws_vpc_security_group_ingress_rule" "efs_from_mosquitto" {
  security_group_id            = aws_security_group.efs.id
  description                  = "NFS from Mosquitto"
  referenced_security_group_id = aws_security_group.mosquitto.id
  ip_protocol                  = "tcp"
  from_port                    = 2049
  to_port                      = 2049
}

resource "aws_security_group" "keycloak" {
  name        = "${local.name}-keycloak"
  description = "Keycloak tasks"
  vpc_id      = aws_vpc.main.id
  tags        = { Name = "${local.name}-keycloak" }
}

resource "aws_vpc_security_group_ingress_rule" "keycloak_from_alb" {
  for_each                     = toset(["8080", "9000"])
  security_group_id            = aws_security_group.keycloak.id
  description                  = "HTTP ${each.key} (traffic / management health) from the ALB"
  referenced_security_group_id = aws_security_group.alb.id
  ip_protocol                  = "tcp"
  from_port                    = tonumber(each.key)
  to_port                      = tonumber(each.key)
}

resource "aws_vpc_security_group_egress_rule" "keycloak_https" {
  security_group_id = aws_security_group.keycloak.id
  description       = "HTTPS: image pull, Secrets Manager, CloudWatch Logs"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

resource "aws_vpc_security_group_egress_rule" "keycloak_to_db" {
  security_group_id            = aws_security_group.keycloak.id
  description                  = "PostgreSQL to the Keycloak database"
  referenced_security_group_id = aws_security_group.keycloak_db.id
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
}

resource "aws_security_group" "keycloak_db" {
  name        = "${local.name}-keycloak-db"
  description = "Keycloak RDS PostgreSQL"
  vpc_id      = aws_vpc.main.id
  tags        = { Name = "${local.name}-keycloak-db" }
}

# Explicit service -> database ingress (the missing rule of the old pipeline).
resource "aws_vpc_security_group_ingress_rule" "keycloak_db_from_keycloak" {
  security_group_id            = aws_security_group.keycloak_db.id
  description                  = "PostgreSQL from Keycloak only"
  referenced_security_group_id = aws_security_group.keycloak.id
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
}
