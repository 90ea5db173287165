"""Console script ``fleetpulse-ingest``."""

from __future__ import annotations

from fleetpulse.common.runtime import run
from fleetpulse.ingest.service import serve
from fleetpulse.ingest.settings import Settings


def main() -> None:
    run("fleetpulse-ingest", Settings, serve)
