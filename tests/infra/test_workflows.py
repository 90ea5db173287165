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


def test_deploy_workflow() -> None:
    doc = load("deploy.yml")
    assert set(doc["on"]) == {"push", "workflow_dispatch"}
    assert doc["on"]["push"]["branches"] == ["main"]
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
    assert "github.sha" in str(build) or "IMAGE_TAG" in str(build)

    deploy = jobs["deploy"]
    # the exporter is no ECS service: its scheduled task runs the task definition Terraform keeps
    assert sorted(deploy["strategy"]["matrix"]["service"]) == sorted(set(SERVICES) - {"exporter"})
    assert uses(deploy, "aws-actions/amazon-ecs-render-task-definition")
    (ecs,) = uses(deploy, "aws-actions/amazon-ecs-deploy-task-definition")
    assert ecs["with"]["wait-for-service-stability"] is True
    assert "migrate" in str(deploy["needs"])
    assert "build" in str(jobs["migrate"]["needs"])

    smoke = jobs["smoke"]
    assert "deploy" in str(smoke["needs"])
    (step,) = [s for s in steps(smoke) if "make smoke" in str(s.get("run", ""))]
    assert "FLEETPULSE_API_URL" in step["env"]
