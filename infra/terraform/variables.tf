variable "project" {
  description = "Project name, the first part of every resource name."
  type        = string
  default     = "fleetpulse"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,20}$", var.project))
    error_message = "project must be 2-21 lower-case letters, digits or dashes, starting with a letter."
  }
}

variable "environment" {
  description = "Environment name (Phase 45 builds dev only; staging/prod separation is Phase 46)."
  type        = string
  default     = "dev"

  validation {
    condition     = contains(["dev", "staging", "prod"], var.environment)
    error_message = "environment must be one of dev, staging, prod."
  }
}

variable "aws_region" {
  description = "AWS region to deploy into."
  type        = string
  default     = "eu-central-1"

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.aws_region))
    error_message = "aws_region must look like eu-central-1."
  }
}

variable "vpc_cidr" {
  description = "CIDR of the VPC; split into two public and two private /20 subnets."
  type        = string
  default     = "10.40.0.0/16"

  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0)) && tonumber(split("/", var.vpc_cidr)[1]) <= 18
    error_message = "vpc_cidr must be a valid IPv4 CIDR of /18 or larger."
  }
}

variable "availability_zones" {
  description = "The two availability zones to use. Empty: <region>a and <region>b."
  type        = list(string)
  default     = []

  validation {
    condition     = length(var.availability_zones) == 0 || length(var.availability_zones) == 2
    error_message = "availability_zones must be empty or list exactly two zones."
  }
}

variable "single_nat_gateway" {
  description = "One NAT gateway for both AZs (cheaper, dev) instead of one per AZ."
  type        = bool
  default     = true
}

variable "domain_name" {
  description = "Public host name of the API and Keycloak (DNS CNAME to output alb_dns_name); certificate_arn must cover it. The OIDC issuer is https://<domain_name>/auth/realms/<realm>."
  type        = string

  validation {
    condition     = can(regex("^([a-z0-9-]+\\.)+[a-z]{2,}$", var.domain_name)) && !can(regex("\\.(amazonaws\\.com|cloudfront\\.net)$", var.domain_name))
    error_message = "domain_name must be a lower-case DNS name of your own (not the load balancer's amazonaws.com name: no ACM certificate can cover it)."
  }
}

variable "mqtt_domain_name" {
  description = "Public host name devices connect to with MQTT over TLS (DNS CNAME to output mqtt_nlb_dns_name); the MQTT certificate must cover it."
  type        = string

  validation {
    condition     = can(regex("^([a-z0-9-]+\\.)+[a-z]{2,}$", var.mqtt_domain_name)) && !can(regex("\\.(amazonaws\\.com|cloudfront\\.net)$", var.mqtt_domain_name))
    error_message = "mqtt_domain_name must be a lower-case DNS name of your own (not the NLB's amazonaws.com name: no ACM certificate can cover it)."
  }
}

variable "certificate_arn" {
  description = "ACM certificate (same region) for the ALB HTTPS listener."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/.+$", var.certificate_arn))
    error_message = "certificate_arn must be an ACM certificate ARN."
  }
}

variable "certificate_domains" {
  description = "The names certificate_arn holds (its domain and subject alternative names, e.g. [\"*.example.com\"]). Plan fails unless domain_name matches one of them."
  type        = list(string)

  validation {
    condition     = length(var.certificate_domains) > 0 && alltrue([for d in var.certificate_domains : can(regex("^(\\*\\.)?([a-z0-9-]+\\.)+[a-z]{2,}$", d))])
    error_message = "certificate_domains must list the certificate's DNS names (a leading \"*.\" for wildcards)."
  }
}

variable "mqtt_certificate_arn" {
  description = "ACM certificate for the NLB MQTT TLS listener (8883). Empty: reuse certificate_arn."
  type        = string
  default     = ""

  validation {
    condition     = var.mqtt_certificate_arn == "" || can(regex("^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/.+$", var.mqtt_certificate_arn))
    error_message = "mqtt_certificate_arn must be empty or an ACM certificate ARN."
  }
}

variable "mqtt_certificate_domains" {
  description = "The names mqtt_certificate_arn holds. Empty: certificate_domains (the MQTT listener reuses certificate_arn)."
  type        = list(string)
  default     = []
}

variable "console_certificate_arn" {
  description = "ACM certificate in us-east-1 for a custom console domain on CloudFront. Empty: CloudFront's own certificate."
  type        = string
  default     = ""

  validation {
    condition     = var.console_certificate_arn == "" || can(regex("^arn:aws[a-z-]*:acm:us-east-1:[0-9]{12}:certificate/.+$", var.console_certificate_arn))
    error_message = "console_certificate_arn must be empty or an ACM certificate ARN in us-east-1."
  }
}

variable "console_domain_name" {
  description = "Custom domain for the console SPA (needs console_certificate_arn)."
  type        = string
  default     = ""
}

variable "database_url" {
  description = "Timescale Cloud connection string (postgresql://...?sslmode=require). Null: put it into the secret out of band (README)."
  type        = string
  default     = null
  sensitive   = true

  validation {
    condition     = var.database_url == null || can(regex("^postgres(ql)?://", var.database_url))
    error_message = "database_url must start with postgresql:// or postgres://."
  }
}

variable "database_egress_cidrs" {
  description = "Where the services may open PostgreSQL connections (Timescale Cloud). Narrow to its egress range if known."
  type        = list(string)
  default     = ["0.0.0.0/0"]

  validation {
    condition     = alltrue([for c in var.database_egress_cidrs : can(cidrhost(c, 0))])
    error_message = "database_egress_cidrs must be IPv4 CIDRs."
  }
}

variable "queue_prefix" {
  description = "Prefix of queue and topic names (FLEETPULSE_QUEUE_PREFIX). Null: \"<project>-<environment>-\"."
  type        = string
  default     = null

  validation {
    condition     = var.queue_prefix == null || can(regex("^[A-Za-z0-9_-]{1,40}$", var.queue_prefix))
    error_message = "queue_prefix may hold letters, digits, dashes and underscores only (max 40)."
  }
}

variable "image_tag" {
  description = "Image tag used when Terraform registers a task definition. Deploys (GitHub Actions) register new revisions with the commit SHA."
  type        = string
  default     = "bootstrap"

  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]{1,128}$", var.image_tag))
    error_message = "image_tag must be a valid Docker tag."
  }
}

variable "service_desired_count" {
  description = "Initial task count of each Python service."
  type        = number
  default     = 1

  validation {
    condition     = var.service_desired_count >= 0 && var.service_desired_count <= 10
    error_message = "service_desired_count must be between 0 and 10."
  }
}

variable "autoscaling_max_tasks" {
  description = "Upper bound of the queue-depth autoscaling of evaluator and delivery_worker."
  type        = number
  default     = 4

  validation {
    condition     = var.autoscaling_max_tasks >= 1 && var.autoscaling_max_tasks <= 50
    error_message = "autoscaling_max_tasks must be between 1 and 50."
  }
}

variable "autoscaling_backlog_per_task" {
  description = "Target of visible SQS messages per running task for queue-depth target tracking."
  type        = number
  default     = 100

  validation {
    condition     = var.autoscaling_backlog_per_task > 0
    error_message = "autoscaling_backlog_per_task must be positive."
  }
}

variable "log_level" {
  description = "FLEETPULSE_LOG_LEVEL for every service."
  type        = string
  default     = "INFO"

  validation {
    condition     = contains(["DEBUG", "INFO", "WARNING", "ERROR"], var.log_level)
    error_message = "log_level must be DEBUG, INFO, WARNING or ERROR."
  }
}

variable "otlp_endpoint" {
  description = "FLEETPULSE_OTLP_ENDPOINT (an OTLP/HTTP collector). Empty: tracing export off."
  type        = string
  default     = ""
}

variable "log_retention_days" {
  description = "CloudWatch Logs retention."
  type        = number
  default     = 30

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a value CloudWatch Logs accepts."
  }
}

variable "encrypt_logs_with_kms" {
  description = "Encrypt CloudWatch log groups with the platform KMS key (otherwise AWS-owned keys)."
  type        = bool
  default     = true
}

variable "alarm_email" {
  description = "E-mail subscribed to the alarm topic. Empty: no subscription."
  type        = string
  default     = ""

  validation {
    condition     = var.alarm_email == "" || can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", var.alarm_email))
    error_message = "alarm_email must be empty or an e-mail address."
  }
}

variable "keycloak_image" {
  description = "Keycloak container image (pinned)."
  type        = string
  default     = "quay.io/keycloak/keycloak:26.2.5"

  validation {
    condition     = !endswith(var.keycloak_image, ":latest") && length(split(":", var.keycloak_image)) == 2
    error_message = "keycloak_image must carry an explicit, non-latest tag."
  }
}

variable "keycloak_realm" {
  description = "Keycloak realm the API trusts."
  type        = string
  default     = "fleetpulse"
}

variable "mosquitto_image" {
  description = "Mosquitto container image (pinned)."
  type        = string
  default     = "eclipse-mosquitto:2.0.21"

  validation {
    condition     = !endswith(var.mosquitto_image, ":latest") && length(split(":", var.mosquitto_image)) == 2
    error_message = "mosquitto_image must carry an explicit, non-latest tag."
  }
}

variable "keycloak_db_instance_class" {
  description = "RDS instance class of the Keycloak database."
  type        = string
  default     = "db.t4g.micro"

  validation {
    condition     = startswith(var.keycloak_db_instance_class, "db.")
    error_message = "keycloak_db_instance_class must be an RDS instance class (db.*)."
  }
}

variable "deletion_protection" {
  description = "Protect the ALB, NLB and Keycloak database from deletion."
  type        = bool
  default     = true
}

variable "enable_iot_core" {
  description = "Use AWS IoT Core for devices (X.509 + IoT policy, topic rule into the ingest queue) and CREDENTIALS_BACKEND=iot-core."
  type        = bool
  default     = false
}

variable "delivery_sns_topic_arns" {
  description = "Customer SNS topics the delivery worker may publish to (sns channel)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for a in var.delivery_sns_topic_arns : can(regex("^arn:aws[a-z-]*:sns:", a))])
    error_message = "delivery_sns_topic_arns must be SNS topic ARNs."
  }
}

variable "github_repository" {
  description = "owner/name of the GitHub repository whose main branch may deploy (OIDC). Empty: no deploy role."
  type        = string
  default     = ""

  validation {
    condition     = var.github_repository == "" || can(regex("^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", var.github_repository))
    error_message = "github_repository must be owner/name."
  }
}

variable "create_github_oidc_provider" {
  description = "Create the account's GitHub Actions OIDC provider (only one per account may exist)."
  type        = bool
  default     = true
}

variable "secrets_version" {
  description = "Generation of the passwords and keys Terraform generates (write-only, never in state). Raise it by one to rotate them all (README: Rotation)."
  type        = number
  default     = 1

  validation {
    condition     = var.secrets_version >= 1 && floor(var.secrets_version) == var.secrets_version
    error_message = "secrets_version must be a positive whole number."
  }
}

variable "smtp_secret_arn" {
  description = "Secrets Manager secret with the SMTP server of the email channel as JSON {host, port, username, password}. Empty: SES's SMTP interface, with credentials Terraform creates."
  type        = string
  default     = ""

  validation {
    condition     = var.smtp_secret_arn == "" || can(regex("^arn:aws[a-z-]*:secretsmanager:", var.smtp_secret_arn))
    error_message = "smtp_secret_arn must be empty or a Secrets Manager secret ARN."
  }
}

variable "smtp_from" {
  description = "Sender of alert email (FLEETPULSE_SMTP_FROM). With SES it must be a verified identity (its domain or address)."
  type        = string
  default     = "alerts@example.com"

  validation {
    condition     = can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", var.smtp_from))
    error_message = "smtp_from must be an e-mail address."
  }
}

variable "cloudfront_cache_policy_id" {
  description = "CloudFront cache policy of the console. Default: the AWS-managed Managed-CachingOptimized policy (its id is the same in every account)."
  type        = string
  default     = "658327ea-f89d-4fab-a63d-7e88639e58f6"
}

variable "cloudfront_response_headers_policy_id" {
  description = "CloudFront response headers policy of the console. Default: the AWS-managed Managed-SecurityHeadersPolicy."
  type        = string
  default     = "67f7725c-6f97-4210-82d7-5512b31e9d03"
}

variable "queue_age_alarm_seconds" {
  description = "Alarm when the oldest message of a work queue is older than this (seconds)."
  type        = number
  default     = 300

  validation {
    condition     = var.queue_age_alarm_seconds >= 60
    error_message = "queue_age_alarm_seconds must be at least 60."
  }
}

variable "queue_depth_alarm_messages" {
  description = "Alarm when a work queue holds more visible messages than this for 10 minutes."
  type        = number
  default     = 1000

  validation {
    condition     = var.queue_depth_alarm_messages > 0
    error_message = "queue_depth_alarm_messages must be positive."
  }
}

variable "emulator" {
  description = "Apply against an AWS emulator (moto, tests/infra): leaves out the resource types the emulator cannot create (README: What moto proves). Never set it for a real account."
  type        = bool
  default     = false
}

variable "terraform_state_bucket" {
  description = "S3 bucket holding this configuration's state (backend.hcl). With github_repository: creates the read-only role deploy.yml's plan job assumes."
  type        = string
  default     = ""
}
