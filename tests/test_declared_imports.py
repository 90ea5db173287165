"""Each shipped package declares what it imports (as Home Assistant's hassfest checks manifests).

A service image installs the service's own dependencies (and, through them, its workspace
libraries'); an import that only works because a sibling happens to pull the distribution in
breaks the day that sibling drops it. So every package under ``libs/``, ``services/`` and
``tools/`` must list, in its own ``pyproject.toml``, each third-party distribution its ``src``
imports at run time (``if TYPE_CHECKING:`` blocks excepted), and each workspace package
(``fleetpulse.<name>``) it imports other than itself. Import names are mapped to distributions
with :func:`importlib.metadata.packages_distributions`; a requirement's extras count as declared
(``pyjwt[crypto]`` declares ``cryptography``).
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from collections.abc import Iterator
from functools import cache
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = sorted(p.parent for p in ROOT.glob("*/*/pyproject.toml") if p.parts[-3] != "tests")
PACKAGES = [p for p in PACKAGES if p.parent.name in {"libs", "services", "tools"}]


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def runtime_imports(source: str) -> Iterator[str]:
    """Absolute module names imported by ``source``, outside ``if TYPE_CHECKING:`` blocks."""

    def visit(node: ast.AST) -> Iterator[str]:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from (name for child in node.orelse for name in visit(child))
            return
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
        for child in ast.iter_child_nodes(node):
            yield from visit(child)

    yield from visit(ast.parse(source))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


@cache
def workspace_packages() -> dict[str, str]:
    """``fleetpulse.<sub>`` -> the workspace distribution that ships it."""
    found: dict[str, str] = {}
    for package in PACKAGES:
        name = tomllib.loads((package / "pyproject.toml").read_text())["project"]["name"]
        for sub in (package / "src" / "fleetpulse").iterdir():
            if sub.is_dir() and not sub.name.startswith(("_", ".")):
                found[f"fleetpulse.{sub.name}"] = normalize(name)
    return found


@cache
def distributions_of(module: str) -> frozenset[str]:
    """The distributions that can provide ``module`` (a dotted name): the one that ships its
    file where a namespace (``opentelemetry``, ``google``) is split between several."""
    if module.startswith("fleetpulse."):
        sub = ".".join(module.split(".")[:2])
        return frozenset({workspace_packages()[sub]} if sub in workspace_packages() else ())
    top = module.split(".")[0]
    candidates = frozenset(normalize(d) for d in _packages_distributions().get(top, []))
    if len(candidates) <= 1:
        return candidates
    parts = module.split(".")
    for depth in range(len(parts), 1, -1):
        prefix = "/".join(parts[:depth])
        owners = frozenset(d for d in candidates if _ships(d, prefix))
        if owners:
            return owners
    return candidates


@cache
def _packages_distributions() -> dict[str, list[str]]:
    return dict(metadata.packages_distributions())


@cache
def _ships(distribution: str, prefix: str) -> bool:
    files = [str(f) for f in metadata.distribution(distribution).files or ()]
    return f"{prefix}.py" in files or any(f.startswith(f"{prefix}/") for f in files)


def declared(pyproject: Path) -> set[str]:
    """The distributions ``pyproject`` declares, with what its requirements' extras add."""
    project = tomllib.loads(pyproject.read_text())["project"]
    names = {normalize(project["name"])}
    for line in project.get("dependencies", []):
        requirement = Requirement(line)
        names.add(normalize(requirement.name))
        names |= _extras(requirement.name, frozenset(requirement.extras))
    return names


@cache
def _extras(distribution: str, extras: frozenset[str]) -> set[str]:
    if not extras:
        return set()
    try:
        requires = metadata.requires(distribution) or []
    except metadata.PackageNotFoundError:
        return set()
    added: set[str] = set()
    for line in requires:
        requirement = Requirement(line)
        marker = requirement.marker
        if (
            marker
            and any(marker.evaluate({"extra": extra}) for extra in extras)
            and not marker.evaluate({"extra": ""})
        ):
            added.add(normalize(requirement.name))
    return added


def undeclared_imports(package: Path) -> dict[str, str]:
    """``{module: why}`` for each module ``package/src`` imports without declaring it."""
    allowed = declared(package / "pyproject.toml")
    problems: dict[str, str] = {}
    for path in sorted((package / "src").rglob("*.py")):
        for module in runtime_imports(path.read_text()):
            top = module.split(".")[0]
            if top in sys.stdlib_module_names or module in problems:
                continue
            providers = distributions_of(module)
            where = str(path.relative_to(package))
            if not providers:
                problems[module] = f"{where}: no installed distribution provides it"
            elif not providers & allowed:
                problems[module] = f"{where}: needs one of {sorted(providers)} declared"
    return problems


def test_the_check_flags_an_undeclared_import(tmp_path: Path) -> None:
    """Positive control: a synthetic package importing a module it does not declare."""
    source = tmp_path / "src" / "fleetpulse" / "synthetic"
    source.mkdir(parents=True)
    (source / "__init__.py").write_text(
        "from __future__ import annotations\n"
        "import json\n"
        "from typing import TYPE_CHECKING\n"
        "import yaml\n"
        "from fleetpulse.common.mqtt import MqttEndpoint\n"
        "if TYPE_CHECKING:\n"
        "    import aiohttp\n"
        "def f():\n"
        "    import orjson\n"
    )
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "synthetic"\ndependencies = []\n')
    assert set(undeclared_imports(tmp_path)) == {"yaml", "fleetpulse.common.mqtt", "orjson"}

    pyproject.write_text(
        '[project]\nname = "synthetic"\n'
        'dependencies = ["fleetpulse-common", "PyYAML>=6", "orjson"]\n'
    )
    assert undeclared_imports(tmp_path) == {}


def test_extras_count_as_declared(tmp_path: Path) -> None:
    source = tmp_path / "src" / "fleetpulse" / "synthetic"
    source.mkdir(parents=True)
    (source / "__init__.py").write_text("import cryptography\nimport jwt\n")
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "synthetic"\ndependencies = ["pyjwt[crypto]>=2.9"]\n'
    )
    assert undeclared_imports(tmp_path) == {}


def test_a_namespace_import_needs_the_distribution_that_ships_it(tmp_path: Path) -> None:
    source = tmp_path / "src" / "fleetpulse" / "synthetic"
    source.mkdir(parents=True)
    (source / "__init__.py").write_text("from opentelemetry.sdk.trace import TracerProvider\n")
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "synthetic"\ndependencies = ["opentelemetry-api"]\n'
    )
    assert set(undeclared_imports(tmp_path)) == {"opentelemetry.sdk.trace"}


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_package_declares_what_it_imports(package: Path) -> None:
    assert undeclared_imports(package) == {}
