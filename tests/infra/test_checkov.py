"""checkov over infra/terraform, isolated from the workspace venv (uvx). Every skip is an
inline `#checkov:skip=ID:reason` comment (test_terraform checks the reasons)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_checkov_passes() -> None:
    uvx = shutil.which("uvx")
    if uvx is None:
        pytest.fail("uvx (from uv) is required to run checkov isolated from the workspace")
    result = subprocess.run(
        [
            uvx,
            "--from",
            "checkov",
            "checkov",
            "-d",
            "infra/terraform",
            "--skip-download",
            "--quiet",
            "--compact",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
    assert "Failed checks: 0" in result.stdout
