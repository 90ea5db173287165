"""``fleetpulse-evaluator``: records from ``{prefix}evaluator`` -> rule state -> alert events.

Runs, until SIGTERM: the SQS consumer (one transaction per record batch), the clock (elapsed
durations and no_data deadlines, every ``tick_interval_s``), the catalog refresher and the outbox
relay. On SIGTERM the consumer stops receiving and finishes the batches in flight; the clock and
relay stop after their current round.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import asyncpg

from fleetpulse.common.aws import aws_client
from fleetpulse.common.db import create_pool
from fleetpulse.common.eventstore import PostgresEventStore
from fleetpulse.common.messaging import (
    OutboxRelay,
    SnsPublisher,
    SqsConsumer,
    SqsMessage,
    redeclare_platform,
    resolve_platform,
)
from fleetpulse.common.runtime import ServiceContext
from fleetpulse.evaluator.alerting import PostgresAlertLog
from fleetpulse.evaluator.catalog import Catalog, PostgresCatalogSource
from fleetpulse.evaluator.coalescer import Coalescer
from fleetpulse.evaluator.messages import decode_records
from fleetpulse.evaluator.service import Evaluator
from fleetpulse.evaluator.settings import Settings

if TYPE_CHECKING:
    from types_aiobotocore_sns import SNSClient
    from types_aiobotocore_sqs import SQSClient

NAME = "fleetpulse-evaluator"


@dataclass(slots=True)
class Application:
    settings: Settings
    evaluator: Evaluator
    catalog: PostgresCatalogSource
    consumer: SqsConsumer
    relay: OutboxRelay | None

    async def run(self, stop: asyncio.Event) -> None:
        await self.catalog.refresh()  # rules are known before the first record is evaluated
        await self.evaluator.catalog_changed()
        jobs: list[Awaitable[None]] = [
            self.consumer.run(stop),
            self.evaluator.run_clock(stop, self.settings.tick_interval_s),
            self.catalog.run(
                stop, self.settings.catalog_refresh_s, on_change=self.evaluator.catalog_changed
            ),
        ]
        if self.relay is not None:
            jobs.append(self.relay.run(stop))
        async with asyncio.TaskGroup() as group:
            for job in jobs:
                group.create_task(job)  # type: ignore[arg-type]


async def bootstrap(
    settings: Settings, pool: asyncpg.Pool, sqs: SQSClient, sns: SNSClient
) -> Application:
    """Wire the adapters: the one place that knows them all."""
    prefix, auto_create = settings.queue_prefix, settings.auto_create
    visibility_s = settings.visibility_timeout_s
    resources = await resolve_platform(
        sqs, sns, prefix, auto_create=auto_create, visibility_timeout_s=visibility_s
    )
    store = PostgresEventStore(pool)
    catalog = Catalog()
    evaluator = Evaluator(
        pool, catalog, PostgresAlertLog(store), duration_grace_s=settings.duration_grace_s
    )

    coalescer = Coalescer(
        evaluator.handle,
        max_records=settings.batch_max_records,
        linger_s=settings.batch_linger_ms / 1000,
    )

    async def on_message(message: SqsMessage) -> None:
        records, _ = decode_records(message.body, message.attributes.get("traceparent"))
        await coalescer.submit(records)

    consumer = SqsConsumer(
        sqs,
        resources.evaluator.url,
        on_message,
        concurrency=settings.consumer_concurrency,
        visibility_timeout_s=settings.visibility_timeout_s,
        name="evaluator",
        on_missing_queue=redeclare_platform(
            sqs, sns, prefix, auto_create=auto_create, visibility_timeout_s=visibility_s
        ),
    )
    relay = (
        OutboxRelay(
            store, SnsPublisher(sns, resources.domain_events_arn), dsn=settings.database_url
        )
        if settings.outbox_relay
        else None
    )
    return Application(settings, evaluator, PostgresCatalogSource(pool, catalog), consumer, relay)


async def serve(context: ServiceContext[Settings]) -> None:
    settings = context.settings
    pool = await create_pool(
        settings.database_url, min_size=2, max_size=settings.db_pool_size, application_name=NAME
    )

    async def database_ready() -> bool:
        return bool(await pool.fetchval("SELECT true"))

    context.health.add_check("db", database_ready)
    try:
        async with aws_client("sqs", settings.aws) as sqs, aws_client("sns", settings.aws) as sns:
            app = await bootstrap(settings, pool, sqs, sns)
            await app.run(context.shutdown)
    finally:
        await pool.close()


__all__: list[Any] = ["Application", "bootstrap", "serve"]
