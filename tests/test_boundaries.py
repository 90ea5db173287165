"""Services never import each other: each imports ``fleetpulse.common`` and itself only, so a
service image (which installs just the service and libs/common) cannot miss a sibling at run
time. Shared pure code (e.g. the rule core the evaluator and the API's backtest both run) lives
in ``libs/common``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SERVICES = sorted(p.name for p in (ROOT / "services").iterdir() if (p / "src").is_dir())


def foreign_imports(source: str, own: str) -> list[str]:
    """Modules under ``fleetpulse.`` that ``source`` imports other than common and ``own``."""
    allowed = ("fleetpulse.common", f"fleetpulse.{own}")
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        found += [n for n in names if n.startswith("fleetpulse.") and not n.startswith(allowed)]
    return found


def test_the_check_finds_a_sibling_import() -> None:
    source = "from fleetpulse.evaluator.domain import Rule\nimport fleetpulse.common.db\n"
    assert foreign_imports(source, "provision_api") == ["fleetpulse.evaluator.domain"]
    assert foreign_imports(source, "evaluator") == []


@pytest.mark.parametrize("svc", SERVICES)
def test_service_imports_only_common_and_itself(svc: str) -> None:
    offenders = {
        str(path.relative_to(ROOT)): bad
        for path in (ROOT / "services" / svc / "src").rglob("*.py")
        if (bad := foreign_imports(path.read_text(), svc))
    }
    assert not offenders, offenders
