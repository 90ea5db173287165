"""``fleetpulse-delivery-worker``: the process entry.

The wiring is in :mod:`fleetpulse.delivery_worker.bootstrap`.
"""

from __future__ import annotations

from fleetpulse.common.runtime import run
from fleetpulse.delivery_worker.bootstrap import serve
from fleetpulse.delivery_worker.settings import Settings


def main() -> None:
    run("fleetpulse-delivery-worker", Settings, serve)
