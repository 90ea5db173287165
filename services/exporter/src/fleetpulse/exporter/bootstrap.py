"""``fleetpulse-exporter``: the event log and telemetry to S3 as Parquet, for Athena.

``fleetpulse-exporter`` runs an export every ``FLEETPULSE_EXPORT_INTERVAL_S`` until SIGTERM (it
finishes the range in flight; a range cut short is rewritten by the next run).
``fleetpulse-exporter --once`` runs one export and exits (an ECS scheduled task).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from botocore.exceptions import BotoCoreError, ClientError

from fleetpulse.common.aws import aws_client
from fleetpulse.common.db import TRANSIENT_ERRORS, create_pool
from fleetpulse.common.runtime import ServiceContext
from fleetpulse.exporter.exporter import Exporter, ExportOptions
from fleetpulse.exporter.files import Coalescing
from fleetpulse.exporter.lake import S3ObjectStore
from fleetpulse.exporter.settings import Settings
from fleetpulse.exporter.store import PostgresExportStore

log = logging.getLogger(__name__)
NAME = "fleetpulse-exporter"
RETRYABLE: tuple[type[BaseException], ...] = (*TRANSIENT_ERRORS, BotoCoreError, ClientError)


@asynccontextmanager
async def bootstrap(settings: Settings) -> AsyncIterator[tuple[asyncpg.Pool, Exporter]]:
    """Wire the pool, the S3 client and the exporter."""
    pool = await create_pool(
        settings.database_url, max_size=settings.db_pool_size, application_name=NAME
    )
    try:
        async with aws_client("s3", settings.aws) as s3:
            lake = S3ObjectStore(s3, settings.lake_bucket, kms_key_id=settings.lake_kms_key_id)
            if settings.auto_create:
                await lake.ensure_bucket()
            options = ExportOptions(
                prefix=settings.lake_prefix,
                rows_per_file=settings.export_rows_per_file,
                compression=settings.export_compression,
            )
            coalescing = Coalescing(settings.export_min_rows, settings.export_max_delay_s)
            store = PostgresExportStore(
                pool, max_events=settings.export_max_events, coalescing=coalescing
            )
            yield pool, Exporter(store, lake, options)
    finally:
        await pool.close()


async def serve(context: ServiceContext[Settings], *, once: bool = False) -> None:
    async with bootstrap(context.settings) as (pool, exporter):
        context.health.add_check("db", lambda: _ping(pool))
        if once:
            await exporter.export_all()
            return
        await export_forever(exporter, context.shutdown, context.settings.export_interval_s)


async def export_forever(exporter: Exporter, stop: asyncio.Event, interval_s: float) -> None:
    """Export every ``interval_s`` until ``stop``; failures are logged and retried next time."""
    while not stop.is_set():
        try:
            await exporter.export_all(stop)
        except RETRYABLE as exc:
            log.warning("export failed; retrying next interval", extra={"error": repr(exc)})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)


async def _ping(pool: asyncpg.Pool) -> bool:
    return bool(await pool.fetchval("SELECT 1"))
