"""Print the README's configuration table from the services' settings classes.

    uv run python scripts/config_table.py

tests/test_readme.py checks that README.md carries exactly this table.
"""

from __future__ import annotations

import importlib

from fleetpulse.common.settings import ServiceSettings, settings_table

START = "<!-- config-table:start -->"
END = "<!-- config-table:end -->"
SERVICES = {
    "ingest": "fleetpulse.ingest.settings",
    "evaluator": "fleetpulse.evaluator.settings",
    "dispatcher": "fleetpulse.dispatcher.settings",
    "delivery_worker": "fleetpulse.delivery_worker.settings",
    "provision_api": "fleetpulse.provision_api.settings",
    "exporter": "fleetpulse.exporter.settings",
}


def settings_classes() -> dict[str, type[ServiceSettings]]:
    return {name: importlib.import_module(module).Settings for name, module in SERVICES.items()}


def rows() -> list[tuple[str, str, str, str]]:
    """(variable, services, default, description), one row per variable, sorted."""
    merged: dict[str, tuple[list[str], str, str]] = {}
    for service, cls in settings_classes().items():
        for variable, default, description in settings_table(cls):
            users, _, _ = merged.setdefault(variable, ([], default, description))
            users.append(service)
    everyone = len(SERVICES)
    return [
        (var, "all" if len(users) == everyone else ", ".join(users), default, description)
        for var, (users, default, description) in sorted(merged.items())
    ]


def markdown() -> str:
    lines = ["| variable | services | default | meaning |", "| --- | --- | --- | --- |"]
    lines += [f"| `{v}` | {s} | `{d}` | {_cell(m)} |" for v, s, d, m in rows()]
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def insert_into(readme: str) -> str:
    """``readme`` with the table between the config-table markers replaced by a fresh one."""
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{markdown()}\n{END}{tail}"


if __name__ == "__main__":
    import sys
    from pathlib import Path

    if "--write" in sys.argv:
        path = Path(__file__).resolve().parents[1] / "README.md"
        path.write_text(insert_into(path.read_text()))
    else:
        print(markdown())
