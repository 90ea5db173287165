"""The README keeps its promises: the two commands, and a configuration table that matches the
settings classes exactly (regenerate with ``make config-table``)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def _config_table() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "config_table", ROOT / "scripts" / "config_table.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_configuration_table_matches_the_settings_classes() -> None:
    module = _config_table()
    readme = (ROOT / "README.md").read_text()
    assert module.insert_into(readme) == readme, (
        "README configuration table is stale: make config-table"
    )


def test_every_settings_field_is_in_the_readme() -> None:
    module = _config_table()
    readme = (ROOT / "README.md").read_text()
    for cls in module.settings_classes().values():
        for name in cls.model_fields:
            assert f"`FLEETPULSE_{name.upper()}`" in readme


def test_readme_names_the_two_setup_commands_and_they_exist() -> None:
    readme = (ROOT / "README.md").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert "make up" in readme and "make test" in readme and ".ci/run" in readme
    targets = set(re.findall(r"^([a-z-]+):", makefile, flags=re.MULTILINE))
    assert {"up", "down", "dev", "test", "test-fast", "bench", "smoke"} <= targets
    assert (ROOT / ".ci" / "run").stat().st_mode & 0o111
