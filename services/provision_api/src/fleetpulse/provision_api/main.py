"""``fleetpulse-provision-api``: the process entry.

The wiring is in :mod:`fleetpulse.provision_api.bootstrap`.
"""

from __future__ import annotations

from fleetpulse.common.runtime import run
from fleetpulse.provision_api.bootstrap import serve
from fleetpulse.provision_api.settings import Settings


def main() -> None:
    run("fleetpulse-provision-api", Settings, serve)
