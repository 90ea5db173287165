"""Static checks of infra/terraform: it parses, and its parsed model keeps the invariants the
platform relies on (every service has its image repository, task definition, log group and own
task role; every queue has a DLQ; only the load balancers face the internet).

The cross-checks run against the real tree and against mutated copies, so each one is shown to
catch the defect it exists for.
"""

from __future__ import annotations

import asyncio
import base64
import importlib
import itertools
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2
import pytest

from fleetpulse.common.errors import ConfigurationError
from fleetpulse.common.settings import load_settings

REPO = Path(__file__).resolve().parents[2]
TF_DIR = REPO / "infra" / "terraform"
PHASE45_FILES = {
    "main.tf",
    "variables.tf",
    "outputs.tf",
    "vpc.tf",
    "security_groups.tf",
    "ecr.tf",
    "secrets.tf",
    "rds.tf",
    "ecs.tf",
    "alb.tf",
    "cloudfront.tf",
    "cloudwatch.tf",
    "iam.tf",
    "sqs.tf",
    "sns.tf",
    "iot.tf",
}
CONTRACT_QUEUES = {"ingest", "evaluator", "dispatcher", "deliveries"}
OPEN_CIDRS = {"0.0.0.0/0", "::/0"}


# Services that run as scheduled one-shot tasks, with their own resources (exporter.tf,
# checked by tests/infra/test_lake.py) rather than an entry in local.services.
SCHEDULED_TASKS = {"exporter"}


def service_dirs() -> set[str]:
    """The long-running services as the repository has them: services/<svc>/pyproject.toml."""
    dirs = {p.parent.name for p in (REPO / "services").glob("*/pyproject.toml")}
    return dirs - SCHEDULED_TASKS


def _clean(value: Any) -> Any:
    """python-hcl2 keeps string quotes and adds bookkeeping keys; strip both."""
    if isinstance(value, dict):
        return {
            _clean(k): _clean(v)
            for k, v in value.items()
            if k not in ("__comments__", "__is_block__")
        }
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


@dataclass
class TerraformModel:
    resources: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    locals: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, tf_dir: Path) -> TerraformModel:
        model = cls()
        for path in sorted(tf_dir.glob("*.tf")):
            with path.open() as fh:
                doc = _clean(hcl2.load(fh))
            for block in doc.get("resource", []):
                for rtype, named in block.items():
                    for name, body in named.items():
                        assert (rtype, name) not in model.resources, f"duplicate {rtype}.{name}"
                        model.resources[(rtype, name)] = body
            for block in doc.get("locals", []):
                model.locals.update(block)
        return model

    def of_type(self, rtype: str) -> dict[str, dict[str, Any]]:
        return {name: body for (t, name), body in self.resources.items() if t == rtype}

    def instance_keys(self, rtype: str, name: str) -> set[str] | None:
        """Keys a for_each resource expands to, when they can be read statically; None if not."""
        body = self.resources.get((rtype, name))
        if body is None:
            return None
        expr = body.get("for_each")
        if expr is None:
            return None
        # `var.emulator ? {} : local.x` (plan-only under an AWS emulator) expands to local.x in AWS.
        match = re.fullmatch(r"\$\{(?:var\.emulator \? \{\} : )?local\.(\w+)\}", str(expr))
        if match and isinstance(self.locals.get(match.group(1)), dict):
            return set(self.locals[match.group(1)])
        match = re.fullmatch(r"\$\{(\w+)\.(\w+)\}", str(expr))
        if match and match.group(1) != "local":
            return self.instance_keys(match.group(1), match.group(2))
        return None


def per_service_problems(model: TerraformModel, services: set[str]) -> list[str]:
    """Every service: ECR repository, task definition, log group, and a task role of its own."""
    problems = []
    declared = set(model.locals.get("services", {}))
    if declared != services:
        problems.append(f"local.services {sorted(declared)} != services/ dirs {sorted(services)}")

    def covered_by(rtype: str) -> dict[str, set[str]]:
        return {n: model.instance_keys(rtype, n) or set() for n in model.of_type(rtype)}

    for rtype in (
        "aws_ecr_repository",
        "aws_ecs_task_definition",
        "aws_cloudwatch_log_group",
        "aws_iam_role",
        "aws_ecs_service",
    ):
        covered = set().union(*covered_by(rtype).values()) if model.of_type(rtype) else set()
        for svc in sorted(services - covered):
            problems.append(f"{svc}: no {rtype}")

    for name, keys in covered_by("aws_ecs_task_definition").items():
        if not keys & services:
            continue
        body = model.resources[("aws_ecs_task_definition", name)]
        role = str(body.get("task_role_arn", ""))
        m = re.fullmatch(r"\$\{aws_iam_role\.(\w+)\[each\.key\]\.arn\}", role)
        if not m or not services <= (model.instance_keys("aws_iam_role", m.group(1)) or set()):
            problems.append(
                f"aws_ecs_task_definition.{name}: task role is not per service ({role!r})"
            )
        elif m.group(1) == _execution_role(body):
            problems.append(f"aws_ecs_task_definition.{name}: task role is the execution role")
        containers = str(body.get("container_definitions", ""))
        for rtype, what in (
            ("aws_ecr_repository", "image"),
            ("aws_cloudwatch_log_group", "log group"),
        ):
            refs = re.findall(rf"{rtype}\.(\w+)\[each\.key\]", containers)
            if not any(services <= (model.instance_keys(rtype, r) or set()) for r in refs):
                problems.append(f"aws_ecs_task_definition.{name}: {what} is not the service's own")
        if "awslogs" not in containers:
            problems.append(f"aws_ecs_task_definition.{name}: no awslogs log driver")
    return problems


def _execution_role(task_definition: dict[str, Any]) -> str | None:
    m = re.search(r"aws_iam_role\.(\w+)", str(task_definition.get("execution_role_arn", "")))
    return m.group(1) if m else None


def queue_problems(model: TerraformModel) -> list[str]:
    """Every work queue has a dead-letter queue (redrive) covering all its instances, SSE, and
    an alarm on the DLQ's depth."""
    problems = []
    queues = model.of_type("aws_sqs_queue")
    dlq_refs = {
        name: re.search(
            r"deadLetterTargetArn\s*=\s*aws_sqs_queue\.(\w+)(\[each\.key\])?",
            str(b.get("redrive_policy", "")),
        )
        for name, b in queues.items()
    }
    dlqs = {m.group(1) for m in dlq_refs.values() if m}
    work = {n for n in queues if n not in dlqs}
    if not work:
        problems.append("no work queues")
    for name in sorted(work):
        keys = model.instance_keys("aws_sqs_queue", name) or {name}
        ref = dlq_refs[name]
        if ref is None:
            problems.append(f"aws_sqs_queue.{name}: no redrive policy to a dead-letter queue")
            continue
        dlq_keys = model.instance_keys("aws_sqs_queue", ref.group(1)) or {ref.group(1)}
        if ref.group(2) and not keys <= dlq_keys:
            problems.append(f"aws_sqs_queue.{name}: no DLQ for {sorted(keys - dlq_keys)}")
        if name == "main" and keys != CONTRACT_QUEUES:
            problems.append(
                f"aws_sqs_queue.{name}: queues {sorted(keys)} != {sorted(CONTRACT_QUEUES)}"
            )
    for name, body in queues.items():
        if not body.get("kms_master_key_id") and body.get("sqs_managed_sse_enabled") is not True:
            problems.append(f"aws_sqs_queue.{name}: not encrypted")
    alarmed = " ".join(
        str(a.get("dimensions", "")) for a in model.of_type("aws_cloudwatch_metric_alarm").values()
    )
    for dlq in dlqs:
        if f"aws_sqs_queue.{dlq}" not in alarmed:
            problems.append(f"aws_sqs_queue.{dlq}: no alarm on its depth")
    return problems


def open_ingress_problems(model: TerraformModel) -> list[str]:
    """Only the ALB's and the NLB's security groups may accept 0.0.0.0/0 or ::/0."""
    lb_groups = set()
    for body in model.of_type("aws_lb").values():
        lb_groups |= set(
            re.findall(r"aws_security_group\.(\w+)\.id", str(body.get("security_groups", "")))
        )
    problems = [] if lb_groups else ["no load balancer security groups found"]

    def group_of(expr: Any) -> str:
        m = re.fullmatch(r"\$\{aws_security_group\.(\w+)\.id\}", str(expr))
        return m.group(1) if m else str(expr)

    for name, rule in model.of_type("aws_vpc_security_group_ingress_rule").items():
        if {rule.get("cidr_ipv4"), rule.get("cidr_ipv6")} & OPEN_CIDRS:
            group = group_of(rule.get("security_group_id"))
            if group not in lb_groups:
                problems.append(
                    f"aws_vpc_security_group_ingress_rule.{name}: {group} open to the internet"
                )
    for name, rule in model.of_type("aws_security_group_rule").items():
        cidrs = set(rule.get("cidr_blocks", []) or []) | set(rule.get("ipv6_cidr_blocks", []) or [])
        if rule.get("type") == "ingress" and cidrs & OPEN_CIDRS:
            group = group_of(rule.get("security_group_id"))
            if group not in lb_groups:
                problems.append(f"aws_security_group_rule.{name}: {group} open to the internet")
    for name, sg in model.of_type("aws_security_group").items():
        for ingress in sg.get("ingress", []) or []:
            cidrs = set(ingress.get("cidr_blocks", []) or []) | set(
                ingress.get("ipv6_cidr_blocks", []) or []
            )
            if cidrs & OPEN_CIDRS and name not in lb_groups:
                problems.append(f"aws_security_group.{name}: inline ingress open to the internet")
    return problems


def secret_env_problems(model: TerraformModel) -> list[str]:
    """Credentials reach containers through `secrets` (valueFrom), never plain environment."""
    problems = []
    environment = str(model.locals.get("service_environment", ""))
    for svc, cfg in model.locals.get("services", {}).items():
        for env in cfg.get("secrets", {}):
            if env in environment:
                problems.append(f"{svc}: {env} set as plain environment")
        if "FLEETPULSE_DATABASE_URL" not in cfg.get("secrets", {}):
            problems.append(f"{svc}: FLEETPULSE_DATABASE_URL not injected from Secrets Manager")
    for name, body in model.of_type("aws_ecs_task_definition").items():
        text = str(body.get("container_definitions", ""))
        for bad in re.findall(
            r'name\s*=\s*"?([A-Z_]*(?:PASSWORD|DATABASE_URL|MQTT_URL|SECRET)[A-Z_]*)"?\s*,\s*value\s*=',
            text,
        ):
            problems.append(f"aws_ecs_task_definition.{name}: {bad} as plain environment")
    return problems


@pytest.fixture(scope="module")
def model() -> TerraformModel:
    return TerraformModel.load(TF_DIR)


def mutated(tmp_path: Path, file: str, old: str, new: str) -> TerraformModel:
    copy = tmp_path / "tf"
    shutil.copytree(TF_DIR, copy)
    text = (copy / file).read_text()
    assert old in text, f"mutation anchor not found in {file}: {old!r}"
    (copy / file).write_text(text.replace(old, new, 1))
    return TerraformModel.load(copy)


@pytest.mark.parametrize("path", sorted(TF_DIR.glob("*.tf")), ids=lambda p: p.name)
def test_every_file_parses(path: Path) -> None:
    with path.open() as fh:
        assert hcl2.load(fh)


def test_phase45_layout() -> None:
    present = {p.name for p in TF_DIR.glob("*.tf")}
    assert present >= PHASE45_FILES, f"missing {sorted(PHASE45_FILES - present)}"
    assert (TF_DIR / "README.md").is_file()


def test_every_service_has_repository_task_definition_log_group_and_own_role(
    model: TerraformModel,
) -> None:
    assert service_dirs() == {
        "ingest",
        "evaluator",
        "dispatcher",
        "delivery_worker",
        "provision_api",
    }
    assert per_service_problems(model, service_dirs()) == []


def test_every_queue_has_a_dlq_encryption_and_alarm(model: TerraformModel) -> None:
    assert queue_problems(model) == []


def test_only_load_balancers_are_open_to_the_internet(model: TerraformModel) -> None:
    assert open_ingress_problems(model) == []


def test_credentials_only_through_secrets(model: TerraformModel) -> None:
    assert secret_env_problems(model) == []


def test_cross_check_catches_a_queue_without_dlq(tmp_path: Path) -> None:
    broken = mutated(
        tmp_path, "sqs.tf", "  redrive_policy = jsonencode({", "  xredrive = jsonencode({"
    )
    assert any("no redrive policy" in p for p in queue_problems(broken))


def test_cross_check_catches_a_dlq_missing_for_one_queue(tmp_path: Path) -> None:
    broken = mutated(
        tmp_path,
        "sqs.tf",
        'resource "aws_sqs_queue" "dlq" {\n  for_each                          = local.queues',
        'resource "aws_sqs_queue" "dlq" {\n  for_each                          = local.queue_scaled_services',
    )
    assert any("no DLQ for" in p for p in queue_problems(broken))


def test_cross_check_catches_a_service_security_group_open_to_the_internet(tmp_path: Path) -> None:
    broken = mutated(
        tmp_path,
        "security_groups.tf",
        'resource "aws_vpc_security_group_ingress_rule" "alb_https" {\n  security_group_id = aws_security_group.alb.id',
        'resource "aws_vpc_security_group_ingress_rule" "alb_https" {\n  security_group_id = aws_security_group.keycloak.id',
    )
    assert open_ingress_problems(broken) == [
        "aws_vpc_security_group_ingress_rule.alb_https: keycloak open to the internet"
    ]


def test_cross_check_catches_a_shared_task_role(tmp_path: Path) -> None:
    broken = mutated(
        tmp_path,
        "ecs.tf",
        "task_role_arn            = aws_iam_role.task[each.key].arn",
        'task_role_arn            = aws_iam_role.task["ingest"].arn',
    )
    assert any(
        "task role is not per service" in p for p in per_service_problems(broken, service_dirs())
    )


def test_cross_check_catches_a_service_without_log_group(tmp_path: Path) -> None:
    broken = mutated(
        tmp_path,
        "cloudwatch.tf",
        'resource "aws_cloudwatch_log_group" "service" {\n  #checkov:skip=CKV_AWS_338:Dev landing zone keeps logs var.log_retention_days (30 by default) to bound cost; raise it for prod.\n  for_each          = local.services',
        'resource "aws_cloudwatch_log_group" "service" {\n  for_each          = local.queue_scaled_services',
    )
    problems = per_service_problems(broken, service_dirs())
    assert "ingest: no aws_cloudwatch_log_group" in problems


def test_cross_check_catches_a_plain_environment_secret(tmp_path: Path) -> None:
    broken = mutated(
        tmp_path,
        "ecs.tf",
        '{ name = "FLEETPULSE_LOG_LEVEL", value = var.log_level },',
        '{ name = "FLEETPULSE_LOG_LEVEL", value = var.log_level },\n        { name = "FLEETPULSE_DATABASE_URL", value = "postgresql://x" },',
    )
    assert any(
        "FLEETPULSE_DATABASE_URL set as plain environment" in p for p in secret_env_problems(broken)
    )


def test_ecr_repositories_are_immutable_scanned_and_expiring(model: TerraformModel) -> None:
    for name, repo in model.of_type("aws_ecr_repository").items():
        assert repo["image_tag_mutability"] == "IMMUTABLE", name
        assert repo["image_scanning_configuration"][0]["scan_on_push"] is True, name
    policies = model.of_type("aws_ecr_lifecycle_policy")
    assert any(str(p.get("for_each")) == "${aws_ecr_repository.service}" for p in policies.values())


def test_domain_event_subscriptions_are_filtered_and_raw(model: TerraformModel) -> None:
    subs = model.locals["domain_event_subscriptions"]
    assert set(subs) == {"dispatcher", "deliveries"}
    assert "Alert" in str(subs["dispatcher"]) and "DeliveryScheduled" in str(subs["deliveries"])
    sub = model.resources[("aws_sns_topic_subscription", "domain_events")]
    assert sub["raw_message_delivery"] is True
    assert sub["filter_policy_scope"] == "MessageAttributes"
    topic = model.resources[("aws_sns_topic", "domain_events")]
    assert topic["name"].endswith("domain-events}") or topic["name"].endswith("domain-events")


def test_alb_routes_and_hardening(model: TerraformModel) -> None:
    alb = model.resources[("aws_lb", "main")]
    assert alb["drop_invalid_header_fields"] is True
    rules = {n: str(r["condition"]) for n, r in model.of_type("aws_lb_listener_rule").items()}
    assert "/api/*" in rules["api"] and "/auth/*" in rules["keycloak"]
    http = model.resources[("aws_lb_listener", "http")]
    assert http["default_action"][0]["type"] == "redirect"
    assert (
        model.resources[("aws_lb_listener", "https")]["certificate_arn"] == "${var.certificate_arn}"
    )
    assert model.resources[("aws_lb_target_group", "api")]["health_check"][0]["path"] == "/readyz"
    assert model.resources[("aws_lb_listener", "mqtts")]["port"] == 8883
    assert model.resources[("aws_lb_listener", "mqtts")]["protocol"] == "TLS"


def test_queue_depth_autoscaling_for_evaluator_and_delivery_worker(model: TerraformModel) -> None:
    assert model.locals["queue_scaled_services"] == {
        "evaluator": "evaluator",
        "delivery_worker": "deliveries",
    }
    policy = model.resources[("aws_appautoscaling_policy", "queue_backlog")]
    assert "ApproximateNumberOfMessagesVisible" in str(policy)
    assert policy["for_each"] in (
        "${local.queue_scaled_services}",
        "${var.emulator ? {} : local.queue_scaled_services}",
    )


def test_iot_policy_uses_thing_variables_and_rule_targets_ingest_queue(
    model: TerraformModel,
) -> None:
    policy = str(model.resources[("aws_iot_policy", "device")]["policy"])
    assert "$${iot:Connection.Thing.ThingName}" in policy
    rule = model.resources[("aws_iot_topic_rule", "to_ingest")]
    assert "tenant/+/device/+/" in rule["sql"]
    assert 'aws_sqs_queue.main["ingest"]' in str(rule["sqs"])


def test_keycloak_database_is_private_encrypted_and_reachable_from_keycloak_only(
    model: TerraformModel,
) -> None:
    db = model.resources[("aws_db_instance", "keycloak")]
    assert db["publicly_accessible"] is False and db["storage_encrypted"] is True
    rules = [
        r
        for r in model.of_type("aws_vpc_security_group_ingress_rule").values()
        if r["security_group_id"] == "${aws_security_group.keycloak_db.id}"
    ]
    assert [r["referenced_security_group_id"] for r in rules] == [
        "${aws_security_group.keycloak.id}"
    ]


def test_every_variable_is_described_and_checkov_skips_carry_reasons() -> None:
    for path in TF_DIR.glob("*.tf"):
        for line in path.read_text().splitlines():
            if "checkov:skip" in line:
                assert re.search(r"#checkov:skip=CKV2?_[A-Z0-9_]+:\S.{10,}", line), (
                    f"{path.name}: {line.strip()}"
                )
    with (TF_DIR / "variables.tf").open() as fh:
        variables = _clean(hcl2.load(fh))["variable"]
    for block in variables:
        for name, body in block.items():
            assert body.get("description"), f"variable {name} has no description"


@pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform binary not installed")
def test_terraform_fmt() -> None:
    result = subprocess.run(
        ["terraform", "fmt", "-check", "-recursive", "-list=true", str(TF_DIR)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"not terraform-fmt formatted:\n{result.stdout}{result.stderr}"


def _branches(value: str) -> list[str]:
    """The values a setting can take: both arms of a ``${cond ? "a" : "b"}``, or itself."""
    arms = re.fullmatch(r'\$\{[^?]+\?\s*"([^"]*)"\s*:\s*"([^"]*)"\}', value)
    return list(arms.groups()) if arms else [value]


def environment_problems(model: TerraformModel, svc: str) -> list[str]:
    """Every plain setting a task gets must be a field of its Settings and a valid value for it,
    in every branch (IoT Core on or off): a bad one would stop the task at start."""
    settings = importlib.import_module(f"fleetpulse.{svc}.settings").Settings
    environment = model.locals["services"][svc]["environment"]
    problems = [
        f"{svc}: {name} is not a setting"
        for name in environment
        if name.removeprefix("FLEETPULSE_").lower() not in settings.model_fields
    ]
    required = {
        "FLEETPULSE_DATABASE_URL": "postgresql://u@db/x",
        "FLEETPULSE_MQTT_URL": "mqtt://u:p@b:1883",
        "FLEETPULSE_WEBHOOK_ENCRYPTION_KEY": base64.b64encode(bytes(32)).decode(),
        "FLEETPULSE_OIDC_ISSUER": "https://auth.example.com/realms/fleetpulse",
    }
    for combo in itertools.product(*(_branches(v) for v in environment.values())):
        try:
            asyncio.run(
                load_settings(settings, {**required, **dict(zip(environment, combo, strict=True))})
            )
        except ConfigurationError as exc:
            problems.append(f"{svc}: {exc}")
    return problems


@pytest.mark.parametrize("svc", sorted(service_dirs()))
def test_task_environment_loads_into_the_service_settings(model: TerraformModel, svc: str) -> None:
    assert environment_problems(model, svc) == []


def test_cross_check_catches_a_task_setting_that_would_stop_ingest(tmp_path: Path) -> None:
    broken = mutated(
        tmp_path,
        "main.tf",
        'FLEETPULSE_MQTT_CONNECTIONS = "1"',
        'FLEETPULSE_MQTT_CONNECTIONS = "4"',
    )
    assert any("FLEETPULSE_MQTT_SHARE_GROUP" in p for p in environment_problems(broken, "ingest"))


def test_ingest_runs_one_task_with_a_restorable_subscription_and_the_iot_queue(
    model: TerraformModel,
) -> None:
    ingest = model.locals["services"]["ingest"]
    assert ingest["single_task"] is True
    assert [s for s, cfg in model.locals["services"].items() if cfg["single_task"]] == ["ingest"]
    assert ingest["environment"]["FLEETPULSE_MQTT_SHARE_GROUP"] == ""
    assert "sqs" in _branches(ingest["environment"]["FLEETPULSE_SOURCES"])[0].split(",")
    service = model.resources[("aws_ecs_service", "service")]
    assert service["desired_count"] == "${each.value.single_task ? 1 : var.service_desired_count}"
    assert service["deployment_minimum_healthy_percent"] == "${each.value.single_task ? 0 : 100}"
    assert service["deployment_maximum_percent"] == "${each.value.single_task ? 100 : 200}"
    assert "cfg.environment" in str(model.locals["service_environment"])


def test_only_provision_api_uses_the_broker_admin_and_the_broker_creates_service_users(
    model: TerraformModel,
) -> None:
    mqtt = {
        svc: cfg["secrets"]["FLEETPULSE_MQTT_URL"]["secret"]
        for svc, cfg in model.locals["services"].items()
        if "FLEETPULSE_MQTT_URL" in cfg["secrets"]
    }
    assert mqtt == {
        "ingest": "mqtt_ingest",
        "delivery_worker": "mqtt_delivery",
        "provision_api": "mqtt_admin",
    }
    broker = str(model.resources[("aws_ecs_task_definition", "mosquitto")]["container_definitions"])
    assert '"service-users"' in broker and "local.service_users_script" in broker
    path = re.fullmatch(
        r'\$\{file\("\$\{path\.module\}/([^"]+)"\)\}', model.locals["service_users_script"]
    )
    assert path, model.locals["service_users_script"]
    assert (TF_DIR / path.group(1)).resolve() == REPO / "compose" / "mosquitto" / "service-users.sh"
    wanted = {
        "MQTT_ADMIN_USER",
        "MQTT_ADMIN_PASSWORD",
        "MQTT_INGEST_PASSWORD",
        "MQTT_DELIVERY_PASSWORD",
    }
    assert {s["name"] for s in model.locals["service_users_secrets"]} == wanted
    script = (REPO / "compose" / "mosquitto" / "service-users.sh").read_text()
    assert all(f"${{{name}" in script for name in wanted)
