"""The first commands on a fresh machine: no uv on PATH, nothing in ~/.local/bin."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FRESH_PATH = "/usr/local/bin:/usr/bin:/bin"


def _fresh_env(home: Path) -> dict[str, str]:
    return {"HOME": str(home), "PATH": FRESH_PATH, "LANG": "C.UTF-8"}


@pytest.mark.slow
def test_make_finds_or_installs_uv_itself(tmp_path: Path) -> None:
    if (
        shutil.which("python3", path=FRESH_PATH) is None
        or shutil.which("make", path=FRESH_PATH) is None
    ):
        pytest.fail("this check needs python3 and make in /usr/bin")
    env = _fresh_env(tmp_path)
    # control: in this environment there is no uv, so a bare `uv` is what failed before
    assert shutil.which("uv", path=FRESH_PATH) is None
    bare = subprocess.run(["bash", "-c", "uv --version"], env=env, capture_output=True, text=True)
    assert bare.returncode == 127

    first = subprocess.run(
        ["make", "-s", "-C", str(ROOT), "uv"], env=env, capture_output=True, text=True, timeout=300
    )
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("uv "), first.stdout
    assert "installing it from PyPI" in first.stderr
    installed = tmp_path / ".local" / "bin" / "uv"
    assert installed.is_symlink() and os.access(installed, os.X_OK)

    again = subprocess.run(
        ["make", "-s", "-C", str(ROOT), "uv"], env=env, capture_output=True, text=True, timeout=60
    )
    assert again.returncode == 0 and again.stdout == first.stdout
    assert "installing" not in again.stderr  # found in ~/.local/bin, not installed twice


def test_ci_and_makefile_share_the_uv_installer() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert "pip install" not in ci  # no system pip: PEP 668 refuses it on Debian 12/13
    assert "./scripts/uv --version" in ci
    assert "UV ?= $(CURDIR)/scripts/uv" in makefile
