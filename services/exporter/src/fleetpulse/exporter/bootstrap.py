"""``fleetpulse-exporter``'s wiring: the event log and telemetry to S3 as Parquet, for Athena.

The app exports every ``FLEETPULSE_EXPORT_INTERVAL_S`` until SIGTERM (it finishes the range in
flight; a range cut short is rewritten by the next run), or once with ``--once``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg

from fleetpulse.common.aws import aws_client
from fleetpulse.common.db import create_pool
from fleetpulse.common.health import database_ready
from fleetpulse.common.runtime import ServiceContext, run_loops
from fleetpulse.exporter.entrypoints import export_forever
from fleetpulse.exporter.exporter import Exporter, ExportOptions
from fleetpulse.exporter.files import Coalescing
from fleetpulse.exporter.lake import S3ObjectStore
from fleetpulse.exporter.settings import Settings
from fleetpulse.exporter.store import PostgresExportStore

NAME = "fleetpulse-exporter"


@dataclass(slots=True)
class App:
    settings: Settings
    pool: asyncpg.Pool
    exporter: Exporter

    async def run(self, stop: asyncio.Event) -> None:
        """Export every ``export_interval_s`` until ``stop``."""
        await run_loops([export_forever(self.exporter, stop, self.settings.export_interval_s)])


@asynccontextmanager
async def bootstrap(settings: Settings) -> AsyncIterator[App]:
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
            yield App(settings, pool, Exporter(store, lake, options))
    finally:
        await pool.close()


async def serve(context: ServiceContext[Settings], *, once: bool = False) -> None:
    async with bootstrap(context.settings) as app:
        pool = app.pool
        context.health.add_check("db", lambda: database_ready(pool))
        if once:
            await app.exporter.export_all()
            return
        await app.run(context.shutdown)
