"""The exporter's entrypoint: a timer that hands every interval to :class:`Exporter`."""

from __future__ import annotations

import asyncio
import logging

from botocore.exceptions import BotoCoreError, ClientError

from fleetpulse.common.db import TRANSIENT_ERRORS
from fleetpulse.common.runtime import sleep_until_stopped
from fleetpulse.exporter.exporter import Exporter

log = logging.getLogger(__name__)
RETRYABLE: tuple[type[BaseException], ...] = (*TRANSIENT_ERRORS, BotoCoreError, ClientError)


async def export_forever(exporter: Exporter, stop: asyncio.Event, interval_s: float) -> None:
    """Export every ``interval_s`` until ``stop``; failures are logged and retried next time."""
    while not stop.is_set():
        try:
            await exporter.export_all(stop)
        except RETRYABLE as exc:
            log.warning("export failed; retrying next interval", extra={"error": repr(exc)})
        await sleep_until_stopped(stop, interval_s)
