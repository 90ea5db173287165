"""Terraform against moto: a temporary copy of the module, the provider plugin directory this
machine (and CI) has, and a provider override file that points every AWS service the module uses
at a moto server. The override is written only into the temporary copy, never into
infra/terraform.

tests/infra/conftest.py turns these into fixtures (``terraform``: a fresh copy, initialised
without a backend).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pytest


def _repo_root() -> Path:
    """The checkout holding infra/terraform (this package is installed editable from it)."""
    for parent in [Path.cwd(), *Path(__file__).resolve().parents]:
        if (parent / "infra" / "terraform").is_dir():
            return parent
    raise RuntimeError("infra/terraform not found above the working directory")


REPO = _repo_root()
TF_DIR = REPO / "infra" / "terraform"
# Files outside the module that it reads with file(): copied beside it, same relative layout.
MODULE_INPUTS = ("compose/keycloak", "compose/mosquitto")
REGION = "eu-central-1"

# Every AWS service the module talks to (provider endpoint names). A new file using another
# service must add it here, or plan/apply would reach for the real AWS endpoint and fail on the
# test credentials.
MOTO_ENDPOINTS = (
    "appautoscaling",
    "athena",
    "cloudfront",
    "cloudwatch",
    "ec2",
    "ecr",
    "ecs",
    "efs",
    "elbv2",
    "glue",
    "iam",
    "iot",
    "kms",
    "logs",
    "rds",
    "s3",
    "scheduler",
    "secretsmanager",
    "servicediscovery",
    "sns",
    "sqs",
    "sts",
)

# Inputs a plan needs (no defaults): explicit public names and the certificate's names.
REQUIRED_VARS: dict[str, Any] = {
    "domain_name": "api.fleetpulse.test",
    "mqtt_domain_name": "mqtt.fleetpulse.test",
    "certificate_arn": f"arn:aws:acm:{REGION}:123456789012:certificate/00000000-test",
    "certificate_domains": ["*.fleetpulse.test"],
    "deletion_protection": False,
}


@cache
def plugin_dir() -> Path:
    """The parent of the `registry.terraform.io` folder `find / -xdev -maxdepth 4` prints."""
    result = subprocess.run(
        ["find", "/", "-xdev", "-maxdepth", "4", "-type", "d", "-name", "registry.terraform.io"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    found = [line for line in result.stdout.splitlines() if line.strip()]
    if not found:
        pytest.fail(
            "no terraform provider plugin directory (registry.terraform.io) on this machine"
        )
    return Path(found[0]).parent


def require_terraform() -> str:
    binary = shutil.which("terraform")
    if binary is None:
        pytest.fail("terraform is not on PATH (CI installs it: .ci/run)")
    return binary


def copy_module(dest: Path) -> Path:
    """infra/terraform (without local state or plugins) and its inputs, under ``dest``."""
    module = dest / "infra" / "terraform"
    shutil.copytree(
        TF_DIR,
        module,
        ignore=shutil.ignore_patterns(
            ".terraform", "*.tfstate*", ".terraform.lock.hcl", "*.tfvars"
        ),
    )
    for rel in MODULE_INPUTS:
        shutil.copytree(REPO / rel, dest / rel)
    return module


def moto_override(endpoint: str) -> str:
    """Provider and backend override (Terraform merges *_override.tf over the module)."""
    endpoints = "\n".join(f'    {name} = "{endpoint}"' for name in MOTO_ENDPOINTS)
    return f"""terraform {{
  backend "local" {{}}
}}

provider "aws" {{
  region                      = "{REGION}"
  access_key                  = "testing"
  secret_key                  = "testing"
  skip_credentials_validation = true
  skip_requesting_account_id  = true
  skip_metadata_api_check     = true
  skip_region_validation      = true
  s3_use_path_style           = true

  endpoints {{
{endpoints}
  }}
}}
"""


@dataclass
class Terraform:
    """terraform in one directory; every call checked, output kept for the failure message."""

    module: Path
    env: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def run(
        self, *args: str, timeout: float = 900, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        started = time.monotonic()
        result = subprocess.run(
            [require_terraform(), *args],
            cwd=self.module,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "TF_IN_AUTOMATION": "1", "NO_COLOR": "1", **self.env},
        )
        self.timings[args[0]] = self.timings.get(args[0], 0.0) + time.monotonic() - started
        if check and result.returncode != 0:
            raise AssertionError(
                f"terraform {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout[-4000:]}\n{result.stderr[-6000:]}"
            )
        return result

    def init(self, *, backend: bool) -> None:
        self.run(
            "init",
            "-input=false",
            "-no-color",
            f"-plugin-dir={plugin_dir()}",
            *([] if backend else ["-backend=false"]),
            timeout=300,
        )

    def write_vars(self, values: dict[str, Any]) -> Path:
        path = self.module / "test.auto.tfvars.json"
        path.write_text(json.dumps({**REQUIRED_VARS, **values}, indent=2))
        return path

    def plan(
        self, values: dict[str, Any], *extra: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        self.write_vars(values)
        return self.run("plan", "-input=false", "-no-color", "-out=tfplan", *extra, check=check)

    def show_plan(self) -> dict[str, Any]:
        return dict(json.loads(self.run("show", "-json", "tfplan").stdout))


def moto_module(dest: Path, endpoint: str) -> Terraform:
    module = copy_module(dest)
    (module / "zz_moto_override.tf").write_text(moto_override(endpoint))
    tf = Terraform(
        module,
        env={
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": REGION,
        },
    )
    tf.init(backend=True)
    return tf


def unique_project() -> str:
    """Resource names unique on the shared moto server (project is the first part of each)."""
    return f"t{uuid.uuid4().hex[:8]}"
