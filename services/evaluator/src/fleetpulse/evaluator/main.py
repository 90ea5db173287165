"""``fleetpulse-evaluator``: the process entry.

The wiring is in :mod:`fleetpulse.evaluator.bootstrap`.
"""

from __future__ import annotations

from fleetpulse.common.runtime import run
from fleetpulse.evaluator.bootstrap import serve
from fleetpulse.evaluator.settings import Settings


def main() -> None:
    run("fleetpulse-evaluator", Settings, serve)
