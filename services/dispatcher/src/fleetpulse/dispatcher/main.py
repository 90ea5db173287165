"""``fleetpulse-dispatcher``: the process entry.

The wiring is in :mod:`fleetpulse.dispatcher.bootstrap`.
"""

from __future__ import annotations

from fleetpulse.common.runtime import run
from fleetpulse.dispatcher.bootstrap import serve
from fleetpulse.dispatcher.settings import Settings


def main() -> None:
    run("fleetpulse-dispatcher", Settings, serve)
