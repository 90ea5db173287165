"""The console and the API cannot drift, its units pass, and its initial JavaScript stays in budget.

- ``console/src/api/schema.d.ts`` equals what openapi-typescript generates now from the app's
  OpenAPI document (``scripts/openapi_json.py``): an API change without regenerated types fails.
- Vitest runs the console's unit tests.
- The production build's initial JavaScript (entry chunk and its static imports), gzipped, is at
  most 250 KB (``console/scripts/bundle-size.mjs``, run by ``npm run build``).

Needs ``console/node_modules`` (``make console``; ``.ci/run`` runs it).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONSOLE = ROOT / "console"
BUDGET_KB = 250
REGENERATE = (
    "uv run python scripts/openapi_json.py --write /tmp/openapi.json && cd console && "
    "npx openapi-typescript /tmp/openapi.json -o src/api/schema.d.ts"
)


@pytest.fixture(scope="module")
def npx() -> str:
    found = shutil.which("npx")
    if found is None or not (CONSOLE / "node_modules").is_dir():
        pytest.fail("console/node_modules is missing: run `make console` (.ci/run does)")
    return found


def test_api_types_are_generated_from_the_current_openapi(npx: str, tmp_path: Path) -> None:
    document = tmp_path / "openapi.json"
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "openapi_json.py"), "--write", str(document)],
        check=True,
        timeout=120,
    )
    generated = tmp_path / "schema.d.ts"
    subprocess.run(
        [npx, "openapi-typescript", str(document), "-o", str(generated)],
        cwd=CONSOLE,
        check=True,
        capture_output=True,
        timeout=120,
    )
    checked_in = (CONSOLE / "src" / "api" / "schema.d.ts").read_text()
    assert generated.read_text() == checked_in, f"API types are stale; regenerate: {REGENERATE}"


def test_console_unit_tests_pass(npx: str) -> None:
    result = subprocess.run(
        [npx, "vitest", "run"], cwd=CONSOLE, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert " passed" in result.stdout


def test_initial_javascript_within_budget(npx: str) -> None:
    report_file = CONSOLE / "dist" / "bundle-size.json"
    if not report_file.is_file():
        subprocess.run(["npm", "run", "build"], cwd=CONSOLE, check=True, timeout=600)
    measured = subprocess.run(
        ["node", "scripts/bundle-size.mjs", "--budget-kb", str(BUDGET_KB)],
        cwd=CONSOLE,
        capture_output=True,
        text=True,
        timeout=60,
    )
    report = json.loads(report_file.read_text())
    assert measured.returncode == 0, measured.stdout + measured.stderr
    assert 0 < report["initial_js_gzip_bytes"] <= BUDGET_KB * 1024
    assert any(f["file"].startswith("assets/index-") for f in report["files"])
    # lazily loaded pages stay out of the initial set (what keeps it small)
    assert not any("Device-" in f["file"] for f in report["files"]), report["files"]
