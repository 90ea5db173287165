"""`terraform validate` of infra/terraform with only what this machine has: Terraform and the AWS
provider in a local plugin directory (no registry, no other provider). Runs in `make test`."""

from __future__ import annotations

import re
from pathlib import Path

import hcl2

from fleetpulse.testing.terraform import TF_DIR, Terraform


def test_terraform_validate(terraform: Terraform) -> None:
    result = terraform.run("validate", "-no-color")
    assert "The configuration is valid" in result.stdout, result.stdout + result.stderr


def test_validate_catches_a_content_type_the_provider_refuses(terraform: Terraform) -> None:
    alb = terraform.module / "alb.tf"
    alb.write_text(
        alb.read_text().replace(
            'content_type = "application/json"', 'content_type = "application/problem+json"', 1
        )
    )
    result = terraform.run("validate", "-no-color", check=False)
    assert result.returncode != 0
    assert "content_type" in result.stderr + result.stdout


def test_the_module_needs_the_aws_provider_alone() -> None:
    providers: set[str] = set()
    uses: set[str] = set()
    for path in TF_DIR.glob("*.tf"):
        with path.open() as fh:
            doc = hcl2.load(fh)
        for block in doc.get("terraform", []):
            for required in block.get("required_providers", []):
                providers |= {k for k in required if not k.startswith("__")}
        text = path.read_text()
        uses |= set(re.findall(r'^(?:resource|data|ephemeral)\s+"([a-z0-9]+)_', text, re.M))
    assert providers == {"aws"}
    assert uses == {"aws"}, f"resource types of other providers: {sorted(uses - {'aws'})}"


def test_no_override_or_state_file_is_committed() -> None:
    leftovers = [
        p.name
        for p in Path(TF_DIR).iterdir()
        if p.name.endswith(("_override.tf", ".tfstate", ".tfstate.backup"))
        or p.name == "override.tf"
    ]
    assert leftovers == []
