""".github/workflows: valid against the GitHub workflow schema, and wired as the deploy needs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO / ".github" / "workflows"
SERVICES = sorted(p.parent.name for p in (REPO / "services").glob("*/pyproject.toml"))


def load(name: str) -> dict[Any, Any]:
    doc = yaml.safe_load((WORKFLOWS / name).read_text())
    doc["on"] = doc.pop(True, doc.get("on"))  # YAML 1.1 reads the key `on` as True
    return doc


def steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    return job.get("steps", [])


def uses(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [s for s in steps(job) if str(s.get("uses", "")).startswith(action + "@")]


def test_workflows_match_the_github_schema() -> None:
    beside_python = Path(sys.executable).parent / "check-jsonschema"
    binary = str(beside_python) if beside_python.exists() else shutil.which("check-jsonschema")
    if binary is None:
        pytest.fail("check-jsonschema not found: it is a dev dependency")
    files = sorted(str(p) for p in WORKFLOWS.glob("*.yml"))
    assert {Path(f).name for f in files} >= {"test.yml", "deploy.yml"}
    result = subprocess.run(
        [binary, "--builtin-schema", "vendor.github-workflows", *files],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_test_workflow_runs_the_make_targets() -> None:
    doc = load("test.yml")
    runs = " ".join(str(s.get("run", "")) for job in doc["jobs"].values() for s in steps(job))
    assert "make lint" in runs and "make test" in runs
    assert "postgres" in doc["jobs"]["test"]["services"]
    assert "mosquitto" in runs


def deploy_trigger_problems(doc: dict[str, Any]) -> list[str]:
    """The deploy must follow a passed `test` run and deploy the commit that run tested."""
    problems = []
    trigger = doc["on"]
    if set(trigger) != {"workflow_run"}:
        problems.append(f"triggers {sorted(trigger)}: anything but workflow_run skips the tests")
    run = trigger.get("workflow_run") or {}
    if run.get("workflows") != ["test"] or run.get("types") != ["completed"]:
        problems.append("not triggered by the completed `test` workflow")
    if run.get("branches") != ["main"]:
        problems.append("not limited to main")
    jobs = doc["jobs"]
    roots = [name for name, job in jobs.items() if not job.get("needs")]
    for name in roots:
        cond = " ".join(str(jobs[name].get("if", "")).split())
        if "github.event.workflow_run.conclusion == 'success'" not in cond:
            problems.append(f"job {name} runs without the test run's success")
    for name, job in jobs.items():
        for step in steps(job):
            if str(step.get("uses", "")).startswith("actions/checkout@"):
                ref = str((step.get("with") or {}).get("ref", ""))
                if "github.event.workflow_run.head_sha" not in ref:
                    problems.append(
                        f"job {name} checks out {ref or 'the default branch'}, not the tested commit"
                    )
    if "workflow_run.head_sha" not in str(doc.get("env", {}).get("IMAGE_TAG", "")):
        problems.append("images are not tagged with the tested commit")
    return problems


def test_deploy_runs_only_after_the_tests_passed_on_the_same_commit() -> None:
    doc = load("deploy.yml")
    assert deploy_trigger_problems(doc) == []
    # The old trigger: every push to main, tests or not.
    old = {**doc, "on": {"push": {"branches": ["main"]}, "workflow_dispatch": None}}
    old["jobs"] = {
        k: {kk: vv for kk, vv in v.items() if kk != "if"} for k, v in doc["jobs"].items()
    }
    problems = deploy_trigger_problems(old)
    assert any("anything but workflow_run" in p for p in problems)
    assert any("runs without the test run's success" in p for p in problems)


def test_deploy_plans_with_oidc_and_remote_state_before_building() -> None:
    jobs = load("deploy.yml")["jobs"]
    plan = jobs["plan"]
    (cred,) = uses(plan, "aws-actions/configure-aws-credentials")
    assert cred["with"]["role-to-assume"] == "${{ vars.AWS_PLAN_ROLE_ARN }}"
    runs = "\n".join(str(s.get("run", "")) for s in steps(plan))
    assert "terraform init" in runs and "-backend-config=" in runs and "-backend=false" not in runs
    assert "terraform plan" in runs and "GITHUB_STEP_SUMMARY" in runs
    (setup,) = uses(plan, "hashicorp/setup-terraform")
    assert setup["with"]["terraform_version"] == "1.11.4"
    assert "plan" in str(jobs["build"]["needs"])
    # Reviewers approve the `dev` environment after reading the plan.
    assert all(jobs[j].get("environment") == "dev" for j in ("build", "migrate", "deploy"))


def test_deploy_workflow() -> None:
    doc = load("deploy.yml")
    assert doc["permissions"]["id-token"] == "write"
    jobs = doc["jobs"]
    for job in jobs.values():
        for cred in uses(job, "aws-actions/configure-aws-credentials"):
            assert "role-to-assume" in cred["with"]
            assert not {"aws-access-key-id", "aws-secret-access-key"} & set(cred["with"])

    build = jobs["build"]
    assert sorted(build["strategy"]["matrix"]["service"]) == SERVICES
    assert uses(build, "aws-actions/amazon-ecr-login")
    push = uses(build, "docker/build-push-action")[0]["with"]
    assert push["push"] is True and "matrix.service" in push["file"]
    assert "IMAGE_TAG" in str(build)

    deploy = jobs["deploy"]
    # the exporter is no ECS service: its scheduled task runs the task definition Terraform keeps
    assert sorted(deploy["strategy"]["matrix"]["service"]) == sorted(set(SERVICES) - {"exporter"})
    assert uses(deploy, "aws-actions/amazon-ecs-render-task-definition")
    (ecs,) = uses(deploy, "aws-actions/amazon-ecs-deploy-task-definition")
    assert ecs["with"]["wait-for-service-stability"] is True
    assert "migrate" in str(deploy["needs"])
    assert "build" in str(jobs["migrate"]["needs"])


def smoke_problems(job: dict[str, Any]) -> list[str]:
    """The smoke job must be able to pass against AWS (issue 15)."""
    problems = []
    runs = "\n".join(str(s.get("run", "")) for s in steps(job))
    env = {k: v for s in steps(job) for k, v in (s.get("env") or {}).items()}
    if "--mode aws" not in runs:
        problems.append("smoke does not run in AWS mode (dev-issuer tokens, loopback receiver)")
    if "secretsmanager get-secret-value" not in runs or "SMOKE_CLIENT_SECRET_ARN" not in str(env):
        problems.append("no client secret from Secrets Manager")
    if "::add-mask::" not in runs:
        problems.append("the client secret is not masked")
    if not uses(job, "aws-actions/configure-aws-credentials"):
        problems.append("no AWS credentials to read the secret")
    return problems


def test_smoke_uses_client_credentials_from_secrets_manager() -> None:
    smoke = load("deploy.yml")["jobs"]["smoke"]
    assert "deploy" in str(smoke["needs"])
    assert smoke_problems(smoke) == []
    (step,) = [s for s in steps(smoke) if "make smoke" in str(s.get("run", ""))]
    assert "FLEETPULSE_API_URL" in step["env"]
    old = {
        "steps": [{"name": "make smoke", "run": "make smoke", "env": {"FLEETPULSE_API_URL": "x"}}]
    }
    assert len(smoke_problems(old)) == 4


def test_test_workflow_provides_terraform_and_the_provider_mirror() -> None:
    test = load("test.yml")["jobs"]["test"]
    (setup,) = uses(test, "hashicorp/setup-terraform")
    assert setup["with"]["terraform_version"] == "1.11.4"
    runs = "\n".join(str(s.get("run", "")) for s in steps(test))
    assert "providers mirror" in runs
