"""Every service has one shape, the dispatcher's: ``main.py`` (the process entry and nothing
else), ``bootstrap.py`` (the wiring, exposing ``App`` with ``async run(stop)`` that runs the
loops under one task group, so a failing loop fails the service fast) and ``entrypoints.py``;
no service keeps its own copy of the platform helpers (sleep until stopped, the database
readiness ping). And the queue declaration has one owner: ``QUEUES`` in
``common/messaging/resources.py``, which Terraform's ``local.queues`` must repeat exactly.

The checker runs on source text, so the positive controls feed it a synthetic bad package.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from fleetpulse.common.messaging.resources import QUEUES

ROOT = Path(__file__).resolve().parents[1]
SERVICES = sorted(p.name for p in (ROOT / "services").iterdir() if (p / "src").is_dir())
REQUIRED = ("main.py", "bootstrap.py", "entrypoints.py")
APP = "App"
#: What a task group looks like in ``App.run`` (directly or through runtime's helper).
TASK_GROUP_CALLS = frozenset({"TaskGroup", "run_loops"})
PING_QUERIES = frozenset({"SELECT 1", "SELECT true"})


def package_of(svc: str) -> Path:
    return ROOT / "services" / svc / "src" / "fleetpulse" / svc


def shape_problems(files: dict[str, str]) -> list[str]:
    """What is wrong with a service package given as ``{relative path: source}``."""
    problems = [f"no {name}" for name in REQUIRED if name not in files]
    if "main.py" in files:
        problems += main_problems(ast.parse(files["main.py"]))
    if "bootstrap.py" in files:
        problems += bootstrap_problems(ast.parse(files["bootstrap.py"]))
    for path, source in sorted(files.items()):
        problems += [f"{path}: {p}" for p in helper_copies(ast.parse(source))]
    return problems


def main_problems(tree: ast.Module) -> list[str]:
    """``main.py`` holds imports, constants and exactly one function, ``main``."""
    problems = []
    functions = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
    if functions != ["main"]:
        problems.append(f"main.py defines {functions}, not just main()")
    allowed = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.Assign, ast.AnnAssign, ast.Expr)
    for node in tree.body:
        if not isinstance(node, allowed):
            problems.append(f"main.py has a {type(node).__name__} at line {node.lineno}")
        elif isinstance(node, ast.Expr) and not isinstance(node.value, ast.Constant):
            problems.append(f"main.py runs code at import (line {node.lineno})")
    return problems


def bootstrap_problems(tree: ast.Module) -> list[str]:
    """``bootstrap.py`` defines ``bootstrap`` and ``App`` whose ``async run(self, stop)`` runs
    its loops under a task group."""
    top = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
    problems = [] if "bootstrap" in top else ["bootstrap.py has no bootstrap()"]
    app = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == APP), None)
    if app is None:
        return [*problems, f"bootstrap.py has no class {APP}"]
    run = next(
        (n for n in app.body if isinstance(n, ast.AsyncFunctionDef) and n.name == "run"), None
    )
    if run is None:
        return [*problems, f"{APP} has no async run()"]
    if [a.arg for a in run.args.args] != ["self", "stop"]:
        problems.append(f"{APP}.run takes {[a.arg for a in run.args.args]}, not (self, stop)")
    if not TASK_GROUP_CALLS & {_called_name(n) for n in ast.walk(run)}:
        problems.append(f"{APP}.run does not run its loops under a task group")
    return problems


def helper_copies(tree: ast.Module) -> list[str]:
    """Own copies of the platform helpers: ``wait_for(stop.wait(), s)`` (sleep until
    stopped, see ``runtime.sleep_until_stopped``) and a ``SELECT 1`` readiness ping (see
    ``health.database_ready``)."""
    found = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if _called_name(node) == "wait_for" and _waits_on_stop(node):
            found.append(f"line {line}: sleeps until stopped by hand")
        if isinstance(node, ast.Constant) and node.value in PING_QUERIES:
            found.append(f"line {line}: pings the database by hand")
    return found


def _called_name(node: ast.AST) -> str | None:
    if not isinstance(node, ast.Call):
        return None
    func = node.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)


def _waits_on_stop(call: ast.AST) -> bool:
    assert isinstance(call, ast.Call)
    if not call.args or _called_name(call.args[0]) != "wait":
        return False
    waited = call.args[0].func  # type: ignore[attr-defined]
    target = waited.value if isinstance(waited, ast.Attribute) else None
    name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
    return name in {"stop", "shutdown", "stopping"}


def sources(svc: str) -> dict[str, str]:
    package = package_of(svc)
    return {str(p.relative_to(package)): p.read_text() for p in package.rglob("*.py")}


BAD_PACKAGE = {
    "main.py": (
        "from x import run\n\n"
        "def main() -> None:\n    run()\n\n"
        "class Wiring:\n    pass\n\n"
        "def serve() -> None:\n    pass\n\n"
        "main()\n"
    ),
    "bootstrap.py": (
        "import asyncio\n\n"
        "class Application:\n"
        "    async def run(self, stop):\n"
        "        await asyncio.gather(a(stop), b(stop))\n"
    ),
    "loops.py": (
        "import asyncio, contextlib\n\n"
        "async def tick(stop, s):\n"
        "    with contextlib.suppress(TimeoutError):\n"
        "        await asyncio.wait_for(stop.wait(), s)\n\n"
        "async def ping(pool):\n"
        '    return bool(await pool.fetchval("SELECT 1"))\n'
    ),
}


def test_the_checker_flags_a_package_of_another_shape() -> None:
    assert shape_problems(BAD_PACKAGE) == [
        "no entrypoints.py",
        "main.py defines ['main', 'serve'], not just main()",
        "main.py has a ClassDef at line 6",
        "main.py runs code at import (line 12)",
        "bootstrap.py has no bootstrap()",
        "bootstrap.py has no class App",
        "loops.py: line 5: sleeps until stopped by hand",
        "loops.py: line 8: pings the database by hand",
    ]


def test_the_checker_flags_an_app_whose_loops_are_gathered() -> None:
    gathered = BAD_PACKAGE["bootstrap.py"].replace("Application", "App")
    assert bootstrap_problems(ast.parse(gathered + "\ndef bootstrap(): ...\n")) == [
        "App.run does not run its loops under a task group"
    ]


@pytest.mark.parametrize("svc", SERVICES)
def test_service_has_the_shape(svc: str) -> None:
    assert shape_problems(sources(svc)) == []


def test_every_service_is_checked() -> None:
    assert set(SERVICES) == {
        "delivery_worker",
        "dispatcher",
        "evaluator",
        "exporter",
        "ingest",
        "provision_api",
    }


def terraform_queues(main_tf: str) -> dict[str, tuple[int, int]]:
    """``local.queues`` of ``infra/terraform/main.tf``: name -> (visibility, max receives)."""
    block = re.search(r"\n  queues = \{\n(.*?)\n  \}\n", main_tf, re.S)
    assert block is not None, "no local.queues block"
    entries = re.findall(
        r"(\w+) = \{\s*visibility_timeout_seconds = (\d+)\s*max_receive_count\s*= (\d+)\s*\}",
        block.group(1),
    )
    return {name: (int(visibility), int(receives)) for name, visibility, receives in entries}


def test_terraform_declares_the_queues_of_the_one_table() -> None:
    declared = terraform_queues((ROOT / "infra" / "terraform" / "main.tf").read_text())
    assert declared == {
        name: (spec.visibility_timeout_s, spec.max_receive_count) for name, spec in QUEUES.items()
    }
    assert terraform_queues(
        "\n  queues = {\n    ingest = {\n      visibility_timeout_seconds = 61\n"
        "      max_receive_count          = 5\n    }\n  }\n"
    ) == {"ingest": (61, 5)}  # the parser reads what it is given (positive control)
