"""`terraform plan` against moto's server: inputs that cannot work fail the plan with a message
naming the setting, and what the apply suite leaves out under var.emulator is planned without it.

Runs one initialised copy of the module and plans it with different inputs.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from fleetpulse.testing.terraform import Terraform, moto_module

# terraform against moto: the module fixture (apply takes 2-5 min, more on a loaded machine) runs
# inside the first test's timeout
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

EMULATOR_PLAN_ONLY = {
    "aws_sqs_queue_redrive_allow_policy",
    "aws_efs_backup_policy",
    "aws_iot_policy",
    "aws_iot_topic_rule",
    "aws_appautoscaling_target",
    "aws_appautoscaling_policy",
    "aws_athena_workgroup",
}


@pytest.fixture(scope="module")
def tf(terraform_moto: str, tmp_path_factory: pytest.TempPathFactory) -> Terraform:
    return moto_module(tmp_path_factory.mktemp("plan"), terraform_moto)


def failed_plan(tf: Terraform, values: dict[str, Any]) -> str:
    result = tf.plan(values, check=False)
    assert result.returncode != 0, f"plan passed with {values}"
    return " ".join((result.stdout + result.stderr).split())  # unwrap Terraform's line breaks


def outputs(tf: Terraform) -> dict[str, Any]:
    plan = tf.show_plan()
    return {k: v.get("after") for k, v in plan["output_changes"].items()}


def test_plan_with_explicit_names_tells_devices_and_the_api_those_names(tf: Terraform) -> None:
    tf.plan({})
    out = outputs(tf)
    assert out["mqtt_endpoint"] == "mqtts://mqtt.fleetpulse.test:8883"
    assert out["oidc_issuer"] == "https://api.fleetpulse.test/auth/realms/fleetpulse"
    assert out["alb_url"] == "https://api.fleetpulse.test"


def test_without_emulator_the_plan_holds_what_moto_cannot_create(tf: Terraform) -> None:
    # Exact names on the certificate instead of a wildcard are accepted too.
    names = ["api.fleetpulse.test", "mqtt.fleetpulse.test"]
    tf.plan({"enable_iot_core": True, "certificate_domains": names})
    planned = {r["type"] for r in tf.show_plan()["resource_changes"]}
    assert planned >= EMULATOR_PLAN_ONLY


def test_plan_fails_when_a_certificate_cannot_cover_a_name(tf: Terraform) -> None:
    # Both listeners' preconditions fail in one plan, each with its own message.
    text = failed_plan(tf, {"domain_name": "api.other.test", "mqtt_domain_name": "mqtt.other.test"})
    assert "does not cover domain_name api.other.test" in text
    assert "does not cover mqtt_domain_name mqtt.other.test" in text
    # A wildcard covers exactly one label; a separate MQTT certificate is checked by its names.
    text = failed_plan(
        tf,
        {
            "domain_name": "a.api.fleetpulse.test",
            "mqtt_certificate_arn": "arn:aws:acm:eu-central-1:123456789012:certificate/mqtt",
            "mqtt_certificate_domains": ["devices.fleetpulse.test"],
        },
    )
    assert "does not cover domain_name a.api.fleetpulse.test" in text
    assert "does not cover mqtt_domain_name mqtt.fleetpulse.test" in text


def test_plan_refuses_load_balancer_names_and_empty_names(tf: Terraform) -> None:
    elb = "fleetpulse-dev-alb-1.eu-central-1.elb.amazonaws.com"
    for values in (
        {"domain_name": elb, "mqtt_domain_name": ""},
        {"domain_name": "", "mqtt_domain_name": elb},
    ):
        text = failed_plan(tf, values)
        assert re.search(r"(?<!mqtt_)domain_name must be a lower-case DNS name of your own", text)
        assert "mqtt_domain_name must be a lower-case DNS name of your own" in text


def test_the_override_file_lives_only_in_the_copy(tf: Terraform) -> None:
    assert (tf.module / "zz_moto_override.tf").exists()
    repo_module = Path(__file__).resolve().parents[2] / "infra" / "terraform"
    assert not list(repo_module.glob("*override.tf"))
