"""Event type names are written once, in ``fleetpulse.common.contracts``: shipped code refers to
them through the structs (``AlertOpened.TYPE``, ``match``/``isinstance`` on decoded events), so a
renamed or misspelled event fails at import or type-check time, not as a ``KeyError`` in another
process. Docstrings may name events; string constants may not."""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from pathlib import Path

from fleetpulse.common.contracts import EVENT_TYPES

ROOT = Path(__file__).resolve().parents[1]
CONTRACTS = ROOT / "libs/common/src/fleetpulse/common/contracts"


def shipped_files() -> Iterator[Path]:
    for pattern in ("services/*/src/**/*.py", "libs/common/src/**/*.py", "tools/*/src/**/*.py"):
        for path in sorted(ROOT.glob(pattern)):
            if CONTRACTS not in path.parents:
                yield path


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the string constants that are docstrings (module, class, function, attribute)."""
    found: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if not isinstance(body, list):
            continue
        for i, statement in enumerate(body):
            is_string = (
                isinstance(statement, ast.Expr)
                and isinstance(statement.value, ast.Constant)
                and isinstance(statement.value.value, str)
            )
            first = i == 0 and isinstance(
                node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef
            )
            after_field = i > 0 and isinstance(body[i - 1], ast.AnnAssign | ast.Assign)
            if is_string and (first or after_field):
                found.add(id(statement.value))
    return found


def literal_event_types(source: str, names: Iterable[str]) -> list[tuple[int, str]]:
    """``(line, name)`` for every string constant (not a docstring) equal to an event type."""
    wanted, tree = set(names), ast.parse(source)
    skip = _docstrings(tree)
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and node.value in wanted
        and id(node) not in skip
    ]


def test_no_event_type_name_is_a_string_literal_outside_contracts() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{line}: {name!r}"
        for path in shipped_files()
        for line, name in literal_event_types(path.read_text(), EVENT_TYPES)
    ]
    assert not found, "use the contract struct (e.g. AlertOpened.TYPE):\n" + "\n".join(found)


def test_the_checker_flags_literals_and_spares_docstrings() -> None:
    """Positive control: the check above would see a literal if there were one."""
    snippet = '''
"""Module docstring naming AlertOpened."""
HANDLERS = {"AlertOpened": None}
FILTER = {"type": ["DeliveryScheduled"]}

def handle(event):
    """Handles AlertOpened."""
    if event.type == "RuleDeleted":
        return f"{event.type}"
'''
    assert literal_event_types(snippet, EVENT_TYPES) == [
        (3, "AlertOpened"),
        (4, "DeliveryScheduled"),
        (8, "RuleDeleted"),
    ]
    assert len(list(shipped_files())) > 100
