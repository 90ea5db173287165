"""``fleetpulse-exporter``: the event log and telemetry to S3 as Parquet, for Athena.

``fleetpulse-exporter`` runs an export every ``FLEETPULSE_EXPORT_INTERVAL_S`` until SIGTERM (it
finishes the range in flight; a range cut short is rewritten by the next run).
``fleetpulse-exporter --once`` runs one export and exits (an ECS scheduled task).

The process entry only; the wiring is in :mod:`fleetpulse.exporter.bootstrap`.
"""

from __future__ import annotations

import argparse
import functools

from fleetpulse.common.runtime import run
from fleetpulse.exporter.bootstrap import serve
from fleetpulse.exporter.settings import Settings

NAME = "fleetpulse-exporter"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=NAME, description=__doc__.splitlines()[0])
    parser.add_argument("--once", action="store_true", help="export once and exit")
    args = parser.parse_args(argv)
    run(NAME, Settings, functools.partial(serve, once=args.once))
