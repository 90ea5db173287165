"""``fleetpulse-ingest``: the process entry.

The wiring is in :mod:`fleetpulse.ingest.bootstrap`.
"""

from __future__ import annotations

from fleetpulse.common.runtime import run
from fleetpulse.ingest.bootstrap import serve
from fleetpulse.ingest.settings import Settings


def main() -> None:
    run("fleetpulse-ingest", Settings, serve)
